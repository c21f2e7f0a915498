//! Port of the kernel's drivers/dma-buf/st-dma-fence-unwrap.c, one test per case.

mod common;
use common::mock_fence_at;

use bufsync::fence::{self, alloc_contexts, unwrap, Fence, FenceArray, FenceChain};

fn mock_fence() -> Fence {
    let f = mock_fence_at(alloc_contexts(1), 1);
    f.enable_signaling();
    f
}

fn mock_array(fences: &[&Fence]) -> Fence {
    FenceArray::create(
        fences.iter().map(|f| (*f).clone()).collect(),
        alloc_contexts(1),
        1,
        false,
    )
}

fn mock_chain(prev: Option<&Fence>, fence: &Fence) -> Fence {
    FenceChain::create(prev, fence.clone(), 1)
}

/// Checks that unwrapping `f` gives exactly `expected`, in that order.
fn expect_unwrap(f: &Fence, expected: &[&Fence]) {
    let got = unwrap(f);
    assert_eq!(
        got.len(),
        expected.len(),
        "Not all fences seen! got {got:?}"
    );
    for (g, e) in got.iter().zip(expected) {
        assert!(g.ptr_eq(e), "Unexpected fence! {g:?} instead of {e:?}");
    }
}

/// Checks that unwrapping `f` gives exactly the fences of `expected`, any order.
fn expect_unwrap_set(f: &Fence, expected: &[&Fence]) {
    let got = unwrap(f);
    assert_eq!(
        got.len(),
        expected.len(),
        "Not all fences seen! got {got:?}"
    );
    for e in expected {
        assert!(got.iter().any(|g| g.ptr_eq(e)), "Not all fences seen!");
    }
}

#[test]
fn sanitycheck() {
    let f = mock_fence();
    let array = mock_array(&[&f]);
    let chain = mock_chain(None, &array);
    f.signal().unwrap();
    assert!(chain.is_signaled());
}

#[test]
fn unwrap_array() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    let array = mock_array(&[&f1, &f2]);
    expect_unwrap_set(&array, &[&f1, &f2]);
    f1.signal().unwrap();
    f2.signal().unwrap();
    assert!(array.is_signaled());
}

#[test]
fn unwrap_chain() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    let chain = mock_chain(Some(&f1), &f2);
    expect_unwrap_set(&chain, &[&f1, &f2]);
    f1.signal().unwrap();
    f2.signal().unwrap();
    assert!(chain.is_signaled());
}

#[test]
fn unwrap_chain_array() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    let array = mock_array(&[&f1, &f2]);
    let chain = mock_chain(None, &array);
    expect_unwrap_set(&chain, &[&f1, &f2]);
    f1.signal().unwrap();
    f2.signal().unwrap();
    assert!(chain.is_signaled());
}

#[test]
fn unwrap_merge() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    let f3 = fence::unwrap_merge(&[f1.clone(), f2.clone()]);
    expect_unwrap_set(&f3, &[&f1, &f2]);
}

#[test]
fn unwrap_merge_duplicate() {
    let f1 = mock_fence();
    let f2 = fence::unwrap_merge(&[f1.clone(), f1.clone()]);
    expect_unwrap(&f2, &[&f1]);
}

#[test]
fn unwrap_merge_seqno() {
    let ctx0 = alloc_contexts(1);
    let ctx1 = alloc_contexts(1);
    let f1 = mock_fence_at(ctx1, 1);
    let f2 = mock_fence_at(ctx1, 2);
    let f3 = mock_fence_at(ctx0, 1);
    let f4 = fence::unwrap_merge(&[f1.clone(), f2.clone(), f3.clone()]);
    // One fence per context (the later), ordered by context.
    expect_unwrap(&f4, &[&f3, &f2]);
}

#[test]
fn unwrap_merge_order() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    let a1 = mock_array(&[&f1, &f2]);
    let c1 = mock_chain(None, &f1);
    let c2 = mock_chain(Some(&c1), &f2);
    // The fences in the chain are those of a1 in the opposite order; the
    // merge must still give them in context order.
    let a2 = fence::unwrap_merge(&[a1, c2]);
    expect_unwrap(&a2, &[&f1, &f2]);
}

#[test]
fn unwrap_merge_complex() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    let f3 = fence::unwrap_merge(&[f1.clone(), f2.clone()]);
    // The resulting array has the fences in reverse.
    let f4 = mock_array(&[&f2, &f1]);
    // Signaled fences should be filtered, the two arrays merged.
    let f5 = fence::unwrap_merge(&[f3, f4, Fence::stub()]);
    expect_unwrap_set(&f5, &[&f1, &f2]);
}

#[test]
fn unwrap_merge_complex_seqno() {
    let ctx0 = alloc_contexts(1);
    let ctx1 = alloc_contexts(1);
    let f1 = mock_fence_at(ctx0, 2);
    let f2 = mock_fence_at(ctx1, 1);
    let f3 = mock_fence_at(ctx0, 1);
    let f4 = mock_fence_at(ctx1, 2);
    let f5 = mock_array(&[&f1, &f2]);
    let f6 = mock_array(&[&f3, &f4]);
    let f7 = fence::unwrap_merge(&[f5, f6]);
    expect_unwrap(&f7, &[&f1, &f4]);
}

#[test]
fn unwrap_merge_keeps_errors() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    f1.signal_with_error(bufsync::fence::FenceError::Evicted)
        .unwrap();
    let merged = fence::unwrap_merge(&[f1.clone(), f2.clone()]);
    assert!(!merged.is_signaled());
    f2.signal().unwrap();
    assert_eq!(merged.wait(), Err(bufsync::fence::FenceError::Evicted));
    let all_done = fence::unwrap_merge(std::slice::from_ref(&f1));
    assert_eq!(all_done.wait(), Err(bufsync::fence::FenceError::Evicted));
}
