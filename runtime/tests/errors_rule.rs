//! Class "errors survive every combinator and wait" (issue 16): one rule for
//! all of them, from docs/fences.md: a wait for a set, or a fence standing
//! for one, ends once every member has ended, with the error of the member
//! that ended first among the failed ones (timeline points: the earliest
//! failed point). Each test attacks one member of the class.

use std::thread;
use std::time::Duration;

use bufsync::fence::{
    unwrap_merge, Fence, FenceArray, FenceChain, FenceContext, FenceError, FenceSet, FenceStatus,
    FenceTimeline, WaitError,
};
use bufsync::resv::{Access, AttachMode, Exported, Reservation, Ticket, Usage};

const SHORT: Duration = Duration::from_millis(5);

fn fence() -> Fence {
    FenceContext::new("errors", "t").create_fence()
}

fn failed(e: FenceError) -> Fence {
    let f = fence();
    f.signal_with_error(e).unwrap();
    f
}

fn add(resv: &Reservation, f: &Fence, usage: Usage) {
    let mut g = resv.lock_alone();
    g.reserve_fences(1).unwrap();
    g.add_fence(f, usage);
}

/// Signals `f` after a short sleep, on another thread.
fn signal_later(f: &Fence) -> thread::JoinHandle<()> {
    let f = f.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        f.signal().unwrap();
    })
}

#[test]
fn reservation_wait_does_not_end_at_a_failed_fence() {
    let resv = Reservation::new();
    let (bad, slow) = (failed(FenceError::DeviceLost), fence());
    add(&resv, &bad, Usage::Write);
    add(&resv, &slow, Usage::Read);
    // A failure does not end the wait while another fence runs.
    assert_eq!(
        resv.wait(Usage::Read, Some(SHORT)).map_err(WaitError::from),
        Err(WaitError::TimedOut)
    );
    let t = signal_later(&slow);
    assert_eq!(
        resv.wait(Usage::Read, None).map_err(WaitError::from),
        Err(WaitError::Fence(FenceError::DeviceLost))
    );
    assert!(
        slow.is_signaled(),
        "the wait returned before every fence ended"
    );
    t.join().unwrap();
}

#[test]
fn reservation_wait_reports_the_first_failure_in_time() {
    let resv = Reservation::new();
    let (a, b) = (fence(), fence());
    add(&resv, &a, Usage::Read);
    add(&resv, &b, Usage::Read);
    // b fails first, although a comes first in the list.
    b.signal_with_error(FenceError::Evicted).unwrap();
    a.signal_with_error(FenceError::DeviceLost).unwrap();
    assert_eq!(
        resv.wait(Usage::Read, None).map_err(WaitError::from),
        Err(WaitError::Fence(FenceError::Evicted))
    );
}

#[test]
fn synchronous_attachments_wait_for_everything() {
    let exported = Exported::new();
    let (bad, slow) = (failed(FenceError::Cancelled), fence());
    add(exported.reservation(), &bad, Usage::Write);
    add(exported.reservation(), &slow, Usage::Read);
    let att = exported.attach(AttachMode::Synchronous);
    let t = signal_later(&slow);
    let mut hooked = false;
    let r = att.map(Access::Write, None, || hooked = true);
    assert!(slow.is_signaled(), "map returned while a reader still ran");
    assert!(
        matches!(
            r,
            Err(bufsync::resv::AttachError::Wait(WaitError::Fence(
                FenceError::Cancelled
            )))
        ),
        "{r:?}"
    );
    assert!(!hooked, "cache maintenance ran after a failed wait");
    let r = att.begin_cpu_access(Access::Write, Some(SHORT), || {});
    assert!(matches!(
        r,
        Err(bufsync::resv::AttachError::Wait(WaitError::Fence(
            FenceError::Cancelled
        )))
    ));
    t.join().unwrap();
}

#[test]
fn array_keeps_the_first_error() {
    let members: Vec<Fence> = (0..3).map(|_| fence()).collect();
    let array = FenceArray::create(members.clone(), bufsync::fence::alloc_contexts(1), 1, false);
    array.enable_signaling();
    members[2].signal_with_error(FenceError::Errno(5)).unwrap();
    members[0]
        .signal_with_error(FenceError::DeviceLost)
        .unwrap();
    assert_eq!(array.status(), FenceStatus::Pending);
    members[1].signal_with_error(FenceError::Evicted).unwrap();
    assert_eq!(array.wait(), Err(FenceError::Errno(5)));
}

#[test]
fn array_of_signaled_members_orders_them_by_time() {
    let (a, b) = (fence(), fence());
    b.signal_with_error(FenceError::Evicted).unwrap();
    a.signal_with_error(FenceError::DeviceLost).unwrap();
    // Not enabled: the status is polled; enabled: callbacks find them signaled.
    let polled = FenceArray::create(
        vec![a.clone(), b.clone()],
        bufsync::fence::alloc_contexts(1),
        1,
        false,
    );
    assert_eq!(polled.status(), FenceStatus::Error(FenceError::Evicted));
    let enabled = FenceArray::create(vec![a, b], bufsync::fence::alloc_contexts(1), 1, false);
    enabled.enable_signaling();
    assert_eq!(enabled.status(), FenceStatus::Error(FenceError::Evicted));
}

#[test]
fn any_array_reports_the_member_that_ended_first() {
    let (a, b) = (fence(), fence());
    b.signal().unwrap();
    a.signal_with_error(FenceError::DeviceLost).unwrap();
    let any = FenceArray::create(vec![a, b], bufsync::fence::alloc_contexts(1), 1, true);
    any.enable_signaling();
    assert_eq!(
        any.status(),
        FenceStatus::Signaled,
        "b ended first, cleanly"
    );
}

#[test]
fn merge_of_a_merge_keeps_the_inner_error() {
    let (bad, pending) = (failed(FenceError::DeviceLost), fence());
    let inner = unwrap_merge(&[bad, pending.clone()]);
    assert!(!inner.is_signaled());
    let outer = unwrap_merge(&[inner, fence()]);
    for f in bufsync::fence::unwrap(&outer) {
        if !f.is_signaled() {
            f.signal().unwrap();
        }
    }
    assert_eq!(outer.wait(), Err(FenceError::DeviceLost));
}

#[test]
fn merge_keeps_the_first_of_several_errors() {
    let (a, b, c) = (fence(), fence(), fence());
    c.signal_with_error(FenceError::Errno(3)).unwrap();
    a.signal_with_error(FenceError::Errno(1)).unwrap();
    let m = unwrap_merge(&[a, b.clone(), c]);
    b.signal_with_error(FenceError::Errno(2)).unwrap();
    assert_eq!(m.wait(), Err(FenceError::Errno(3)));
    // With nothing pending the error fence is signaled at once, on a context
    // of its own (never the stub's 0), timestamped when the error happened.
    let (x, y) = (fence(), fence());
    x.signal_with_error(FenceError::Cancelled).unwrap();
    y.signal().unwrap();
    let done = unwrap_merge(&[y, x.clone()]);
    assert_eq!(done.status(), FenceStatus::Error(FenceError::Cancelled));
    assert_ne!(done.context(), Fence::stub().context());
    assert_eq!(done.timestamp(), x.timestamp());
}

#[test]
fn a_set_keeps_the_merge_error_stub_beside_a_stub() {
    let bad = failed(FenceError::DeviceLost);
    let stub_err = unwrap_merge(&[bad]);
    for order in [[0, 1], [1, 0]] {
        let fences = [Fence::stub(), stub_err.clone()];
        let mut set = FenceSet::new();
        for i in order {
            set.add(&fences[i]);
        }
        assert_eq!(set.first_error(), Some(FenceError::DeviceLost), "{order:?}");
        assert_eq!(
            set.wait_all(None),
            Err(WaitError::Fence(FenceError::DeviceLost))
        );
    }
}

#[test]
fn a_set_keeps_a_failed_fence_a_later_one_replaces() {
    let ctx = FenceContext::new("errors", "set");
    let (early, late) = (ctx.create_fence(), ctx.create_fence());
    early.signal_with_error(FenceError::Evicted).unwrap();
    let mut set = FenceSet::new();
    set.add(&early);
    set.add(&late);
    assert!(set.iter().any(|f| f.ptr_eq(&late)));
    assert_eq!(set.first_error(), Some(FenceError::Evicted));
    // Added the other way round: the earlier, failed fence is kept too.
    let mut set = FenceSet::new();
    set.add(&late);
    set.add(&early);
    assert_eq!(set.first_error(), Some(FenceError::Evicted));
    // A pending later fence: the wait still waits for it.
    assert_eq!(set.wait_all(Some(SHORT)), Err(WaitError::TimedOut));
    late.signal().unwrap();
    assert_eq!(
        set.wait_all(None),
        Err(WaitError::Fence(FenceError::Evicted))
    );
    // Two failed predecessors: the one that failed first stays.
    let c2 = FenceContext::new("errors", "set2");
    let (f1, f2, f3) = (c2.create_fence(), c2.create_fence(), c2.create_fence());
    f2.signal_with_error(FenceError::Errno(2)).unwrap();
    f1.signal_with_error(FenceError::Errno(1)).unwrap();
    let mut set = FenceSet::new();
    set.extend([&f1, &f2, &f3]);
    assert!(set.len() <= 2);
    assert_eq!(set.first_error(), Some(FenceError::Errno(2)));
}

#[test]
fn set_waits_and_callbacks_report_the_first_failure_in_time() {
    let (a, b, c) = (fence(), fence(), fence());
    let mut set = FenceSet::new();
    set.extend([&a, &b, &c]);
    let (tx, rx) = std::sync::mpsc::channel();
    set.on_all_signaled(move |r| tx.send(r).unwrap());
    c.signal_with_error(FenceError::Errno(3)).unwrap();
    a.signal_with_error(FenceError::Errno(1)).unwrap();
    assert!(rx.try_recv().is_err(), "ended before every member");
    b.signal().unwrap();
    assert_eq!(rx.recv().unwrap(), Err(FenceError::Errno(3)));
    assert_eq!(set.first_error(), Some(FenceError::Errno(3)));
    assert_eq!(
        set.wait_all(None),
        Err(WaitError::Fence(FenceError::Errno(3)))
    );
}

#[test]
fn timeline_find_of_a_failed_point_carries_the_error() {
    let mut tl = FenceTimeline::new();
    let fs: Vec<Fence> = (0..4).map(|_| fence()).collect();
    for (i, f) in fs.iter().enumerate() {
        tl.push(f.clone(), i as u64 + 1).unwrap();
    }
    fs[0].signal().unwrap();
    fs[1].signal_with_error(FenceError::DeviceLost).unwrap();
    fs[2].signal().unwrap();
    // Point 1 ended cleanly; 2 and 3 include the failure of 2.
    assert_eq!(tl.find(1).unwrap(), None);
    for p in [2, 3] {
        let f = tl
            .find(p)
            .unwrap()
            .expect("a failed point is not 'already signaled'");
        assert_eq!(
            f.status(),
            FenceStatus::Error(FenceError::DeviceLost),
            "point {p}"
        );
    }
    // Point 4 waits for fence 4 and reports the failure of 2.
    let f = tl.find(4).unwrap().unwrap();
    assert_eq!(f.status(), FenceStatus::Pending);
    fs[3].signal().unwrap();
    assert_eq!(f.wait(), Err(FenceError::DeviceLost));
}

#[test]
fn timeline_find_with_a_pending_earlier_point_still_carries_the_error() {
    let mut tl = FenceTimeline::new();
    let fs: Vec<Fence> = (0..3).map(|_| fence()).collect();
    for (i, f) in fs.iter().enumerate() {
        tl.push(f.clone(), i as u64 + 1).unwrap();
    }
    // Point 2 fails while point 1 runs; point 3 ends too.
    fs[1].signal_with_error(FenceError::Evicted).unwrap();
    fs[2].signal().unwrap();
    // Walking from the head (find 3) collects point 2 and moves its error up.
    let head = tl.find(3).unwrap().unwrap();
    let two = tl.find(2).unwrap().expect("point 2 waits for point 1");
    assert_eq!(two.status(), FenceStatus::Pending);
    fs[0].signal().unwrap();
    assert_eq!(two.wait(), Err(FenceError::Evicted));
    assert_eq!(head.wait(), Err(FenceError::Evicted));
    // An earlier failure (in point order) wins over a later one.
    let mut tl = FenceTimeline::new();
    let gs: Vec<Fence> = (0..3).map(|_| fence()).collect();
    for (i, f) in gs.iter().enumerate() {
        tl.push(f.clone(), i as u64 + 1).unwrap();
    }
    gs[2].signal_with_error(FenceError::Errno(3)).unwrap();
    gs[0].signal_with_error(FenceError::Errno(1)).unwrap();
    gs[1].signal().unwrap();
    assert_eq!(tl.head().unwrap().wait(), Err(FenceError::Errno(1)));
}

#[test]
fn chain_points_report_the_earliest_failed_point() {
    let fs: Vec<Fence> = (0..3).map(|_| fence()).collect();
    let p1 = FenceChain::create(None, fs[0].clone(), 1);
    let p2 = FenceChain::create(Some(&p1), fs[1].clone(), 2);
    let p3 = FenceChain::create(Some(&p2), fs[2].clone(), 3);
    p3.enable_signaling();
    fs[2].signal_with_error(FenceError::Errno(3)).unwrap();
    fs[1].signal_with_error(FenceError::Errno(2)).unwrap();
    assert_eq!(p3.status(), FenceStatus::Pending);
    fs[0].signal().unwrap();
    assert_eq!(p3.wait(), Err(FenceError::Errno(2)));
    assert_eq!(p2.wait(), Err(FenceError::Errno(2)));
    assert_eq!(p1.wait(), Ok(()));
}

#[test]
fn wait_set_keeps_a_failed_writer() {
    let frame = Reservation::new();
    let writer = fence();
    let mut t = Ticket::reservation();
    let list = [(&frame, Access::Write)];
    t.reserve(&list, 1).unwrap().commit(&writer);
    writer.signal_with_error(FenceError::DeviceLost).unwrap();
    // A reader learns that the contents are bad ...
    let list = [(&frame, Access::Read)];
    let mut r = t.reserve(&list, 1).unwrap();
    assert_eq!(r.wait_set().first_error(), Some(FenceError::DeviceLost));
    let reader = fence();
    r.commit(&reader);
    reader.signal().unwrap();
    // ... and so does the next one: a reader's commit does not drop it.
    let mut r = t.reserve(&list, 1).unwrap();
    assert_eq!(r.wait_set().first_error(), Some(FenceError::DeviceLost));
    r.backoff();
    // A new writer (who saw it) replaces the contents: the failure goes.
    let list = [(&frame, Access::Write)];
    let mut r = t.reserve(&list, 1).unwrap();
    assert_eq!(r.wait_set().first_error(), Some(FenceError::DeviceLost));
    let w2 = fence();
    r.commit(&w2);
    w2.signal().unwrap();
    let list = [(&frame, Access::Read)];
    let mut r = t.reserve(&list, 1).unwrap();
    assert!(r.wait_set().is_empty());
    r.backoff();
    assert_eq!(frame.wait(Usage::Read, None), Ok(()));
}

#[test]
fn a_failed_reader_is_pruned_like_a_clean_one() {
    let resv = Reservation::new();
    let reader = failed(FenceError::Evicted);
    add(&resv, &reader, Usage::Read);
    add(&resv, &fence(), Usage::Read);
    assert_eq!(resv.fences(Usage::Bookkeep).len(), 1);
}

#[test]
fn unwrap_keeps_a_failure_only_a_container_knows() {
    // A merge whose failed member it dropped: no member left to carry it.
    let merged = unwrap_merge(&[failed(FenceError::DeviceLost)]);
    let leaves = bufsync::fence::unwrap(&merged);
    assert!(leaves
        .iter()
        .any(|f| f.status() == FenceStatus::Error(FenceError::DeviceLost)));
    // A chain link collected by the walk that unwrap does.
    let (f1, f2) = (fence(), fence());
    let p1 = FenceChain::create(None, f1.clone(), 1);
    let p2 = FenceChain::create(Some(&p1), f2.clone(), 2);
    drop(p1);
    f1.signal_with_error(FenceError::Evicted).unwrap();
    let leaves = bufsync::fence::unwrap(&p2);
    assert!(leaves.iter().any(|f| f.ptr_eq(&f2)));
    let mut set = FenceSet::new();
    set.extend(&leaves);
    f2.signal().unwrap();
    assert_eq!(
        set.wait_all(None),
        Err(WaitError::Fence(FenceError::Evicted))
    );
}
