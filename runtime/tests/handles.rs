//! Class "handles belong to what made them" (issue 16), fence and
//! reservation side: a callback id works only on its own fence; reserved
//! fence slots belong to the holder that reserved them and are forgotten at
//! unlock (class 5: the `ResvGuard` doc says so, and the code now does).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use bufsync::fence::{alloc_contexts, Fence, FenceContext};
use bufsync::resv::{Access, Reservation, ResvError, Ticket, Usage};

fn fence() -> Fence {
    Fence::software(alloc_contexts(1), 1)
}

fn counter() -> (Arc<AtomicUsize>, impl FnOnce(&Fence) + Send + 'static) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    (n, move |_: &Fence| {
        c.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn a_callback_id_of_another_fence_removes_nothing() {
    let (a, b) = (fence(), fence());
    let (ran_a, cb_a) = counter();
    let (ran_b, cb_b) = counter();
    let id_a = a.add_callback(cb_a).unwrap();
    let _id_b = b.add_callback(cb_b).unwrap();
    assert!(!b.remove_callback(id_a), "B removed a callback by A's id");
    b.signal().unwrap();
    assert_eq!(ran_b.load(Ordering::SeqCst), 1, "B's own callback was lost");
    // A's id still works on A (and only once).
    assert!(a.remove_callback(id_a));
    assert!(!a.remove_callback(id_a));
    a.signal().unwrap();
    assert_eq!(ran_a.load(Ordering::SeqCst), 0);
}

#[test]
fn an_id_outlives_its_fence_without_matching_a_new_one() {
    // A fence freed and another made: often at the same address.
    for _ in 0..1000 {
        let old = fence();
        let stale = old.add_callback(|_| {}).unwrap();
        drop(old);
        let new = fence();
        let (ran, cb) = counter();
        new.add_callback(cb).unwrap();
        assert!(!new.remove_callback(stale));
        new.signal().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn ids_are_unique_across_threads() {
    let ids = Arc::new(Mutex::new(HashSet::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let ids = ids.clone();
            thread::spawn(move || {
                let f = fence();
                let mine: Vec<_> = (0..20_000)
                    .map(|_| f.add_callback(|_| {}).unwrap())
                    .collect();
                let mut all = ids.lock().unwrap();
                for id in mine {
                    assert!(all.insert(id), "duplicate callback id {id:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Warnings logged by the runtime, for the tests that check its misuse logs.
fn warnings() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                warnings().lock().unwrap().push(r.args().to_string());
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: Capture = Capture;
    LOG.get_or_init(|| {
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Warn);
        Mutex::new(Vec::new())
    })
}

fn unreserved_appends(resv: &Reservation) -> usize {
    let needle = format!("object {} appended without a reserved slot", resv.id());
    warnings()
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains(&needle))
        .count()
}

#[test]
fn reserved_slots_are_forgotten_at_unlock() {
    warnings();
    let resv = Reservation::new();
    {
        let mut g = resv.lock_alone();
        g.reserve_fences(4).unwrap();
        assert_eq!(g.reserved_slots(), 4);
    }
    let mut g = resv.lock_alone();
    assert_eq!(
        g.reserved_slots(),
        0,
        "the last holder's slots count for this one"
    );
    g.add_fence(&fence(), Usage::Read);
    assert_eq!(
        unreserved_appends(&resv),
        1,
        "an append without a slot went unnoticed"
    );
    drop(g);
    // Slots reserved by the flow are forgotten too.
    let mut t = Ticket::reservation();
    let list = [(&resv, Access::Read)];
    let r = t.reserve(&list, 3).unwrap();
    r.backoff();
    let g = resv.lock_alone();
    assert_eq!(g.reserved_slots(), 0);
}

#[test]
fn only_an_append_uses_a_reserved_slot() {
    warnings();
    let resv = Reservation::new();
    let ctx = FenceContext::new("handles", "slots");
    let mut g = resv.lock_alone();
    g.reserve_fences(1).unwrap();
    g.add_fence(&ctx.create_fence(), Usage::Write);
    assert_eq!(g.reserved_slots(), 0);
    // A later fence of the same context replaces it: no slot needed.
    g.add_fence(&ctx.create_fence(), Usage::Write);
    assert_eq!(unreserved_appends(&resv), 0);
    // Not cumulative, as the kernel's: 2, then 1, leaves 1.
    g.reserve_fences(2).unwrap();
    g.reserve_fences(1).unwrap();
    assert_eq!(g.reserved_slots(), 1);
}

#[test]
fn a_reserved_list_index_is_checked() {
    let (a, b) = (Reservation::new(), Reservation::new());
    let mut t = Ticket::reservation();
    let list = [(&a, Access::Write), (&b, Access::Read)];
    let r = t.reserve(&list, 1).unwrap();
    assert_eq!(
        r.add_fence(2, &fence(), Usage::Bookkeep),
        Err(ResvError::NoSuchEntry { index: 2, len: 2 })
    );
    r.backoff();
    assert!(a.fences(Usage::Bookkeep).is_empty() && b.fences(Usage::Bookkeep).is_empty());
}
