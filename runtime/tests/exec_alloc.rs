//! Budgets: a steady-state reserve / wait_set / commit of the same objects
//! allocates nothing (counting allocator), and a reservation-list entry is at
//! most 16 bytes.

use bufsync::fence::FenceContext;
use bufsync::resv::{Access, Reservation, Ticket};

#[global_allocator]
static GLOBAL: bufsync_alloc_count::Counting = bufsync_alloc_count::Counting;

#[test]
fn entry_is_at_most_16_bytes() {
    assert!(std::mem::size_of::<(&Reservation, Access)>() <= 16);
}

#[test]
fn steady_state_allocates_nothing() {
    let objs: Vec<Reservation> = (0..16).map(|_| Reservation::new()).collect();
    let list: Vec<(&Reservation, Access)> = objs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                o,
                if i % 3 == 0 {
                    Access::Write
                } else {
                    Access::Read
                },
            )
        })
        .collect();
    let mut t = Ticket::reservation();
    // Fences are made up front: creating a fence is the producer's cost.
    let ctx = FenceContext::new("alloc", "steady");
    let fences: Vec<_> = (0..100).map(|_| ctx.create_fence()).collect();
    let frame = |t: &mut Ticket, i: usize| {
        let mut r = t.reserve(&list, 1).unwrap();
        let _ = r.wait_set().len();
        r.commit(&fences[i]);
        fences[i].signal().unwrap();
    };
    for i in 0..10 {
        frame(&mut t, i);
    }
    let n = bufsync_alloc_count::allocations_in(|| {
        for i in 10..100 {
            frame(&mut t, i);
        }
    });
    assert_eq!(n, 0, "steady-state frames allocated {n} times");
}

#[test]
fn snapshot_after_every_edit_reuses_its_allocation() {
    // A frame loop's reader: a new fence per frame, then a snapshot read
    // and dropped (the presenter's wait snapshot). The snapshot copies into
    // the allocation of the previous one once its reader let it go.
    let buf = Reservation::new();
    let ctx = FenceContext::new("alloc", "snapshot");
    let fences: Vec<_> = (0..100).map(|_| ctx.create_fence()).collect();
    let frame = |i: usize| {
        let mut g = buf.lock_alone();
        g.reserve_fences(1).unwrap();
        g.add_fence(&fences[i], bufsync::resv::Usage::Write);
        drop(g);
        assert_eq!(buf.fences(bufsync::resv::Usage::Read).len(), 1);
        fences[i].signal().unwrap();
    };
    for i in 0..10 {
        frame(i);
    }
    let n = bufsync_alloc_count::allocations_in(|| {
        for i in 10..100 {
            frame(i);
        }
    });
    assert_eq!(n, 0, "frames with a snapshot allocated {n} times");
    // A snapshot a reader still holds is never reused under it.
    let held = buf.fences(bufsync::resv::Usage::Read);
    let next = ctx.create_fence();
    let mut g = buf.lock_alone();
    g.reserve_fences(1).unwrap();
    g.add_fence(&next, bufsync::resv::Usage::Write);
    drop(g);
    assert!(held.iter().next().unwrap().ptr_eq(&fences[99]));
    assert!(buf
        .fences(bufsync::resv::Usage::Read)
        .iter()
        .next()
        .unwrap()
        .ptr_eq(&next));
    assert!(held.iter().next().unwrap().ptr_eq(&fences[99]));
}
