//! Render devices: device A of the flow.
//!
//! A renderer owns the frames' memory (it allocates the dma-bufs the display
//! imports) and turns "draw frame n into buffer i after these fences" into a
//! render-done fence. Whether that fence has a *pending* sync_file form
//! decides whether the display can wait for it in hardware.

pub mod vgem;
pub mod vulkan;

use bufsync::fence::{Fence, FenceSet};
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
}

/// A submitted frame.
#[derive(Debug)]
pub struct Rendered {
    /// Render-done.
    pub fence: Fence,
    /// How many dependencies were waited in software before the submit.
    pub software_waits: u32,
    /// How many dependencies the device waited itself.
    pub hardware_waits: u32,
    /// Time spent on the CPU waiting for dependencies.
    pub wait_time: Duration,
}

/// Device A. Its constructor allocates the frames (LINEAR XRGB8888
/// dma-bufs of this device) and hands them to the caller, which owns them
/// and their reservations; buffer `index` below is an index into them.
pub trait Renderer {
    /// A short name for tables ("vgem-cpu", "lavapipe"...).
    fn name(&self) -> String;
    /// Starts drawing frame number `n` into buffer `index` once `deps` have
    /// signaled (in hardware where the device understands them). The frame
    /// is complete when the returned fence signals.
    fn submit(&mut self, index: usize, n: u32, deps: &FenceSet) -> Result<Rendered, RenderError>;
    /// Lets work submitted with a pending fence run (the CPU renderer draws
    /// here, after the display was told to wait). Default: nothing.
    fn flush(&mut self) -> Result<(), RenderError> {
        Ok(())
    }
}
