//! loom models of the ww_mutex: ABBA, hand-off, wounding and stealing on 2-3
//! threads, for both algorithms, and the lock state the dump reads. Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p bufsync --release --test loom_resv`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;

use bufsync::resv::{Algorithm, Ticket, WwClass, WwError, WwGuard, WwMutex};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Takes `first` then `second` with `t`, resolving back-offs; returns guards.
fn lock_both<'m>(
    t: &'m Ticket,
    first: &'m WwMutex,
    second: &'m WwMutex,
) -> (WwGuard<'m, 'm>, WwGuard<'m, 'm>) {
    let mut g1 = t.lock(first).unwrap();
    let (mut a, mut b) = (first, second);
    loop {
        match t.lock(b) {
            Ok(g2) => return (g1, g2),
            Err(WwError::Deadlock { .. }) => {
                drop(g1);
                g1 = t.lock_slow(b).unwrap();
                std::mem::swap(&mut a, &mut b);
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn abba(algo: Algorithm) {
    model(move || {
        let class = WwClass::new("loom-abba", algo);
        let a = Arc::new(WwMutex::new(&class));
        let b = Arc::new(WwMutex::new(&class));
        let th = {
            let (a, b, class) = (a.clone(), b.clone(), class.clone());
            thread::spawn(move || {
                let t = Ticket::new(&class);
                let _g = lock_both(&t, &b, &a);
            })
        };
        let t = Ticket::new(&class);
        drop(lock_both(&t, &a, &b));
        th.join().unwrap();
        assert!(!a.is_locked() && !b.is_locked());
    });
}

#[test]
fn abba_wait_die() {
    abba(Algorithm::WaitDie);
}

#[test]
fn abba_wound_wait() {
    abba(Algorithm::WoundWait);
}

/// Three threads contend for one lock: every unlock hands it to a waiter
/// (or frees it), no waiter is lost, mutual exclusion holds.
fn handoff(algo: Algorithm) {
    model(move || {
        let class = WwClass::new("loom-handoff", algo);
        let m = Arc::new(WwMutex::new(&class));
        let inside = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let (m, class, inside) = (m.clone(), class.clone(), inside.clone());
                thread::spawn(move || {
                    let use_ticket = i == 0;
                    let t = Ticket::new(&class);
                    let enter = || {
                        assert_eq!(inside.fetch_add(1, loom::sync::atomic::Ordering::SeqCst), 0);
                        inside.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
                    };
                    if use_ticket {
                        let _g = t.lock(&m).unwrap();
                        enter();
                    } else {
                        let _g = m.lock();
                        enter();
                    }
                })
            })
            .collect();
        {
            let _g = m.lock();
            assert_eq!(inside.fetch_add(1, loom::sync::atomic::Ordering::SeqCst), 0);
            inside.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
        }
        for w in workers {
            w.join().unwrap();
        }
        assert!(!m.is_locked());
    });
}

#[test]
fn handoff_wait_die() {
    handoff(Algorithm::WaitDie);
}

#[test]
fn handoff_wound_wait() {
    handoff(Algorithm::WoundWait);
}

/// Wound-wait: the older ticket holds B and wants A, held by the younger,
/// which wants B: the younger is wounded and backs off; both finish.
#[test]
fn wounding() {
    model(|| {
        let class = WwClass::new("loom-wound", Algorithm::WoundWait);
        let a = Arc::new(WwMutex::new(&class));
        let b = Arc::new(WwMutex::new(&class));
        let old = Ticket::new(&class);
        let young = {
            let (a, b, class) = (a.clone(), b.clone(), class.clone());
            thread::spawn(move || {
                let t = Ticket::new(&class);
                let _g = lock_both(&t, &a, &b);
            })
        };
        drop(lock_both(&old, &b, &a));
        young.join().unwrap();
        assert!(!a.is_locked() && !b.is_locked());
    });
}

/// Three tickets over two locks in both orders: covers a back-off whose kept
/// place is handed the lock and then wounded before `lock_slow` (the wound
/// must survive), for both algorithms.
fn three(algo: Algorithm) {
    model(move || {
        let class = WwClass::new("loom-three", algo);
        let a = Arc::new(WwMutex::new(&class));
        let b = Arc::new(WwMutex::new(&class));
        let spawn = |first: Arc<WwMutex>, second: Arc<WwMutex>| {
            let class = class.clone();
            thread::spawn(move || {
                let t = Ticket::new(&class);
                let _g = lock_both(&t, &first, &second);
            })
        };
        let t1 = spawn(b.clone(), a.clone());
        let t2 = spawn(a.clone(), b.clone());
        let t = Ticket::new(&class);
        drop(lock_both(&t, &a, &b));
        t1.join().unwrap();
        t2.join().unwrap();
        assert!(!a.is_locked() && !b.is_locked());
    });
}

#[test]
fn three_wait_die() {
    three(Algorithm::WaitDie);
}

#[test]
fn three_wound_wait() {
    three(Algorithm::WoundWait);
}

/// A lock released to the queue is taken first by a ticket that comes along
/// (the kernel's stealing) while a ticket that holds another lock waits
/// behind the woken head; each then wants the other's lock. Whichever is
/// younger must back off, and everyone finishes in every interleaving:
/// - wound-wait, the waiter older (`waiter_older`): the waiter, asleep and
///   not the head, is not woken by the release and cannot wound the
///   stealer, so the stealer wounds itself when it steals (without that,
///   loom finds the deadlock);
/// - wound-wait, the stealer older: it wounds the waiter when it queues;
/// - wait-die: a waiter that holds locks is never behind an older ticket
///   (it would have died), so it is the head, woken by the release, and
///   dies on an older stealer; a younger stealer dies on the older owner.
fn steal(algo: Algorithm, waiter_older: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        let class = WwClass::new("loom-steal", algo);
        let m = Arc::new(WwMutex::new(&class));
        let c = Arc::new(WwMutex::new(&class));
        let held = m.lock();
        let head = Ticket::new(&class);
        let (waiter, stealer) = if waiter_older {
            let w = Ticket::new(&class);
            (w, Ticket::new(&class))
        } else {
            let s = Ticket::new(&class);
            (Ticket::new(&class), s)
        };
        let h = {
            let m = m.clone();
            thread::spawn(move || drop(head.lock(&m).unwrap()))
        };
        let w = {
            let (m, c) = (m.clone(), c.clone());
            thread::spawn(move || {
                let _g = lock_both(&waiter, &c, &m);
            })
        };
        let s = {
            let (m, c) = (m.clone(), c.clone());
            thread::spawn(move || {
                let _g = lock_both(&stealer, &m, &c);
            })
        };
        drop(held);
        h.join().unwrap();
        w.join().unwrap();
        s.join().unwrap();
        assert!(!m.is_locked() && !c.is_locked());
    });
}

#[test]
fn steal_wait_die_waiter_older() {
    steal(Algorithm::WaitDie, true);
}

#[test]
fn steal_wait_die_stealer_older() {
    steal(Algorithm::WaitDie, false);
}

#[test]
fn steal_wound_wait_waiter_older() {
    steal(Algorithm::WoundWait, true);
}

#[test]
fn steal_wound_wait_stealer_older() {
    steal(Algorithm::WoundWait, false);
}

/// A ticket that holds A and waits for B: once B's queue shows it, A's state
/// shows it as the holder (what `debug::dump` reads), in every interleaving.
#[test]
fn holder_visible_while_waiting() {
    use bufsync::resv::Holder;
    model(|| {
        let class = WwClass::new("loom-visible", Algorithm::WaitDie);
        let a = Arc::new(WwMutex::new(&class));
        let b = Arc::new(WwMutex::new(&class));
        let held = b.lock();
        let t = Ticket::new(&class);
        let stamp = t.stamp();
        let worker = {
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                let _ga = t.lock(&a).unwrap();
                let _gb = t.lock(&b).unwrap();
            })
        };
        while b.state().waiters.is_empty() {
            thread::yield_now();
        }
        assert_eq!(a.state().holder, Some(Holder::Ticket { stamp }));
        drop(held);
        worker.join().unwrap();
        assert!(!a.is_locked() && !b.is_locked());
    });
}

/// The fence list: a reader snapshots it (under the list mutex only, never
/// the ww lock; the first reader after an edit copies the list) while the
/// ww lock holder edits it in place and grows it. The reader sees only
/// states the writer published, each one whole.
#[test]
fn fence_list_reader_and_writer() {
    use bufsync::fence::Fence;
    use bufsync::resv::{Reservation, Usage};
    model(|| {
        let class = WwClass::new("loom-fences", Algorithm::WaitDie);
        let resv = Arc::new(Reservation::with_class(&class));
        let f1 = Fence::software(1, 1);
        let f2 = Fence::software(1, 2);
        let f3 = Fence::software(2, 1);
        {
            let mut g = resv.lock_alone();
            g.reserve_fences(1).unwrap();
            g.add_fence(&f1, Usage::Write);
        }
        let reader = {
            let resv = resv.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let seen: Vec<(u64, u64)> = resv
                        .fences(Usage::Bookkeep)
                        .iter()
                        .map(|f| (f.context(), f.seqno()))
                        .collect();
                    assert!(
                        seen == [(1, 1)] || seen == [(1, 2)] || seen == [(1, 2), (2, 1)],
                        "torn snapshot {seen:?}"
                    );
                }
            })
        };
        {
            let mut g = resv.lock_alone();
            g.reserve_fences(1).unwrap();
            // Replaces f1 (same context, later): in place or a copy.
            g.add_fence(&f2, Usage::Write);
            // The fence just placed again: no change, no list lock.
            g.add_fence(&f2, Usage::Write);
            g.reserve_fences(1).unwrap();
            g.add_fence(&f3, Usage::Read);
        }
        reader.join().unwrap();
        let last: Vec<u64> = resv.fences(Usage::Read).iter().map(|f| f.seqno()).collect();
        assert_eq!(last, [2, 1]);
    });
}

/// Two tickets commit to one reservation through the flow: the ww lock
/// orders their edits of the fence list and of its last-placed record, which
/// lets a commit of the fence just placed skip the list lock.
#[test]
fn fence_list_two_writers() {
    use bufsync::fence::Fence;
    use bufsync::resv::{Access, Reservation, Usage};
    model(|| {
        let class = WwClass::new("loom-fences2", Algorithm::WaitDie);
        let resv = Arc::new(Reservation::with_class(&class));
        let other = {
            let (resv, class) = (resv.clone(), class.clone());
            thread::spawn(move || {
                let mut t = Ticket::new(&class);
                let list = [(&*resv, Access::Read)];
                let r = t.reserve(&list, 1).unwrap();
                r.commit(&Fence::software(2, 1));
            })
        };
        let mut t = Ticket::new(&class);
        let list = [(&*resv, Access::Write)];
        let f = Fence::software(1, 1);
        let r = t.reserve(&list, 1).unwrap();
        r.commit(&f);
        let r = t.reserve(&list, 1).unwrap();
        r.commit(&f);
        other.join().unwrap();
        assert_eq!(resv.fences(Usage::Read).len(), 2);
    });
}
