//! `FenceChain`: timeline points (`dma_fence_chain`).
//!
//! A chain point is a fence of kind [`FenceChain`] holding one contained
//! fence and the previous point. A point is signaled when its fence and every
//! fence before it are. Walking the chain collects signaled links: a link
//! whose contained fence has signaled is unlinked from the point after it.
//!
//! Locking: each link's `prev` pointer is behind a small `Mutex`, held only
//! to read or swap the pointer (the kernel's RCU cmpxchg): never while a
//! fence is polled, signaled or dropped, and never two at once. Dropping a
//! long chain unlinks iteratively (no deep recursion).
//!
//! Lifetime: an armed point (one with a waiter or callback) keeps itself
//! alive through the callback it hangs on the fence it waits for, until that
//! fence signals, as in the kernel. Every fence must signal in finite time.
//!
//! Errors: unlike the kernel, a point carries the first error of the fences
//! before it. A collected link hands its error (its contained fence's, or
//! one it inherited) to the link that collects it, so errors move forward as
//! the chain is walked. Best effort under concurrent walks of one chain: an
//! error recorded on a link after another thread collected it can be lost.

use std::any::Any;

use super::handle::seqno_is_later;
use super::{alloc_contexts, AlreadySignaled, Fence, FenceError, FenceKind};
use crate::sync::{AtomicU64, Mutex, Ordering};

/// Errors of chain look-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ChainError {
    /// The point asked for is beyond the head of the chain (`-EINVAL`).
    #[error("timeline point {point} is beyond the chain head {head}")]
    BeyondHead {
        /// The point asked for.
        point: u64,
        /// The seqno of the head.
        head: u64,
    },
    /// The fence is not a chain point (`-EINVAL`).
    #[error("fence {context}:{seqno} is not a chain point")]
    NotAChain {
        /// Context of the fence.
        context: u64,
        /// Seqno of the fence.
        seqno: u64,
    },
    /// A new point must be later than the head.
    #[error("timeline point {point} is not after the head {head}")]
    NotLater {
        /// The point that was pushed.
        point: u64,
        /// The seqno of the head.
        head: u64,
    },
}

/// The kind of a chain point (`struct dma_fence_chain`).
pub struct FenceChain {
    prev: Mutex<Option<Fence>>,
    prev_seqno: u64,
    fence: Fence,
    /// First error seen among contained fences while arming (0 = none).
    error: AtomicU64,
}

impl std::fmt::Debug for FenceChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceChain")
            .field("prev_seqno", &self.prev_seqno)
            .field("fence", &self.fence)
            .finish()
    }
}

impl FenceChain {
    /// Creates a chain point for `fence` after `prev` (`dma_fence_chain_init`).
    ///
    /// If `prev` is a chain point and `seqno` is later than it, the point
    /// joins `prev`'s context; otherwise it gets a new context, and its seqno
    /// is raised to `prev`'s if `prev` is a chain point (as the kernel does).
    pub fn create(prev: Option<&Fence>, fence: Fence, seqno: u64) -> Fence {
        let prev_chain = prev.filter(|p| p.kind_as::<FenceChain>().is_some());
        let (context, seqno, prev_seqno) = match prev_chain {
            Some(p) if seqno_is_later(seqno, p.seqno(), true) => (p.context(), seqno, p.seqno()),
            Some(p) => (alloc_contexts(1), seqno.max(p.seqno()), 0),
            None => (alloc_contexts(1), seqno, 0),
        };
        let kind = FenceChain {
            prev: Mutex::new(prev.cloned()),
            prev_seqno,
            fence,
            error: AtomicU64::new(0),
        };
        Fence::new(std::sync::Arc::new(kind), context, seqno)
    }

    /// The contained fence of this point (`dma_fence_chain_contained`).
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The seqno of the point this one was added after (0 for none or a
    /// point that started a new context).
    pub fn prev_seqno(&self) -> u64 {
        self.prev_seqno
    }

    /// The contained fence of `f` if it is a chain point, else `f` itself.
    pub fn contained(f: &Fence) -> Fence {
        match f.kind_as::<FenceChain>() {
            Some(link) => link.fence.clone(),
            None => f.clone(),
        }
    }

    fn get_prev(&self) -> Option<Fence> {
        self.prev.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces `prev` with `replacement` if it is still `expected`
    /// (the kernel's cmpxchg). The old value is dropped unlocked.
    fn swap_prev(&self, expected: &Fence, replacement: Option<Fence>) {
        let old = {
            let mut g = self.prev.lock().unwrap_or_else(|e| e.into_inner());
            match g.as_ref() {
                Some(cur) if cur.ptr_eq(expected) => std::mem::replace(&mut *g, replacement),
                _ => None,
            }
        };
        drop(old);
    }

    /// The next unsignaled element before `point` (`dma_fence_chain_walk`),
    /// unlinking signaled links on the way. `None` when `point` is not a chain
    /// point or nothing unsignaled is left before it. Takes link locks one at
    /// a time.
    pub fn walk(point: &Fence) -> Option<Fence> {
        let link = point.kind_as::<FenceChain>()?;
        loop {
            let prev = link.get_prev()?;
            let replacement = match prev.kind_as::<FenceChain>() {
                Some(prev_link) => {
                    if !prev_link.fence.is_signaled() {
                        return Some(prev);
                    }
                    // Errors of collected links move forward to this one.
                    link.note_error(&prev_link.fence);
                    link.inherit_error(prev_link);
                    prev_link.get_prev()
                }
                None => {
                    if !prev.is_signaled() {
                        return Some(prev);
                    }
                    link.note_error(&prev);
                    None
                }
            };
            link.swap_prev(&prev, replacement);
        }
    }

    /// Iterates from `head` over the unsignaled elements of its chain
    /// (`dma_fence_chain_for_each`): `head` first, then what [`walk`](FenceChain::walk) gives.
    pub fn iter(head: &Fence) -> ChainIter {
        ChainIter {
            next: Some(head.clone()),
        }
    }

    /// Finds the point to wait on for timeline point `seqno`
    /// (`dma_fence_chain_find_seqno`): the earliest unsignaled point whose
    /// wait covers `seqno`, `Ok(None)` if everything up to `seqno` has
    /// signaled, `Ok(Some(head))` for `seqno == 0`; an error if `head` is not
    /// a chain point or `seqno` is beyond it.
    pub fn find_seqno(head: &Fence, seqno: u64) -> Result<Option<Fence>, ChainError> {
        if seqno == 0 {
            return Ok(Some(head.clone()));
        }
        if head.kind_as::<FenceChain>().is_none() {
            return Err(ChainError::NotAChain {
                context: head.context(),
                seqno: head.seqno(),
            });
        }
        if head.seqno() < seqno {
            return Err(ChainError::BeyondHead {
                point: seqno,
                head: head.seqno(),
            });
        }
        for f in FenceChain::iter(head) {
            let prev_seqno = f.kind_as::<FenceChain>().map_or(0, |l| l.prev_seqno);
            if f.context() != head.context() || prev_seqno < seqno {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    fn note_error(&self, f: &Fence) {
        if let Some(e) = f.error() {
            let _ = self
                .error
                .compare_exchange(0, e.encode(), Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The first error this link took over from collected links before it.
    pub(crate) fn inherited_error(&self) -> Option<FenceError> {
        FenceError::decode(self.error.load(Ordering::Acquire))
    }

    fn inherit_error(&self, from: &FenceChain) {
        let e = from.error.load(Ordering::Acquire);
        if e != 0 {
            let _ = self
                .error
                .compare_exchange(0, e, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn finish(&self, point: &Fence) {
        self.note_error(&self.fence);
        let _ = match FenceError::decode(self.error.load(Ordering::Acquire)) {
            Some(e) => point.signal_with_error(e),
            None => point.signal(),
        };
    }

    /// Hangs one callback on the first unsignaled contained fence at or
    /// before `point`; true if one was hung, false if all have signaled
    /// (the kernel's `dma_fence_chain_enable_signaling`).
    fn arm(point: &Fence) -> bool {
        let Some(link) = point.kind_as::<FenceChain>() else {
            return false;
        };
        for f in FenceChain::iter(point) {
            let contained = FenceChain::contained(&f);
            let p = point.clone();
            let hung = contained.add_callback(move |_| {
                if !FenceChain::arm(&p) {
                    if let Some(l) = p.kind_as::<FenceChain>() {
                        l.finish(&p);
                    }
                }
            });
            match hung {
                Ok(_) => return true,
                Err(AlreadySignaled) => link.note_error(&contained),
            }
        }
        false
    }
}

impl FenceKind for FenceChain {
    fn driver_name(&self) -> &str {
        "dma_fence_chain"
    }

    fn timeline_name(&self) -> &str {
        "unbound"
    }

    fn enable_signaling(&self, fence: &Fence) -> Result<(), FenceError> {
        if !FenceChain::arm(fence) {
            self.finish(fence);
        }
        Ok(())
    }

    fn poll_signaled(&self, fence: &Fence) -> bool {
        for f in FenceChain::iter(fence) {
            let contained = FenceChain::contained(&f);
            if !contained.is_signaled() {
                return false;
            }
            self.note_error(&contained);
        }
        self.finish(fence);
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for FenceChain {
    fn drop(&mut self) {
        // Unlink iteratively: dropping the last handle of a long chain must
        // not recurse once per link.
        let mut next = self
            .prev
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        while let Some(f) = next {
            if f.strong_count() != 1 {
                break;
            }
            next = match f.kind_as::<FenceChain>() {
                Some(link) => link.prev.lock().unwrap_or_else(|e| e.into_inner()).take(),
                None => None,
            };
            drop(f);
        }
    }
}

/// Iterator over a chain's unsignaled elements (see [`FenceChain::iter`]).
#[derive(Debug)]
pub struct ChainIter {
    next: Option<Fence>,
}

impl Iterator for ChainIter {
    type Item = Fence;
    fn next(&mut self) -> Option<Fence> {
        let cur = self.next.take()?;
        self.next = FenceChain::walk(&cur);
        Some(cur)
    }
}

/// A timeline built from chain points: the head and a push operation
/// (what a `drm_syncobj` timeline holds).
#[derive(Debug, Default, Clone)]
pub struct FenceTimeline {
    head: Option<Fence>,
}

impl FenceTimeline {
    /// An empty timeline.
    pub fn new() -> FenceTimeline {
        FenceTimeline { head: None }
    }

    /// The latest point, if any.
    pub fn head(&self) -> Option<&Fence> {
        self.head.as_ref()
    }

    /// Adds `fence` as point `seqno`, which must be later than the head.
    /// Returns the new point.
    pub fn push(&mut self, fence: Fence, seqno: u64) -> Result<Fence, ChainError> {
        if let Some(h) = &self.head {
            if !seqno_is_later(seqno, h.seqno(), true) {
                return Err(ChainError::NotLater {
                    point: seqno,
                    head: h.seqno(),
                });
            }
        }
        let point = FenceChain::create(self.head.as_ref(), fence, seqno);
        self.head = Some(point.clone());
        Ok(point)
    }

    /// The point to wait on for `seqno` (see [`FenceChain::find_seqno`]);
    /// `Ok(None)` once it has signaled. An empty timeline has signaled
    /// everything up to 0 and nothing beyond.
    pub fn find(&self, seqno: u64) -> Result<Option<Fence>, ChainError> {
        match &self.head {
            Some(h) => FenceChain::find_seqno(h, seqno),
            None if seqno == 0 => Ok(None),
            None => Err(ChainError::BeyondHead {
                point: seqno,
                head: 0,
            }),
        }
    }
}
