//! Vulkan backend: dma-buf import and export, timeline semaphores as fences,
//! hardware waits on foreign fences, a GPU seqno writer and a GPU copy into
//! another device's buffer.
//!
//! Everything works on an application's existing ash handles
//! ([`VulkanContext::from_application`]); [`VulkanContext::new`] creates a
//! context for programs that have none. What the device can do is probed at
//! run time into [`VulkanCaps`]; no path is chosen by driver name.
//!
//! Locking: see each module; the only lock shared between modules is the
//! context's queue lock ([`VulkanContext::queue_lock`]: bufsync's submit
//! mutex plus the application's [`QueueSync`] hooks), taken around every
//! `vkQueueSubmit`. No module starts a thread: timeline points are polled
//! by the runtime's fence engine (which an event loop can drive).

mod buffer;
mod caps;
mod context;
mod copy;
mod error;
mod image;
mod layout;
mod memory;
mod semaphore;
mod seqno_writer;
mod submit;
mod timeline;
mod wait_semaphore;

pub use crate::wait_path::{to_sync_file, wait_fence};
pub use ash;
pub use buffer::ExternalBuffer;
pub use caps::{FormatModifiers, HandleSupport, ModifierInfo, SyncFdExport, VulkanCaps};
pub use context::{
    ApplicationHandles, PhysicalDeviceInfo, QueueGuard, QueueLock, QueueSync, VulkanContext,
    WANTED_DEVICE_EXTENSIONS,
};
pub use copy::record_image_to_buffer_copy;
pub use error::{Result, VulkanError};
pub use image::ExternalImage;
pub use layout::{
    drm_fourcc, fd_size, vk_format, ImageLayout, PlaneLayout, DRM_FORMAT_ABGR8888,
    DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_INVALID, DRM_FORMAT_MOD_LINEAR, DRM_FORMAT_XBGR8888,
    DRM_FORMAT_XRGB8888,
};
pub use seqno_writer::SeqnoWriter;
pub use submit::{SubmitReport, Submitted, Submitter, Wait, WaitPath, DROP_TIMEOUT};
pub use timeline::{TimelinePoint, TimelineSemaphore};
pub use wait_semaphore::SyncFileSemaphore;
