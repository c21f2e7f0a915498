//! The Vulkan renderer: the test pattern drawn by a compute shader into
//! dma-bufs that Vulkan exports (udmabuf-backed under lavapipe; device
//! memory on a real GPU).
//!
//! Dependencies go to the submitter, which waits in hardware where it can (a
//! same-device timeline point, or a sync_file imported into a SYNC_FD
//! semaphore) and in software otherwise. The render-done fence is a timeline
//! point; where the device exports *pending* SYNC_FDs it also has a sync_file
//! form and the display can wait for it itself (`hw`); lavapipe exports only
//! signaled ones, so the flow waits in software (`sw`).

use super::{RenderError, Rendered, Renderer};
use bufsync::fence::FenceSet;
use bufsync_backends::dmabuf::DmaBuf;
use bufsync_backends::vulkan::ash;
use bufsync_backends::vulkan::{
    ExternalBuffer, ImageLayout, PatternRenderer, RenderTarget, Submitter, VulkanContext, Wait,
};
use std::sync::Arc;
use std::time::Duration;

use super::vgem::XRGB8888;

/// Bound on the software waits for a frame's dependencies.
const DEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the warm-up frame: the first dispatch of a pipeline compiles
/// its shader (llvmpipe compiles with LLVM at first use, seconds under qemu
/// TCG), a one-time cost paid at creation rather than in frame 0's bound.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The Vulkan renderer.
pub struct VulkanRenderer {
    ctx: Arc<VulkanContext>,
    submitter: Submitter,
    pattern: PatternRenderer,
    targets: Vec<RenderTarget>,
}

impl VulkanRenderer {
    /// Creates a context (the first suitable device) and `count` exported
    /// LINEAR XRGB8888 frames of `width` x `height`.
    pub fn new(count: usize, width: u32, height: u32) -> Result<(Self, Vec<DmaBuf>), RenderError> {
        let ctx = VulkanContext::new()?;
        let submitter = Submitter::new(&ctx)?;
        let pattern = PatternRenderer::new(&ctx)?;
        let stride = u64::from(width) * 4;
        let size = stride * u64::from(height);
        let layout = ImageLayout::linear(width, height, XRGB8888, 0, stride, size);
        let mut targets = Vec::with_capacity(count);
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count {
            let (buffer, dmabuf) = ExternalBuffer::export_dmabuf(
                &ctx,
                size,
                ash::vk::BufferUsageFlags::STORAGE_BUFFER,
                Some(&layout),
            )?;
            targets.push(pattern.target(Arc::new(buffer), &layout)?);
            frames.push(dmabuf);
        }
        if let Some(first) = targets.first() {
            let t = std::time::Instant::now();
            let warm = submitter.submit(&[], DEP_TIMEOUT, |_, cmd| {
                pattern.record(cmd, first, 0);
                Ok(())
            })?;
            bufsync_backends::vulkan::wait_fence(&warm.fence, WARMUP_TIMEOUT)?;
            log::info!(
                "vulkan renderer: warm-up frame (pipeline compile) took {:?}",
                t.elapsed()
            );
        }
        Ok((
            VulkanRenderer {
                ctx,
                submitter,
                pattern,
                targets,
            },
            frames,
        ))
    }

    /// The device's capabilities (for the demo's header).
    pub fn caps(&self) -> String {
        format!("{}", self.ctx.caps())
    }
}

impl Renderer for VulkanRenderer {
    fn name(&self) -> String {
        format!("vulkan ({})", self.ctx.caps().device_name)
    }

    fn submit(&mut self, index: usize, n: u32, deps: &FenceSet) -> Result<Rendered, RenderError> {
        let waits: Vec<Wait<'_>> = deps.iter().map(Wait::Fence).collect();
        let t = std::time::Instant::now();
        let target = &self.targets[index];
        let pattern = &self.pattern;
        let submitted = self.submitter.submit(&waits, DEP_TIMEOUT, |_, cmd| {
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
        Ok(Rendered {
            fence: submitted.fence,
            software_waits: r.software,
            hardware_waits: r.timeline_hw + r.sync_file_hw,
            wait_time,
        })
    }
}
