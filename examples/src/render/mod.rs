//! Render devices of the demo: device A of the flow, drawing the test
//! pattern into the frames a presenter hands out.
//!
//! - [`vgem`]: a CPU renderer whose render-done fences are real, pending
//!   kernel fences;
//! - [`vulkan`]: the pattern drawn by a compute shader ([`pattern`]) on a
//!   Vulkan device (lavapipe in the VM).

#[allow(unsafe_code)] // the thin Vulkan layer of the test pattern
pub mod pattern;
pub mod vgem;
pub mod vulkan;

use std::time::Duration;

/// What went wrong on the render side.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A kernel object failed.
    #[error(transparent)]
    Device(#[from] bufsync_backends::Error),
    /// Vulkan failed.
    #[error(transparent)]
    Vulkan(#[from] bufsync_backends::vulkan::VulkanError),
    /// A dependency did not signal in time, or signaled with an error.
    #[error("waiting for a dependency: {0}")]
    Wait(#[from] bufsync::fence::WaitError),
    /// The frame's target is not one this renderer draws.
    #[error("render target: {0}")]
    Target(String),
}

/// How a frame's dependencies were waited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rendered {
    /// Dependencies waited in software before the submit.
    pub software_waits: u32,
    /// Dependencies the device waited itself.
    pub hardware_waits: u32,
    /// Time spent on the CPU waiting for dependencies.
    pub wait_time: Duration,
}
