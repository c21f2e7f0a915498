//! Debug-build checks, deadlock injection, the ticket registry dump and the
//! stall warning.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use bufsync::resv::{Access, Algorithm, Misuse, Reservation, Ticket, WwClass, WwError, WwMutex};

/// Captures warnings so tests can check them.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn logs() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
        c
    })
}

fn warned(needle: &str) -> bool {
    logs().0.lock().unwrap().iter().any(|l| l.contains(needle))
}

#[test]
#[cfg(debug_assertions)]
fn lock_after_done_is_misuse() {
    let class = WwClass::new("debug", Algorithm::WaitDie);
    let (a, b) = (WwMutex::new(&class), WwMutex::new(&class));
    let t = Ticket::new(&class);
    let _g = t.lock(&a).unwrap();
    t.done_acquiring();
    let e = t.lock(&b).unwrap_err();
    assert_eq!(
        e,
        WwError::Misuse {
            object: b.id(),
            misuse: Misuse::AfterDone
        }
    );
}

#[test]
#[cfg(debug_assertions)]
fn lock_slow_rules() {
    let class = WwClass::new("debug", Algorithm::WaitDie);
    let (a, b) = (WwMutex::new(&class), WwMutex::new(&class));
    let t = Ticket::new(&class);
    assert!(matches!(
        t.lock_slow(&a),
        Err(WwError::Misuse {
            misuse: Misuse::SlowWithoutDeadlock,
            ..
        })
    ));
    // Make `t` (younger) back off on `b`, held by an older ticket.
    let old = Ticket::new(&class);
    let mut t = t;
    t.restart();
    let hold_b = old.lock(&b).unwrap();
    let ga = t.lock(&a).unwrap();
    assert_eq!(
        t.lock(&b).unwrap_err(),
        WwError::Deadlock { object: b.id() }
    );
    assert!(matches!(
        t.lock_slow(&b),
        Err(WwError::Misuse {
            misuse: Misuse::SlowWhileHolding { held: 1 },
            ..
        })
    ));
    drop(ga);
    assert_eq!(
        t.lock_slow(&a).unwrap_err(),
        WwError::Misuse {
            object: a.id(),
            misuse: Misuse::SlowWrongObject { expected: b.id() }
        }
    );
    drop(hold_b);
    let gb = t.lock_slow(&b).unwrap();
    let _ga = t.lock(&a).unwrap();
    drop(gb);
}

#[test]
#[cfg(debug_assertions)]
fn mixing_classes_is_misuse() {
    let (c1, c2) = (
        WwClass::new("one", Algorithm::WaitDie),
        WwClass::new("two", Algorithm::WaitDie),
    );
    let m = WwMutex::new(&c2);
    let t = Ticket::new(&c1);
    assert!(matches!(
        t.lock(&m),
        Err(WwError::Misuse {
            misuse: Misuse::ClassMismatch,
            ..
        })
    ));
    assert!(!m.is_locked());
}

#[test]
fn dropping_a_ticket_with_a_leaked_guard_warns() {
    logs();
    let class = WwClass::new("leak", Algorithm::WoundWait);
    let m = WwMutex::new(&class);
    {
        let t = Ticket::new(&class);
        std::mem::forget(t.lock(&m).unwrap());
    }
    assert!(warned("dropped while holding 1 locks"));
}

#[test]
fn injected_deadlocks_are_resolved_by_the_flow() {
    for algo in [Algorithm::WaitDie, Algorithm::WoundWait] {
        let class = WwClass::new("inject", algo);
        class.inject_deadlock_every(2);
        let objs: Vec<Reservation> = (0..6).map(|_| Reservation::with_class(&class)).collect();
        let list: Vec<(&Reservation, Access)> = objs.iter().map(|o| (o, Access::Write)).collect();
        let mut t = Ticket::new(&class);
        for _ in 0..50 {
            let r = t.reserve(&list, 1).unwrap();
            assert_eq!(r.locked().count(), objs.len());
        }
        assert!(objs.iter().all(|o| !o.ww_mutex().is_locked()));
        let dump = bufsync::debug::dump();
        let line = dump
            .lines()
            .skip_while(|l| !l.starts_with("class inject"))
            .find(|l| l.contains(&format!("stamp={}", t.stamp())))
            .unwrap_or_else(|| panic!("ticket missing from dump:\n{dump}"));
        assert!(
            !line.contains("backoffs=0"),
            "injection never fired: {line}"
        );
    }
}

#[test]
fn dump_shows_holders_and_waiters_and_warns_on_stalls() {
    logs();
    bufsync::debug::set_stall_threshold(Duration::from_millis(20));
    let class = WwClass::new("dumped", Algorithm::WaitDie);
    let m = Arc::new(WwMutex::new(&class));
    let holder = Ticket::new(&class);
    let g = holder.lock(&m).unwrap();
    let waiter = {
        let (m, class) = (m.clone(), class.clone());
        thread::spawn(move || {
            let t = Ticket::new(&class);
            let _g = t.lock(&m).unwrap();
        })
    };
    // Wait until the waiter shows up in the registry (no timing assertion:
    // the loop ends when the state is reached).
    let dump = loop {
        let d = bufsync::debug::dump();
        if d.contains(&format!("waits-for={}", m.id())) && warned("has waited") {
            break d;
        }
        thread::sleep(Duration::from_millis(5));
    };
    assert!(dump.contains(&format!("holds=[{}]", m.id())), "{dump}");
    assert!(dump.contains("class dumped (wait-die)"), "{dump}");
    drop(g);
    waiter.join().unwrap();
}

#[test]
fn timeouts_and_cancellation() {
    let class = WwClass::new("bounded", Algorithm::WaitDie);
    let m = Arc::new(WwMutex::new(&class));
    let _held = m.lock();
    let t = Ticket::new(&class);
    t.set_timeout(Some(Duration::from_millis(10)));
    assert_eq!(
        t.lock(&m).unwrap_err(),
        WwError::TimedOut { object: m.id() }
    );
    t.set_timeout(None);
    let cancel = t.cancel_handle();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        cancel.cancel();
    });
    assert_eq!(
        t.lock(&m).unwrap_err(),
        WwError::Cancelled { object: m.id() }
    );
    canceller.join().unwrap();
    assert!(m.lock_timeout(Duration::from_millis(5)).is_none());
}
