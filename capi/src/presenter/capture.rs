//! Writeback capture of every flip, for C programs that check what the
//! display composed (tests, screenshots) on displays with a writeback
//! connector (vkms).
//!
//! The presenter's flips carry this as their [`FlipExtension`]: each flip
//! commit after the first (the one that enables the CRTC: see `extend`)
//! also routes the CRTC to the writeback connector (vkms refuses its
//! virtual connector and writeback on the CRTC together, so the first such
//! commit detaches the connector: a modeset), sets `WRITEBACK_FB_ID` to a
//! capture buffer and asks `WRITEBACK_OUT_FENCE_PTR`, so each capture is
//! exactly what that flip composed. Capture buffers are dumb buffers of
//! the display itself (framebuffers over its own handles, no PRIME round
//! trip); a capture is copied out once its fence signals, before its buffer
//! is used again, and waits in a bounded queue for the caller.
//!
//! Locking: the state is shared by the extension (the presenter's thread,
//! inside a presenter call) and the reader (the same thread, in
//! `bufsync_presenter_next_capture`), under one mutex, never held while
//! waiting for a fence.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bufsync_backends::dmabuf::{fourcc, Layout};
use bufsync_backends::drm::DumbBuffer;
use bufsync_backends::kms::{
    AtomicRequest, CommitFlags, CommitOutcome, Display, Framebuffer, KmsError,
};
use bufsync_backends::sync_file::SyncFile;
use bufsync_present::FlipExtension;

use std::ffi::c_int;

use super::bufsync_presenter;
use crate::error::{call, CallError};
use crate::handle::{borrow, Out};

/// XRGB8888, what captures hold.
pub(crate) const CAPTURE_FOURCC: u32 = fourcc(b"XR24");
/// Capture buffers: one being written while the previous one is read.
const RING: usize = 2;
/// Finished captures kept for the caller; older ones are dropped (logged).
const KEPT: usize = 16;

struct Slot {
    dumb: DumbBuffer,
    fb: Framebuffer,
}

struct Pending {
    frame: u64,
    slot: usize,
    fence: SyncFile,
}

/// One finished capture: XRGB8888, rows of `width * 4` bytes.
pub(crate) struct Captured {
    pub(crate) frame: u64,
    pub(crate) pixels: Vec<u8>,
}

struct State {
    slots: Vec<Slot>,
    next: usize,
    pending: VecDeque<Pending>,
    done: VecDeque<Captured>,
    /// Buffers of dropped or read captures, reused.
    spare: Vec<Vec<u8>>,
    routed: bool,
    timeout: Duration,
    width: u32,
    height: u32,
}

/// The shared capture state; clone it for the presenter's extension.
#[derive(Clone)]
pub(crate) struct Capture(Arc<Mutex<State>>);

impl Capture {
    /// Capture buffers on `display`; [`KmsError::NoOutput`] without a
    /// writeback connector that writes XRGB8888.
    pub(crate) fn new(display: &Display, timeout: Duration) -> Result<Capture, KmsError> {
        let writes_xrgb = display
            .props()
            .writeback
            .as_ref()
            .is_some_and(|w| w.formats.contains(&CAPTURE_FOURCC));
        if display.output().writeback.is_none() || !writes_xrgb {
            return Err(KmsError::NoOutput {
                what: format!("no XRGB8888 writeback connector on {}", display.driver()),
            });
        }
        let (width, height) = display.size();
        let mut slots = Vec::with_capacity(RING);
        for _ in 0..RING {
            let dumb = DumbBuffer::create(display.device(), width, height, 32)?;
            let layout = Layout::linear(width, height, CAPTURE_FOURCC, dumb.pitch());
            let fb = display.add_framebuffer(dumb.handle(), dumb.size(), &layout)?;
            slots.push(Slot { dumb, fb });
        }
        Ok(Capture(Arc::new(Mutex::new(State {
            slots,
            next: 0,
            pending: VecDeque::new(),
            done: VecDeque::new(),
            spare: Vec::new(),
            routed: false,
            timeout,
            width,
            height,
        }))))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The captures' size in pixels.
    pub(crate) fn size(&self) -> (u32, u32) {
        let s = self.lock();
        (s.width, s.height)
    }

    /// The oldest finished capture; with `wait`, waits (bounded) for the
    /// oldest one still being written. `Ok(None)`: none (left).
    pub(crate) fn next(&self, wait: bool) -> Result<Option<Captured>, KmsError> {
        self.read_finished(wait)?;
        Ok(self.lock().done.pop_front())
    }

    /// Gives a capture's buffer back for reuse.
    pub(crate) fn recycle(&self, c: Captured) {
        let mut s = self.lock();
        if s.spare.len() < KEPT {
            s.spare.push(c.pixels);
        }
    }

    /// Copies out every capture whose fence has signaled; with `wait`, the
    /// oldest pending one is waited for (bounded) first.
    fn read_finished(&self, mut wait: bool) -> Result<(), KmsError> {
        loop {
            let (pending, timeout) = {
                let mut s = self.lock();
                let Some(p) = s.pending.front() else {
                    return Ok(());
                };
                if !wait && !p.fence.is_signaled().map_err(KmsError::Device)? {
                    return Ok(());
                }
                let timeout = s.timeout;
                (s.pending.pop_front().expect("checked above"), timeout)
            };
            wait = false;
            pending.fence.wait(timeout).map_err(KmsError::Device)?;
            let mut s = self.lock();
            let mut pixels = s.spare.pop().unwrap_or_default();
            let row = s.width as usize * 4;
            pixels.resize(row * s.height as usize, 0);
            let slot = &s.slots[pending.slot];
            let pitch = slot.dumb.pitch() as usize;
            let map = slot.dumb.map()?;
            for (y, chunk) in pixels.chunks_mut(row).enumerate() {
                map.read_at(y * pitch, chunk)?;
            }
            drop(map);
            if s.done.len() == KEPT {
                if let Some(old) = s.done.pop_front() {
                    log::warn!("capture of frame {} dropped unread", old.frame);
                    s.spare.push(old.pixels);
                }
            }
            s.done.push_back(Captured {
                frame: pending.frame,
                pixels,
            });
        }
    }
}

impl FlipExtension for Capture {
    fn extend(
        &mut self,
        display: &Display,
        _frame: u64,
        request: &mut AtomicRequest<'_>,
        flags: &mut CommitFlags,
    ) -> Result<(), KmsError> {
        // One writeback job at a time, and never into a buffer unread: the
        // previous capture completed at the vblank that showed its flip.
        self.read_finished(true)?;
        let (Some(wb), Some(wb_conn)) = (
            display.props().writeback.as_ref(),
            display.output().writeback,
        ) else {
            return Ok(());
        };
        if !display.is_configured() {
            // The flip that enables the CRTC is not captured: vkms queues a
            // writeback job of that commit on the outgoing CRTC state (its
            // writeback commit runs before the CRTC flush replaces the
            // composer's state), so the job is lost and its fence never
            // signals (seen in the VM: frame 1 then timed out waiting for
            // frame 0's capture).
            return Ok(());
        }
        let s = self.lock();
        if !s.routed {
            request
                .set(
                    display.output().connector,
                    display.props().connector_crtc_id,
                    0,
                )
                .set(wb_conn, wb.crtc_id, u64::from(display.output().crtc));
            flags.allow_modeset = true;
        }
        request
            .set(wb_conn, wb.fb_id, u64::from(s.slots[s.next].fb.id()))
            .out_fence(wb_conn, wb.out_fence_ptr);
        Ok(())
    }

    fn committed(&mut self, display: &Display, frame: u64, outcome: &mut CommitOutcome) {
        let Some(wb_conn) = display.output().writeback else {
            return;
        };
        if let Some(fence) = outcome.take(wb_conn) {
            let mut s = self.lock();
            s.routed = true;
            let slot = s.next;
            s.next = (slot + 1) % RING;
            s.pending.push_back(Pending { frame, slot, fence });
        }
    }
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
