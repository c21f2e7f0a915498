//! The presenter (crate `bufsync-present`) for C Vulkan programs: built
//! from the application's own instance, device and queue and a display
//! (a DRM fd or a driver name); `acquire` gives a `VkImage` to render into
//! and a semaphore to wait on, `present` takes a `VkSemaphore` (binary, or
//! timeline with a value) the application's submission signals.
//!
//! Locking: a presenter is used by one thread at a time (`state` is taken
//! with `try_lock`: a concurrent call gets -EBUSY, never a wait). Its
//! submissions go to the application's queue under the context's submit
//! mutex and the application's queue-lock hooks
//! (`bufsync_vulkan_device.lock_queue`); without hooks the application
//! must not submit to that queue during a presenter call.

use std::collections::HashMap;
use std::ffi::{c_char, c_int};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use bufsync_backends::drm::DrmDevice;
use bufsync_backends::kms::KmsError;
use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::{TimelineSemaphore, VulkanContext};
use bufsync_present::{
    DisplayTarget, Frame, PresentError, PresentMode, Presenter, PresenterConfig, RenderDevice,
    RenderDone,
};

use crate::capture::{Capture, Captured, CAPTURE_FOURCC};
use crate::error::{backend_errno, call, call_or, CallError, CallResult};
use crate::fence::bufsync_fence;
use crate::handle::{borrow, destroy, dup_borrowed, new_handle, opt_str, timeout, Out};
use crate::vk::{self as cvk, bufsync_vulkan_device, VkImage_T, VkSemaphore_T};

/// How the presenter is set up; zero-initialize it and set what you need
/// (`display_fd` must then be -1 or a DRM fd).
#[repr(C)]
pub struct bufsync_presenter_options {
    /// The display: a DRM driver name ("vkms", "i915"...) or a card path
    /// ("/dev/dri/card0"). NULL: `display_fd`.
    pub display: *const c_char,
    /// The display as an open DRM primary node, when `display` is NULL.
    /// Borrowed: bufsync keeps its own duplicate.
    pub display_fd: c_int,
    /// Buffers in rotation (0: 3; at least 2).
    pub buffers: u32,
    /// Mailbox (the newest ready frame at each vblank) instead of FIFO.
    pub mailbox: bool,
    /// Bound on each wait for a render (0: the default, 2 s).
    pub render_timeout_ns: u64,
    /// Bound on each wait for a flip (0: the default, 1 s).
    pub flip_timeout_ns: u64,
}

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

/// What a presenter chose.
#[repr(C)]
pub struct bufsync_presenter_info {
    /// Frame width in pixels (the display mode's).
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// DRM fourcc of the buffers.
    pub drm_fourcc: u32,
    /// Buffers in rotation.
    pub buffers: u32,
    /// Whether the display waits for render fences itself (`IN_FENCE_FD`).
    pub in_fence: bool,
    /// Whether the kernel takes implicit fences (`IMPORT_SYNC_FILE`).
    pub implicit_sync: bool,
    /// Mailbox (else FIFO).
    pub mailbox: bool,
}

/// Counts since the presenter was built.
#[repr(C)]
pub struct bufsync_present_totals {
    /// Frames handed to present.
    pub presented: u64,
    /// Frames that reached the screen.
    pub shown: u64,
    /// Frames dropped by mailbox.
    pub dropped: u64,
    /// Flips the display waited for through `IN_FENCE_FD`.
    pub in_fence: u64,
    /// Flips after pushing the render fence into the buffer.
    pub implicit: u64,
    /// Flips after a software wait for the render.
    pub software: u64,
    /// Flips of frames already complete.
    pub signaled: u64,
}

/// One writeback capture, from `bufsync_presenter_next_capture`.
#[repr(C)]
pub struct bufsync_capture {
    /// The number of the frame whose flip it shows.
    pub frame: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub stride: u32,
    /// DRM fourcc of the pixels (XRGB8888: little-endian 0xXXRRGGBB words).
    pub drm_fourcc: u32,
    /// The pixels, owned by the presenter: valid until the next
    /// `bufsync_presenter_next_capture` or destroy.
    pub pixels: *const u8,
}

/// A presenter: buffers negotiated between the application's Vulkan device
/// and a KMS display, flipped with every edge synchronized. Create with
/// `bufsync_presenter_create_vulkan`, destroy with
/// `bufsync_presenter_destroy`.
pub struct bufsync_presenter {
    state: Mutex<State>,
}

struct State {
    /// Dropped first: waits for the last flip and restores the display.
    presenter: Presenter,
    ctx: Arc<VulkanContext>,
    frames: Vec<Option<Frame>>,
    timelines: HashMap<u64, Arc<TimelineSemaphore>>,
    /// Signaled by the bridge submission that waits for a binary semaphore.
    bridge: Option<Arc<TimelineSemaphore>>,
    capture: Option<Capture>,
    /// The capture the caller holds (its pixels are what it points to).
    held: Option<Captured>,
}

impl From<PresentError> for CallError {
    fn from(e: PresentError) -> CallError {
        let errno = match &e {
            PresentError::NoCommonFormat { .. } | PresentError::NoStrategy(_) => libc::EOPNOTSUPP,
            PresentError::Allocate { .. } => libc::ENOMEM,
            PresentError::NotMaster { .. } => libc::EBUSY,
            PresentError::DisplayGone { .. } => libc::ENODEV,
            PresentError::RenderTimeout { .. } | PresentError::AcquireTimeout { .. } => libc::ETIME,
            PresentError::RenderFailed { error, .. } => error.to_errno().abs(),
            PresentError::ForeignFrame { .. } | PresentError::Config(_) => libc::EINVAL,
            PresentError::Display(k) => kms_errno(k),
            PresentError::Vulkan(_) => libc::EIO,
            PresentError::Device(d) => backend_errno(d),
            PresentError::Reserve(r) => CallError::from(*r).code.abs(),
        };
        CallError::new(errno, e.to_string())
    }
}

impl From<KmsError> for CallError {
    fn from(e: KmsError) -> CallError {
        CallError::new(kms_errno(&e), e.to_string())
    }
}

fn kms_errno(e: &KmsError) -> c_int {
    match e {
        KmsError::Device(d) => backend_errno(d),
        e => e.errno().unwrap_or(libc::EIO),
    }
}

impl bufsync_presenter {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> CallResult<T>) -> CallResult<T> {
        let mut s = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(CallError::new(
                    libc::EBUSY,
                    "the presenter is in use by another thread (one thread at a time)",
                ))
            }
        };
        f(&mut s)
    }
}

fn config(o: Option<&bufsync_presenter_options>) -> PresenterConfig {
    let mut cfg = PresenterConfig::default();
    if let Some(o) = o {
        if o.buffers != 0 {
            cfg.buffers = o.buffers as usize;
        }
        if o.mailbox {
            cfg.mode = PresentMode::Mailbox;
        }
        if o.render_timeout_ns != 0 {
            cfg.render_timeout = Duration::from_nanos(o.render_timeout_ns);
        }
        if o.flip_timeout_ns != 0 {
            cfg.flip_timeout = Duration::from_nanos(o.flip_timeout_ns);
        }
    }
    cfg
}

/// Creates a presenter over the application's Vulkan device and a display:
/// picks the output (the first connected connector, its preferred mode), a
/// pixel format both sides support, and who allocates the buffers
/// (renderer, display, or a copy), each candidate checked with a TEST_ONLY
/// commit. Takes DRM master on the display while it lives.
///
/// Fds: `options->display_fd` is borrowed (bufsync keeps its own dup).
///
/// Returns 0 with `*out` a new presenter; -EINVAL (NULL, no display named,
/// bad options), -EOPNOTSUPP (no common format or buffer strategy; the
/// timeline feature not enabled), -EBUSY (another process is DRM master),
/// -ENODEV / -ENOENT (no such display), or a device error.
///
/// Thread safety: any thread. bufsync's queue operations take the
/// device's `lock_queue` hook; without hooks the application must not
/// submit to `device->queue` during this or any presenter call.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_create_vulkan(
    device: *const bufsync_vulkan_device,
    options: *const bufsync_presenter_options,
    out: *mut *mut bufsync_presenter,
) -> c_int {
    call("bufsync_presenter_create_vulkan", || {
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: NULL or a readable struct (header contract).
        let d = unsafe { borrow(device, "device") }?;
        // SAFETY: NULL or a readable struct (header contract).
        let o = unsafe { options.as_ref() };
        let display = match o {
            // SAFETY: NULL or a NUL-terminated string (header contract).
            Some(o) => match unsafe { opt_str(o.display, "options->display") }? {
                Some(name) => DisplayTarget::parse(name),
                None if o.display_fd >= 0 => DisplayTarget::Device(
                    DrmDevice::from_fd(dup_borrowed(o.display_fd, "options->display_fd")?)
                        .map_err(CallError::from)?,
                ),
                None => return Err(CallError::invalid("options name no display")),
            },
            None => return Err(CallError::invalid("options is NULL: no display named")),
        };
        // SAFETY: the application's handles (header contract).
        let ctx = unsafe { cvk::context(d) }?;
        // The negotiation is logged (info) by the presenter itself.
        let presenter = Presenter::new(RenderDevice::Vulkan(ctx.clone()), display, config(o))?;
        let frames = (0..presenter.buffers()).map(|_| None).collect();
        out.write(new_handle(bufsync_presenter {
            state: Mutex::new(State {
                presenter,
                ctx,
                frames,
                timelines: HashMap::new(),
                bridge: None,
                capture: None,
                held: None,
            }),
        }));
        Ok(0)
    })
}

/// Destroys a presenter: waits (bounded) for the last flip, restores the
/// display and releases DRM master. Frames still acquired are dropped.
/// NULL does nothing. Destroy it before the application's Vulkan device.
///
/// Thread safety: once no other call uses the presenter.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_destroy(presenter: *mut bufsync_presenter) {
    // SAFETY: NULL or a live presenter no one else uses (header contract).
    call_or("bufsync_presenter_destroy", (), || unsafe {
        destroy(presenter)
    })
}

/// What the presenter chose, in `*info`.
///
/// Returns 0, -EBUSY (another thread is in a call), or -EINVAL.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_get_info(
    presenter: *mut bufsync_presenter,
    info: *mut bufsync_presenter_info,
) -> c_int {
    call("bufsync_presenter_get_info", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(info, "info") }?;
        p.with(|s| {
            let (width, height) = s.presenter.size();
            out.write(bufsync_presenter_info {
                width,
                height,
                drm_fourcc: s.presenter.format(),
                buffers: s.presenter.buffers() as u32,
                in_fence: s.presenter.has_in_fence(),
                implicit_sync: s.presenter.has_implicit_import(),
                mailbox: s.presenter.mode() == PresentMode::Mailbox,
            });
            Ok(0)
        })
    })
}

/// The negotiation as text (the strategy chosen, why others were refused),
/// NUL-terminated into `buf` (truncated to `capacity`); `*length`
/// (optional) gets the full length without the NUL.
///
/// Returns 0, -EBUSY, or -EINVAL (NULL presenter, NULL `buf` with
/// `capacity` > 0).
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_describe(
    presenter: *mut bufsync_presenter,
    buf: *mut c_char,
    capacity: usize,
    length: *mut usize,
) -> c_int {
    call("bufsync_presenter_describe", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        if buf.is_null() && capacity > 0 {
            return Err(CallError::invalid("buf is NULL with a capacity"));
        }
        let text = p.with(|s| Ok(s.presenter.negotiation().to_string()))?;
        // SAFETY: NULL or writable (header contract).
        unsafe { crate::handle::write_opt(length, text.len()) };
        if capacity > 0 {
            let n = text.len().min(capacity - 1);
            // SAFETY: `buf` has `capacity` > n bytes (header contract).
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                buf.add(n).write(0);
            }
        }
        Ok(0)
    })
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

/// Waits at most `timeout_ns` for the flip in flight and the frames queued
/// behind it.
///
/// Returns 0, -ETIME, -EBUSY, -EINVAL, or a display error.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_wait_idle(
    presenter: *mut bufsync_presenter,
    timeout_ns: u64,
) -> c_int {
    call("bufsync_presenter_wait_idle", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        p.with(|s| {
            s.presenter
                .wait_idle(timeout(timeout_ns).unwrap_or(Duration::MAX))?;
            Ok(0)
        })
    })
}

/// Handles completed flips without blocking: call it when
/// `bufsync_presenter_fd` is readable (an event loop), and in mailbox mode
/// to flip the newest ready frame.
///
/// Returns the number of flips completed (>= 0), -EBUSY, -EINVAL, or a
/// display error.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_dispatch(presenter: *mut bufsync_presenter) -> c_int {
    call("bufsync_presenter_dispatch", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        p.with(|s| Ok(s.presenter.dispatch()?.min(c_int::MAX as usize) as c_int))
    })
}

/// The display's fd, readable when a flip completes (for poll/epoll); -1
/// for NULL or while another thread is in a call.
///
/// Fd: borrowed from the library, valid while the presenter lives; do not
/// close it or read from it.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_fd(presenter: *mut bufsync_presenter) -> c_int {
    call_or("bufsync_presenter_fd", -1, || {
        // SAFETY: NULL or a live presenter (header contract).
        let Ok(p) = (unsafe { borrow(presenter, "presenter") }) else {
            return -1;
        };
        p.with(|s| {
            let fd: BorrowedFd<'_> = s.presenter.as_fd();
            Ok(fd.as_raw_fd())
        })
        .unwrap_or(-1)
    })
}

/// The counts since creation, in `*totals`.
///
/// Returns 0, -EBUSY, or -EINVAL.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_get_totals(
    presenter: *mut bufsync_presenter,
    totals: *mut bufsync_present_totals,
) -> c_int {
    call("bufsync_presenter_get_totals", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(totals, "totals") }?;
        p.with(|s| {
            let t = s.presenter.totals();
            out.write(bufsync_present_totals {
                presented: t.presented,
                shown: t.shown,
                dropped: t.dropped,
                in_fence: t.in_fence,
                implicit: t.implicit,
                software: t.software,
                signaled: t.signaled,
            });
            Ok(0)
        })
    })
}

/// Captures every later flip through the display's writeback connector
/// (what the CRTC composed for exactly that flip, XRGB8888), for tests and
/// screenshots; read them with `bufsync_presenter_next_capture`. The
/// presenter's first flip, which sets the mode, is never captured (vkms
/// loses a writeback job in the commit that enables the CRTC). The
/// display connector is detached while capturing (vkms allows one or the
/// other): the screen stays dark until the presenter is destroyed.
///
/// Returns 0, -EOPNOTSUPP (no XRGB8888 writeback connector), -EBUSY,
/// -EINVAL, or a device error.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_enable_capture(
    presenter: *mut bufsync_presenter,
) -> c_int {
    call("bufsync_presenter_enable_capture", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        p.with(|s| {
            if s.capture.is_some() {
                return Ok(0);
            }
            let timeout = s.presenter.config().flip_timeout;
            let cap = Capture::new(s.presenter.display(), timeout).map_err(|e| match e {
                KmsError::NoOutput { what } => CallError::new(libc::EOPNOTSUPP, what),
                e => e.into(),
            })?;
            s.presenter.set_extension(Some(Box::new(cap.clone())));
            s.capture = Some(cap);
            Ok(0)
        })
    })
}

/// The oldest capture not read yet, in `*capture` (its pixels stay valid
/// until the next call or destroy). With `wait`, waits for the oldest one
/// being written (at most the presenter's flip timeout); without, returns
/// only finished ones.
///
/// Returns 0; -ENOENT (none: no flip since, or all read), -ETIME (the
/// writeback did not complete in time), -EINVAL (capture not enabled),
/// -EBUSY.
///
/// Thread safety: the presenter's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_presenter_next_capture(
    presenter: *mut bufsync_presenter,
    wait: bool,
    capture: *mut bufsync_capture,
) -> c_int {
    call("bufsync_presenter_next_capture", || {
        // SAFETY: NULL or a live presenter (header contract).
        let p = unsafe { borrow(presenter, "presenter") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(capture, "capture") }?;
        p.with(|s| {
            let cap = s
                .capture
                .clone()
                .ok_or_else(|| CallError::invalid("capture is not enabled"))?;
            if let Some(old) = s.held.take() {
                cap.recycle(old);
            }
            let next = cap.next(wait)?;
            let c = next.ok_or_else(|| CallError::new(libc::ENOENT, "no capture to read"))?;
            let (width, height) = cap.size();
            out.write(bufsync_capture {
                frame: c.frame,
                width,
                height,
                stride: width * 4,
                drm_fourcc: CAPTURE_FOURCC,
                pixels: c.pixels.as_ptr(),
            });
            s.held = Some(c);
            Ok(0)
        })
    })
}
