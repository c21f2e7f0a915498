//! Frames: acquire a buffer (a `VkImage` and a semaphore to wait on),
//! present it once the application's semaphore (or a fence) signals, or
//! cancel it. The acquired frames wait in the presenter's state between
//! the two calls.
//!
//! Locking: the presenter's (see the parent module).

use std::ffi::c_int;
use std::time::Duration;

use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::TimelineSemaphore;
use bufsync_present::{Frame, RenderDone};

use super::{bufsync_presenter, State};
use crate::error::{call, CallError, CallResult};
use crate::fence::bufsync_fence;
use crate::handle::{borrow, timeout, Out};
use crate::vk::{self as cvk, VkImage_T, VkSemaphore_T};

/// A frame to render into, from `bufsync_presenter_acquire`.
#[repr(C)]
pub struct bufsync_frame {
    /// The buffer slot; pass it to `bufsync_presenter_present`.
    pub index: u32,
    /// The frame's number: 0, 1, 2... in acquire order.
    pub number: u64,
    /// The image, on the application's device, in `VK_IMAGE_LAYOUT_GENERAL`
    /// (and expected so at present). Owned by the presenter.
    pub image: *mut VkImage_T,
    /// A binary semaphore to wait on before writing the image (it signals
    /// when the display has released the buffer), or NULL when there is
    /// nothing to wait for. Owned by the presenter; wait on it in this
    /// frame's submission only.
    pub wait_semaphore: *mut VkSemaphore_T,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The image's `VkFormat`.
    pub vk_format: u32,
    /// The buffer's DRM fourcc.
    pub drm_fourcc: u32,
}

/// A free buffer to render the next frame into, waiting at most
/// `timeout_ns` for one (`BUFSYNC_TIMEOUT_INFINITE`: no limit). Render into
/// `frame->image` after waiting for `frame->wait_semaphore` (when not
/// NULL) in the rendering submission, then present or cancel it.
///
/// Returns 0 with `*frame` filled, -ETIME (no buffer freed in time),
/// -EBUSY, -EINVAL, or a device error.
///
/// Thread safety: the presenter's thread (queue operations under the
/// device's queue-lock hooks).
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_acquire(
    presenter: *mut bufsync_presenter,
    timeout_ns: u64,
    frame: *mut bufsync_frame,
) -> c_int {
    call("bufsync_presenter_acquire", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(frame, "frame") }?;
        p.with(|s| {
            let t = timeout(timeout_ns).unwrap_or(Duration::MAX);
            let f = s.presenter.acquire(t)?;
            let sem = match s.presenter.acquire_semaphore(&f) {
                Ok(sem) => sem,
                Err(e) => {
                    let _ = s.presenter.cancel(f);
                    return Err(e.into());
                }
            };
            let Some(image) = f.target().image().cloned() else {
                let _ = s.presenter.cancel(f);
                return Err(CallError::invalid("the frame has no Vulkan image"));
            };
            let (width, height) = s.presenter.size();
            out.write(bufsync_frame {
                index: f.index() as u32,
                number: f.number(),
                image: cvk::image_ptr(image.handle()),
                wait_semaphore: sem.map_or(std::ptr::null_mut(), cvk::semaphore_ptr),
                width,
                height,
                vk_format: image.format().as_raw() as u32,
                drm_fourcc: s.presenter.format(),
            });
            let slot = f.index();
            s.frames[slot] = Some(f);
            Ok(0)
        })
    })
}

/// Takes the acquired frame in slot `index` out of the presenter's hands.
fn take_frame(s: &mut State, index: u32) -> CallResult<Frame> {
    s.frames
        .get_mut(index as usize)
        .and_then(Option::take)
        .ok_or_else(|| CallError::invalid(format!("no acquired frame in slot {index}")))
}

/// The runtime fence of "`semaphore` is signaled": a timeline point
/// (`value` > 0) or, for a binary semaphore (`value` 0), a point of the
/// presenter's bridge timeline that a submission waiting on it signals.
///
/// # Safety
/// `semaphore` is a semaphore of the presenter's device, timeline exactly
/// when `value` > 0, that outlives the presenter; for a binary one, a
/// signal operation for it has been submitted.
unsafe fn render_done(
    s: &mut State,
    semaphore: vk::Semaphore,
    value: u64,
) -> CallResult<RenderDone> {
    use bufsync_backends::vulkan::ash::vk::Handle;
    if value > 0 {
        let tl = match s.timelines.get(&semaphore.as_raw()) {
            Some(t) => t.clone(),
            None => {
                // SAFETY: a timeline semaphore of this device that outlives
                // the presenter (this function's contract).
                let t = unsafe { TimelineSemaphore::from_raw(&s.ctx, semaphore) }
                    .map_err(|e| CallError::new(libc::EIO, e.to_string()))?;
                s.timelines.insert(semaphore.as_raw(), t.clone());
                t
            }
        };
        return Ok(RenderDone::Timeline {
            semaphore: tl,
            value,
        });
    }
    let bridge = match &s.bridge {
        Some(b) => b.clone(),
        None => {
            let b = TimelineSemaphore::new(&s.ctx, 0)
                .map_err(|e| CallError::new(libc::EIO, e.to_string()))?;
            s.bridge.insert(b).clone()
        }
    };
    let v = bridge.next_value();
    let waits = [semaphore];
    let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
    let signals = [bridge.handle()];
    let (wait_values, signal_values) = ([0u64], [v]);
    let mut tl = vk::TimelineSemaphoreSubmitInfo::default()
        .wait_semaphore_values(&wait_values)
        .signal_semaphore_values(&signal_values);
    let submit = vk::SubmitInfo::default()
        .wait_semaphores(&waits)
        .wait_dst_stage_mask(&stages)
        .signal_semaphores(&signals)
        .push_next(&mut tl);
    let ctx = s.ctx.clone();
    // SAFETY: the arrays outlive the call; the semaphores are this device's
    // (the contract, and the bridge's own); the queue is taken under the
    // context's queue lock.
    ctx.with_queue(|q| unsafe { ctx.device().queue_submit(q, &[submit], vk::Fence::null()) })
        .map_err(|e| CallError::new(libc::EIO, format!("vkQueueSubmit (semaphore bridge): {e}")))?;
    Ok(RenderDone::Timeline {
        semaphore: bridge,
        value: v,
    })
}

/// Presents the frame in slot `index`, rendered once `semaphore` signals:
/// a timeline semaphore reaching `value` (`value` > 0), or a binary
/// semaphore (`value` 0) that the application's submission signals (it is
/// waited on, and so unsignaled again, by a submission of the presenter).
/// `semaphore` NULL: the frame is rendered already. The display waits for
/// the render itself where it can (IN_FENCE_FD), else the presenter does
/// (bounded). FIFO: waits for the previous flip first.
///
/// The semaphore must be the application's device's and outlive the
/// presenter (timeline ones are remembered by handle).
///
/// Returns 0; -ETIME (the render did not finish in time: the frame is
/// dropped, the display keeps its last one), the render's error, -EINVAL
/// (no such acquired frame), -EBUSY, or a display error. The frame is
/// given back on every outcome.
///
/// Thread safety: the presenter's thread (queue operations under the
/// device's queue-lock hooks).
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_present(
    presenter: *mut bufsync_presenter,
    index: u32,
    semaphore: *mut VkSemaphore_T,
    value: u64,
) -> c_int {
    call("bufsync_presenter_present", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        p.with(|s| {
            let frame = take_frame(s, index)?;
            let done = if semaphore.is_null() {
                Ok(RenderDone::Signaled)
            } else {
                // SAFETY: the header's contract for `semaphore` and `value`.
                unsafe { render_done(s, cvk::semaphore(semaphore), value) }
            };
            match done {
                Ok(d) => s.presenter.present(frame, d)?,
                Err(e) => {
                    let _ = s.presenter.cancel(frame);
                    return Err(e);
                }
            }
            Ok(0)
        })
    })
}

/// Presents the frame in slot `index`, rendered once `fence` signals (a
/// fence imported from a sync_file, a software fence the application
/// signals; NULL: rendered already). As `bufsync_presenter_present`.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_present_fence(
    presenter: *mut bufsync_presenter,
    index: u32,
    fence: *const bufsync_fence,
) -> c_int {
    call("bufsync_presenter_present_fence", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        // SAFETY: NULL or a live fence handle (header contract).
        let done = unsafe { fence.as_ref() }
            .map_or(RenderDone::Signaled, |f| RenderDone::Fence(f.fence.clone()));
        p.with(|s| {
            let frame = take_frame(s, index)?;
            s.presenter.present(frame, done)?;
            Ok(0)
        })
    })
}

/// Gives the acquired frame in slot `index` back unshown.
///
/// Returns 0, -EINVAL (no such acquired frame), or -EBUSY.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_cancel(
    presenter: *mut bufsync_presenter,
    index: u32,
) -> c_int {
    call("bufsync_presenter_cancel", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        p.with(|s| {
            let frame = take_frame(s, index)?;
            s.presenter.cancel(frame)?;
            Ok(0)
        })
    })
}
