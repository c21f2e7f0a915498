//! Class "long-lived structures stay bounded" (issue 16), fence side: what
//! lives as long as a device or a buffer (a timeline, a wait set reused
//! frame after frame, a reservation's fence list, a fence's callback list, a
//! cancel token) must not grow with the number of frames. Lengths are read
//! without walking (`link_count`), allocations with a counting allocator.

use std::time::Duration;

use bufsync::fence::{
    alloc_contexts, CancelToken, Fence, FenceContext, FenceError, FenceSet, FenceTimeline,
};
use bufsync::resv::{Access, Reservation, Ticket, Usage};

#[global_allocator]
static GLOBAL: bufsync_alloc_count::Counting = bufsync_alloc_count::Counting;

const FRAMES: u64 = 90_000;

fn fence() -> Fence {
    Fence::software(alloc_contexts(1), 1)
}

#[test]
fn a_timeline_that_is_only_pushed_to_keeps_no_history() {
    let mut tl = FenceTimeline::new();
    let mut prev: Option<Fence> = None;
    for p in 1..=FRAMES {
        let f = fence();
        tl.push(f.clone(), p).unwrap();
        // The frame before this one is done (a display's usual depth).
        if let Some(done) = prev.replace(f) {
            done.signal().unwrap();
        }
        if p % 1000 == 0 {
            assert!(
                tl.link_count() <= 3,
                "{} links after {p} points",
                tl.link_count()
            );
        }
    }
    // Never searched, never waited: still short.
    assert!(tl.link_count() <= 3);
}

#[test]
fn a_timeline_keeps_its_points_in_flight_and_a_stuck_one() {
    let mut tl = FenceTimeline::new();
    let stuck = fence();
    tl.push(stuck.clone(), 1).unwrap();
    let mut in_flight = std::collections::VecDeque::new();
    for p in 2..=20_000u64 {
        let f = fence();
        tl.push(f.clone(), p).unwrap();
        in_flight.push_back(f);
        if in_flight.len() > 3 {
            in_flight.pop_front().unwrap().signal().unwrap();
        }
    }
    // The stuck point, the three in flight, at most one signaled behind them.
    assert!(tl.link_count() <= 6, "{} links", tl.link_count());
    // The stuck point still holds the timeline back, with its error.
    let head = tl.head().unwrap().clone();
    for f in in_flight {
        f.signal().unwrap();
    }
    assert!(!head.is_signaled());
    stuck.signal_with_error(FenceError::DeviceLost).unwrap();
    assert_eq!(head.wait(), Err(FenceError::DeviceLost));
}

#[test]
fn a_reused_wait_set_stays_bounded_under_failures() {
    let ctxs: Vec<FenceContext> = (0..4)
        .map(|_| FenceContext::new("bounded", "set"))
        .collect();
    let mut set = FenceSet::new();
    for i in 0..FRAMES / 10 {
        let f = ctxs[(i % 4) as usize].create_fence();
        if i % 3 == 0 {
            f.signal_with_error(FenceError::Errno(1 + (i % 7) as i32))
                .unwrap();
        }
        set.add(&f);
        assert!(set.len() <= 8, "{} fences for 4 contexts", set.len());
    }
    assert!(set.first_error().is_some());
}

#[test]
fn a_reservation_list_stays_bounded_under_failures() {
    let frame = Reservation::new();
    let mut t = Ticket::reservation();
    for i in 0..FRAMES / 10 {
        // A writer of a new context fails; a reader of another follows.
        let (w, r) = (fence(), fence());
        let list = [(&frame, Access::Write)];
        t.reserve(&list, 1).unwrap().commit(&w);
        if i % 2 == 0 {
            w.signal_with_error(FenceError::DeviceLost).unwrap();
        } else {
            w.signal().unwrap();
        }
        let list = [(&frame, Access::Read)];
        t.reserve(&list, 1).unwrap().commit(&r);
        r.signal_with_error(FenceError::Cancelled).unwrap();
        let n = frame.fences(Usage::Bookkeep).len();
        assert!(n <= 3, "{n} fences after {i} frames");
    }
}

#[test]
fn a_fence_reused_for_callbacks_and_waits_does_not_grow() {
    let long_lived = fence();
    let token = CancelToken::new();
    let cycle = || {
        let id = long_lived.add_callback(|_| {}).unwrap();
        assert!(long_lived.remove_callback(id));
        let mut set = FenceSet::new();
        set.add(&long_lived);
        assert!(set.wait_any(Some(Duration::from_micros(1))).is_err());
        assert!(long_lived
            .wait_cancellable(Some(Duration::from_micros(1)), &token)
            .is_err());
    };
    for _ in 0..100 {
        cycle();
    }
    let before = bufsync_alloc_count::allocations_in(cycle);
    for _ in 0..1000 {
        let n = bufsync_alloc_count::allocations_in(cycle);
        // Per cycle: the callback's box, the set's buffer, wait_any's waker
        // fence, id list and callback box: never more as cycles go by.
        assert!(n <= before, "{n} allocations in a cycle, {before} at first");
    }
}
