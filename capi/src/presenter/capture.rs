//! Writeback capture of every flip for C programs that check what the
//! display composed (tests, screenshots): the C glue over
//! [`bufsync_present::WritebackCapture`] (its docs: the writeback
//! connector's `WRITEBACK_FB_ID` / `WRITEBACK_OUT_FENCE_PTR`, why the first
//! flip is not captured, the bounded queue).
//!
//! Locking: the presenter's state lock (`bufsync_presenter::with`, one
//! thread at a time) around each call; the capture's own mutex inside.

use std::ffi::c_int;

use bufsync_backends::kms::KmsError;
use bufsync_present::{WritebackCapture, XRGB8888};

use super::bufsync_presenter;
use crate::error::{call, CallError};
use crate::handle::{borrow, Out};

// `bufsync_presenter_next_capture`'s docs (and the header) say 16.
const _: () = assert!(WritebackCapture::KEPT == 16);

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
            let cap =
                WritebackCapture::new(s.presenter.display(), timeout).map_err(|e| match e {
                    KmsError::NoOutput { .. } | KmsError::UnsupportedFormat { .. } => {
                        CallError::new(libc::EOPNOTSUPP, e.to_string())
                    }
                    e => e.into(),
                })?;
            s.presenter.set_extension(Some(cap.extension()));
            s.capture = Some(cap);
            Ok(0)
        })
    })
}

/// The oldest capture not read yet, in `*capture` (its pixels stay valid
/// until the next call or destroy). With `wait`, waits for the oldest one
/// being written (at most the presenter's flip timeout); without, returns
/// only finished ones. At most 16 finished captures wait to be read: when
/// one more finishes, the oldest unread one is dropped (logged).
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
                drm_fourcc: XRGB8888,
                pixels: c.pixels.as_ptr(),
            });
            s.held = Some(c);
            Ok(0)
        })
    })
}
