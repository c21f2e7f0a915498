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

use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::{ExternalImage, Submitter, VulkanContext, Wait};
use bufsync_present::{Frame, RenderDone};

use super::pattern::{PatternRenderer, RenderTarget};
use super::{RenderError, Rendered};

/// Bound on the software waits for a frame's dependencies.
const DEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the warm-up frame: the first dispatch of a pipeline compiles
/// its shader (llvmpipe compiles with LLVM at first use: seconds under qemu
/// TCG, minutes on a starved machine), a one-time cost paid at creation
/// rather than in frame 0's bound.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long dropping the renderer waits for its work before it leaks its
/// Vulkan objects rather than destroy them under a running job.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The Vulkan objects of the renderer. Submitted work uses the pipeline and
/// the targets' images: they may be destroyed only once it has finished.
struct Gpu {
    ctx: Arc<VulkanContext>,
    submitter: Submitter,
    pattern: PatternRenderer,
    /// Per presenter slot: the image drawn into and its target.
    targets: Vec<Option<(u64, RenderTarget)>>,
    /// The warm-up frame's private target, kept with the rest so that a
    /// warm-up that timed out never frees it under the running job.
    warm_target: Option<RenderTarget>,
}

impl Gpu {
    /// Drops everything once the work has finished (bounded); leaks it all
    /// when the work is still running then (a job the device never
    /// completes): freeing its pipeline or images under it would be a
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

impl Drop for VulkanRenderer {
    fn drop(&mut self) {
        if let Some(gpu) = self.gpu.take() {
            gpu.release();
        }
    }
}

impl VulkanRenderer {
    /// A renderer on `ctx`, its pipeline warmed up by one frame into a
    /// small private image.
    pub fn new(ctx: &Arc<VulkanContext>) -> Result<Self, RenderError> {
        let mut me = VulkanRenderer {
            gpu: Some(Gpu {
                ctx: ctx.clone(),
                submitter: Submitter::new(ctx)?,
                pattern: PatternRenderer::new(ctx)?,
                targets: Vec::new(),
                warm_target: None,
            }),
        };
        let t = Instant::now();
        let (image, _fd) = ExternalImage::export_with_modifiers(
            ctx,
            64,
            64,
            vk::Format::B8G8R8A8_UNORM,
            vk::ImageUsageFlags::STORAGE,
            &[],
        )?;
        let gpu = me.gpu_mut();
        let target = gpu.pattern.image_target(Arc::new(image))?;
        let target = &*gpu.warm_target.insert(target);
        let warm = gpu.submitter.submit(&[], DEP_TIMEOUT, |_, cmd| {
            gpu.pattern.record(cmd, target, 0);
            Ok(())
        })?;
        // On a time-out `me` is dropped: `release` waits for the job
        // (bounded) and leaks the objects it still uses.
        bufsync_backends::vulkan::wait_fence(&warm.fence, WARMUP_TIMEOUT)
            .map_err(|e| RenderError::Target(format!("warm-up frame: {e}")))?;
        let gpu = me.gpu_mut();
        gpu.submitter.retire();
        gpu.warm_target = None;
        log::info!(
            "vulkan renderer: warm-up frame (pipeline compile) took {:?}",
            t.elapsed()
        );
        Ok(me)
    }

    fn gpu(&self) -> &Gpu {
        self.gpu.as_ref().expect("present until dropped")
    }

    fn gpu_mut(&mut self) -> &mut Gpu {
        self.gpu.as_mut().expect("present until dropped")
    }

    /// The context.
    pub fn context(&self) -> &Arc<VulkanContext> {
        &self.gpu().ctx
    }

    /// A short name for tables.
    pub fn name(&self) -> String {
        format!("vulkan ({})", self.gpu().ctx.caps().device_name)
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
        let gpu = self.gpu_mut();
        if gpu.targets.len() <= i {
            gpu.targets.resize_with(i + 1, || None);
        }
        if gpu.targets[i].as_ref().is_none_or(|(k, _)| *k != key) {
            gpu.targets[i] = Some((key, gpu.pattern.image_target(image.clone())?));
        }
        let (_, target) = gpu.targets[i].as_ref().expect("made above");
        let waits: Vec<Wait<'_>> = frame.wait_fences().iter().map(Wait::Fence).collect();
        let t = Instant::now();
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
