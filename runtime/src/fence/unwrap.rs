//! Unwrap and merge (`dma_fence_unwrap_for_each`, `dma_fence_unwrap_merge`).
//!
//! Locking: none of its own; walking a chain takes its link locks one at a
//! time (see `chain.rs`). Merging allocates the flattened list and, for more
//! than one survivor, one array fence.

use super::failure::Failure;
use super::{alloc_contexts, Fence, FenceArray, FenceChain, FenceError};

/// Appends the leaf fences of `fence` to `out`: chain points give their
/// contained fences (walking back over unsignaled points), arrays give their
/// members; anything else is a leaf (`dma_fence_unwrap_for_each`).
///
/// Errors survive (the rule of `docs/fences.md`): a failure only a container
/// knows of (a chain link the walk collected, members a merge dropped) comes
/// out as one more leaf, signaled with that error at the time it happened.
pub fn unwrap_into(fence: &Fence, out: &mut Vec<Fence>) {
    let mut known = None;
    flatten(fence, out, &mut known);
    if let Some(f) = known {
        out.push(f.fence(alloc_contexts(1), 1));
    }
}

/// [`unwrap_into`] that also keeps the first failure the containers know of
/// beyond their leaves: a chain link's record (of links it collected, whose
/// fences are not returned) and an array's preset (of members merged away).
fn flatten(fence: &Fence, out: &mut Vec<Fence>, failure: &mut Option<Failure>) {
    // An explicit stack: containers may nest (an array inside a chain).
    let mut stack = vec![fence.clone()];
    while let Some(f) = stack.pop() {
        if f.kind_as::<FenceChain>().is_some() {
            let links: Vec<Fence> = FenceChain::iter(&f).collect();
            for link in &links {
                // Read after the walk that `iter` did past it.
                let known = link
                    .kind_as::<FenceChain>()
                    .and_then(|l| l.failed().by_time);
                *failure = Failure::first(*failure, known.map(|k| k.as_failure()));
            }
            stack.extend(links.iter().rev().map(FenceChain::contained));
        } else if let Some(array) = f.kind_as::<FenceArray>() {
            *failure = Failure::first(*failure, array.preset());
            stack.extend(array.fences().iter().rev().cloned());
        } else {
            out.push(f);
        }
    }
}

/// The leaf fences of `fence` (see [`unwrap_into`]).
pub fn unwrap(fence: &Fence) -> Vec<Fence> {
    let mut out = Vec::new();
    unwrap_into(fence, &mut out);
    out
}

/// Flattens `fences` into `out` the way [`unwrap_merge`] does and returns
/// the first error among the leaves that ended (the one that ended first;
/// see `docs/fences.md`): `out` gets the unsignaled leaves, one per context
/// (the latest), ordered by context.
pub fn unwrap_merge_into(fences: &[Fence], out: &mut Vec<Fence>) -> Option<FenceError> {
    merge_into(fences, out).map(|f| f.error)
}

/// [`unwrap_merge_into`] with the failure's time.
fn merge_into(fences: &[Fence], out: &mut Vec<Fence>) -> Option<Failure> {
    out.clear();
    let mut failure = None;
    for f in fences {
        flatten(f, out, &mut failure);
    }
    let mut rank = 0u64;
    out.retain(|f| {
        rank += 1;
        if f.is_signaled() {
            failure = Failure::first(failure, Failure::of(f, rank));
            false
        } else {
            true
        }
    });
    // By context, the latest seqno first; then keep the first of each context.
    out.sort_by(|a, b| {
        a.context().cmp(&b.context()).then_with(|| {
            if b.is_later(a) {
                std::cmp::Ordering::Greater
            } else if a.is_later(b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        })
    });
    out.dedup_by(|later_elem, kept| later_elem.context() == kept.context());
    failure
}

/// Merges fences into one (`dma_fence_unwrap_merge`): flattens arrays and
/// chains, drops signaled leaves, keeps one fence per context (the latest),
/// orders by context. Returns a signaled stub if nothing is pending and
/// nothing failed, the fence itself if one is pending and nothing failed,
/// else an array fence on a new context.
///
/// Unlike the kernel, errors survive (the rule of `docs/fences.md`): if a
/// dropped (signaled) leaf failed, or a container merged in knew of a
/// failure, the result carries the first one: an array that ends with its
/// members and reports that failure unless a member ends earlier with one
/// (it cannot: the known one ended before the merge), or, with nothing
/// pending, an array already signaled with it, timestamped when it failed.
/// Either way on a context of its own, so a set never mistakes it for a
/// [`Fence::stub`].
///
/// ```
/// use bufsync::fence::{unwrap_merge, FenceContext, FenceError};
///
/// let ctx = FenceContext::new("doc", "merge");
/// let (failed, running) = (ctx.create_fence(), FenceContext::new("doc", "b").create_fence());
/// failed.signal_with_error(FenceError::DeviceLost).unwrap();
/// let merged = unwrap_merge(&[failed, running.clone()]);
/// assert!(!merged.is_signaled(), "it ends with its last member");
/// running.signal().unwrap();
/// assert_eq!(merged.wait(), Err(FenceError::DeviceLost));
/// ```
pub fn unwrap_merge(fences: &[Fence]) -> Fence {
    let mut out = Vec::new();
    let failure = merge_into(fences, &mut out);
    match (out.len(), failure) {
        (0, None) => Fence::stub(),
        (1, None) => out.pop().unwrap_or_else(Fence::stub),
        (_, failure) => FenceArray::create_with(out, alloc_contexts(1), 1, false, failure),
    }
}
