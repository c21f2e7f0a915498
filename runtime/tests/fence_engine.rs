//! The engine: it never signals a fence (only its producer does), holds a
//! watched fence only while it is pending (dropped when it signals), reports
//! a fence stuck past its threshold once and lists it until it signals, and
//! never drops a fence or calls out under its lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::{alloc_contexts, engine, Fence, FenceKind, FenceStatus, WaitError};
use proptest::prelude::*;

/// A kind that counts its drops (the fence's last handle going away drops
/// its kind, as a sync_file fence closes its fd) and can poll a word.
struct Counted {
    drops: Arc<AtomicUsize>,
    word: Option<Arc<AtomicU64>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl FenceKind for Counted {
    fn driver_name(&self) -> &str {
        "test"
    }
    fn timeline_name(&self) -> &str {
        "counted"
    }
    fn poll_signaled(&self, fence: &Fence) -> bool {
        self.word
            .as_ref()
            .is_some_and(|w| w.load(Ordering::Acquire) >= fence.seqno())
    }
    fn needs_polling(&self) -> bool {
        self.word.is_some()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn counted(word: Option<&Arc<AtomicU64>>) -> (Fence, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let kind = Arc::new(Counted {
        drops: drops.clone(),
        word: word.cloned(),
    });
    (Fence::new(kind, alloc_contexts(1), 1), drops)
}

#[test]
fn signaled_fence_is_released_at_once() {
    let e = engine::Engine::new();
    let (f, drops) = counted(None);
    e.watch(&f);
    assert_eq!(e.watched(), 1);
    f.signal().unwrap();
    // Taken out on the signaling thread: no run_once needed.
    assert_eq!(e.watched(), 0);
    assert_eq!(e.next_wakeup(), None);
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the engine kept a handle");
}

#[test]
fn global_engine_releases_a_signaled_fence_at_once() {
    let (f, drops) = counted(None);
    engine::watch(&f);
    f.signal().unwrap();
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the engine kept a handle");
}

#[test]
fn never_signaled_fence_is_reported_not_signaled() {
    let e = engine::Engine::new();
    e.set_stuck_threshold(Duration::from_millis(50));
    let (f, drops) = counted(None);
    let t0 = Instant::now();
    e.watch(&f);
    let due = e.next_wakeup().expect("the stuck report is due");
    assert!(due >= t0 + Duration::from_millis(50));
    assert_eq!(e.run_once(t0), Some(due));
    assert!(e.stuck().is_empty());
    // Far past the threshold (3x and more): reported, still pending.
    assert_eq!(e.run_once(t0 + Duration::from_secs(60)), None);
    assert_eq!(f.status(), FenceStatus::Pending);
    let stuck = e.stuck();
    assert_eq!(stuck.len(), 1);
    assert!(stuck[0].fence.ptr_eq(&f));
    assert!(
        stuck[0].to_string().contains("test/counted"),
        "{}",
        stuck[0]
    );
    drop(stuck);
    // A waiter's bound ends the wait, not the fence.
    assert_eq!(
        f.wait_timeout(Duration::from_millis(5)),
        Err(WaitError::TimedOut)
    );
    assert_eq!(f.status(), FenceStatus::Pending);
    assert_eq!(e.watched(), 1);
    // Its producer finishes: released, no longer listed.
    f.signal().unwrap();
    assert_eq!(f.status(), FenceStatus::Signaled);
    assert_eq!(e.watched(), 0);
    assert!(e.stuck().is_empty());
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn stuck_fence_appears_in_the_dump_until_it_signals() {
    let e = engine::global();
    e.set_stuck_threshold(Duration::from_millis(20));
    let f = Fence::new(
        Arc::new(bufsync::fence::SoftwareKind::new("stuckdrv", "stucktl")),
        alloc_contexts(1),
        7,
    );
    engine::watch(&f);
    e.set_stuck_threshold(engine::DEFAULT_STUCK_THRESHOLD);
    let until = Instant::now() + Duration::from_secs(10);
    while !bufsync::debug::dump().contains("stuckdrv/stucktl") {
        assert!(
            Instant::now() < until,
            "not reported: {}",
            bufsync::debug::dump()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!f.is_signaled(), "the engine signaled a foreign fence");
    assert!(engine::stuck().iter().any(|s| s.fence.ptr_eq(&f)));
    f.signal().unwrap();
    assert!(!bufsync::debug::dump().contains("stuckdrv/stucktl"));
}

#[test]
fn polled_fence_is_released_at_the_next_tick() {
    let e = engine::Engine::new();
    let word = Arc::new(AtomicU64::new(0));
    let (f, drops) = counted(Some(&word));
    let (g, _) = counted(Some(&word));
    let t0 = Instant::now();
    e.watch_polled(&f);
    e.watch_polled(&g);
    assert_eq!(e.watched(), 2);
    // Signaled elsewhere (not by the poller): gone at the next tick.
    f.signal().unwrap();
    e.run_once(t0 + Duration::from_millis(1));
    assert_eq!(e.watched(), 1);
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the engine kept a handle");
    // Found signaled by the poller: gone in the same run.
    word.store(1, Ordering::Release);
    e.run_once(t0 + Duration::from_millis(2));
    assert!(g.is_signaled());
    assert_eq!(e.watched(), 0);
    assert_eq!(e.next_wakeup(), None);
}

#[test]
fn polled_fence_is_polled_until_its_producer_signals() {
    let e = engine::Engine::new();
    e.set_stuck_threshold(Duration::from_millis(1));
    let word = Arc::new(AtomicU64::new(0));
    let (f, _) = counted(Some(&word));
    e.watch_polled(&f);
    let t0 = Instant::now();
    // Hours later: reported as stuck, still pending, still polled (5 ms).
    for s in [1u64, 60, 3600] {
        let next = e.run_once(t0 + Duration::from_secs(s)).expect("polled");
        assert!(next <= t0 + Duration::from_secs(s) + Duration::from_millis(5));
        assert_eq!(f.status(), FenceStatus::Pending);
    }
    assert_eq!(e.stuck().len(), 1);
    word.store(1, Ordering::Release);
    e.run_once(t0 + Duration::from_secs(3601));
    assert_eq!(f.status(), FenceStatus::Signaled);
    assert_eq!(e.watched(), 0);
}

#[test]
fn waker_is_called_when_the_next_wakeup_moves_earlier() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let e = engine::Engine::with_waker(move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let (a, _) = counted(None);
    e.watch(&a);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "first registration");
    let (b, _) = counted(None);
    e.watch(&b);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a later due time");
    let word = Arc::new(AtomicU64::new(0));
    let (p, _) = counted(Some(&word));
    e.watch_polled(&p);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a poll is due sooner");
}

#[test]
fn stale_removal_leaves_a_reused_slot_alone() {
    let e = engine::Engine::new();
    e.set_stuck_threshold(Duration::ZERO);
    let ctx = alloc_contexts(1);
    let f1 = Fence::software(ctx, 1);
    let f2 = Fence::software(ctx, 2);
    let t0 = Instant::now();
    {
        // Runs before the engine's own callback on f1 (callbacks run in the
        // order added): a tick drops f1's entry (its flag is set), f2 takes
        // the freed slot, then f1's late removal must leave it alone.
        let (e, f2) = (e.clone(), f2.clone());
        f1.add_callback(move |_| {
            e.run_once(t0 + Duration::from_secs(1));
            e.watch(&f2);
        })
        .unwrap();
    }
    e.watch(&f1);
    f1.signal().unwrap();
    assert_eq!(e.watched(), 1, "f1's late removal took f2's entry");
    f2.signal().unwrap();
    assert_eq!(e.watched(), 0);
}

#[test]
fn run_once_calls_hooks_outside_the_engine_lock() {
    let e = engine::Engine::new();
    let seen = Arc::new(AtomicUsize::new(usize::MAX));
    let word = Arc::new(AtomicU64::new(0));
    let (f, _) = counted(Some(&word));
    {
        let (e, seen) = (e.clone(), seen.clone());
        // Takes the engine lock: would deadlock if run under it.
        f.add_callback(move |_| seen.store(e.watched(), Ordering::SeqCst))
            .unwrap();
    }
    // add_callback enabled signaling, which handed f to the global poller;
    // poll it here as well.
    e.watch_polled(&f);
    word.store(1, Ordering::Release);
    e.run_once(Instant::now() + Duration::from_millis(1));
    assert_eq!(f.status(), FenceStatus::Signaled);
    assert_ne!(seen.load(Ordering::SeqCst), usize::MAX);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any mix of registrations, early signals and ticks: the engine never
    /// signals a fence, holds exactly the pending ones, and after a tick past
    /// the threshold lists exactly the pending ones as stuck.
    #[test]
    fn engine_holds_exactly_the_pending_fences(
        count in 1usize..64,
        signal_mask in prop::collection::vec(any::<bool>(), 64),
        ticks in prop::collection::vec(0u64..120, 1..8),
    ) {
        let e = engine::Engine::new();
        e.set_stuck_threshold(Duration::from_secs(3600));
        let ctx = alloc_contexts(1);
        let t0 = Instant::now();
        let fences: Vec<Fence> = (0..count)
            .map(|i| {
                let f = Fence::software(ctx, i as u64 + 1);
                e.watch(&f);
                f
            })
            .collect();
        let mut ticks = ticks;
        ticks.sort_unstable();
        for (n, &tick) in ticks.iter().enumerate() {
            for (i, f) in fences.iter().enumerate() {
                if signal_mask[i] && i % ticks.len() == n && !f.is_signaled() {
                    f.signal().unwrap();
                }
            }
            e.run_once(t0 + Duration::from_millis(tick));
            let pending = fences.iter().filter(|f| !f.is_signaled()).count();
            prop_assert_eq!(e.watched(), pending);
            prop_assert!(e.stuck().is_empty());
        }
        let pending: Vec<&Fence> = fences.iter().filter(|f| !f.is_signaled()).collect();
        e.run_once(t0 + Duration::from_secs(7200));
        let stuck = e.stuck();
        prop_assert_eq!(stuck.len(), pending.len());
        for f in &pending {
            prop_assert_eq!(f.status(), FenceStatus::Pending);
            prop_assert!(stuck.iter().any(|s| s.fence.ptr_eq(f)));
        }
        prop_assert_eq!(e.next_wakeup(), None);
    }
}
