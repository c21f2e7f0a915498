//! The rule `fence/rules.rs` promises the reservation code checks: no lock
//! that may wait is taken in a fence's signal path (callbacks included), in
//! debug builds. Ticket locks and the reservation flow return
//! `Misuse::InSignalPath` (with nothing held afterwards); ticket-less locks,
//! which cannot return an error, panic. Try-locks cannot wait and are allowed.

#![cfg(debug_assertions)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use bufsync::fence::{in_signal_path, Fence, FenceContext};
use bufsync::resv::{
    Access, Algorithm, Misuse, Reservation, ResvError, Ticket, WwClass, WwError, WwMutex,
};

fn fence() -> Fence {
    FenceContext::new("rules", "signal-path").create_fence()
}

/// Runs `f` in a callback of a fresh fence, signals it on this thread and
/// returns what `f` returned.
fn in_callback<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let fence = fence();
    fence
        .add_callback(move |_| {
            assert!(in_signal_path());
            tx.send(f()).unwrap();
        })
        .unwrap();
    fence.signal().unwrap();
    assert!(!in_signal_path(), "the signal path ended with the signal");
    rx.recv().unwrap()
}

fn is_signal_misuse(e: &WwError) -> bool {
    matches!(
        e,
        WwError::Misuse {
            misuse: Misuse::InSignalPath,
            ..
        }
    )
}

#[test]
fn ticket_lock_in_a_callback_is_misuse_for_both_algorithms() {
    for algo in [Algorithm::WaitDie, Algorithm::WoundWait] {
        let class = WwClass::new("rules", algo);
        let resv = Arc::new(Reservation::with_class(&class));
        let (r, c) = (resv.clone(), class.clone());
        let err = in_callback(move || {
            let t = Ticket::new(&c);
            let e = r.lock(&t).unwrap_err();
            let held = r.ww_mutex().is_locked();
            (e, held, t.acquired())
        });
        assert!(is_signal_misuse(&err.0), "{:?}", err.0);
        assert!(!err.1, "the failed lock left the reservation locked");
        assert_eq!(err.2, 0);
        // Outside the signal path the same lock works.
        let t = Ticket::new(&class);
        drop(resv.lock(&t).unwrap());
    }
}

#[test]
fn reservation_flow_in_a_callback_is_misuse_with_nothing_held() {
    let objs: Arc<Vec<Reservation>> = Arc::new((0..4).map(|_| Reservation::new()).collect());
    let o = objs.clone();
    let err = in_callback(move || {
        let mut t = Ticket::reservation();
        let list: Vec<(&Reservation, Access)> = o.iter().map(|r| (r, Access::Write)).collect();
        t.reserve(&list, 1).map(|_| ()).unwrap_err()
    });
    match err {
        ResvError::Lock(e) => assert!(is_signal_misuse(&e), "{e:?}"),
        other => panic!("expected a lock misuse, got {other:?}"),
    }
    assert!(objs.iter().all(|r| !r.ww_mutex().is_locked()));
}

#[test]
fn lock_slow_in_a_callback_is_misuse() {
    let class = WwClass::new("rules-slow", Algorithm::WaitDie);
    let (a, b) = (
        Arc::new(WwMutex::new(&class)),
        Arc::new(WwMutex::new(&class)),
    );
    // Make a young ticket back off on `b` outside the signal path ...
    let old = Ticket::new(&class);
    let young = Ticket::new(&class);
    let hold_b = old.lock(&b).unwrap();
    let ga = young.lock(&a).unwrap();
    assert!(matches!(young.lock(&b), Err(WwError::Deadlock { .. })));
    drop(ga);
    drop(hold_b);
    // ... then resolve it inside one: refused, nothing taken.
    let b2 = b.clone();
    let (e, locked) = in_callback(move || {
        let e = young.lock_slow(&b2).map(|_| ()).unwrap_err();
        (e, b2.is_locked())
    });
    assert!(is_signal_misuse(&e), "{e:?}");
    assert!(!locked);
}

#[test]
fn ticketless_locks_in_a_callback_panic() {
    let resv = Arc::new(Reservation::new());
    let m = Arc::new(WwMutex::new(bufsync::resv::reservation_class()));
    let (r, m2) = (resv.clone(), m.clone());
    let (alone, plain, timed) = in_callback(move || {
        let alone = catch_unwind(AssertUnwindSafe(|| drop(r.lock_alone()))).is_err();
        let plain = catch_unwind(AssertUnwindSafe(|| drop(m2.lock()))).is_err();
        let timed = catch_unwind(AssertUnwindSafe(|| {
            drop(m2.lock_timeout(std::time::Duration::from_millis(1)))
        }))
        .is_err();
        (alone, plain, timed)
    });
    assert!(alone, "lock_alone in a callback did not panic");
    assert!(plain, "WwMutex::lock in a callback did not panic");
    assert!(timed, "WwMutex::lock_timeout in a callback did not panic");
    assert!(!resv.ww_mutex().is_locked() && !m.is_locked());
    drop(resv.lock_alone());
}

#[test]
fn try_locks_cannot_wait_and_are_allowed() {
    let class = WwClass::new("rules-try", Algorithm::WoundWait);
    let m = Arc::new(WwMutex::new(&class));
    let (m2, c) = (m.clone(), class.clone());
    let (plain, ticket) = in_callback(move || {
        let plain = m2.try_lock().is_some();
        let t = Ticket::new(&c);
        let ticket = matches!(t.try_lock(&m2), Ok(Some(_)));
        (plain, ticket)
    });
    assert!(plain && ticket);
    assert!(!m.is_locked());
}

#[test]
fn nested_and_cross_thread_signal_paths_are_caught() {
    // A callback that signals another fence, whose callback locks: still
    // the signal path.
    let resv = Arc::new(Reservation::new());
    let inner = fence();
    let seen = Arc::new(Mutex::new(None));
    {
        let (r, s) = (resv.clone(), seen.clone());
        inner
            .add_callback(move |_| {
                let t = Ticket::reservation();
                *s.lock().unwrap() = Some(r.lock(&t).map(|_| ()).unwrap_err());
            })
            .unwrap();
    }
    let outer = fence();
    {
        let inner = inner.clone();
        outer
            .add_callback(move |_| inner.signal().unwrap())
            .unwrap();
    }
    // Signaled on another thread: the callbacks run there.
    thread::spawn(move || outer.signal().unwrap())
        .join()
        .unwrap();
    let e = seen.lock().unwrap().take().expect("inner callback ran");
    assert!(is_signal_misuse(&e), "{e:?}");
    assert!(!resv.ww_mutex().is_locked());
}
