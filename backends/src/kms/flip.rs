//! Flips: the atomic request that puts a framebuffer on the primary plane
//! (with IN_FENCE_FD / OUT_FENCE_PTR), non-blocking commits with page-flip
//! events, EBUSY handled by waiting for the previous flip, and TEST_ONLY
//! validation. The in-fence is a checked [`SyncFile`]; one that has
//! already failed (a kernel error, or an error a merge carried) is refused
//! ([`KmsError::InFenceFailed`]): the kernel's IN_FENCE_FD wait ignores
//! errors and would show the frame.
//!
//! Locking: commits and event reads take `&mut Display` (see the device
//! module); the kernel serializes commits per CRTC.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bufsync::fence::FenceStatus;

use super::commit::{AtomicRequest, CommitFlags, CommitOutcome};
use super::device::Display;
use super::error::KmsError;
use super::events::{read_flip_events, FlipEvent};
use super::framebuffer::Framebuffer;
use crate::dmabuf::{DmaBuf, Layout};
use crate::drm::{DrmDevice, GemHandle};
use crate::sync_file::SyncFile;

/// How many times a commit that got EBUSY is tried in all.
const BUSY_ATTEMPTS: u32 = 4;
/// How long one EBUSY retry waits for the previous flip.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// One frame for the primary plane.
#[derive(Debug, Clone, Copy)]
pub struct FlipRequest<'a> {
    /// The framebuffer to show (imported on this display).
    pub fb: &'a Framebuffer,
    /// A sync_file the scanout must wait for (`IN_FENCE_FD`); only
    /// borrowed: the caller keeps (and closes) it. A raw fd becomes one
    /// through [`SyncFile::from_borrowed`] (checked once, at that boundary).
    pub in_fence: Option<&'a SyncFile>,
    /// Ask for an out-fence (`OUT_FENCE_PTR`): signaled when the frame is
    /// on screen.
    pub want_out_fence: bool,
    /// Return at once (`DRM_MODE_ATOMIC_NONBLOCK`); completion comes as a
    /// page-flip event, read by [`Display::wait_flip`].
    pub nonblock: bool,
}

impl<'a> FlipRequest<'a> {
    /// A blocking flip of `fb` with no fences.
    pub fn new(fb: &'a Framebuffer) -> Self {
        Self {
            fb,
            in_fence: None,
            want_out_fence: false,
            nonblock: false,
        }
    }
}

/// Refuses an in-fence that has already failed (kernel error or carried):
/// the frame it guards is not complete, and the kernel's wait for
/// IN_FENCE_FD would not say so.
fn check_in_fence(fence: &SyncFile) -> Result<(), KmsError> {
    match fence.status()? {
        FenceStatus::Error(e) => Err(KmsError::InFenceFailed(e)),
        FenceStatus::Pending | FenceStatus::Signaled => match fence.carried_error() {
            Some(e) => Err(KmsError::InFenceFailed(e)),
            None => Ok(()),
        },
    }
}

impl Display {
    /// Imports `buf` (from any device: PRIME) as a framebuffer with the
    /// layout it carries; [`KmsError::MissingLayout`] when it has none.
    /// An unsupported format, modifier, stride or size is refused with a
    /// typed error before the kernel is asked.
    pub fn import_framebuffer(&self, buf: &DmaBuf) -> Result<Framebuffer, KmsError> {
        let layout = buf.layout().ok_or(KmsError::MissingLayout)?;
        self.import_framebuffer_as(buf, layout)
    }

    /// A framebuffer over a GEM handle of this display's own fd (a dumb
    /// buffer made on [`device`](Display::device), or an import through
    /// it) with `layout`, checked like an import (`size`: the buffer's
    /// bytes). The framebuffer holds a reference of the handle, so the
    /// buffer may be dropped before it.
    pub fn add_framebuffer(
        &self,
        gem: &GemHandle,
        size: u64,
        layout: &Layout,
    ) -> Result<Framebuffer, KmsError> {
        if !std::sync::Arc::ptr_eq(gem.device(), &self.dev) {
            return Err(KmsError::ForeignHandle {
                handle: gem.raw(),
                driver: gem.device().driver().to_owned(),
            });
        }
        super::framebuffer::check_layout(
            self.output.plane,
            &self.formats,
            self.max_fb,
            size,
            layout,
        )?;
        Framebuffer::add(&self.dev, gem, layout)
    }

    /// The display's DRM device (its fd, its GEM handle table).
    pub fn device(&self) -> &std::sync::Arc<DrmDevice> {
        &self.dev
    }

    /// Imports `buf` as a framebuffer with an explicit `layout`.
    pub fn import_framebuffer_as(
        &self,
        buf: &DmaBuf,
        layout: &Layout,
    ) -> Result<Framebuffer, KmsError> {
        Framebuffer::import(
            &self.dev,
            self.output.plane,
            &self.formats,
            self.max_fb,
            buf,
            layout,
        )
    }

    /// Builds the atomic request and flags for `req` without committing:
    /// primary plane `FB_ID`, `CRTC_ID`, `SRC_*` (16.16) and `CRTC_*` (the
    /// framebuffer clipped to the mode), `IN_FENCE_FD`, `OUT_FENCE_PTR`;
    /// the first commit also sets the mode (`MODE_ID`, `ACTIVE`, connector
    /// `CRTC_ID`) with ALLOW_MODESET. Non-blocking requests ask for a
    /// page-flip event. Refuses a framebuffer of another device and an
    /// in-fence that has already failed ([`KmsError::InFenceFailed`]).
    pub fn flip_request<'a>(
        &self,
        req: &FlipRequest<'a>,
    ) -> Result<(AtomicRequest<'a>, CommitFlags), KmsError> {
        if !req.fb.is_on(&self.dev) {
            return Err(KmsError::ForeignFramebuffer { fb: req.fb.id() });
        }
        let (mw, mh) = self.size();
        let (w, h) = (req.fb.width().min(mw), req.fb.height().min(mh));
        let p = &self.props.plane;
        let plane = self.output.plane;
        let crtc = self.output.crtc;
        let mut atomic = AtomicRequest::new();
        atomic
            .set(plane, p.fb_id, u64::from(req.fb.id()))
            .set(plane, p.crtc_id, u64::from(crtc))
            .set(plane, p.src[0], 0)
            .set(plane, p.src[1], 0)
            .set(plane, p.src[2], u64::from(w) << 16)
            .set(plane, p.src[3], u64::from(h) << 16)
            .set(plane, p.dst[0], 0)
            .set(plane, p.dst[1], 0)
            .set(plane, p.dst[2], u64::from(w))
            .set(plane, p.dst[3], u64::from(h));
        if let Some(fence) = req.in_fence {
            check_in_fence(fence)?;
            let prop = p.in_fence_fd.ok_or(KmsError::MissingProperty {
                object: plane,
                name: "IN_FENCE_FD",
            })?;
            atomic.in_fence(plane, prop, fence);
        }
        if req.want_out_fence {
            let prop = self
                .props
                .crtc
                .out_fence_ptr
                .ok_or(KmsError::MissingProperty {
                    object: crtc,
                    name: "OUT_FENCE_PTR",
                })?;
            atomic.out_fence(crtc, prop);
        }
        let mut flags = CommitFlags {
            nonblock: req.nonblock,
            page_flip_event: req.nonblock,
            ..Default::default()
        };
        if !self.configured {
            atomic
                .set(crtc, self.props.crtc.active, 1)
                .set(crtc, self.props.crtc.mode_id, self.mode_blob)
                .set(
                    self.output.connector,
                    self.props.connector_crtc_id,
                    u64::from(crtc),
                );
            if let (Some(wb), Some(wb_conn)) = (&self.props.writeback, self.output.writeback) {
                atomic.set(wb_conn, wb.crtc_id, 0);
            }
            flags.allow_modeset = true;
        }
        Ok((atomic, flags))
    }

    /// Commits `req`. A non-blocking commit that meets EBUSY (the previous
    /// flip still pending) waits for that flip's event (at most 1 s a try)
    /// and tries again, up to 4 times in all; [`KmsError::Busy`] when it is
    /// still busy then, or at once when the previous flip does not complete
    /// within its wait (a flip held by its in-fence: more tries would only
    /// wait the same way). Returns the out-fence when one was asked for.
    pub fn commit(&mut self, req: FlipRequest<'_>) -> Result<Option<SyncFile>, KmsError> {
        let (atomic, flags) = self.flip_request(&req)?;
        let mut outcome = self.commit_request(&atomic, flags)?;
        Ok(outcome.take(self.output.crtc))
    }

    /// Commits a request built with [`Display::flip_request`] (and extended
    /// by the caller: a writeback capture, another plane), retrying EBUSY as
    /// [`Display::commit`] does: each retry waits for the previous flip's
    /// event, i.e. the next vblank ([`Display::busy_retries`] counts them).
    /// A commit with ALLOW_MODESET marks the display configured.
    pub fn commit_request(
        &mut self,
        atomic: &AtomicRequest<'_>,
        flags: CommitFlags,
    ) -> Result<CommitOutcome, KmsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit_atomic(atomic, flags) {
                Ok(outcome) => {
                    if flags.allow_modeset {
                        self.configured = true;
                    }
                    return Ok(outcome);
                }
                Err(KmsError::Commit { source, .. })
                    if source.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) =>
                {
                    if attempt >= BUSY_ATTEMPTS {
                        return Err(KmsError::Busy { attempts: attempt });
                    }
                    self.busy_retries += 1;
                    log::debug!("commit busy (attempt {attempt}); waiting for the previous flip");
                    if self.pending_flip {
                        match self.wait_flip(BUSY_WAIT) {
                            Ok(_) => {}
                            Err(KmsError::TimedOut { .. }) => {
                                return Err(KmsError::Busy { attempts: attempt })
                            }
                            Err(e) => return Err(e),
                        }
                    } else {
                        // Busy with a commit we did not ask an event for:
                        // drain events for up to a frame or two.
                        read_flip_events(&self.dev, self.frame_time() * 2)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Validates `req` with `DRM_MODE_ATOMIC_TEST_ONLY`: nothing changes,
    /// no out-fence and no event are made. [`KmsError::TestFailed`] when
    /// the kernel would refuse it.
    pub fn test_commit(&self, req: FlipRequest<'_>) -> Result<(), KmsError> {
        let (atomic, mut flags) = self.flip_request(&req)?;
        flags.test_only = true;
        flags.nonblock = false;
        flags.page_flip_event = false;
        atomic.commit(self.dev.as_fd(), flags).map(drop)
    }

    /// Commits a raw request on this display's fd, with no retry. A
    /// successful non-TEST_ONLY commit with a page-flip event marks a flip
    /// pending (read it with [`Display::wait_flip`]); any successful
    /// non-TEST_ONLY commit makes drop restore the state found at open.
    pub fn commit_atomic(
        &mut self,
        req: &AtomicRequest<'_>,
        flags: CommitFlags,
    ) -> Result<CommitOutcome, KmsError> {
        let outcome = req.commit(self.dev.as_fd(), flags)?;
        if !flags.test_only {
            self.dirty = true;
            if flags.page_flip_event {
                self.pending_flip = true;
            }
        }
        Ok(outcome)
    }

    /// How many commits met EBUSY and were tried again after the previous
    /// flip (the next vblank), since open.
    pub fn busy_retries(&self) -> u64 {
        self.busy_retries
    }

    /// Whether a non-blocking flip's event is still to be read.
    pub fn has_pending_flip(&self) -> bool {
        self.pending_flip
    }

    /// Waits (at most `timeout`) for the pending flip's event: `Ok(None)`
    /// when no flip is pending, [`KmsError::TimedOut`] when it does not
    /// come in time (it stays pending).
    pub fn wait_flip(&mut self, timeout: Duration) -> Result<Option<FlipEvent>, KmsError> {
        if !self.pending_flip {
            return Ok(None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            for ev in read_flip_events(&self.dev, left)? {
                if ev.crtc == self.output.crtc {
                    self.pending_flip = false;
                    return Ok(Some(ev));
                }
                log::debug!("flip event for CRTC {} ignored", ev.crtc);
            }
            if left.is_zero() || Instant::now() >= deadline {
                return Err(KmsError::TimedOut {
                    what: "page-flip event",
                });
            }
        }
    }

    /// One refresh period of the mode (16.7 ms when the mode has none).
    pub fn frame_time(&self) -> Duration {
        match self.mode.vrefresh() {
            0 => Duration::from_micros(16_667),
            hz => Duration::from_secs(1) / hz,
        }
    }
}
