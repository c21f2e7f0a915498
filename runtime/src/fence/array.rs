//! `FenceArray`: one fence standing for many (`dma_fence_array`).
//!
//! Locking: the kind holds its member list immutably; progress is two
//! atomics (pending count, first error). Enabling signaling adds one callback
//! per member (each member's list lock, one at a time); the last callback (or
//! the first, with `signal_on_any`) signals the array fence with no lock held.

use std::any::Any;

use super::{Fence, FenceError, FenceKind};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// The kind of an array fence: signaled when all (or, with `signal_on_any`,
/// any) of its member fences are, carrying the first member error.
pub struct FenceArray {
    fences: Vec<Fence>,
    signal_on_any: bool,
    pending: AtomicUsize,
    error: AtomicU64,
}

impl std::fmt::Debug for FenceArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceArray")
            .field("fences", &self.fences)
            .field("signal_on_any", &self.signal_on_any)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl FenceArray {
    /// Creates an array fence over `fences` on `context`/`seqno`
    /// (`dma_fence_array_create`). An empty array is signaled at once.
    pub fn create(fences: Vec<Fence>, context: u64, seqno: u64, signal_on_any: bool) -> Fence {
        let n = fences.len();
        let empty = n == 0;
        let kind = FenceArray {
            fences,
            signal_on_any,
            pending: AtomicUsize::new(if signal_on_any { n.min(1) } else { n }),
            error: AtomicU64::new(0),
        };
        let fence = Fence::new(std::sync::Arc::new(kind), context, seqno);
        if empty {
            let _ = fence.signal();
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

    fn note_error(&self, member: &Fence) {
        if let Some(e) = member.error() {
            let _ = self
                .error
                .compare_exchange(0, e.encode(), Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn member_done(&self, array: &Fence, member: &Fence) {
        self.note_error(member);
        let prev = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
        if prev == Ok(1) {
            self.finish(array);
        }
    }

    fn finish(&self, array: &Fence) {
        let _ = match FenceError::decode(self.error.load(Ordering::Acquire)) {
            Some(e) => array.signal_with_error(e),
            None => array.signal(),
        };
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
        for member in &self.fences {
            let array = fence.clone();
            let added = member.add_callback(move |m| {
                if let Some(a) = array.kind_as::<FenceArray>() {
                    a.member_done(&array, m);
                }
            });
            if added.is_err() {
                self.member_done(fence, member);
            }
        }
        Ok(())
    }

    fn poll_signaled(&self, fence: &Fence) -> bool {
        let done = if self.signal_on_any {
            self.fences.iter().any(Fence::is_signaled)
        } else {
            self.fences.iter().all(Fence::is_signaled)
        };
        if done {
            for m in self.fences.iter().filter(|m| m.test_signaled_flag()) {
                self.note_error(m);
            }
            self.finish(fence);
        }
        done
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
