//! Port of drivers/gpu/drm/tests/drm_exec_test.c onto the reservation flow,
//! plus the flow's own contract: wait sets, commit usages, back-off without
//! side effects, duplicates, contention between threads.

use std::sync::Arc;
use std::thread;

use bufsync::fence::{Fence, FenceContext};
use bufsync::resv::{Access, AsReservation, Reservation, Ticket, Usage};

/// A user struct embedding a reservation (no dma-buf needed).
struct Gem {
    resv: Reservation,
    #[allow(dead_code)]
    size: usize,
}

impl AsReservation for Gem {
    fn as_reservation(&self) -> &Reservation {
        &self.resv
    }
}

fn gem() -> Gem {
    Gem {
        resv: Reservation::new(),
        size: 4096,
    }
}

#[test]
fn sanitycheck() {
    let mut t = Ticket::reservation();
    let none: [(&Gem, Access); 0] = [];
    let r = t.reserve(&none, 1).unwrap();
    assert!(r.is_empty());
    drop(r);
}

#[test]
fn lock() {
    let obj = gem();
    let mut t = Ticket::reservation();
    let list = [(&obj, Access::Write)];
    let r = t.reserve(&list, 1).unwrap();
    assert!(obj.resv.ww_mutex().is_locked());
    drop(r);
    assert!(!obj.resv.ww_mutex().is_locked());
}

#[test]
fn lock_unlock() {
    let obj = gem();
    let mut t = Ticket::reservation();
    let list = [(&obj, Access::Write)];
    t.reserve(&list, 1).unwrap().backoff();
    assert!(!obj.resv.ww_mutex().is_locked());
    let r = t.reserve(&list, 1).unwrap();
    assert!(obj.resv.ww_mutex().is_locked());
    drop(r);
}

#[test]
fn duplicates() {
    let obj = gem();
    let mut t = Ticket::reservation();
    let list = [
        (&obj, Access::Read),
        (&obj, Access::Write),
        (&obj, Access::Read),
    ];
    let r = t.reserve(&list, 1).unwrap();
    let locked: Vec<(u64, Access)> = r.locked().map(|(r, a)| (r.id(), a)).collect();
    assert_eq!(
        locked,
        vec![(obj.resv.id(), Access::Write)],
        "one lock, write wins"
    );
    let f = FenceContext::new("exec", "dup").create_fence();
    r.commit(&f);
    assert_eq!(obj.resv.fences(Usage::Write).len(), 1);
    f.signal().unwrap();
}

#[test]
fn prepare() {
    let obj = gem();
    let mut t = Ticket::reservation();
    let list = [(&obj, Access::Read)];
    let r = t.reserve(&list, 2).unwrap();
    let (a, b) = (
        FenceContext::new("exec", "a").create_fence(),
        FenceContext::new("exec", "b").create_fence(),
    );
    r.add_fence(0, &a, Usage::Bookkeep).unwrap();
    assert!(r.add_fence(5, &a, Usage::Bookkeep).is_err());
    r.commit(&b);
    assert_eq!(obj.resv.fences(Usage::Read).len(), 1);
    assert_eq!(obj.resv.fences(Usage::Bookkeep).len(), 2);
    a.signal().unwrap();
    b.signal().unwrap();
}

#[test]
fn prepare_array() {
    let (o1, o2) = (gem(), gem());
    let mut t = Ticket::reservation();
    let list = [(&o1, Access::Write), (&o2, Access::Read)];
    let r = t.reserve(&list, 1).unwrap();
    let f = FenceContext::new("exec", "arr").create_fence();
    r.commit(&f);
    assert_eq!(o1.resv.fences(Usage::Write).len(), 1);
    assert_eq!(o2.resv.fences(Usage::Write).len(), 0);
    assert_eq!(o2.resv.fences(Usage::Read).len(), 1);
    f.signal().unwrap();
}

#[test]
fn multiple_loops() {
    // drm_exec_test's multiple_loops: reserve, back off, reserve again many times.
    let objs: Vec<Gem> = (0..4).map(|_| gem()).collect();
    let list: Vec<(&Gem, Access)> = objs.iter().map(|o| (o, Access::Write)).collect();
    let mut t = Ticket::reservation();
    for _ in 0..3 {
        t.reserve(&list, 1).unwrap().backoff();
    }
    for o in &objs {
        assert!(!o.resv.ww_mutex().is_locked());
    }
}

#[test]
fn wait_set_follows_usage_rules() {
    let obj = gem();
    let (wctx, rctx1, rctx2) = (
        FenceContext::new("exec", "w"),
        FenceContext::new("exec", "r1"),
        FenceContext::new("exec", "r2"),
    );
    let mut t = Ticket::reservation();
    let w = wctx.create_fence();
    t.reserve(&[(&obj, Access::Write)], 1).unwrap().commit(&w);
    let (r1, r2, r2b) = (
        rctx1.create_fence(),
        rctx2.create_fence(),
        rctx2.create_fence(),
    );
    t.reserve(&[(&obj, Access::Read)], 1).unwrap().commit(&r1);
    t.reserve(&[(&obj, Access::Read)], 1).unwrap().commit(&r2);
    t.reserve(&[(&obj, Access::Read)], 1).unwrap().commit(&r2b);
    // A reader waits for the writer only.
    let read = [(&obj, Access::Read)];
    let mut r = t.reserve(&read, 1).unwrap();
    let set: Vec<Fence> = r.wait_set().iter().cloned().collect();
    assert_eq!(set.len(), 1);
    assert!(set[0].ptr_eq(&w));
    drop(r);
    // A writer waits for everyone, one fence per context (the latest).
    let write = [(&obj, Access::Write)];
    let mut r = t.reserve(&write, 1).unwrap();
    let set: Vec<Fence> = r.wait_set().iter().cloned().collect();
    assert_eq!(set.len(), 3, "{set:?}");
    assert!(set.iter().any(|f| f.ptr_eq(&r2b)));
    assert!(!set.iter().any(|f| f.ptr_eq(&r2)));
    // Signaled fences are left out.
    w.signal().unwrap();
    let set = r.wait_set();
    assert_eq!(set.len(), 2);
    drop(r);
    for f in [r1, r2, r2b] {
        f.signal().unwrap();
    }
}

#[test]
fn drop_backs_off_without_side_effects() {
    let (o1, o2) = (gem(), gem());
    let mut t = Ticket::reservation();
    let list = [(&o1, Access::Write), (&o2, Access::Write)];
    let r = t.reserve(&list, 4).unwrap();
    drop(r);
    assert!(o1.resv.fences(Usage::Bookkeep).is_empty());
    assert!(!o1.resv.ww_mutex().is_locked() && !o2.resv.ww_mutex().is_locked());
}

#[test]
fn contended_threads_lose_no_fence() {
    // 4 threads reserve random subsets of 8 shared objects in random order,
    // then commit a fence. Every committed write fence must be found on its
    // objects (as the latest of its context) when all is done.
    let objs: Arc<Vec<Reservation>> = Arc::new((0..8).map(|_| Reservation::new()).collect());
    let workers: Vec<_> = (0..4u64)
        .map(|n| {
            let objs = objs.clone();
            thread::spawn(move || {
                let ctx = FenceContext::new("exec", "worker");
                let mut t = Ticket::reservation();
                let mut seed =
                    0x1234_5678_9ABC_DEF1u64 ^ (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut last: Vec<Option<Fence>> = vec![None; objs.len()];
                for _ in 0..300 {
                    let mut list: Vec<(&Reservation, Access)> = Vec::new();
                    for _ in 0..4 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let i = (seed % objs.len() as u64) as usize;
                        let access = if seed & 64 != 0 {
                            Access::Write
                        } else {
                            Access::Read
                        };
                        list.push((&objs[i], access));
                    }
                    let f = ctx.create_fence();
                    let r = t.reserve(&list, 1).unwrap();
                    let writes: Vec<u64> = r
                        .locked()
                        .filter(|(_, a)| *a == Access::Write)
                        .map(|(r, _)| r.id())
                        .collect();
                    r.commit(&f);
                    for (i, o) in objs.iter().enumerate() {
                        if writes.contains(&o.id()) {
                            last[i] = Some(f.clone());
                        }
                    }
                }
                last
            })
        })
        .collect();
    let results: Vec<Vec<Option<Fence>>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    for (i, o) in objs.iter().enumerate() {
        assert!(!o.ww_mutex().is_locked());
        let present: Vec<Fence> = o.fences(Usage::Bookkeep).iter().cloned().collect();
        for per_thread in &results {
            if let Some(f) = &per_thread[i] {
                // The thread's latest write fence, or a later fence of its
                // context, must still be on the object.
                assert!(
                    present.iter().any(|p| p.ptr_eq(f) || p.is_later(f)),
                    "object {i} lost a write fence"
                );
            }
        }
    }
}
