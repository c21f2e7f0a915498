//! The Vulkan renderer: the test pattern drawn by a compute shader into the
//! presenter's Vulkan images (udmabuf-backed under lavapipe; device memory
//! on a real GPU).
//!
//! Dependencies go to the submitter, which waits in hardware where it can (a
//! same-device timeline point, or a sync_file imported into a SYNC_FD
//! semaphore) and in software otherwise. The render-done fence is a timeline
//! point; where the device exports *pending* SYNC_FDs it also has a sync_file
//! form and the display can wait for it itself; lavapipe exports only
//! signaled ones, so the presenter waits in software.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync_backends::vulkan::{Submitter, VulkanContext, Wait};
use bufsync_present::{Frame, RenderDone};

use super::pattern::{PatternRenderer, RenderTarget};
use super::{RenderError, Rendered};

/// The Vulkan renderer.
pub struct VulkanRenderer {
    ctx: Arc<VulkanContext>,
    submitter: Submitter,
    pattern: PatternRenderer,
    /// Per presenter slot: the image drawn into and its target.
    targets: Vec<Option<(u64, RenderTarget)>>,
}

impl VulkanRenderer {
    /// A renderer on `ctx`.
    pub fn new(ctx: &Arc<VulkanContext>) -> Result<Self, RenderError> {
        Ok(VulkanRenderer {
            ctx: ctx.clone(),
            submitter: Submitter::new(ctx)?,
            pattern: PatternRenderer::new(ctx)?,
            targets: Vec::new(),
        })
    }

    /// The context.
    pub fn context(&self) -> &Arc<VulkanContext> {
        &self.ctx
    }

    /// A short name for tables.
    pub fn name(&self) -> String {
        format!("vulkan ({})", self.ctx.caps().device_name)
    }

    /// Submits the pattern of number `n` into `frame`'s image after the
    /// frame's fences; returns the render-done timeline point.
    pub fn render(&mut self, frame: &Frame, n: u32) -> Result<(RenderDone, Rendered), RenderError> {
        let image = frame
            .target()
            .image()
            .ok_or_else(|| RenderError::Target("the Vulkan renderer draws images".into()))?;
        use bufsync_backends::vulkan::ash::vk::Handle;
        let key = image.handle().as_raw();
        let i = frame.index();
        if self.targets.len() <= i {
            self.targets.resize_with(i + 1, || None);
        }
        if self.targets[i].as_ref().map_or(true, |(k, _)| *k != key) {
            self.targets[i] = Some((key, self.pattern.image_target(image.clone())?));
        }
        let (_, target) = self.targets[i].as_ref().expect("made above");
        let waits: Vec<Wait<'_>> = frame.wait_fences().iter().map(Wait::Fence).collect();
        let t = Instant::now();
        let pattern = &self.pattern;
        let submitted = self.submitter.submit(&waits, |_, cmd| {
            pattern.record(cmd, target, n);
            Ok(())
        })?;
        let r = submitted.report;
        let wait_time = if r.software > 0 {
            t.elapsed()
        } else {
            Duration::ZERO
        };
        self.submitter.retire();
        Ok((
            RenderDone::Fence(submitted.fence),
            Rendered {
                software_waits: r.software,
                hardware_waits: r.timeline_hw + r.sync_file_hw,
                wait_time,
            },
        ))
    }
}
