//! The Vulkan context: instance, physical device, device and one queue.
//!
//! bufsync is linked into applications that already have their own Vulkan
//! objects, so a [`VulkanContext`] either *borrows* the application's handles
//! ([`VulkanContext::from_application`]; nothing is destroyed on drop) or
//! *owns* the ones it created ([`VulkanContext::new`]).
//!
//! Locking: a Vulkan queue is externally synchronized. Every queue operation
//! bufsync makes holds the context's own submit mutex (bufsync's threads
//! never race each other) and, inside it, whatever [`QueueSync`] the
//! application chose: its lock/unlock hooks (as FFmpeg's
//! `AVVulkanDeviceContext.lock_queue`), nothing when it synchronizes the
//! queue itself, or, for contexts bufsync created, the submit mutex alone
//! (applications then submit through [`VulkanContext::with_queue`]). The
//! SYNC_FD export probe runs once, on first need, under the same lock
//! (never at construction); its result lives in a `OnceLock`. Nothing else
//! is mutable.
//!
//! Module order (no cycles): `context` uses `caps` (queries and the probe
//! through a submit callback); `timeline` and `submit` use `context`.

use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ash::{ext, khr, vk};

use super::caps::{probe_sync_fd_export, SyncFdExport, VulkanCaps};
use super::error::{Result, VulkanError};

/// The device extensions bufsync uses when present.
pub const WANTED_DEVICE_EXTENSIONS: &[&CStr] = &[
    khr::external_memory_fd::NAME,
    ext::external_memory_dma_buf::NAME,
    ext::image_drm_format_modifier::NAME,
    khr::external_semaphore_fd::NAME,
    ext::queue_family_foreign::NAME,
    khr::image_format_list::NAME,
];

/// The application's own Vulkan objects, handed to
/// [`VulkanContext::from_application`].
#[derive(Clone)]
pub struct ApplicationHandles {
    /// The loaded Vulkan entry points.
    pub entry: ash::Entry,
    /// The application's instance (Vulkan 1.2 or later).
    pub instance: ash::Instance,
    /// The physical device the device was created on.
    pub physical_device: vk::PhysicalDevice,
    /// The application's device.
    pub device: ash::Device,
    /// Family of `queue`; it must support compute and transfer.
    pub queue_family_index: u32,
    /// The queue bufsync submits to.
    pub queue: vk::Queue,
    /// The device extensions the application enabled.
    pub enabled_device_extensions: Vec<CString>,
    /// Whether the application enabled the `timelineSemaphore` feature.
    pub timeline_semaphore: bool,
}

/// The application's queue lock, called around every queue operation
/// bufsync makes on its queue (FFmpeg's `lock_queue` / `unlock_queue`).
///
/// Both run on the thread that submits, in pairs, with bufsync's own submit
/// mutex held; they must not call back into bufsync, and the caller of a
/// bufsync submission must not already hold the application's lock.
pub trait QueueLock: Send + Sync {
    /// Takes the application's lock on `queue`.
    fn lock(&self, queue: vk::Queue);
    /// Releases it.
    fn unlock(&self, queue: vk::Queue);
}

struct FnLock<L, U>(L, U);

impl<L, U> QueueLock for FnLock<L, U>
where
    L: Fn(vk::Queue) + Send + Sync,
    U: Fn(vk::Queue) + Send + Sync,
{
    fn lock(&self, queue: vk::Queue) {
        (self.0)(queue)
    }
    fn unlock(&self, queue: vk::Queue) {
        (self.1)(queue)
    }
}

/// How bufsync's queue operations are ordered against the application's.
#[derive(Clone)]
pub enum QueueSync {
    /// The application's lock hooks, called around every queue operation
    /// bufsync makes.
    Hooks(Arc<dyn QueueLock>),
    /// The application synchronizes the queue itself: none of its own queue
    /// operations overlaps a bufsync call that submits (e.g. it submits from
    /// the one thread that also calls bufsync). bufsync only serializes its
    /// own submissions.
    Application,
    /// bufsync's submit mutex only: the application submits to the queue
    /// through [`VulkanContext::with_queue`] (what [`VulkanContext::new`]
    /// uses).
    Internal,
}

impl QueueSync {
    /// Hooks from two closures: `lock(queue)` before, `unlock(queue)` after
    /// every queue operation bufsync makes.
    pub fn hooks(
        lock: impl Fn(vk::Queue) + Send + Sync + 'static,
        unlock: impl Fn(vk::Queue) + Send + Sync + 'static,
    ) -> QueueSync {
        QueueSync::Hooks(Arc::new(FnLock(lock, unlock)))
    }
}

impl std::fmt::Debug for QueueSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueueSync::Hooks(_) => "Hooks",
            QueueSync::Application => "Application",
            QueueSync::Internal => "Internal",
        })
    }
}

/// The queue, locked for one operation: bufsync's submit mutex plus the
/// application's hooks. Unlocks (hooks first) on drop.
pub struct QueueGuard<'a> {
    _mutex: MutexGuard<'a, ()>,
    hooks: Option<&'a dyn QueueLock>,
    queue: vk::Queue,
}

impl QueueGuard<'_> {
    /// The queue, usable while the guard lives.
    pub fn queue(&self) -> vk::Queue {
        self.queue
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.hooks {
            h.unlock(self.queue);
        }
    }
}

impl std::fmt::Debug for QueueGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueGuard")
            .field("queue", &self.queue)
            .finish()
    }
}

/// Extension function tables, loaded only for extensions that are enabled.
pub(crate) struct ExtensionFns {
    /// VK_KHR_external_memory_fd.
    pub memory_fd: Option<khr::external_memory_fd::Device>,
    /// VK_KHR_external_semaphore_fd.
    pub semaphore_fd: Option<khr::external_semaphore_fd::Device>,
    /// VK_EXT_image_drm_format_modifier.
    pub drm_modifier: Option<ext::image_drm_format_modifier::Device>,
}

/// A Vulkan device with one queue, its extension tables and its probed
/// capabilities. Shared as `Arc<VulkanContext>`.
pub struct VulkanContext {
    handles: ApplicationHandles,
    owned: bool,
    pub(crate) fns: ExtensionFns,
    submit_mutex: Mutex<()>,
    queue_sync: QueueSync,
    caps: VulkanCaps,
    sync_fd_export: OnceLock<SyncFdExport>,
}

impl std::fmt::Debug for VulkanContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulkanContext")
            .field("device", &self.handles.device.handle())
            .field("owned", &self.owned)
            .field("queue_sync", &self.queue_sync)
            .field("caps", &self.caps)
            .field("sync_fd_export", &self.sync_fd_export.get())
            .finish()
    }
}

fn has_ext(list: &[CString], name: &CStr) -> bool {
    list.iter().any(|e| e.as_c_str() == name)
}

impl VulkanContext {
    /// Wraps the application's existing handles. Nothing is created and
    /// nothing is submitted here; nothing of the application's is
    /// destroyed on drop. `queue_sync` says how bufsync's queue operations
    /// are ordered against the application's own ([`QueueSync`]).
    ///
    /// Extension functions are loaded only for the extensions listed in
    /// `enabled_device_extensions` (ash aborts the process on a missing one).
    /// The SYNC_FD export probe runs later, on first need
    /// ([`sync_fd_export`](Self::sync_fd_export)), under `queue_sync`.
    ///
    /// # Safety
    /// The handles must be valid, belong together, and outlive the returned
    /// context (and every object created through it); the listed extensions
    /// and the timeline feature must really be enabled on the device; the
    /// application's own submissions to `queue` must follow `queue_sync`.
    pub unsafe fn from_application(
        handles: ApplicationHandles,
        queue_sync: QueueSync,
    ) -> Result<std::sync::Arc<Self>> {
        Self::build(handles, false, queue_sync)
    }

    /// Creates an instance, picks a physical device (Vulkan 1.2+, a compute
    /// queue; discrete GPUs first), enables every extension of
    /// [`WANTED_DEVICE_EXTENSIONS`] that is present and the timeline feature.
    /// The context owns and destroys them.
    pub fn new() -> Result<std::sync::Arc<Self>> {
        // SAFETY: loading libvulkan runs its initializers; it is the system's
        // Vulkan loader, which is what every Vulkan program does.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| VulkanError::Load(e.to_string()))?;
        let app = vk::ApplicationInfo::default()
            .application_name(c"bufsync")
            .api_version(vk::API_VERSION_1_2);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: `info` and what it points to live across the call.
        let instance = unsafe { entry.create_instance(&info, None) }
            .map_err(VulkanError::vk("vkCreateInstance"))?;
        match Self::create_device(&entry, &instance) {
            Ok(handles) => Self::build(handles, true, QueueSync::Internal),
            Err(e) => {
                // SAFETY: the instance was created above and has no children.
                unsafe { instance.destroy_instance(None) };
                Err(e)
            }
        }
    }

    fn create_device(entry: &ash::Entry, instance: &ash::Instance) -> Result<ApplicationHandles> {
        // SAFETY: valid instance.
        let physicals = unsafe { instance.enumerate_physical_devices() }
            .map_err(VulkanError::vk("vkEnumeratePhysicalDevices"))?;
        let mut best: Option<(u32, vk::PhysicalDevice, u32)> = None;
        for pd in physicals {
            // SAFETY: `pd` comes from this instance.
            let props = unsafe { instance.get_physical_device_properties(pd) };
            if props.api_version < vk::API_VERSION_1_2 {
                continue;
            }
            // SAFETY: as above.
            let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            let Some(family) = families
                .iter()
                .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
            else {
                continue;
            };
            let rank = match props.device_type {
                vk::PhysicalDeviceType::DISCRETE_GPU => 0,
                vk::PhysicalDeviceType::INTEGRATED_GPU => 1,
                vk::PhysicalDeviceType::VIRTUAL_GPU => 2,
                vk::PhysicalDeviceType::CPU => 3,
                _ => 4,
            };
            if best.map_or(true, |(r, _, _)| rank < r) {
                best = Some((rank, pd, family as u32));
            }
        }
        let (_, physical_device, family) = best.ok_or_else(|| {
            VulkanError::NoDevice("no Vulkan 1.2 device with a compute queue".into())
        })?;
        // SAFETY: valid physical device.
        let available = unsafe { instance.enumerate_device_extension_properties(physical_device) }
            .map_err(VulkanError::vk("vkEnumerateDeviceExtensionProperties"))?;
        let enabled: Vec<CString> = WANTED_DEVICE_EXTENSIONS
            .iter()
            .filter(|want| {
                available
                    .iter()
                    .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == **want))
            })
            .map(|c| (*c).to_owned())
            .collect();
        let ptrs: Vec<*const std::ffi::c_char> = enabled.iter().map(|c| c.as_ptr()).collect();
        let prio = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&prio)];
        let mut v12 = vk::PhysicalDeviceVulkan12Features::default().timeline_semaphore(true);
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&ptrs)
            .push_next(&mut v12);
        // SAFETY: every pointer in `info` refers to locals that outlive the call.
        let device = unsafe { instance.create_device(physical_device, &info, None) }
            .map_err(VulkanError::vk("vkCreateDevice"))?;
        // SAFETY: the family was requested with one queue.
        let queue = unsafe { device.get_device_queue(family, 0) };
        log::debug!("vulkan: created device with extensions {enabled:?}");
        Ok(ApplicationHandles {
            entry: entry.clone(),
            instance: instance.clone(),
            physical_device,
            device,
            queue_family_index: family,
            queue,
            enabled_device_extensions: enabled,
            timeline_semaphore: true,
        })
    }

    fn build(
        handles: ApplicationHandles,
        owned: bool,
        queue_sync: QueueSync,
    ) -> Result<std::sync::Arc<Self>> {
        let exts = &handles.enabled_device_extensions;
        let fns = ExtensionFns {
            memory_fd: has_ext(exts, khr::external_memory_fd::NAME)
                .then(|| khr::external_memory_fd::Device::new(&handles.instance, &handles.device)),
            semaphore_fd: has_ext(exts, khr::external_semaphore_fd::NAME).then(|| {
                khr::external_semaphore_fd::Device::new(&handles.instance, &handles.device)
            }),
            drm_modifier: has_ext(exts, ext::image_drm_format_modifier::NAME).then(|| {
                ext::image_drm_format_modifier::Device::new(&handles.instance, &handles.device)
            }),
        };
        let mut ctx = VulkanContext {
            handles,
            owned,
            fns,
            submit_mutex: Mutex::new(()),
            queue_sync,
            caps: VulkanCaps::default(),
            sync_fd_export: OnceLock::new(),
        };
        if !ctx.handles.timeline_semaphore {
            // `ctx` drops here and destroys what it owns.
            return Err(VulkanError::Missing("timelineSemaphore feature"));
        }
        ctx.caps = VulkanCaps::query(
            &ctx.handles.instance,
            ctx.handles.physical_device,
            &ctx.handles.enabled_device_extensions,
        );
        log::info!("vulkan capabilities:\n{}", ctx.caps);
        Ok(std::sync::Arc::new(ctx))
    }

    /// Whether SYNC_FD export hands out pending fences: probed once, on the
    /// first call (one submission held back on a timeline gate, under the
    /// queue lock, and a scoped helper thread for the export that may
    /// block); later calls read the result. [`SyncFdExport::Unsupported`]
    /// without SYNC_FD export support or when the probe fails (logged).
    pub fn sync_fd_export(&self) -> SyncFdExport {
        *self.sync_fd_export.get_or_init(|| {
            let Some(sem_fd) = self.fns.semaphore_fd.as_ref() else {
                return SyncFdExport::Unsupported;
            };
            if !self.caps.sync_fd_semaphore.export {
                return SyncFdExport::Unsupported;
            }
            let submit = |info: &vk::SubmitInfo<'_>, fence: vk::Fence| {
                let q = self.queue_lock();
                // SAFETY: queue lock held; the caller's arrays live across the call.
                unsafe { self.device().queue_submit(q.queue(), &[*info], fence) }
                    .map_err(VulkanError::vk("vkQueueSubmit"))
            };
            match probe_sync_fd_export(self.device(), sem_fd, &submit) {
                Ok(v) => {
                    log::info!("vulkan: SYNC_FD export probe: {v:?}");
                    v
                }
                Err(e) => {
                    log::warn!("vulkan: SYNC_FD export probe failed: {e}");
                    SyncFdExport::Unsupported
                }
            }
        })
    }

    /// Whether a render-done fence gets a pending sync_file form (runs the
    /// SYNC_FD export probe on first call).
    pub fn sync_file_out(&self) -> bool {
        self.sync_fd_export() == SyncFdExport::Pending
    }

    /// How queue operations are synchronized with the application's.
    pub fn queue_sync(&self) -> &QueueSync {
        &self.queue_sync
    }

    /// The probed capabilities.
    pub fn caps(&self) -> &VulkanCaps {
        &self.caps
    }

    /// The ash entry points.
    pub fn entry(&self) -> &ash::Entry {
        &self.handles.entry
    }

    /// The ash instance.
    pub fn instance(&self) -> &ash::Instance {
        &self.handles.instance
    }

    /// The physical device.
    pub fn physical_device(&self) -> vk::PhysicalDevice {
        self.handles.physical_device
    }

    /// The ash device.
    pub fn device(&self) -> &ash::Device {
        &self.handles.device
    }

    /// The queue family bufsync submits to.
    pub fn queue_family_index(&self) -> u32 {
        self.handles.queue_family_index
    }

    /// The enabled device extensions.
    pub fn enabled_extensions(&self) -> &[CString] {
        &self.handles.enabled_device_extensions
    }

    /// Whether device extension `name` is enabled.
    pub fn has_extension(&self, name: &CStr) -> bool {
        has_ext(&self.handles.enabled_device_extensions, name)
    }

    /// Whether this context owns (and will destroy) its handles.
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// Locks the queue for one operation: bufsync's submit mutex, then the
    /// application's hooks if it gave any. Hold it only across
    /// `vkQueueSubmit`-like calls.
    pub fn queue_lock(&self) -> QueueGuard<'_> {
        let mutex = self.submit_mutex.lock().unwrap_or_else(|p| p.into_inner());
        let queue = self.handles.queue;
        let hooks = match &self.queue_sync {
            QueueSync::Hooks(h) => {
                h.lock(queue);
                Some(&**h)
            }
            QueueSync::Application | QueueSync::Internal => None,
        };
        QueueGuard {
            _mutex: mutex,
            hooks,
            queue,
        }
    }

    /// Runs `f` with the queue while holding the queue lock (for
    /// applications that submit to the same queue under
    /// [`QueueSync::Internal`]).
    pub fn with_queue<R>(&self, f: impl FnOnce(vk::Queue) -> R) -> R {
        let guard = self.queue_lock();
        f(guard.queue())
    }

    /// Finds a memory type in `bits` with `wanted` properties, falling back
    /// to any type in `bits`.
    pub fn memory_type(&self, bits: u32, wanted: vk::MemoryPropertyFlags) -> Option<u32> {
        // SAFETY: valid physical device of this instance.
        let props = unsafe {
            self.handles
                .instance
                .get_physical_device_memory_properties(self.handles.physical_device)
        };
        let types = &props.memory_types[..props.memory_type_count as usize];
        let fits = |i: usize| bits & (1 << i) != 0;
        types
            .iter()
            .enumerate()
            .position(|(i, t)| fits(i) && t.property_flags.contains(wanted))
            .or_else(|| (0..types.len()).find(|&i| fits(i)))
            .map(|i| i as u32)
    }

    /// Whether memory type `index` is host-visible and host-coherent.
    pub fn memory_type_is_host_coherent(&self, index: u32) -> bool {
        // SAFETY: valid physical device of this instance.
        let props = unsafe {
            self.handles
                .instance
                .get_physical_device_memory_properties(self.handles.physical_device)
        };
        props.memory_types.get(index as usize).is_some_and(|t| {
            t.property_flags.contains(
                vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT,
            )
        })
    }
}

impl Drop for VulkanContext {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: the context created these objects and every child object
            // holds an Arc of the context, so none is left when this runs.
            unsafe {
                let _ = self.handles.device.device_wait_idle();
                self.handles.device.destroy_device(None);
                self.handles.instance.destroy_instance(None);
            }
        }
    }
}
