//! Vulkan backend: dma-buf import and export, timeline semaphores as fences,
//! hardware waits on foreign fences, a GPU seqno writer and a test-pattern
//! renderer.
//!
//! Everything works on an application's existing ash handles
//! ([`VulkanContext::from_application`]); [`VulkanContext::new`] creates a
//! context for programs that have none. What the device can do is probed at
//! run time into [`VulkanCaps`]; no path is chosen by driver name.
//!
//! Locking: see each module; the only lock shared between modules is the
//! context's queue lock, taken around every `vkQueueSubmit`.

mod buffer;
mod caps;
mod context;
mod copy;
mod error;
mod image;
mod layout;
mod memory;
mod renderer;
mod semaphore;
mod seqno_writer;
mod submit;
mod timeline;

pub use ash;
pub use buffer::ExternalBuffer;
pub use caps::{FormatModifiers, HandleSupport, ModifierInfo, SyncFdExport, VulkanCaps};
pub use context::{ApplicationHandles, VulkanContext, WANTED_DEVICE_EXTENSIONS};
pub use copy::record_image_to_buffer_copy;
pub use error::{Result, VulkanError};
pub use image::ExternalImage;
pub use layout::{
    drm_fourcc, fd_size, vk_format, ImageLayout, PlaneLayout, DRM_FORMAT_ABGR8888,
    DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_INVALID, DRM_FORMAT_MOD_LINEAR, DRM_FORMAT_XBGR8888,
    DRM_FORMAT_XRGB8888,
};
pub use renderer::{
    check_frame, decode_frame_number, pattern_pixel, FrameMismatch, PatternRenderer, RenderTarget,
    STRIP_ROWS,
};
pub use semaphore::SyncFileSemaphore;
pub use seqno_writer::SeqnoWriter;
pub use submit::{SubmitReport, Submitted, Submitter, Wait, WaitPath};
pub use timeline::{to_sync_file, wait_fence, TimelinePoint, TimelineSemaphore};
