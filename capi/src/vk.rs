//! Vulkan handles as the header names them, without including vulkan.h:
//! `struct VkInstance_T *` is what `VkInstance` is in vulkan.h (and, on
//! 64-bit targets, `struct VkImage_T *` what `VkImage` is), so a C program
//! passes its handles as they are. The application's device and the
//! context bufsync wraps around it are built here.
//!
//! Locking: none.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Arc;

use bufsync_backends::vulkan::ash::{self, vk, vk::Handle};
use bufsync_backends::vulkan::{ApplicationHandles, QueueLock, QueueSync, VulkanContext};

use crate::error::{CallError, CallResult};
use crate::handle::slice;

/// `VkInstance`'s struct (opaque).
pub struct VkInstance_T {
    _opaque: [u8; 0],
}
/// `VkPhysicalDevice`'s struct (opaque).
pub struct VkPhysicalDevice_T {
    _opaque: [u8; 0],
}
/// `VkDevice`'s struct (opaque).
pub struct VkDevice_T {
    _opaque: [u8; 0],
}
/// `VkQueue`'s struct (opaque).
pub struct VkQueue_T {
    _opaque: [u8; 0],
}
/// `VkImage`'s struct on 64-bit targets (opaque).
pub struct VkImage_T {
    _opaque: [u8; 0],
}
/// `VkSemaphore`'s struct on 64-bit targets (opaque).
pub struct VkSemaphore_T {
    _opaque: [u8; 0],
}

/// `PFN_vkVoidFunction`.
pub type bufsync_vk_void_function = Option<unsafe extern "C" fn()>;

/// `PFN_vkGetInstanceProcAddr`: pass the application's
/// `vkGetInstanceProcAddr`, so bufsync calls Vulkan through the same loader.
pub type bufsync_vk_get_instance_proc_addr = Option<
    unsafe extern "C" fn(
        instance: *mut VkInstance_T,
        name: *const c_char,
    ) -> bufsync_vk_void_function,
>;

/// The application's Vulkan device, for `bufsync_presenter_create_vulkan`.
/// Every handle stays the application's: bufsync destroys none of them, and
/// they must outlive the presenter.
#[repr(C)]
pub struct bufsync_vulkan_device {
    /// The application's `vkGetInstanceProcAddr` (NULL: bufsync loads
    /// libvulkan.so.1 itself).
    pub get_instance_proc_addr: bufsync_vk_get_instance_proc_addr,
    /// The instance (Vulkan 1.2 or later).
    pub instance: *mut VkInstance_T,
    /// The physical device the device was created on.
    pub physical_device: *mut VkPhysicalDevice_T,
    /// The device.
    pub device: *mut VkDevice_T,
    /// The queue bufsync submits to (its small submissions: semaphore
    /// bridges, copies); it must support compute and transfer.
    pub queue: *mut VkQueue_T,
    /// The family of `queue`.
    pub queue_family_index: u32,
    /// The device extensions the application enabled (bufsync uses, when
    /// listed: VK_KHR_external_memory_fd, VK_EXT_external_memory_dma_buf,
    /// VK_EXT_image_drm_format_modifier, VK_KHR_external_semaphore_fd,
    /// VK_EXT_queue_family_foreign, VK_KHR_image_format_list).
    pub enabled_extensions: *const *const c_char,
    /// Entries in `enabled_extensions`.
    pub enabled_extension_count: u32,
    /// Whether the `timelineSemaphore` feature is enabled (required).
    pub timeline_semaphore: bool,
    /// The application's queue lock (FFmpeg's `lock_queue`), called before
    /// every queue operation bufsync makes on `queue`, on the thread that
    /// makes it, with `queue_user_data`; it must not call into bufsync.
    /// NULL with `unlock_queue` NULL: the application keeps its own
    /// submissions from overlapping any presenter call.
    pub lock_queue: bufsync_queue_lock_fn,
    /// Releases what `lock_queue` took (set both or neither).
    pub unlock_queue: bufsync_queue_lock_fn,
    /// Passed to `lock_queue` and `unlock_queue`; they and it must be
    /// usable from any thread.
    pub queue_user_data: *mut c_void,
}

/// A queue-lock hook of `bufsync_vulkan_device`.
pub type bufsync_queue_lock_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, queue: *mut VkQueue_T)>;

/// The application's lock hooks and their `user_data`.
struct Hooks {
    lock: unsafe extern "C" fn(*mut c_void, *mut VkQueue_T),
    unlock: unsafe extern "C" fn(*mut c_void, *mut VkQueue_T),
    user: *mut c_void,
}

// SAFETY: the header requires the hooks and `queue_user_data` to be usable
// from any thread; bufsync only passes `user_data` back.
unsafe impl Send for Hooks {}
// SAFETY: as above, also from several threads at once.
unsafe impl Sync for Hooks {}

impl QueueLock for Hooks {
    fn lock(&self, queue: vk::Queue) {
        // SAFETY: the application's hook, called as its type says.
        unsafe { (self.lock)(self.user, queue.as_raw() as *mut VkQueue_T) }
    }

    fn unlock(&self, queue: vk::Queue) {
        // SAFETY: the application's hook, called as its type says.
        unsafe { (self.unlock)(self.user, queue.as_raw() as *mut VkQueue_T) }
    }
}

/// How bufsync orders its queue operations against the application's.
fn queue_sync(d: &bufsync_vulkan_device) -> CallResult<QueueSync> {
    match (d.lock_queue, d.unlock_queue) {
        (Some(lock), Some(unlock)) => Ok(QueueSync::Hooks(Arc::new(Hooks {
            lock,
            unlock,
            user: d.queue_user_data,
        }))),
        (None, None) => Ok(QueueSync::Application),
        _ => Err(CallError::invalid(
            "set both lock_queue and unlock_queue, or neither",
        )),
    }
}

/// A raw non-dispatchable handle for ash.
pub(crate) fn semaphore(p: *mut VkSemaphore_T) -> vk::Semaphore {
    vk::Semaphore::from_raw(p as u64)
}

/// ash's handle as the header's pointer.
pub(crate) fn image_ptr(i: vk::Image) -> *mut VkImage_T {
    i.as_raw() as *mut VkImage_T
}

/// ash's handle as the header's pointer.
pub(crate) fn semaphore_ptr(s: vk::Semaphore) -> *mut VkSemaphore_T {
    s.as_raw() as *mut VkSemaphore_T
}

/// Wraps the application's device as a bufsync Vulkan context.
///
/// # Safety
/// The handles are valid, belong together, outlive the context, and the
/// listed extensions and the timeline feature are enabled; the extension
/// list has `enabled_extension_count` valid strings.
pub(crate) unsafe fn context(d: &bufsync_vulkan_device) -> CallResult<Arc<VulkanContext>> {
    if d.instance.is_null()
        || d.physical_device.is_null()
        || d.device.is_null()
        || d.queue.is_null()
    {
        return Err(CallError::invalid(
            "instance, physical_device, device and queue are all needed",
        ));
    }
    if !d.timeline_semaphore {
        return Err(CallError::new(
            libc::EOPNOTSUPP,
            "bufsync needs the timelineSemaphore feature enabled",
        ));
    }
    // SAFETY: `enabled_extension_count` strings at `enabled_extensions`
    // (this function's contract).
    let names = unsafe {
        slice(
            d.enabled_extensions,
            d.enabled_extension_count as usize,
            "enabled_extensions",
        )
    }?;
    let mut extensions = Vec::with_capacity(names.len());
    for (i, &n) in names.iter().enumerate() {
        if n.is_null() {
            return Err(CallError::invalid(format!(
                "enabled_extensions[{i}] is NULL"
            )));
        }
        // SAFETY: a NUL-terminated string (the contract).
        extensions.push(CString::from(unsafe { CStr::from_ptr(n) }));
    }
    let entry = match d.get_instance_proc_addr {
        Some(f) => {
            // SAFETY: on the targets bufsync supports (Linux), "system" is
            // the C calling convention and the two pointer types have the
            // same layout: this is the application's vkGetInstanceProcAddr.
            let gipa: vk::PFN_vkGetInstanceProcAddr = unsafe { std::mem::transmute(f) };
            // SAFETY: the application's loader entry point, valid while its
            // instance lives (the contract).
            unsafe {
                ash::Entry::from_static_fn(ash::StaticFn {
                    get_instance_proc_addr: gipa,
                })
            }
        }
        // SAFETY: loading the system's Vulkan loader, as every Vulkan
        // program does.
        None => unsafe { ash::Entry::load() }.map_err(|e| {
            CallError::new(libc::ENOENT, format!("cannot load libvulkan.so.1: {e}"))
        })?,
    };
    let instance_handle = vk::Instance::from_raw(d.instance as u64);
    // SAFETY: a valid instance of this loader (the contract).
    let instance = unsafe { ash::Instance::load(entry.static_fn(), instance_handle) };
    // SAFETY: a valid device created from this instance (the contract).
    let device =
        unsafe { ash::Device::load(instance.fp_v1_0(), vk::Device::from_raw(d.device as u64)) };
    let handles = ApplicationHandles {
        entry,
        instance,
        physical_device: vk::PhysicalDevice::from_raw(d.physical_device as u64),
        device,
        queue_family_index: d.queue_family_index,
        queue: vk::Queue::from_raw(d.queue as u64),
        enabled_device_extensions: extensions,
        timeline_semaphore: d.timeline_semaphore,
    };
    let sync = queue_sync(d)?;
    // SAFETY: the handles are the application's, valid and enabled as
    // listed (the contract); its queue is ordered by its hooks, or by its
    // not submitting during presenter calls (the header's rule).
    unsafe { VulkanContext::from_application(handles, sync) }
        .map_err(|e| CallError::new(libc::EIO, format!("wrapping the application's device: {e}")))
}
