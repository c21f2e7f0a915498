//! `FenceChain`: timeline points (`dma_fence_chain`).
//!
//! A chain point is a fence of kind [`FenceChain`] holding one contained
//! fence and the previous point. A point is signaled when its fence and every
//! fence before it are. Walking the chain collects signaled links: a link
//! whose contained fence has signaled is unlinked from the point after it.
//! [`FenceTimeline::push`] walks the new head's chain, as the kernel's
//! syncobj does when it adds a point, so a timeline holds its unsignaled
//! points (and what they keep alive), not its history.
//!
//! Locking: each link's `prev` pointer and its failure record are behind
//! one small `Mutex` (the link lock), held only to read or swap them (the
//! kernel's RCU cmpxchg): never while a fence is polled, signaled or
//! dropped, and never two at once. Dropping a long chain unlinks
//! iteratively (no deep recursion).
//!
//! Lifetime: an armed point (one with a waiter or callback) keeps itself
//! alive through the callback it hangs on the fence it waits for, until that
//! fence signals, as in the kernel. Every fence must signal in finite time.
//!
//! Errors (unlike the kernel, which drops them): points end in point order,
//! so a point carries the error of the earliest failed point at or before it
//! (the rule of `docs/fences.md`). A link that collects another takes over
//! its contained fence's failure and its record (both read under the
//! collected link's lock, the swap and the merge done under the collector's),
//! so no failure is lost to concurrent walks: a walker that read a link
//! before another collected past it still reaches what was collected.

use std::any::Any;

use super::handle::seqno_is_later;
use super::{alloc_contexts, AlreadySignaled, Fence, FenceError, FenceKind};
use crate::sync::Mutex;

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

/// A failed point: its error, the point (seqno on the chain's context; 0
/// for anything before the context began) and when its fence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainFailure {
    pub(crate) error: FenceError,
    pub(crate) point: u64,
    /// Signal timestamp of the failed fence (`handle::stamp_of` units).
    pub(crate) at: u64,
}

impl ChainFailure {
    /// The failure of `f` (signaled with an error), as point `point`.
    fn of(f: &Fence, point: u64) -> Option<ChainFailure> {
        super::failure::Failure::of(f, 0).map(|x| ChainFailure {
            error: x.error,
            point,
            at: x.at,
        })
    }

    /// The earlier in point order (then in time).
    fn first(a: Option<ChainFailure>, b: Option<ChainFailure>) -> Option<ChainFailure> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if (b.point, b.at) < (a.point, a.at) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }

    /// The earlier in time (then in point order).
    fn first_in_time(a: Option<ChainFailure>, b: Option<ChainFailure>) -> Option<ChainFailure> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if (b.at, b.point) < (a.at, a.point) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }

    /// As a set member's failure (for merges, which order by time).
    pub(crate) fn as_failure(&self) -> super::failure::Failure {
        super::failure::Failure {
            error: self.error,
            at: self.at,
            rank: self.point,
        }
    }
}

/// The failures a link took over from the points it collected or found
/// ended while arming (all at or before it): the first in point order (what
/// the chain reports) and the first in time (what a merge of the chain,
/// which orders its leaves by time, reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) by_point: Option<ChainFailure>,
    pub(crate) by_time: Option<ChainFailure>,
}

impl Failed {
    fn of(f: Option<ChainFailure>) -> Failed {
        Failed {
            by_point: f,
            by_time: f,
        }
    }

    fn merge(self, o: Failed) -> Failed {
        Failed {
            by_point: ChainFailure::first(self.by_point, o.by_point),
            by_time: ChainFailure::first_in_time(self.by_time, o.by_time),
        }
    }

    fn is_none(&self) -> bool {
        self.by_point.is_none()
    }

    /// The same failures, as points before this context began (point 0).
    fn before_context(self) -> Failed {
        let zero = |c: Option<ChainFailure>| c.map(|c| ChainFailure { point: 0, ..c });
        Failed {
            by_point: zero(self.by_point),
            by_time: zero(self.by_time),
        }
    }
}

/// What a link's lock guards.
struct Link {
    prev: Option<Fence>,
    failed: Failed,
}

/// The kind of a chain point (`struct dma_fence_chain`).
pub struct FenceChain {
    link: Mutex<Link>,
    prev_seqno: u64,
    fence: Fence,
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
        FenceChain::create_with(prev, fence, seqno, Failed::default())
    }

    fn create_with(prev: Option<&Fence>, fence: Fence, seqno: u64, failed: Failed) -> Fence {
        let prev_chain = prev.filter(|p| p.kind_as::<FenceChain>().is_some());
        let (context, seqno, prev_seqno) = match prev_chain {
            Some(p) if seqno_is_later(seqno, p.seqno(), true) => (p.context(), seqno, p.seqno()),
            Some(p) => (alloc_contexts(1), seqno.max(p.seqno()), 0),
            None => (alloc_contexts(1), seqno, 0),
        };
        let kind = FenceChain {
            link: Mutex::new(Link {
                prev: prev.cloned(),
                failed,
            }),
            prev_seqno,
            fence,
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

    /// How many links `point`'s chain has from `point` back (`point`
    /// included; a non-chain fence is 0): what a walk could still collect
    /// is counted, nothing is collected. Takes each link's lock in turn
    /// (O(length)); for tests and tools watching that chains stay short.
    pub fn link_count(point: &Fence) -> usize {
        let mut n = 0;
        let mut cur = Some(point.clone());
        // The last element may be a plain fence a chain started after: not a link.
        while let Some(link) = cur.as_ref().and_then(|f| f.kind_as::<FenceChain>()) {
            n += 1;
            cur = link.get_prev();
        }
        n
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_prev(&self) -> Option<Fence> {
        self.lock().prev.clone()
    }

    /// The failure record (see [`Failed`]).
    pub(crate) fn failed(&self) -> Failed {
        self.lock().failed
    }

    fn note(&self, f: Failed) {
        if !f.is_none() {
            let mut g = self.lock();
            g.failed = g.failed.merge(f);
        }
    }

    /// Replaces `prev` with `replacement` if it is still `expected` (the
    /// kernel's cmpxchg), taking over `carried` (the collected link's
    /// failures) in the same step. The old value is dropped unlocked.
    fn swap_prev(&self, expected: &Fence, replacement: Option<Fence>, carried: Failed) {
        let old = {
            let mut g = self.lock();
            match g.prev.as_ref() {
                Some(cur) if cur.ptr_eq(expected) => {
                    g.failed = g.failed.merge(carried);
                    std::mem::replace(&mut g.prev, replacement)
                }
                _ => None,
            }
        };
        drop(old);
    }

    /// The next unsignaled element before `point` (`dma_fence_chain_walk`),
    /// unlinking signaled links on the way (their failures move to
    /// `point`'s record). `None` when `point` is not a chain point or
    /// nothing unsignaled is left before it. Takes link locks one at a time.
    pub fn walk(point: &Fence) -> Option<Fence> {
        let link = point.kind_as::<FenceChain>()?;
        loop {
            let prev = link.get_prev()?;
            // Failures from another context come before all of this one's.
            let same_context = prev.context() == point.context();
            let (replacement, carried) = match prev.kind_as::<FenceChain>() {
                Some(prev_link) => {
                    if !prev_link.fence.is_signaled() {
                        return Some(prev);
                    }
                    // The collected link's prev and record, read together.
                    let (pp, pf) = {
                        let g = prev_link.lock();
                        (g.prev.clone(), g.failed)
                    };
                    let own = ChainFailure::of(&prev_link.fence, prev.seqno());
                    (pp, pf.merge(Failed::of(own)))
                }
                None => {
                    if !prev.is_signaled() {
                        return Some(prev);
                    }
                    (None, Failed::of(ChainFailure::of(&prev, 0)))
                }
            };
            let carried = if same_context {
                carried
            } else {
                carried.before_context()
            };
            link.swap_prev(&prev, replacement, carried);
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
    /// signaled without error, `Ok(Some(head))` for `seqno == 0`; an error
    /// if `head` is not a chain point or `seqno` is beyond it.
    ///
    /// Errors survive (unlike the kernel's, which returns no fence once all
    /// signaled): if a point at or before `seqno` failed, the answer carries
    /// the earliest such failure: a fence `(context, seqno)` signaled with
    /// it when everything up to `seqno` has ended, else a point `seqno` that
    /// ends with the covering point and reports that failure unless the
    /// covering point's own chain failed earlier.
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
        // Failures at points <= seqno found in the records of links passed
        // on the way (they collected those points).
        let mut known: Option<ChainFailure> = None;
        let mut cur = head.clone();
        loop {
            let prev_seqno = cur.kind_as::<FenceChain>().map_or(0, |l| l.prev_seqno);
            if cur.context() != head.context() || prev_seqno < seqno {
                return Ok(Some(match known {
                    None => cur,
                    Some(k) => FenceChain::create_with(
                        Some(&cur),
                        k.as_failure().fence(alloc_contexts(1), 1),
                        seqno,
                        Failed::of(Some(k)),
                    ),
                }));
            }
            let next = FenceChain::walk(&cur);
            if let Some(f) = cur
                .kind_as::<FenceChain>()
                .and_then(|l| l.failed().by_point)
            {
                if f.point <= seqno {
                    known = ChainFailure::first(known, Some(f));
                }
            }
            match next {
                Some(n) => cur = n,
                None => {
                    return Ok(known.map(|k| k.as_failure().fence(head.context(), seqno)));
                }
            }
        }
    }

    /// Ends `point`: signals it with the earliest failure at or before it.
    fn finish(&self, point: &Fence) {
        let own = ChainFailure::of(&self.fence, point.seqno());
        let _ = match ChainFailure::first(self.failed().by_point, own) {
            Some(f) => point.signal_with_error(f.error),
            None => point.signal(),
        };
    }

    /// Goes over the elements at or before `point`, collecting what has
    /// signaled into the records; at the first unsignaled contained fence,
    /// `hang` decides: true stops there (returns false: not all ended).
    /// Returns true if every contained fence at or before `point` has ended.
    fn visit(point: &Fence, mut hang: impl FnMut(&Fence) -> bool) -> bool {
        let Some(link) = point.kind_as::<FenceChain>() else {
            return false;
        };
        let mut cur = point.clone();
        loop {
            let contained = FenceChain::contained(&cur);
            if hang(&contained) {
                return false;
            }
            if cur.ptr_eq(point) {
                // Its own fence counts at `finish`.
            } else {
                let seq = if cur.context() == point.context() {
                    cur.seqno()
                } else {
                    0
                };
                link.note(Failed::of(ChainFailure::of(&contained, seq)));
            }
            let next = FenceChain::walk(&cur);
            // What `cur` collected (read after its walk) is before `point`.
            if !cur.ptr_eq(point) {
                if let Some(l) = cur.kind_as::<FenceChain>() {
                    let carried = l.failed();
                    link.note(if cur.context() == point.context() {
                        carried
                    } else {
                        carried.before_context()
                    });
                }
            }
            match next {
                Some(n) => cur = n,
                None => return true,
            }
        }
    }

    /// Hangs one callback on the first unsignaled contained fence at or
    /// before `point`; true if one was hung, false if all have signaled
    /// (the kernel's `dma_fence_chain_enable_signaling`).
    fn arm(point: &Fence) -> bool {
        !FenceChain::visit(point, |contained| {
            let p = point.clone();
            let hung = contained.add_callback(move |_| {
                if !FenceChain::arm(&p) {
                    if let Some(l) = p.kind_as::<FenceChain>() {
                        l.finish(&p);
                    }
                }
            });
            !matches!(hung, Err(AlreadySignaled))
        })
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
        if !FenceChain::visit(fence, |contained| !contained.is_signaled()) {
            return false;
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
            .link
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .prev
            .take();
        while let Some(f) = next {
            if f.strong_count() != 1 {
                break;
            }
            next = match f.kind_as::<FenceChain>() {
                Some(link) => link.lock().prev.take(),
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
///
/// ```
/// use bufsync::fence::{FenceContext, FenceError, FenceTimeline};
///
/// let ctx = FenceContext::new("doc", "timeline");
/// let mut tl = FenceTimeline::new();
/// let frames: Vec<_> = (1..=3).map(|p| {
///     let f = ctx.create_fence();
///     tl.push(f.clone(), p).unwrap();
///     f
/// }).collect();
/// frames[0].signal().unwrap();
/// frames[1].signal_with_error(FenceError::Cancelled).unwrap();
/// assert_eq!(tl.find(1).unwrap(), None); // done, no error
/// let two = tl.find(2).unwrap().expect("a failed point carries its error");
/// assert_eq!(two.wait(), Err(FenceError::Cancelled));
/// frames[2].signal().unwrap();
/// tl.push(ctx.create_fence(), 4).unwrap(); // collects the signaled points
/// assert!(tl.link_count() <= 2);
/// ```
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
    /// Returns the new point. Then walks the chain from it, collecting the
    /// points that have signaled (as `drm_syncobj_add_point` does), so a
    /// timeline that is only pushed to keeps its unsignaled points and no
    /// history: takes each remaining link's lock once.
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
        for _ in FenceChain::iter(&point) {}
        Ok(point)
    }

    /// How many links the timeline holds (see [`FenceChain::link_count`]);
    /// reading it collects nothing.
    pub fn link_count(&self) -> usize {
        self.head.as_ref().map_or(0, FenceChain::link_count)
    }

    /// The point to wait on for `seqno` (see [`FenceChain::find_seqno`]);
    /// `Ok(None)` once it has signaled without error, a fence signaled with
    /// the error if a point up to `seqno` failed. An empty timeline has
    /// signaled everything up to 0 and nothing beyond.
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
