//! The first error of a set of fences: the one rule every combinator and
//! wait of the runtime follows (see `docs/fences.md`, "Errors").
//!
//! A wait for, or a fence standing for, a set of fences ends once every
//! member has ended, and reports the error of the member that ended first
//! among those that failed. Members end at their signal timestamps; ties go
//! to the member listed first. (Chain points, which end in point order, use
//! the point order instead: see `chain.rs`.)
//!
//! Locking: [`FirstFailure`] is a leaf `Mutex` taken only when a failed
//! member is noted or a failure is read back after one was noted; the
//! clean path reads one atomic flag. It is taken inside fence callbacks (the
//! signal path) and never held while anything else is locked or called.

use super::handle::instant_of;
use super::{Fence, FenceError};
use crate::sync::{AtomicBool, Mutex, Ordering};

/// One failed member: its error, when it ended and its place in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) error: FenceError,
    /// The member's signal timestamp (`handle::stamp_of` units).
    pub(crate) at: u64,
    /// The member's place in its set: breaks ties between equal timestamps.
    pub(crate) rank: u64,
}

impl Failure {
    /// The failure of `f` if it has signaled with an error. No lock.
    pub(crate) fn of(f: &Fence, rank: u64) -> Option<Failure> {
        if !f.test_signaled_flag() {
            return None;
        }
        let error = f.error()?;
        Some(Failure {
            error,
            at: f.stamp().unwrap_or(0),
            rank,
        })
    }

    /// The earlier of two failures (by time, then by rank).
    pub(crate) fn first(a: Option<Failure>, b: Option<Failure>) -> Option<Failure> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if (b.at, b.rank) < (a.at, a.rank) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }

    /// The instant the failed member ended.
    pub(crate) fn instant(&self) -> std::time::Instant {
        instant_of(self.at)
    }

    /// A fence signaled with this failure's error at its time, on `context`.
    pub(crate) fn fence(&self, context: u64, seqno: u64) -> Fence {
        let f = Fence::software(context, seqno);
        f.set_error(self.error);
        let _ = f.signal_timestamp(self.instant());
        f
    }
}

/// The first failure among `fences` (see [`Failure::of`]), ranked by
/// position. No lock.
pub(crate) fn first_of<'a>(fences: impl IntoIterator<Item = &'a Fence>) -> Option<Failure> {
    fences.into_iter().enumerate().fold(None, |acc, (i, f)| {
        Failure::first(acc, Failure::of(f, i as u64))
    })
}

/// A first-failure record shared by the callbacks of a combinator.
pub(crate) struct FirstFailure {
    any: AtomicBool,
    slot: Mutex<Option<Failure>>,
}

impl FirstFailure {
    /// A record holding `preset` (a failure known before any member ends).
    pub(crate) fn new(preset: Option<Failure>) -> FirstFailure {
        FirstFailure {
            any: AtomicBool::new(preset.is_some()),
            slot: Mutex::new(preset),
        }
    }

    /// Keeps `f` if it came before the failure recorded so far. Takes the
    /// record's mutex (a leaf).
    pub(crate) fn note(&self, f: Option<Failure>) {
        if f.is_none() {
            return;
        }
        let mut g = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        *g = Failure::first(*g, f);
        self.any.store(true, Ordering::Release);
    }

    /// The first failure noted. One atomic load when there is none; takes
    /// the record's mutex otherwise.
    pub(crate) fn get(&self) -> Option<Failure> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        *self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}
