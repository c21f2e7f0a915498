//! `FenceArray`: one fence standing for many (`dma_fence_array`).
//!
//! Locking: the kind holds its member list immutably; progress is one atomic
//! (pending count) and a [`FirstFailure`] record (a leaf mutex, taken only
//! for a failed member). Enabling signaling adds one callback per member
//! (each member's list lock, one at a time); the last callback (or the first,
//! with `signal_on_any`) signals the array fence with no lock held.
//!
//! Errors (the rule of `docs/fences.md`): an all-array ends when every member
//! has, with the error of the member that ended first among the failed ones
//! (the kernel's array keeps the first error too); an any-array ends with its
//! first member, with that member's status. A failure preset at creation
//! (what `unwrap_merge` knows of members it dropped) counts as a member that
//! ended at the preset's time.

use std::any::Any;

use super::failure::{Failure, FirstFailure};
use super::{Fence, FenceError, FenceKind};
use crate::sync::{AtomicUsize, Ordering};

/// The kind of an array fence: signaled when all (or, with `signal_on_any`,
/// any) of its member fences are, carrying the first member error.
pub struct FenceArray {
    fences: Vec<Fence>,
    signal_on_any: bool,
    pending: AtomicUsize,
    /// A failure known at creation (members merged away), if any.
    preset: Option<Failure>,
    first: FirstFailure,
}

impl std::fmt::Debug for FenceArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceArray")
            .field("fences", &self.fences)
            .field("signal_on_any", &self.signal_on_any)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .field("preset", &self.preset.map(|p| p.error))
            .finish()
    }
}

impl FenceArray {
    /// Creates an array fence over `fences` on `context`/`seqno`
    /// (`dma_fence_array_create`). An empty array is signaled at once.
    pub fn create(fences: Vec<Fence>, context: u64, seqno: u64, signal_on_any: bool) -> Fence {
        FenceArray::create_with(fences, context, seqno, signal_on_any, None)
    }

    /// [`create`](FenceArray::create) with a failure that counts as a member
    /// that ended (with that error, at that time) before the array was made.
    /// An empty array with a preset is signaled at once with it, timestamped
    /// at the preset's time.
    pub(crate) fn create_with(
        fences: Vec<Fence>,
        context: u64,
        seqno: u64,
        signal_on_any: bool,
        preset: Option<Failure>,
    ) -> Fence {
        let n = fences.len();
        // A preset failure ended before any member: an any-array is decided.
        let decided = n == 0 || (signal_on_any && preset.is_some());
        let kind = FenceArray {
            fences,
            signal_on_any,
            pending: AtomicUsize::new(if signal_on_any { n.min(1) } else { n }),
            preset,
            first: FirstFailure::new(preset),
        };
        let fence = Fence::new(std::sync::Arc::new(kind), context, seqno);
        if decided {
            match preset {
                Some(p) => {
                    fence.set_error(p.error);
                    let _ = fence.signal_timestamp(p.instant());
                }
                None => {
                    let _ = fence.signal();
                }
            }
        }
        fence
    }

    /// The member fences.
    pub fn fences(&self) -> &[Fence] {
        &self.fences
    }

    /// Whether the array signals when any member does (else when all do).
    pub fn signal_on_any(&self) -> bool {
        self.signal_on_any
    }

    /// The failure preset at creation (see [`FenceArray::create_with`]).
    pub(crate) fn preset(&self) -> Option<Failure> {
        self.preset
    }

    /// Member `rank` ended (its callback, or found signaled when enabling).
    fn member_done(&self, array: &Fence, member: &Fence, rank: u64) {
        if self.signal_on_any {
            // The first member to end decides the array.
            if self
                .pending
                .compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.finish_with(array, Failure::of(member, rank));
            }
            return;
        }
        self.first.note(Failure::of(member, rank));
        let prev = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
        if prev == Ok(1) {
            self.finish_with(array, self.first.get());
        }
    }

    fn finish_with(&self, array: &Fence, failure: Option<Failure>) {
        let _ = match failure {
            Some(f) => array.signal_with_error(f.error),
            None => array.signal(),
        };
    }

    /// An any-array whose members are found ended: the first one decides.
    fn finish_any(&self, array: &Fence) -> bool {
        let ended = self
            .fences
            .iter()
            .enumerate()
            .filter(|(_, m)| m.test_signaled_flag())
            .min_by_key(|(i, m)| (m.stamp().unwrap_or(0), *i));
        match ended {
            Some((i, m)) => {
                self.member_done(array, m, i as u64);
                true
            }
            None => false,
        }
    }
}

impl FenceKind for FenceArray {
    fn driver_name(&self) -> &str {
        "dma_fence_array"
    }

    fn timeline_name(&self) -> &str {
        "unbound"
    }

    fn enable_signaling(&self, fence: &Fence) -> Result<(), FenceError> {
        // An any-array with members already ended: the earliest decides.
        if self.signal_on_any && self.finish_any(fence) {
            return Ok(());
        }
        for (i, member) in self.fences.iter().enumerate() {
            let (array, rank) = (fence.clone(), i as u64);
            let added = member.add_callback(move |m| {
                if let Some(a) = array.kind_as::<FenceArray>() {
                    a.member_done(&array, m, rank);
                }
            });
            if added.is_err() {
                self.member_done(fence, member, rank);
            }
        }
        Ok(())
    }

    fn poll_signaled(&self, fence: &Fence) -> bool {
        if self.signal_on_any {
            if self.fences.iter().any(Fence::is_signaled) {
                self.finish_any(fence);
                return true;
            }
            return false;
        }
        if !self.fences.iter().all(Fence::is_signaled) {
            return false;
        }
        for (i, m) in self.fences.iter().enumerate() {
            self.first.note(Failure::of(m, i as u64));
        }
        self.finish_with(fence, self.first.get());
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
