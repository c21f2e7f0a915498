//! Writeback capture of every flip: what the display composed for exactly
//! that flip, read back for checks and screenshots, on displays with a
//! writeback connector (vkms).
//!
//! Kernel counterpart: DRM writeback connectors (`drm_writeback.c`). Each
//! captured flip commit also sets the writeback connector's
//! `WRITEBACK_FB_ID` to a capture buffer and asks for its
//! `WRITEBACK_OUT_FENCE_PTR`, which signals once the CRTC's composition
//! of that very commit is in the buffer; so a capture is never a later
//! or earlier frame. vkms refuses its virtual connector and the writeback
//! connector on the CRTC together, so the first capture commit detaches
//! the display connector (a modeset): the screen stays dark until the
//! display is restored.
//!
//! The flip that enables the CRTC (the display's first) is not captured:
//! vkms queues the writeback job of that commit on the outgoing CRTC
//! state (its writeback commit runs before the CRTC flush replaces the
//! composer's state), so the job is lost and its fence never signals
//! (seen in the VM: frame 1 then timed out waiting for frame 0's capture).
//! Captures start at the second flip.
//!
//! [`WritebackCapture`] plugs into the presenter's flips as its
//! [`FlipExtension`] ([`WritebackCapture::extension`]) and into a flip
//! built by hand through [`WritebackCapture::add`] and
//! [`WritebackCapture::committed_flip`]. One writeback job at a time: each
//! capture commit first waits (bounded) for the previous capture, which
//! completed at the vblank that showed its flip, and copies it out. Capture
//! buffers are dumb buffers of the display itself with framebuffers over
//! their own handles (no PRIME round trip, no other device). Finished
//! captures wait for the reader in a bounded queue ([`KEPT`](WritebackCapture::KEPT) of them; an
//! older unread one is dropped, logged); a read capture's pixel buffer can
//! be given back for reuse ([`WritebackCapture::recycle`]).
//!
//! Locking: the state is shared by every clone (the presenter's extension
//! on the presenter's thread, the reader on any thread) under one mutex.
//! It is taken briefly and never held while waiting for a fence; a capture
//! is copied out under it, and leaves the pending queue only once copied,
//! so its buffer is never written again while being read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bufsync_backends::drm::DumbBuffer;
use bufsync_backends::kms::{
    AtomicRequest, CommitFlags, CommitOutcome, Display, Framebuffer, KmsError, WRITEBACK_FORMAT,
};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::vulkan::ImageLayout;

use crate::extension::FlipExtension;

/// Capture buffers, used in turn. Every capture is copied out before the
/// next capture commit (one writeback job at a time), so one would do; with
/// two, the capture after one whose fence timed out (dropped, the kernel
/// may still write it) goes into the other buffer.
const RING: usize = 2;

/// One finished capture: what the display composed for the flip of frame
/// `frame`, XRGB8888 (little-endian `0xXXRRGGBB` words), rows of
/// `width * 4` bytes ([`WritebackCapture::layout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// The number of the frame whose flip it shows (the presenter's frame
    /// number, or the one given to [`WritebackCapture::committed_flip`]).
    pub frame: u64,
    /// The pixels.
    pub pixels: Vec<u8>,
}

struct Slot {
    dumb: DumbBuffer,
    fb: Framebuffer,
}

struct Pending {
    frame: u64,
    slot: usize,
    fence: Arc<SyncFile>,
}

struct State {
    slots: Vec<Slot>,
    next: usize,
    /// Captures being written, oldest first.
    pending: VecDeque<Pending>,
    /// Finished captures, oldest first, at most [`WritebackCapture::KEPT`].
    done: VecDeque<CapturedFrame>,
    /// Pixel buffers of dropped or recycled captures, reused.
    spare: Vec<Vec<u8>>,
    /// The CRTC drives the writeback connector (the first capture commit
    /// routed it).
    routed: bool,
    timeout: Duration,
    width: u32,
    height: u32,
}

impl State {
    /// Copies the oldest pending capture out (its fence has signaled) into
    /// the finished queue.
    fn finish_front(&mut self) -> Result<(), KmsError> {
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        let mut pixels = self.spare.pop().unwrap_or_default();
        self.slots[p.slot]
            .dumb
            .read_packed(self.width as usize * 4, &mut pixels)?;
        if self.done.len() == WritebackCapture::KEPT {
            if let Some(old) = self.done.pop_front() {
                log::warn!("writeback capture of frame {} dropped unread", old.frame);
                self.spare.push(old.pixels);
            }
        }
        self.done.push_back(CapturedFrame {
            frame: p.frame,
            pixels,
        });
        Ok(())
    }
}

/// A writeback capture of every flip (see the module docs). Clones share
/// it: give one to the presenter ([`extension`](Self::extension)), read
/// the captures through another ([`next`](Self::next)).
///
/// ```
/// use bufsync_present::{DisplayTarget, Presenter, PresenterConfig, RenderDevice, RenderDone};
/// use bufsync_present::WritebackCapture;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A CPU renderer on vgem and the vkms display (in the test VM).
/// let Ok(vgem) = bufsync_backends::drm::DrmDevice::find("vgem") else {
///     return Ok(()); // no such device here
/// };
/// let wait = Duration::from_secs(5);
/// let mut presenter = Presenter::new(
///     RenderDevice::Gem(std::sync::Arc::new(vgem)),
///     DisplayTarget::Driver("vkms".into()),
///     PresenterConfig::default(),
/// )?;
/// let capture = WritebackCapture::new(presenter.display(), wait)?;
/// presenter.set_extension(Some(capture.extension()));
/// for _ in 0..3 {
///     let frame = presenter.acquire(wait)?;
///     frame.wait_fences().wait_all(Some(wait))?;
///     let target = frame.target().cpu().expect("a CPU target");
///     let mut map = target.dmabuf().map_copies(true)?;
///     map.write_at(0, &[0xff; 4096])?; // draw
///     drop(map);
///     presenter.present(frame, RenderDone::Signaled)?;
/// }
/// presenter.wait_idle(wait)?;
/// // Frames 1 and 2: the first flip (frame 0) set the mode.
/// while let Some(c) = capture.next(true)? {
///     assert_eq!(&c.pixels[..4], &[0xff; 4]);
///     capture.recycle(c);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WritebackCapture {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for WritebackCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("WritebackCapture")
            .field("size", &(s.width, s.height))
            .field("pending", &s.pending.len())
            .field("done", &s.done.len())
            .field("routed", &s.routed)
            .finish_non_exhaustive()
    }
}

impl WritebackCapture {
    /// Finished captures kept for the reader; when one more finishes, the
    /// oldest unread one is dropped (logged at warn).
    pub const KEPT: usize = 16;

    /// Capture buffers on `display` (dumb buffers of its own device at its
    /// mode's size); every wait for a capture is bounded by `timeout`.
    /// [`KmsError::NoOutput`] without a writeback connector for its CRTC,
    /// [`KmsError::UnsupportedFormat`] when it does not write XRGB8888.
    ///
    /// Locking: none taken; returns a capture not yet in any flip.
    pub fn new(display: &Display, timeout: Duration) -> Result<Self, KmsError> {
        display.writeback_connector()?;
        let (width, height) = display.size();
        let mut slots = Vec::with_capacity(RING);
        for _ in 0..RING {
            let (dumb, fb) = display.writeback_buffer()?;
            slots.push(Slot { dumb, fb });
        }
        Ok(WritebackCapture {
            state: Arc::new(Mutex::new(State {
                slots,
                next: 0,
                pending: VecDeque::new(),
                done: VecDeque::new(),
                spare: Vec::new(),
                routed: false,
                timeout,
                width,
                height,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The captures' size in pixels (the display mode's).
    ///
    /// Locking: takes the state mutex briefly.
    pub fn size(&self) -> (u32, u32) {
        let s = self.lock();
        (s.width, s.height)
    }

    /// The layout of every [`CapturedFrame::pixels`]: XRGB8888 at the
    /// display's size, rows of `width * 4` bytes.
    ///
    /// Locking: takes the state mutex briefly.
    pub fn layout(&self) -> ImageLayout {
        let (width, height) = self.size();
        let row = u64::from(width) * 4;
        ImageLayout::linear(
            width,
            height,
            WRITEBACK_FORMAT,
            0,
            row,
            row * u64::from(height),
        )
    }

    /// The presenter extension that captures every flip after the first
    /// (for [`Presenter::set_extension`](crate::Presenter::set_extension)).
    pub fn extension(&self) -> Box<dyn FlipExtension> {
        Box::new(self.clone())
    }

    /// Adds a capture to a flip request built by hand (a no-op for the
    /// display's first flip, which sets the mode: see the module docs).
    /// One capture at a time: first waits (at most the timeout) for the
    /// previous one and copies it out. The first capture also routes the
    /// CRTC to the writeback connector and sets `flags.allow_modeset`.
    /// Call [`committed_flip`](Self::committed_flip) after the commit.
    ///
    /// Errors: the previous capture's fence wait or read (that capture is
    /// dropped), a display without writeback; `request` is unchanged then.
    ///
    /// Locking: takes the state mutex, never across the wait.
    pub fn add(
        &self,
        display: &Display,
        request: &mut AtomicRequest<'_>,
        flags: &mut CommitFlags,
    ) -> Result<(), KmsError> {
        self.read_finished(true)?;
        if !display.is_configured() {
            return Ok(());
        }
        let s = self.lock();
        display.add_writeback(request, flags, &s.slots[s.next].fb, !s.routed)?;
        Ok(())
    }

    /// After the commit of frame `frame` that went through
    /// [`add`](Self::add): takes the writeback fence from `outcome`.
    /// Returns whether the flip is captured (false for the first flip, or
    /// a commit without the capture).
    ///
    /// Locking: takes the state mutex briefly.
    pub fn committed_flip(
        &self,
        display: &Display,
        frame: u64,
        outcome: &mut CommitOutcome,
    ) -> bool {
        let Some(wb_conn) = display.output().writeback else {
            return false;
        };
        let Some(fence) = outcome.take(wb_conn) else {
            return false;
        };
        let mut s = self.lock();
        s.routed = true;
        let slot = s.next;
        s.next = (slot + 1) % RING;
        s.pending.push_back(Pending {
            frame,
            slot,
            fence: Arc::new(fence),
        });
        true
    }

    /// The oldest finished capture not read yet. With `wait` and none
    /// finished, waits (at most the timeout) for the oldest one still being
    /// written. `Ok(None)`: none left (every captured flip read). An error
    /// is the fence wait's (a timeout: the capture is dropped) or the read's.
    ///
    /// Locking: takes the state mutex, never across the wait.
    pub fn next(&self, wait: bool) -> Result<Option<CapturedFrame>, KmsError> {
        let wait = wait && self.lock().done.is_empty();
        self.read_finished(wait)?;
        Ok(self.lock().done.pop_front())
    }

    /// Gives a read capture's pixel buffer back, for a later capture to
    /// reuse (at most [`KEPT`](Self::KEPT) are kept).
    ///
    /// Locking: takes the state mutex briefly.
    pub fn recycle(&self, capture: CapturedFrame) {
        let mut s = self.lock();
        if s.spare.len() < Self::KEPT {
            s.spare.push(capture.pixels);
        }
    }

    /// Copies out every capture whose fence has signaled, oldest first;
    /// with `wait`, the oldest pending one is waited for (bounded) first.
    /// A capture whose wait fails is dropped and its error returned.
    fn read_finished(&self, mut wait: bool) -> Result<(), KmsError> {
        loop {
            let (fence, timeout) = {
                let s = self.lock();
                let Some(p) = s.pending.front() else {
                    return Ok(());
                };
                (p.fence.clone(), s.timeout)
            };
            let waited = match fence.is_signaled() {
                Ok(true) => Ok(()),
                Ok(false) if !wait => return Ok(()),
                Ok(false) => fence.wait(timeout),
                Err(e) => Err(e),
            };
            wait = false;
            let mut s = self.lock();
            // Another reader may have copied it out meanwhile.
            if !s
                .pending
                .front()
                .is_some_and(|p| Arc::ptr_eq(&p.fence, &fence))
            {
                continue;
            }
            if let Err(e) = waited {
                let p = s.pending.pop_front().expect("checked above");
                log::warn!("writeback capture of frame {} dropped: {e}", p.frame);
                return Err(KmsError::Device(e));
            }
            s.finish_front()?;
        }
    }
}

impl FlipExtension for WritebackCapture {
    fn extend(
        &mut self,
        display: &Display,
        _frame: u64,
        request: &mut AtomicRequest<'_>,
        flags: &mut CommitFlags,
    ) -> Result<(), KmsError> {
        self.add(display, request, flags)
    }

    fn committed(&mut self, display: &Display, frame: u64, outcome: &mut CommitOutcome) {
        self.committed_flip(display, frame, outcome);
    }
}
