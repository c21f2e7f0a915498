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
    ExternalBuffer, ImageLayout, PatternRenderer, RenderTarget, Submitter, VulkanContext,
    VulkanError, Wait,
};
use std::sync::Arc;
use std::time::Duration;

use super::vgem::XRGB8888;

/// Bound on the software waits for a frame's dependencies.
const DEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the warm-up frame: the first dispatch of a pipeline compiles
/// its shader (llvmpipe compiles with LLVM at first use: seconds under qemu
/// TCG, minutes on a starved machine), a one-time cost paid at creation
/// rather than in frame 0's bound.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long dropping the renderer waits for its work before it leaks its
/// Vulkan objects rather than destroy them under a running job.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The Vulkan objects of the renderer. Submitted work uses the pipeline and
/// the targets' buffers: they may be destroyed only once it has finished.
struct Gpu {
    ctx: Arc<VulkanContext>,
    submitter: Submitter,
    pattern: PatternRenderer,
    targets: Vec<RenderTarget>,
}

impl Gpu {
    /// Drops everything once the work has finished (bounded); leaks it all
    /// when the work is still running then (a job the device never
    /// completes): freeing its pipeline or buffers under it would be a
    /// use-after-free in the driver.
    fn release(self) {
        match self.submitter.finish(DRAIN_TIMEOUT) {
            Ok(()) => drop(self),
            Err(e) => {
                log::error!("vulkan renderer: work still running ({e}): leaking its objects");
                std::mem::forget(self);
            }
        }
    }
}

/// The Vulkan renderer.
pub struct VulkanRenderer {
    /// Always `Some` until dropped.
    gpu: Option<Gpu>,
}

impl VulkanRenderer {
    /// Creates a context (the first suitable device) and `count` exported
    /// LINEAR XRGB8888 frames of `width` x `height`, and renders one warm-up
    /// frame (the pipeline's first dispatch compiles its shader).
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
        let me = VulkanRenderer {
            gpu: Some(Gpu {
                ctx,
                submitter,
                pattern,
                targets,
            }),
        };
        me.warm_up()?;
        Ok((me, frames))
    }

    fn gpu(&self) -> &Gpu {
        self.gpu.as_ref().expect("present until dropped")
    }

    /// Renders frame 0 into the first target and waits for it (bounded).
    fn warm_up(&self) -> Result<(), RenderError> {
        let gpu = self.gpu();
        let Some(first) = gpu.targets.first() else {
            return Ok(());
        };
        let t = std::time::Instant::now();
        let warm = gpu.submitter.submit(&[], DEP_TIMEOUT, |_, cmd| {
            gpu.pattern.record(cmd, first, 0);
            Ok(())
        })?;
        bufsync_backends::vulkan::wait_fence(&warm.fence, WARMUP_TIMEOUT).map_err(|e| {
            VulkanError::Unsupported(format!(
                "the warm-up frame did not complete in {WARMUP_TIMEOUT:?}: {e}"
            ))
        })?;
        log::info!(
            "vulkan renderer: warm-up frame (pipeline compile) took {:?}",
            t.elapsed()
        );
        Ok(())
    }

    /// The device's capabilities (for the demo's header).
    pub fn caps(&self) -> String {
        format!("{}", self.gpu().ctx.caps())
    }
}

impl Drop for VulkanRenderer {
    fn drop(&mut self) {
        if let Some(gpu) = self.gpu.take() {
            gpu.release();
        }
    }
}

impl Renderer for VulkanRenderer {
    fn name(&self) -> String {
        format!("vulkan ({})", self.gpu().ctx.caps().device_name)
    }

    fn submit(&mut self, index: usize, n: u32, deps: &FenceSet) -> Result<Rendered, RenderError> {
        let waits: Vec<Wait<'_>> = deps.iter().map(Wait::Fence).collect();
        let t = std::time::Instant::now();
        let gpu = self.gpu();
        let target = &gpu.targets[index];
        let pattern = &gpu.pattern;
        let submitted = gpu.submitter.submit(&waits, DEP_TIMEOUT, |_, cmd| {
            pattern.record(cmd, target, n);
            Ok(())
        })?;
        let r = submitted.report;
        let wait_time = if r.software > 0 {
            t.elapsed()
        } else {
            Duration::ZERO
        };
        gpu.submitter.retire();
        Ok(Rendered {
            fence: submitted.fence,
            software_waits: r.software,
            hardware_waits: r.timeline_hw + r.sync_file_hw,
            wait_time,
        })
    }
}
