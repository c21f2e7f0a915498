//! Extra state on every flip commit: a writeback capture, another plane,
//! a property the presenter does not know. The presenter builds each flip
//! (primary plane, fences, the first modeset) and lets its extension add
//! to the same atomic request, so both land in the same vblank.
//!
//! Locking: the extension is called on the presenter's thread, under no
//! lock, during [`Presenter::present`](crate::Presenter::present) or
//! [`Presenter::dispatch`](crate::Presenter::dispatch).

use bufsync_backends::kms::{AtomicRequest, CommitFlags, CommitOutcome, Display, KmsError};

/// Adds to every flip commit. See the module docs.
pub trait FlipExtension: Send {
    /// Called with the flip request of frame `frame` before it is
    /// committed. It may set properties, ask for out-fences, set
    /// `flags.allow_modeset` (it then gets a modeset), and wait (bounded)
    /// for its own earlier work. An error fails the flip (nothing is
    /// committed; the frame is dropped).
    fn extend(
        &mut self,
        display: &Display,
        frame: u64,
        request: &mut AtomicRequest<'_>,
        flags: &mut CommitFlags,
    ) -> Result<(), KmsError>;

    /// Called after the commit of frame `frame` succeeded, with what it gave
    /// back (take the out-fences it asked for).
    fn committed(&mut self, display: &Display, frame: u64, outcome: &mut CommitOutcome);

    /// Called when the commit of frame `frame` was refused.
    fn failed(&mut self, frame: u64) {
        let _ = frame;
    }
}
