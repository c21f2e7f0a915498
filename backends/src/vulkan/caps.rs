//! What a Vulkan device may be used for, probed at run time.
//!
//! Everything here comes from queries (`vkGetPhysicalDeviceExternal*Properties`,
//! format-modifier lists) or from trying (the SYNC_FD export probe), never
//! from the driver's name. The queries need only the instance and physical
//! device; the SYNC_FD probe makes one submission through a callback the
//! context gives it (under the application's queue lock), so this module
//! imports no other module but the semaphore helpers.
//!
//! Locking: none here; the resulting [`VulkanCaps`] is immutable plain data.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use ash::vk;

use super::error::{Result, VulkanError};
use super::semaphore::create_timeline_semaphore;

/// How long the SYNC_FD probe lets an export block before it concludes the
/// driver waits for the work instead of handing out a pending fence.
const SYNC_FD_PROBE_WINDOW: Duration = Duration::from_millis(200);
/// Bound on the probe's own empty batch once its gate is open.
const PROBE_DRAIN: Duration = Duration::from_secs(10);

/// Import/export support of one external handle type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleSupport {
    /// Objects can be imported from this handle type.
    pub import: bool,
    /// Objects can be exported as this handle type.
    pub export: bool,
}

impl HandleSupport {
    fn from_flags(f: vk::ExternalMemoryFeatureFlags) -> Self {
        HandleSupport {
            import: f.contains(vk::ExternalMemoryFeatureFlags::IMPORTABLE),
            export: f.contains(vk::ExternalMemoryFeatureFlags::EXPORTABLE),
        }
    }
}

impl fmt::Display for HandleSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.import, self.export) {
            (true, true) => "import+export",
            (true, false) => "import",
            (false, true) => "export",
            (false, false) => "no",
        })
    }
}

/// One DRM format modifier a format supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModifierInfo {
    /// The DRM format modifier.
    pub modifier: u64,
    /// Memory planes of an image with this modifier.
    pub planes: u32,
    /// Tiling features with this modifier.
    pub features: vk::FormatFeatureFlags,
}

/// The DRM format modifiers of one format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatModifiers {
    /// The Vulkan format.
    pub format: vk::Format,
    /// Its modifiers (empty where the extension is missing).
    pub modifiers: Vec<ModifierInfo>,
}

/// Result of the SYNC_FD export probe
/// ([`VulkanContext::sync_fd_export`](super::VulkanContext::sync_fd_export),
/// run on first need).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncFdExport {
    /// The device cannot export SYNC_FD semaphores (or the probe failed).
    #[default]
    Unsupported,
    /// The export returned a still-pending sync_file while the GPU work was
    /// held back: render-done fences get a sync_file form.
    Pending,
    /// The export blocked until the work was done and returned a signaled
    /// sync_file (lavapipe): sync_files of render fences are useless.
    BlocksUntilSignaled,
}

/// The probed capabilities of a Vulkan device: one printable struct.
#[derive(Clone, Debug, Default)]
pub struct VulkanCaps {
    /// `deviceName`.
    pub device_name: String,
    /// `driverName` and `driverInfo`.
    pub driver: String,
    /// Device API version (major, minor, patch).
    pub api_version: (u32, u32, u32),
    /// `deviceUUID`: same value = same device.
    pub device_uuid: [u8; 16],
    /// VK_KHR_external_memory_fd enabled.
    pub external_memory_fd: bool,
    /// VK_EXT_external_memory_dma_buf enabled.
    pub external_memory_dma_buf: bool,
    /// VK_EXT_image_drm_format_modifier enabled.
    pub image_drm_format_modifier: bool,
    /// VK_KHR_external_semaphore_fd enabled.
    pub external_semaphore_fd: bool,
    /// VK_EXT_queue_family_foreign enabled.
    pub queue_family_foreign: bool,
    /// Timeline semaphores (always true: the context requires them).
    pub timeline_semaphore: bool,
    /// DMA_BUF handles for storage/transfer buffers.
    pub dmabuf_buffer: HandleSupport,
    /// OPAQUE_FD handles for storage/transfer buffers.
    pub opaque_fd_buffer: HandleSupport,
    /// DMA_BUF handles for LINEAR B8G8R8A8 storage images.
    pub dmabuf_linear_image: HandleSupport,
    /// SYNC_FD handles for binary semaphores.
    pub sync_fd_semaphore: HandleSupport,
    /// OPAQUE_FD handles for timeline semaphores.
    pub opaque_fd_timeline: HandleSupport,
    /// DRM format modifiers of B8G8R8A8_UNORM and R8G8B8A8_UNORM.
    pub drm_modifiers: Vec<FormatModifiers>,
}

fn has_ext(list: &[CString], name: &CStr) -> bool {
    list.iter().any(|e| e.as_c_str() == name)
}

impl VulkanCaps {
    /// Whether foreign sync_files can be waited in hardware.
    pub fn sync_file_in(&self) -> bool {
        self.external_semaphore_fd && self.sync_fd_semaphore.import
    }

    /// Queries what the physical device can do with the extensions in
    /// `exts` enabled. Makes no submission.
    pub(crate) fn query(inst: &ash::Instance, pd: vk::PhysicalDevice, exts: &[CString]) -> Self {
        let ctx = (inst, pd);
        let mut driver = vk::PhysicalDeviceDriverProperties::default();
        let mut id = vk::PhysicalDeviceIDProperties::default();
        let mut props2 = vk::PhysicalDeviceProperties2::default()
            .push_next(&mut driver)
            .push_next(&mut id);
        // SAFETY: valid physical device; the chain points to locals.
        unsafe { inst.get_physical_device_properties2(pd, &mut props2) };
        let p = props2.properties;
        let name = p
            .device_name_as_c_str()
            .map(|c| c.to_string_lossy().into_owned());
        let dname = driver
            .driver_name_as_c_str()
            .map(|c| c.to_string_lossy().into_owned());
        let dinfo = driver
            .driver_info_as_c_str()
            .map(|c| c.to_string_lossy().into_owned());
        let mut caps = VulkanCaps {
            device_name: name.unwrap_or_default(),
            driver: format!(
                "{} ({})",
                dname.unwrap_or_default(),
                dinfo.unwrap_or_default()
            ),
            api_version: (
                vk::api_version_major(p.api_version),
                vk::api_version_minor(p.api_version),
                vk::api_version_patch(p.api_version),
            ),
            device_uuid: id.device_uuid,
            external_memory_fd: has_ext(exts, ash::khr::external_memory_fd::NAME),
            external_memory_dma_buf: has_ext(exts, ash::ext::external_memory_dma_buf::NAME),
            image_drm_format_modifier: has_ext(exts, ash::ext::image_drm_format_modifier::NAME),
            external_semaphore_fd: has_ext(exts, ash::khr::external_semaphore_fd::NAME),
            queue_family_foreign: has_ext(exts, ash::ext::queue_family_foreign::NAME),
            timeline_semaphore: true,
            ..Default::default()
        };
        let usage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        if caps.external_memory_fd {
            caps.opaque_fd_buffer =
                buffer_support(ctx, usage, vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD);
        }
        if caps.external_memory_fd && caps.external_memory_dma_buf {
            caps.dmabuf_buffer =
                buffer_support(ctx, usage, vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
            caps.dmabuf_linear_image = linear_image_support(ctx, vk::Format::B8G8R8A8_UNORM);
        }
        if caps.external_semaphore_fd {
            caps.sync_fd_semaphore = semaphore_support(
                ctx,
                vk::SemaphoreType::BINARY,
                vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD,
            );
            caps.opaque_fd_timeline = semaphore_support(
                ctx,
                vk::SemaphoreType::TIMELINE,
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD,
            );
        }
        for format in [vk::Format::B8G8R8A8_UNORM, vk::Format::R8G8B8A8_UNORM] {
            let modifiers = if caps.image_drm_format_modifier {
                format_modifiers(ctx, format)
            } else {
                Vec::new()
            };
            caps.drm_modifiers
                .push(FormatModifiers { format, modifiers });
        }
        caps
    }
}

/// The instance and physical device the queries run on.
type Phys<'a> = (&'a ash::Instance, vk::PhysicalDevice);

fn buffer_support(
    ctx: Phys<'_>,
    usage: vk::BufferUsageFlags,
    handle: vk::ExternalMemoryHandleTypeFlags,
) -> HandleSupport {
    let info = vk::PhysicalDeviceExternalBufferInfo::default()
        .usage(usage)
        .handle_type(handle);
    let mut out = vk::ExternalBufferProperties::default();
    // SAFETY: valid physical device; the handle type's extension is enabled.
    unsafe {
        ctx.0
            .get_physical_device_external_buffer_properties(ctx.1, &info, &mut out)
    };
    HandleSupport::from_flags(out.external_memory_properties.external_memory_features)
}

fn linear_image_support(ctx: Phys<'_>, format: vk::Format) -> HandleSupport {
    dmabuf_image_query(
        ctx,
        format,
        vk::ImageUsageFlags::STORAGE | vk::ImageUsageFlags::TRANSFER_SRC,
        None,
    )
}

/// DMA_BUF import/export of `format` images with DRM format `modifier`
/// and `usage` (the modifier and DMA_BUF extensions must be enabled).
pub(crate) fn modifier_image_support(
    ctx: Phys<'_>,
    format: vk::Format,
    modifier: u64,
    usage: vk::ImageUsageFlags,
) -> HandleSupport {
    dmabuf_image_query(ctx, format, usage, Some(modifier))
}

/// `vkGetPhysicalDeviceImageFormatProperties2` for a 2D DMA_BUF image:
/// LINEAR tiling, or DRM_FORMAT_MODIFIER tiling with `modifier` (which
/// needs VK_EXT_image_drm_format_modifier enabled: the caller checks).
fn dmabuf_image_query(
    ctx: Phys<'_>,
    format: vk::Format,
    usage: vk::ImageUsageFlags,
    modifier: Option<u64>,
) -> HandleSupport {
    let mut modifier_info = vk::PhysicalDeviceImageDrmFormatModifierInfoEXT::default()
        .drm_format_modifier(modifier.unwrap_or(0))
        .sharing_mode(vk::SharingMode::EXCLUSIVE);
    let mut ext_info = vk::PhysicalDeviceExternalImageFormatInfo::default()
        .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    let mut info = vk::PhysicalDeviceImageFormatInfo2::default()
        .format(format)
        .ty(vk::ImageType::TYPE_2D)
        .tiling(if modifier.is_some() {
            vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT
        } else {
            vk::ImageTiling::LINEAR
        })
        .usage(usage)
        .push_next(&mut ext_info);
    if modifier.is_some() {
        info = info.push_next(&mut modifier_info);
    }
    let mut ext_out = vk::ExternalImageFormatProperties::default();
    let mut out = vk::ImageFormatProperties2::default().push_next(&mut ext_out);
    // SAFETY: valid physical device, the extensions the chain names are
    // enabled (the callers check), chains point to locals.
    let r = unsafe {
        ctx.0
            .get_physical_device_image_format_properties2(ctx.1, &info, &mut out)
    };
    match r {
        Ok(()) => {
            HandleSupport::from_flags(ext_out.external_memory_properties.external_memory_features)
        }
        Err(_) => HandleSupport::default(),
    }
}

fn semaphore_support(
    ctx: Phys<'_>,
    ty: vk::SemaphoreType,
    handle: vk::ExternalSemaphoreHandleTypeFlags,
) -> HandleSupport {
    let mut type_info = vk::SemaphoreTypeCreateInfo::default().semaphore_type(ty);
    let info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
        .handle_type(handle)
        .push_next(&mut type_info);
    let mut out = vk::ExternalSemaphoreProperties::default();
    // SAFETY: valid physical device; chain points to locals.
    unsafe {
        ctx.0
            .get_physical_device_external_semaphore_properties(ctx.1, &info, &mut out)
    };
    let f = out.external_semaphore_features;
    HandleSupport {
        import: f.contains(vk::ExternalSemaphoreFeatureFlags::IMPORTABLE),
        export: f.contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE),
    }
}

fn format_modifiers(ctx: Phys<'_>, format: vk::Format) -> Vec<ModifierInfo> {
    let mut list = vk::DrmFormatModifierPropertiesListEXT::default();
    let mut props = vk::FormatProperties2::default().push_next(&mut list);
    // SAFETY: the modifier extension is enabled; chain points to locals.
    unsafe {
        ctx.0
            .get_physical_device_format_properties2(ctx.1, format, &mut props)
    };
    let count = list.drm_format_modifier_count as usize;
    let mut raw = vec![vk::DrmFormatModifierPropertiesEXT::default(); count];
    let mut list =
        vk::DrmFormatModifierPropertiesListEXT::default().drm_format_modifier_properties(&mut raw);
    let mut props = vk::FormatProperties2::default().push_next(&mut list);
    // SAFETY: as above; `raw` has room for `count` entries.
    unsafe {
        ctx.0
            .get_physical_device_format_properties2(ctx.1, format, &mut props)
    };
    let filled = list.drm_format_modifier_count as usize;
    raw.truncate(filled);
    raw.iter()
        .map(|m| ModifierInfo {
            modifier: m.drm_format_modifier,
            planes: m.drm_format_modifier_plane_count,
            features: m.drm_format_modifier_tiling_features,
        })
        .collect()
}

/// Submits one batch (the context's queue, under its queue lock).
pub(crate) type SubmitOne<'a> = dyn Fn(&vk::SubmitInfo<'_>, vk::Fence) -> Result<()> + 'a;

/// Holds back a submission on an unsignaled timeline point, has it signal an
/// exportable binary semaphore, and exports that as a SYNC_FD on a scoped
/// helper thread (joined before returning). A pending fd within the probe
/// window means pending exports; an export still blocked after the window
/// means the driver waits for the work. `submit` makes the one submission.
pub(crate) fn probe_sync_fd_export(
    dev: &ash::Device,
    sem_fd: &ash::khr::external_semaphore_fd::Device,
    submit: &SubmitOne<'_>,
) -> Result<SyncFdExport> {
    let gate = create_timeline_semaphore(dev, 0)?;
    let mut export = vk::ExportSemaphoreCreateInfo::default()
        .handle_types(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
    let info = vk::SemaphoreCreateInfo::default().push_next(&mut export);
    // SAFETY: valid device, chain points to locals.
    let binary = match unsafe { dev.create_semaphore(&info, None) } {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: created above, unused.
            unsafe { dev.destroy_semaphore(gate, None) };
            return Err(VulkanError::vk("vkCreateSemaphore")(e));
        }
    };
    // SAFETY: valid device.
    let fence = match unsafe { dev.create_fence(&vk::FenceCreateInfo::default(), None) } {
        Ok(f) => f,
        Err(e) => {
            // SAFETY: created above, unused.
            unsafe {
                dev.destroy_semaphore(gate, None);
                dev.destroy_semaphore(binary, None);
            }
            return Err(VulkanError::vk("vkCreateFence")(e));
        }
    };
    let (result, submitted) = run_sync_fd_probe(dev, sem_fd, submit, gate, binary, fence);
    // The probe's batch must be done before its objects go: wait for it
    // (bounded; the gate is open unless releasing it failed).
    // SAFETY: fence belongs to the submission above, if it was made.
    let drained = !submitted
        || unsafe {
            dev.wait_for_fences(&[fence], true, super::semaphore::timeout_ns(PROBE_DRAIN))
        }
        .is_ok();
    if drained {
        // SAFETY: the submission finished (fence waited) or was never made.
        unsafe {
            dev.destroy_fence(fence, None);
            dev.destroy_semaphore(binary, None);
            dev.destroy_semaphore(gate, None);
        }
    } else {
        log::error!(
            "vulkan: the SYNC_FD probe's batch did not complete in {PROBE_DRAIN:?}: leaking its fence and semaphores"
        );
    }
    result
}

/// Runs the probe; also says whether its batch was submitted (then its
/// objects may be destroyed only once `fence` signaled).
fn run_sync_fd_probe(
    dev: &ash::Device,
    sem_fd: &ash::khr::external_semaphore_fd::Device,
    submit: &SubmitOne<'_>,
    gate: vk::Semaphore,
    binary: vk::Semaphore,
    fence: vk::Fence,
) -> (Result<SyncFdExport>, bool) {
    let waits = [gate];
    let wait_values = [1u64];
    let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
    let signals = [binary];
    let signal_values = [0u64];
    let mut tl = vk::TimelineSemaphoreSubmitInfo::default()
        .wait_semaphore_values(&wait_values)
        .signal_semaphore_values(&signal_values);
    let info = vk::SubmitInfo::default()
        .wait_semaphores(&waits)
        .wait_dst_stage_mask(&stages)
        .signal_semaphores(&signals)
        .push_next(&mut tl);
    if let Err(e) = submit(&info, fence) {
        return (Err(e), false);
    }
    let release = || {
        let info = vk::SemaphoreSignalInfo::default().semaphore(gate).value(1);
        // SAFETY: host signal of our own timeline semaphore to a higher value.
        unsafe { dev.signal_semaphore(&info) }.map_err(VulkanError::vk("vkSignalSemaphore"))
    };
    let verdict = std::thread::scope(|s| -> Result<SyncFdExport> {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let info = vk::SemaphoreGetFdInfoKHR::default()
                .semaphore(binary)
                .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
            // SAFETY: `binary` has a pending signal operation and SYNC_FD export.
            let r = unsafe { sem_fd.get_semaphore_fd(&info) };
            let _ = tx.send(r);
        });
        let first = rx.recv_timeout(SYNC_FD_PROBE_WINDOW);
        let verdict = match &first {
            Ok(Ok(fd)) => {
                if *fd < 0 || fd_is_signaled(*fd) {
                    SyncFdExport::BlocksUntilSignaled
                } else {
                    SyncFdExport::Pending
                }
            }
            Ok(Err(e)) => {
                log::warn!("vulkan: SYNC_FD export probe failed: {e}");
                SyncFdExport::Unsupported
            }
            Err(_) => SyncFdExport::BlocksUntilSignaled,
        };
        let released = release();
        let fd = match first {
            Ok(r) => r.ok(),
            Err(_) => rx.recv().ok().and_then(|r| r.ok()),
        };
        if let Some(fd) = fd.filter(|fd| *fd >= 0) {
            // SAFETY: vkGetSemaphoreFdKHR returned a new fd that we own.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        released.map(|()| verdict)
    });
    (verdict, true)
}

/// Polls a raw sync_file fd without blocking.
fn fd_is_signaled(fd: i32) -> bool {
    // SAFETY: `fd` is open for the duration of this call (owned by the caller).
    crate::sys::sync_file::signaled_now(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for VulkanCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ma, mi, pa) = self.api_version;
        let rows: [(&str, String); 14] = [
            ("device", self.device_name.clone()),
            ("driver", self.driver.clone()),
            ("api version", format!("{ma}.{mi}.{pa}")),
            ("timeline semaphores", yes(self.timeline_semaphore).into()),
            (
                "VK_KHR_external_memory_fd",
                yes(self.external_memory_fd).into(),
            ),
            (
                "VK_EXT_external_memory_dma_buf",
                yes(self.external_memory_dma_buf).into(),
            ),
            (
                "VK_EXT_image_drm_format_modifier",
                yes(self.image_drm_format_modifier).into(),
            ),
            (
                "VK_KHR_external_semaphore_fd",
                yes(self.external_semaphore_fd).into(),
            ),
            (
                "VK_EXT_queue_family_foreign",
                yes(self.queue_family_foreign).into(),
            ),
            ("buffer DMA_BUF", self.dmabuf_buffer.to_string()),
            ("buffer OPAQUE_FD", self.opaque_fd_buffer.to_string()),
            ("linear image DMA_BUF", self.dmabuf_linear_image.to_string()),
            (
                "binary semaphore SYNC_FD",
                self.sync_fd_semaphore.to_string(),
            ),
            (
                "timeline semaphore OPAQUE_FD",
                self.opaque_fd_timeline.to_string(),
            ),
        ];
        for (k, v) in rows {
            writeln!(f, "{k:<34}{v}")?;
        }
        for fm in &self.drm_modifiers {
            let mods: Vec<String> = fm
                .modifiers
                .iter()
                .map(|m| format!("{:#x} ({} plane)", m.modifier, m.planes))
                .collect();
            let list = if mods.is_empty() {
                "none".to_string()
            } else {
                mods.join(", ")
            };
            writeln!(f, "{:<34}{list}", format!("DRM modifiers {:?}", fm.format))?;
        }
        Ok(())
    }
}
