//! The diagnostics tell the truth at every moment: `debug::snapshot()` /
//! `dump()` show every held lock and every waiter, also while a ticket is in
//! the middle of a reservation (holding A, waiting for B), ticket-less
//! holders and waiters, kept places; `WwMutex::state()` shows a lock's queue
//! in order. And what the registry holds stays bounded: dropped tickets and
//! locks leave it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bufsync::debug::{self, ClassReport, TicketReport};
use bufsync::resv::{
    Access, Algorithm, Holder, LockState, QueuedWaiter, Reservation, Ticket, WwClass, WwError,
    WwMutex,
};

/// Polls `cond` until it holds (no timing assertion: a bounded loop that
/// fails only if the state is never reached).
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "never reached: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn class_report(name: &str) -> ClassReport {
    let all = debug::snapshot();
    let mut found: Vec<ClassReport> = all.into_iter().filter(|c| c.name == name).collect();
    assert_eq!(found.len(), 1, "class names are unique in these tests");
    found.pop().unwrap()
}

fn ticket(report: &ClassReport, stamp: u64) -> &TicketReport {
    report
        .tickets
        .iter()
        .find(|t| t.stamp == stamp)
        .unwrap_or_else(|| panic!("ticket {stamp} missing: {report:#?}"))
}

fn lock_of(report: &ClassReport, object: u64) -> Option<&LockState> {
    report.locks.iter().find(|l| l.object == object)
}

/// A ticket reserves [A, B] while B is held: by a ticket it must wait for,
/// or without a ticket. While it waits, A shows as held by it, in the
/// snapshot, in the text dump and in A's own state.
fn mid_reserve(name: &'static str, algo: Algorithm, ticketless_blocker: bool) {
    let class = WwClass::new(name, algo);
    let objs: Arc<[Reservation; 2]> = Arc::new([
        Reservation::with_class(&class),
        Reservation::with_class(&class),
    ]);
    let (a, b) = (objs[0].id(), objs[1].id());
    // Wait-die: an older ticket waits for a younger holder. Wound-wait: a
    // younger ticket waits for an older holder (and wounds nobody).
    let (mut reserver, blocker) = match algo {
        Algorithm::WaitDie => {
            let r = Ticket::new(&class);
            (r, Ticket::new(&class))
        }
        Algorithm::WoundWait => {
            let b = Ticket::new(&class);
            (Ticket::new(&class), b)
        }
    };
    let stamp = reserver.stamp();
    let alone_guard;
    let ticket_guard;
    if ticketless_blocker {
        alone_guard = Some(objs[1].lock_alone());
        ticket_guard = None;
    } else {
        alone_guard = None;
        ticket_guard = Some(objs[1].lock(&blocker).unwrap());
    }
    let worker = {
        let objs = objs.clone();
        thread::spawn(move || {
            let list = [(&objs[0], Access::Write), (&objs[1], Access::Read)];
            let r = reserver.reserve(&list, 1).unwrap();
            assert_eq!(r.locked().count(), 2);
        })
    };
    until("the reserver queues on B", || {
        objs[1]
            .ww_mutex()
            .state()
            .waiting_stamps()
            .any(|s| s == stamp)
    });
    let report = class_report(name);
    let t = ticket(&report, stamp);
    assert_eq!(t.holds, vec![a], "{report:#?}");
    assert_eq!(t.waits_for, Some(b), "{report:#?}");
    assert_eq!(
        lock_of(&report, a).unwrap().holder,
        Some(Holder::Ticket { stamp })
    );
    let want_b = if ticketless_blocker {
        Holder::Ticketless
    } else {
        Holder::Ticket {
            stamp: blocker.stamp(),
        }
    };
    let lb = lock_of(&report, b).unwrap();
    assert_eq!(lb.holder, Some(want_b));
    assert_eq!(
        lb.waiters,
        vec![QueuedWaiter {
            stamp: Some(stamp),
            kept: false,
            holds_others: true
        }]
    );
    assert_eq!(
        objs[0].ww_mutex().state().holder,
        Some(Holder::Ticket { stamp })
    );
    let text = debug::dump();
    let block: String = text
        .lines()
        .skip_while(|l| !l.starts_with(&format!("class {name} ")))
        .take_while(|l| l.starts_with(&format!("class {name} ")) || l.starts_with("  "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        block.contains(&format!("stamp={stamp} ")) && block.contains(&format!("holds=[{a}]")),
        "{block}"
    );
    assert!(block.contains(&format!("waits-for={b}")), "{block}");
    assert!(
        block.contains(&format!("lock {a} holder=ticket {stamp} queue=[]")),
        "{block}"
    );
    assert!(
        block.contains(&format!("lock {b} holder=")) && block.contains(&format!("[{stamp} holds]")),
        "{block}"
    );
    drop(alone_guard);
    drop(ticket_guard);
    worker.join().unwrap();
    let report = class_report(name);
    assert!(report.locks.is_empty(), "{report:#?}");
}

#[test]
fn mid_reserve_wait_die_behind_a_ticket() {
    mid_reserve("diag-wd-ticket", Algorithm::WaitDie, false);
}

#[test]
fn mid_reserve_wound_wait_behind_a_ticket() {
    mid_reserve("diag-ww-ticket", Algorithm::WoundWait, false);
}

#[test]
fn mid_reserve_wait_die_behind_a_ticketless_holder() {
    mid_reserve("diag-wd-alone", Algorithm::WaitDie, true);
}

#[test]
fn mid_reserve_wound_wait_behind_a_ticketless_holder() {
    mid_reserve("diag-ww-alone", Algorithm::WoundWait, true);
}

/// Waiters are shown in the order the lock will be given out: tickets by
/// stamp whatever order they came in, ticket-less lockers last in arrival
/// order.
#[test]
fn queue_order_is_observable() {
    for algo in [Algorithm::WaitDie, Algorithm::WoundWait] {
        let class = WwClass::new("diag-order", algo);
        let m = Arc::new(WwMutex::new(&class));
        let held = m.lock();
        let tickets: Vec<Ticket> = (0..3).map(|_| Ticket::new(&class)).collect();
        let stamps: Vec<u64> = tickets.iter().map(Ticket::stamp).collect();
        let mut workers = Vec::new();
        // Youngest first.
        for (i, t) in tickets.into_iter().enumerate().rev() {
            let m2 = m.clone();
            workers.push(thread::spawn(move || drop(t.lock(&m2).unwrap())));
            until("ticket queued", || m.state().waiters.len() == 3 - i);
        }
        for n in 0..2 {
            let m2 = m.clone();
            workers.push(thread::spawn(move || drop(m2.lock())));
            until("ticket-less queued", || m.state().waiters.len() == 4 + n);
        }
        let s = m.state();
        assert_eq!(s.holder, Some(Holder::Ticketless));
        let order: Vec<Option<u64>> = s.waiters.iter().map(|w| w.stamp).collect();
        assert_eq!(
            order,
            vec![
                Some(stamps[0]),
                Some(stamps[1]),
                Some(stamps[2]),
                None,
                None
            ]
        );
        assert!(s.waiters.iter().all(|w| !w.kept && !w.holds_others));
        drop(held);
        for w in workers {
            w.join().unwrap();
        }
        let s = m.state();
        assert!(s.holder.is_none() && s.waiters.is_empty(), "{s:?}");
    }
}

/// A kept place keeps its queue position but not a free lock: a running
/// younger ticket takes the lock while the ticket that backed off is away
/// (the kernel's `lock_slow` waiter promises no more), the place stays
/// listed ahead of it, and `lock_slow` then gets the lock. One thread, so
/// the old rule (no younger locker ahead of a kept place) would time out.
#[test]
fn a_running_locker_takes_a_free_lock_ahead_of_a_kept_place() {
    let class = WwClass::new("diag-kept-free", Algorithm::WaitDie);
    let (k, m) = (WwMutex::new(&class), WwMutex::new(&class));
    let oldest = Ticket::new(&class);
    let middle = Ticket::new(&class);
    let young = Ticket::new(&class);
    let hold_k = oldest.lock(&k).unwrap();
    let gm = middle.lock(&m).unwrap();
    // Holding M, it meets an older owner on K: it dies and keeps its place.
    assert_eq!(
        middle.lock(&k).unwrap_err(),
        WwError::Deadlock { object: k.id() }
    );
    drop(gm);
    drop(hold_k);
    // K is free, with the kept place queued.
    assert_eq!(k.state().holder, None);
    young.set_timeout(Some(Duration::from_secs(10)));
    let gk = young
        .lock(&k)
        .expect("a running locker takes a free lock ahead of a kept place");
    let s = k.state();
    assert_eq!(
        s.holder,
        Some(Holder::Ticket {
            stamp: young.stamp()
        })
    );
    assert_eq!(
        s.waiters,
        vec![QueuedWaiter {
            stamp: Some(middle.stamp()),
            kept: true,
            holds_others: false
        }]
    );
    drop(gk);
    // The ticket that backed off comes back to its place and takes K.
    let gk = middle.lock_slow(&k).unwrap();
    let s = k.state();
    assert_eq!(
        s.holder,
        Some(Holder::Ticket {
            stamp: middle.stamp()
        })
    );
    assert!(s.waiters.is_empty(), "{s:?}");
    drop(gk);
}

/// A kept place stays ahead of younger lockers in wait-die: a ticket that
/// holds other locks and must wait for a lock whose queue keeps an older
/// ticket's place dies, even when the owner itself is younger than it (by
/// the owner alone it would wait). One thread: the old owner, the kept
/// place, then a still younger owner.
#[test]
fn a_kept_place_makes_a_younger_locker_with_locks_die() {
    let class = WwClass::new("diag-kept-die", Algorithm::WaitDie);
    let (k, x, z) = (
        WwMutex::new(&class),
        WwMutex::new(&class),
        WwMutex::new(&class),
    );
    let oldest = Ticket::new(&class);
    let kept = Ticket::new(&class);
    let locker = Ticket::new(&class);
    let youngest = Ticket::new(&class);
    let hold_k = oldest.lock(&k).unwrap();
    let gx = kept.lock(&x).unwrap();
    assert_eq!(
        kept.lock(&k).unwrap_err(),
        WwError::Deadlock { object: k.id() }
    );
    drop(gx);
    drop(hold_k);
    // The youngest takes the free lock; the older place stays queued.
    let gk = youngest.lock(&k).unwrap();
    assert_eq!(k.state().waiters.len(), 1);
    // Holding Z, the locker is older than the owner but younger than the
    // kept place: it must die, not wait.
    let gz = locker.lock(&z).unwrap();
    locker.set_timeout(Some(Duration::from_secs(10)));
    assert_eq!(
        locker.lock(&k).unwrap_err(),
        WwError::Deadlock { object: k.id() }
    );
    drop(gz);
    drop(gk);
    let gk = kept.lock_slow(&k).unwrap();
    assert_eq!(
        k.state().holder,
        Some(Holder::Ticket {
            stamp: kept.stamp()
        })
    );
    drop(gk);
}

/// A ticket that backed off keeps its place: shown as `kept`, and as the
/// ticket's `kept_place`, until it comes back or gives up (restart, drop).
#[test]
fn kept_places_show_and_go_away() {
    let class = WwClass::new("diag-kept", Algorithm::WaitDie);
    let (a, b) = (WwMutex::new(&class), WwMutex::new(&class));
    let old = Ticket::new(&class);
    let mut young = Ticket::new(&class);
    let hold_b = old.lock(&b).unwrap();
    let ga = young.lock(&a).unwrap();
    assert_eq!(
        young.lock(&b).unwrap_err(),
        WwError::Deadlock { object: b.id() }
    );
    let report = class_report("diag-kept");
    let y = ticket(&report, young.stamp());
    assert_eq!(y.kept_place, Some(b.id()));
    assert_eq!(y.holds, vec![a.id()]);
    assert_eq!(y.waits_for, None);
    assert_eq!(
        b.state().waiters,
        vec![QueuedWaiter {
            stamp: Some(young.stamp()),
            kept: true,
            holds_others: false
        }]
    );
    drop(ga);
    assert!(ticket(&class_report("diag-kept"), young.stamp())
        .holds
        .is_empty());
    // Giving up the place (restart) removes the entry.
    young.restart();
    assert!(b.state().waiters.is_empty());
    assert_eq!(
        ticket(&class_report("diag-kept"), young.stamp()).kept_place,
        None
    );
    drop(hold_b);
    // Dropped tickets leave the registry.
    drop(young);
    drop(old);
    let report = class_report("diag-kept");
    assert!(report.tickets.is_empty() && report.locks.is_empty());
}

/// While threads reserve at random, every snapshot is well formed per lock:
/// the queue is in stamp order with ticket-less waiters last, nobody is
/// queued twice, the holder is not queued for its own lock, and every
/// ticket a lock names as holder or waiter is a live ticket of the class or
/// ticket-less.
#[test]
fn snapshots_stay_well_formed_under_contention() {
    for algo in [Algorithm::WaitDie, Algorithm::WoundWait] {
        let name = match algo {
            Algorithm::WaitDie => "diag-stress-wd",
            Algorithm::WoundWait => "diag-stress-ww",
        };
        let class = WwClass::new(name, algo);
        let objs: Arc<Vec<Reservation>> =
            Arc::new((0..8).map(|_| Reservation::with_class(&class)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3u64)
            .map(|n| {
                let (objs, class, stop) = (objs.clone(), class.clone(), stop.clone());
                thread::spawn(move || {
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (n + 1);
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    let mut t = Ticket::new(&class);
                    while !stop.load(Ordering::Relaxed) {
                        t.restart();
                        let list: Vec<(&Reservation, Access)> = (0..3)
                            .map(|_| (&objs[(next() % 8) as usize], Access::Write))
                            .collect();
                        drop(t.reserve(&list, 1).unwrap());
                        if next() % 4 == 0 {
                            drop(objs[(next() % 8) as usize].lock_alone());
                        }
                    }
                })
            })
            .collect();
        let end = Instant::now() + Duration::from_millis(300);
        let mut checked = 0;
        while Instant::now() < end {
            for c in debug::snapshot().iter().filter(|c| c.name == name) {
                for l in &c.locks {
                    let keys: Vec<u64> = l
                        .waiters
                        .iter()
                        .map(|w| w.stamp.unwrap_or(u64::MAX))
                        .collect();
                    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{l:?}");
                    let mut stamps: Vec<u64> = l.waiting_stamps().collect();
                    stamps.dedup();
                    assert_eq!(stamps.len(), l.waiting_stamps().count(), "{l:?}");
                    if let Some(Holder::Ticket { stamp }) = l.holder {
                        assert!(l.waiting_stamps().all(|s| s != stamp), "{l:?}");
                    }
                    checked += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        assert!(objs.iter().all(|o| !o.ww_mutex().is_locked()));
        let _ = checked;
    }
}

/// Tickets, locks and classes that come and go leave nothing behind in the
/// registry (the registry holds live entries; its own bookkeeping is
/// bounded by its unit tests).
#[test]
fn registry_lists_only_live_tickets_and_locks() {
    let class = WwClass::new("diag-churn", Algorithm::WoundWait);
    let keep = Reservation::with_class(&class);
    for _ in 0..20_000 {
        let r = Reservation::with_class(&class);
        let mut t = Ticket::new(&class);
        let list = [(&r, Access::Write), (&keep, Access::Read)];
        drop(t.reserve(&list, 1).unwrap());
    }
    for _ in 0..2_000 {
        let c = WwClass::new("diag-churn-gone", Algorithm::WaitDie);
        drop(Ticket::new(&c));
    }
    let report = class_report("diag-churn");
    assert!(report.tickets.is_empty() && report.locks.is_empty());
    // A snapshot running in another test holds the classes it lists for
    // its duration: the dropped ones are gone once those end.
    until("dropped classes leave the registry", || {
        !debug::snapshot()
            .iter()
            .any(|c| c.name == "diag-churn-gone")
    });
    let t = Ticket::new(&class);
    let _g = keep.lock(&t).unwrap();
    let report = class_report("diag-churn");
    assert_eq!(report.tickets.len(), 1);
    assert_eq!(report.locks.len(), 1);
    assert_eq!(report.tickets[0].holds, vec![keep.id()]);
}
