//! Unwrap and merge (`dma_fence_unwrap_for_each`, `dma_fence_unwrap_merge`).
//!
//! Locking: none of its own; walking a chain takes its link locks one at a
//! time (see `chain.rs`). Merging allocates the flattened list and, for more
//! than one survivor, one array fence.

use super::{alloc_contexts, Fence, FenceArray, FenceChain, FenceError};

/// Appends the leaf fences of `fence` to `out`: chain points give their
/// contained fences (walking back over unsignaled points), arrays give their
/// members; anything else is a leaf (`dma_fence_unwrap_for_each`).
pub fn unwrap_into(fence: &Fence, out: &mut Vec<Fence>) {
    let mut ignored = None;
    flatten(fence, out, &mut ignored);
}

/// [`unwrap_into`] that also records the first error carried by a chain
/// link collected during the walk (those links' fences are not returned).
fn flatten(fence: &Fence, out: &mut Vec<Fence>, error: &mut Option<FenceError>) {
    // An explicit stack: containers may nest (an array inside a chain).
    let mut stack = vec![fence.clone()];
    while let Some(f) = stack.pop() {
        if f.kind_as::<FenceChain>().is_some() {
            let links: Vec<Fence> = FenceChain::iter(&f).collect();
            for link in &links {
                if error.is_none() {
                    *error = link
                        .kind_as::<FenceChain>()
                        .and_then(FenceChain::inherited_error);
                }
            }
            stack.extend(links.iter().rev().map(FenceChain::contained));
        } else if let Some(array) = f.kind_as::<FenceArray>() {
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
/// the first error among signaled leaves: `out` gets the unsignaled leaves,
/// one per context (the latest), ordered by context.
pub fn unwrap_merge_into(fences: &[Fence], out: &mut Vec<Fence>) -> Option<FenceError> {
    out.clear();
    let mut error = None;
    for f in fences {
        flatten(f, out, &mut error);
    }
    out.retain(|f| {
        if f.is_signaled() {
            if error.is_none() {
                error = f.error();
            }
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
    error
}

/// Merges fences into one (`dma_fence_unwrap_merge`): flattens arrays and
/// chains, drops signaled leaves, keeps one fence per context (the latest),
/// orders by context. Returns a signaled stub if nothing is pending, the
/// fence itself if one is, else an array fence on a new context.
///
/// Unlike the kernel, errors survive: if a dropped (signaled) leaf carried an
/// error, the result carries it too (a stub signaled with it, or an array
/// whose error is preset).
pub fn unwrap_merge(fences: &[Fence]) -> Fence {
    let mut out = Vec::new();
    let error = unwrap_merge_into(fences, &mut out);
    match (out.len(), error) {
        (0, None) => Fence::stub(),
        (0, Some(e)) => {
            let f = Fence::software(0, 0);
            let _ = f.signal_with_error(e);
            f
        }
        (1, None) => out.pop().unwrap_or_else(Fence::stub),
        (_, error) => {
            let array = FenceArray::create(out, alloc_contexts(1), 1, false);
            if let Some(e) = error {
                array.set_error(e);
            }
            array
        }
    }
}
