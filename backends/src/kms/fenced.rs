//! Flips driven by runtime fences: the in-fence goes to the plane as
//! `IN_FENCE_FD` when it has a sync_file form (the display waits in
//! hardware), otherwise it is waited in software before the commit (the
//! design's fallback, e.g. lavapipe's CPU fences); the out-fence comes back
//! as a runtime [`Fence`] over the sync_file ([`SyncFileFence`]).
//!
//! Locking: `&mut Display` (commits). The software wait blocks only the
//! calling thread and holds no lock.

use std::time::Duration;

use bufsync::fence::{Fence, FenceError, WaitError};

use super::device::Display;
use super::error::KmsError;
use super::flip::FlipRequest;
use super::framebuffer::Framebuffer;
use crate::sync_file::{to_sync_file, SyncFileFence};

/// How a frame's in-fence reached the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFencePath {
    /// No in-fence, or it had already signaled: nothing to wait for.
    None,
    /// Given to the plane as `IN_FENCE_FD`: the display waited for it.
    Hardware,
    /// No sync_file form: waited on the CPU before the commit.
    Software,
}

/// A flip whose in-fence is a runtime fence.
#[derive(Debug, Clone, Copy)]
pub struct FencedFlip<'a> {
    /// The framebuffer to show.
    pub fb: &'a Framebuffer,
    /// What the frame must wait for (e.g. the render fence).
    pub in_fence: Option<&'a Fence>,
    /// Ask for an out-fence (signaled when the frame is on screen).
    pub want_out_fence: bool,
    /// Non-blocking commit (see [`FlipRequest::nonblock`]).
    pub nonblock: bool,
    /// Bound on the software wait for an in-fence without a sync_file.
    pub software_wait: Duration,
}

/// What a [`Display::commit_fenced`] did.
#[derive(Debug, Clone)]
pub struct FencedOutcome {
    /// Which way the in-fence was honoured.
    pub path: InFencePath,
    /// The out-fence as a runtime fence, when asked for.
    pub out_fence: Option<Fence>,
}

impl Display {
    /// Commits a flip that waits for a runtime fence: in hardware
    /// (`IN_FENCE_FD`) when the fence has a sync_file form, else in
    /// software (bounded by `software_wait`; [`KmsError::TimedOut`], the
    /// fence left pending). An in-fence that has already failed (a kernel
    /// error mirrored, or one its sync_file carries) is refused
    /// ([`KmsError::InFenceFailed`]): the frame it guards is not complete.
    pub fn commit_fenced(&mut self, flip: FencedFlip<'_>) -> Result<FencedOutcome, KmsError> {
        let mut path = InFencePath::None;
        let mut sync_file = None;
        if let Some(fence) = flip.in_fence {
            match to_sync_file(fence) {
                Ok(None) => {}
                Ok(Some(file)) => {
                    if let Some(e) = file.carried_error() {
                        return Err(KmsError::InFenceFailed(e));
                    }
                    path = InFencePath::Hardware;
                    sync_file = Some(file);
                }
                Err(crate::Error::NoSyncFile { driver }) => {
                    log::debug!(
                        "in-fence of `{driver}` has no sync_file form: waiting in software"
                    );
                    path = InFencePath::Software;
                    fence
                        .wait_timeout(flip.software_wait)
                        .map_err(|e| match e {
                            WaitError::TimedOut => KmsError::TimedOut {
                                what: "in-fence (software wait)",
                            },
                            WaitError::Cancelled => KmsError::InFenceFailed(FenceError::Cancelled),
                            WaitError::Fence(e) => KmsError::InFenceFailed(e),
                        })?;
                }
                Err(crate::Error::Fence(e)) => return Err(KmsError::InFenceFailed(e)),
                Err(e) => return Err(e.into()),
            }
        }
        let out = self.commit(FlipRequest {
            fb: flip.fb,
            in_fence: sync_file.as_ref(),
            want_out_fence: flip.want_out_fence,
            nonblock: flip.nonblock,
        })?;
        let out_fence = out.map(SyncFileFence::fence).transpose()?;
        Ok(FencedOutcome { path, out_fence })
    }
}
