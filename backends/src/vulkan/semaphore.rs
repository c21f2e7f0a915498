//! Semaphore helpers shared by the probes, the timeline fences and the
//! submitter (a leaf module: it imports no other module of the backend).
//!
//! Locking: none; each helper is one Vulkan call on a valid device.

use std::time::Duration;

use ash::vk;

use super::error::{Result, VulkanError};

/// Creates a timeline semaphore with `initial` as its counter.
pub(crate) fn create_timeline_semaphore(dev: &ash::Device, initial: u64) -> Result<vk::Semaphore> {
    let mut ty = vk::SemaphoreTypeCreateInfo::default()
        .semaphore_type(vk::SemaphoreType::TIMELINE)
        .initial_value(initial);
    let info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
    // SAFETY: valid device (timeline feature enabled); chain points to locals.
    unsafe { dev.create_semaphore(&info, None) }.map_err(VulkanError::vk("vkCreateSemaphore"))
}

/// Creates a binary semaphore whose payload can be exported as a SYNC_FD.
pub(crate) fn create_exportable_binary(dev: &ash::Device) -> Result<vk::Semaphore> {
    let mut export = vk::ExportSemaphoreCreateInfo::default()
        .handle_types(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
    let info = vk::SemaphoreCreateInfo::default().push_next(&mut export);
    // SAFETY: valid device; chain points to locals.
    unsafe { dev.create_semaphore(&info, None) }.map_err(VulkanError::vk("vkCreateSemaphore"))
}

/// A Vulkan timeout in nanoseconds (saturating).
pub(crate) fn timeout_ns(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
}
