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
use bufsync_backends::vulkan::{TimelineSemaphore, VulkanContext};
use bufsync_present::{
    CapturedFrame, DisplayTarget, Frame, PresentError, PresentMode, Presenter, PresenterConfig,
    RenderDevice, WritebackCapture,
};

mod capture;
mod frame;

pub use capture::{
    bufsync_capture, bufsync_presenter_enable_capture, bufsync_presenter_next_capture,
};
pub use frame::{
    bufsync_frame, bufsync_presenter_acquire, bufsync_presenter_cancel, bufsync_presenter_present,
    bufsync_presenter_present_fence,
};

use crate::error::{backend_errno, call, call_or, CallError, CallResult};
use crate::handle::{borrow, destroy, dup_borrowed, new_handle, opt_str, timeout, Out};
use crate::vk::{self as cvk, bufsync_vulkan_device};

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
    capture: Option<WritebackCapture>,
    /// The capture the caller holds (its pixels are what it points to).
    held: Option<CapturedFrame>,
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
                implicit_sync: s.presenter.has_implicit_sync(),
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
