//! The copy strategy's copy: on the CPU through mappings of both buffers
//! (bracketed with `DMA_BUF_IOCTL_SYNC`, after the fences each access must
//! respect), or on the render GPU into the display buffer it imported.
//! Either way the copy's fence is what the flip waits for.
//!
//! Locking: called inside the queue's copy step, which holds `(render,
//! Read)` and `(display, Write)`; the fences it waits for were waited
//! before the step (no wait under those locks blocks on a signaler that
//! needs them).

use std::time::{Duration, Instant};

use bufsync::fence::{Fence, FenceContext, FenceSet};
use bufsync_backends::dmabuf::Access;
use bufsync_backends::vulkan::{record_image_to_buffer_copy, ImageLayout, Submitter, Wait};

use crate::alloc::SlotBuffers;
use crate::edge;
use crate::error::PresentError;
use crate::frame::FrameTarget;

/// Copies slot `slot`'s render buffer into its display buffer on the CPU.
/// Returns the copy's fence (signaled: the copy is done when this
/// returns) and the bytes copied.
pub(crate) fn cpu_copy(
    slot: &mut SlotBuffers,
    index: usize,
    waits: &FenceSet,
    ctx: &FenceContext,
    frame: u64,
    timeout: Duration,
) -> Result<(Fence, u64), PresentError> {
    let deadline = Instant::now() + timeout;
    edge::wait_software(waits.iter(), timeout).map_err(|error| match error {
        bufsync::fence::FenceError::TimedOut => PresentError::RenderTimeout {
            frame,
            slot: index,
            timeout,
        },
        error => PresentError::RenderFailed { frame, error },
    })?;
    let src = slot
        .render
        .as_ref()
        .expect("copy slots have a render buffer");
    let dst = &slot.display;
    let left = || deadline.saturating_duration_since(Instant::now());
    let read = src.begin_cpu_access(Access::Read, left())?;
    let write = dst.begin_cpu_access(Access::Write, left())?;
    let src_layout = src.layout().expect("layout");
    let dst_layout = dst.layout().expect("layout");
    let (from, to) = slot
        .cpu_maps
        .as_mut()
        .expect("CPU copy slots keep their mappings");
    let bytes = to.copy_image_from(from, src_layout, dst_layout)?;
    write.end()?;
    read.end()?;
    let fence = ctx.create_fence();
    let _ = fence.signal();
    Ok((fence, bytes))
}

/// Submits a copy of slot `slot`'s render image into its display buffer
/// on the render GPU, after `waits` (in hardware where the device can).
/// Returns the copy's fence (a timeline point of `submitter`).
pub(crate) fn gpu_copy(
    submitter: &Submitter,
    slot: &SlotBuffers,
    waits: &FenceSet,
    timeout: Duration,
) -> Result<Fence, PresentError> {
    let FrameTarget::Vulkan(image) = &slot.target else {
        return Err(PresentError::Config(
            "GPU copy without a Vulkan image".into(),
        ));
    };
    let dst = slot
        .copy_dst
        .as_ref()
        .expect("GPU copy slots import the display buffer");
    let layout =
        ImageLayout::from_dmabuf(slot.display.layout().expect("layout"), slot.display.size());
    let ctx = submitter.vulkan().clone();
    let deps: Vec<Wait<'_>> = waits.iter().map(Wait::Fence).collect();
    let submitted = submitter.submit(&deps, timeout, |_, cmd| {
        record_image_to_buffer_copy(&ctx, cmd, image, dst, &layout)
    })?;
    submitter.retire();
    Ok(submitted.fence)
}
