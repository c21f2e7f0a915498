//! Port of drivers/dma-buf/st-dma-resv.c (sanitycheck, signaling, for_each,
//! for_each_unlocked, get_fences) for every usage, plus the add_fence rules.

use std::time::Duration;

use bufsync::fence::{Fence, FenceContext};
use bufsync::resv::{Reservation, Ticket, Usage};

fn fence() -> Fence {
    FenceContext::new("st-dma-resv", "t").create_fence()
}

/// Locks `resv` alone, reserves one slot and adds `f` with `usage`.
fn add_one(resv: &Reservation, f: &Fence, usage: Usage) {
    let mut g = resv.lock_alone();
    g.reserve_fences(1).unwrap();
    g.add_fence(f, usage);
}

#[test]
fn sanitycheck() {
    let f = fence();
    f.signal().unwrap();
    let resv = Reservation::new();
    let t = Ticket::reservation();
    let g = resv.lock(&t).unwrap();
    drop(g);
    let _alone = resv.lock_alone();
}

#[test]
fn signaling() {
    for usage in Usage::ALL {
        let resv = Reservation::new();
        let f = fence();
        add_one(&resv, &f, usage);
        assert!(
            !resv.test_signaled(usage),
            "{usage:?}: resv unexpectedly signaled"
        );
        f.signal().unwrap();
        assert!(
            resv.test_signaled(usage),
            "{usage:?}: resv not reporting signaled"
        );
        resv.wait(usage, Some(Duration::from_secs(5))).unwrap();
    }
}

#[test]
fn for_each() {
    for usage in Usage::ALL {
        let resv = Reservation::new();
        let f = fence();
        {
            let mut g = resv.lock_alone();
            g.reserve_fences(1).unwrap();
            g.add_fence(&f, usage);
            // The locked iteration (dma_resv_for_each_fence) sees the same list.
            let seen: Vec<(Fence, Usage)> = resv
                .fences(usage)
                .iter_with_usage()
                .map(|(f, u)| (f.clone(), u))
                .collect();
            assert_eq!(seen.len(), 1);
            assert!(seen[0].0.ptr_eq(&f), "unexpected fence");
            assert_eq!(seen[0].1, usage, "unexpected fence usage");
        }
        f.signal().unwrap();
    }
}

#[test]
fn for_each_unlocked() {
    for usage in Usage::ALL {
        let resv = Reservation::new();
        let f = fence();
        add_one(&resv, &f, usage);
        // Unlocked: a snapshot stays consistent while a writer changes the list.
        let snap = resv.fences(usage);
        let other = fence();
        add_one(&resv, &other, usage);
        assert_eq!(snap.len(), 1, "snapshot changed under the reader");
        assert!(snap.iter().next().unwrap().ptr_eq(&f));
        assert_eq!(resv.fences(usage).len(), 2);
        f.signal().unwrap();
        other.signal().unwrap();
    }
}

#[test]
fn get_fences() {
    for usage in Usage::ALL {
        let resv = Reservation::new();
        let f = fence();
        add_one(&resv, &f, usage);
        let got: Vec<Fence> = resv.fences(usage).iter().cloned().collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].ptr_eq(&f));
        // Usages are ordered: a stricter query does not see the fence.
        for lower in Usage::ALL.into_iter().filter(|u| *u < usage) {
            assert!(
                resv.fences(lower).is_empty(),
                "{lower:?} saw a {usage:?} fence"
            );
        }
        f.signal().unwrap();
    }
}

#[test]
fn add_fence_replaces_same_context() {
    let ctx = FenceContext::new("st-dma-resv", "replace");
    let resv = Reservation::new();
    let (f1, f2) = (ctx.create_fence(), ctx.create_fence());
    let mut g = resv.lock_alone();
    g.reserve_fences(2).unwrap();
    g.add_fence(&f1, Usage::Read);
    g.add_fence(&f2, Usage::Read);
    let all: Vec<Fence> = resv.fences(Usage::Bookkeep).iter().cloned().collect();
    assert_eq!(
        all.len(),
        1,
        "a later fence of one context replaces the earlier"
    );
    assert!(all[0].ptr_eq(&f2));
    // An earlier fence never replaces a later one.
    g.reserve_fences(1).unwrap();
    g.add_fence(&f1, Usage::Read);
    assert_eq!(resv.fences(Usage::Bookkeep).len(), 2);
}

#[test]
fn add_fence_keeps_stronger_usage() {
    let ctx = FenceContext::new("st-dma-resv", "usage");
    let resv = Reservation::new();
    let (w, r) = (ctx.create_fence(), ctx.create_fence());
    let mut g = resv.lock_alone();
    g.reserve_fences(2).unwrap();
    g.add_fence(&w, Usage::Write);
    // A READ fence may not replace a WRITE one (old usage < new usage).
    g.add_fence(&r, Usage::Read);
    assert_eq!(resv.fences(Usage::Write).len(), 1);
    assert_eq!(resv.fences(Usage::Read).len(), 2);
    // A later WRITE fence replaces a READ one of its context.
    let w2 = ctx.create_fence();
    g.reserve_fences(1).unwrap();
    g.add_fence(&w2, Usage::Write);
    assert!(resv.fences(Usage::Read).iter().any(|f| f.ptr_eq(&w2)));
}

#[test]
fn add_fence_prunes_signaled() {
    let resv = Reservation::new();
    let fences: Vec<Fence> = (0..4).map(|_| fence()).collect();
    let mut g = resv.lock_alone();
    for f in &fences {
        g.reserve_fences(1).unwrap();
        g.add_fence(f, Usage::Read);
    }
    assert_eq!(resv.fences(Usage::Read).len(), 4);
    for f in &fences[..3] {
        f.signal().unwrap();
    }
    let last = fence();
    g.reserve_fences(1).unwrap();
    g.add_fence(&last, Usage::Read);
    let left: Vec<Fence> = resv.fences(Usage::Bookkeep).iter().cloned().collect();
    assert_eq!(left.len(), 2, "signaled fences were not pruned");
    assert!(left.iter().any(|f| f.ptr_eq(&fences[3])));
    assert!(left.iter().any(|f| f.ptr_eq(&last)));
}

#[test]
fn wait_times_out_and_reports_errors() {
    let resv = Reservation::new();
    let f = fence();
    add_one(&resv, &f, Usage::Write);
    assert!(resv
        .wait(Usage::Write, Some(Duration::from_millis(1)))
        .is_err());
    // Readers of KERNEL usage do not wait for WRITE fences.
    resv.wait(Usage::Kernel, Some(Duration::from_millis(1)))
        .unwrap();
    f.signal_with_error(bufsync::fence::FenceError::DeviceLost)
        .unwrap();
    assert!(resv.wait(Usage::Write, None).is_err());
    assert!(resv.test_signaled(Usage::Write));
}
