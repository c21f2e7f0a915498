//! A reservation holding a foreign fence that its producer keeps pending:
//! bounded waits end with an error naming the fence, the fence is never
//! pruned, a writer's wait-set keeps it, and after the signal all proceeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::{alloc_contexts, engine, Fence, SoftwareKind};
use bufsync::resv::{Access, Reservation, ResvWaitError, Ticket, Usage};

#[test]
fn wait_on_a_stuck_fence_names_it_and_keeps_it() {
    let kind = Arc::new(SoftwareKind::new("gpu", "ring0"));
    let fence = Fence::new(kind, alloc_contexts(1), 42);
    engine::global().set_stuck_threshold(Duration::from_millis(30));
    engine::watch(&fence);
    let resv = Reservation::new();
    {
        let mut g = resv.lock_alone();
        g.reserve_fences(1).unwrap();
        g.add_fence(&fence, Usage::Write);
    }
    // Three times the stuck threshold and more: every bounded wait times out
    // naming the fence; the fence stays pending and in the reservation.
    let until = Instant::now() + Duration::from_millis(120);
    while Instant::now() < until {
        match resv.wait(Usage::Read, Some(Duration::from_millis(10))) {
            Err(ResvWaitError::Pending { fence: f, waited }) => {
                assert!(f.ptr_eq(&fence));
                assert!(waited >= Duration::from_millis(10));
                let msg = ResvWaitError::Pending { fence: f, waited }.to_string();
                assert!(msg.contains("gpu/ring0") && msg.contains(":42"), "{msg}");
            }
            other => panic!("expected Pending, got {other:?}"),
        }
        assert!(!fence.is_signaled());
        assert!(!resv.test_signaled(Usage::Read));
        // A writer never gets through early: its wait-set holds the fence.
        let mut ticket = Ticket::reservation();
        let list = [(&resv, Access::Write)];
        let mut r = ticket.reserve(&list, 1).unwrap();
        assert!(r.wait_set().iter().any(|f| f.ptr_eq(&fence)));
        drop(r);
    }
    assert!(engine::stuck().iter().any(|s| s.fence.ptr_eq(&fence)));
    assert!(bufsync::debug::dump().contains("gpu/ring0"));
    // The producer finishes: everything proceeds.
    fence.signal().unwrap();
    resv.wait(Usage::Read, Some(Duration::from_millis(10)))
        .unwrap();
    let mut ticket = Ticket::reservation();
    let list = [(&resv, Access::Write)];
    let mut r = ticket.reserve(&list, 1).unwrap();
    assert!(r.wait_set().is_empty());
    drop(r);
    assert!(!bufsync::debug::dump().contains("gpu/ring0"));
}
