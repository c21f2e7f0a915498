//! Fence contexts: a global allocator of timelines, each handing out
//! increasing seqnos (`dma_fence_context_alloc`).
//!
//! Locking: none; one global atomic counter and one atomic per context.
//!
//! Out-of-order signaling: the model assumes fences of one context signal in
//! seqno order (the kernel's contract). The runtime does not enforce it: a
//! producer that signals seqno 5 before 4 just has two signaled fences, but
//! every consumer that reasons per context may draw wrong conclusions in the
//! meantime: [`FenceSet`](super::FenceSet) and
//! [`unwrap_merge`](super::unwrap_merge) keep only the later fence of a context
//! and so would treat 4 as done once 5 is, and chain lookups stop at the first
//! unsignaled point. A producer that cannot keep order must use one context per
//! independent stream of work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::kind::{FenceKind, SoftwareKind};
use super::Fence;

/// Context 0 is reserved for stub fences; real contexts start at 1.
static NEXT_CONTEXT: AtomicU64 = AtomicU64::new(1);

/// Reserves `n` consecutive fence contexts and returns the first
/// (`dma_fence_context_alloc`). No lock; never returns 0.
pub fn alloc_contexts(n: u64) -> u64 {
    NEXT_CONTEXT.fetch_add(n.max(1), Ordering::Relaxed)
}

/// One timeline: a context id and an increasing seqno counter.
pub struct FenceContext {
    id: u64,
    next: AtomicU64,
    kind: Arc<SoftwareKind>,
}

impl std::fmt::Debug for FenceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceContext")
            .field("id", &self.id)
            .field("driver", &self.kind.driver_name())
            .field("timeline", &self.kind.timeline_name())
            .field("last_seqno", &self.next.load(Ordering::Relaxed))
            .finish()
    }
}

impl FenceContext {
    /// A new context with diagnostic names for its software fences.
    pub fn new(driver: &str, timeline: &str) -> FenceContext {
        FenceContext {
            id: alloc_contexts(1),
            next: AtomicU64::new(0),
            kind: Arc::new(SoftwareKind::new(driver, timeline)),
        }
    }

    /// The context id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next seqno (starting at 1, strictly increasing). No lock.
    pub fn next_seqno(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The last seqno handed out (0 if none).
    pub fn last_seqno(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// A new pending software fence on this context with the next seqno.
    pub fn create_fence(&self) -> Fence {
        let kind: Arc<dyn FenceKind> = self.kind.clone();
        Fence::new(kind, self.id, self.next_seqno())
    }

    /// A fence of another kind on this context with the next seqno.
    pub fn create_fence_of(&self, kind: Arc<dyn FenceKind>) -> Fence {
        Fence::new(kind, self.id, self.next_seqno())
    }
}
