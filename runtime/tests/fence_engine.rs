//! The engine's retention: a watched fence is held only while it is pending
//! (dropped when it signals, not at its deadline), a fence that never
//! signals still ends with the timeout error, and the engine never signals
//! or drops a fence under its lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::{
    alloc_contexts, engine, Fence, FenceError, FenceKind, FenceStatus, WaitError,
};
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
    e.watch_deadline(&f, Instant::now() + Duration::from_secs(60));
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
    engine::watch_deadline(&f, Instant::now() + Duration::from_secs(60));
    f.signal().unwrap();
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the engine kept a handle");
}

#[test]
fn never_signaled_fence_times_out_then_is_released() {
    let e = engine::Engine::new();
    let (f, drops) = counted(None);
    let t0 = Instant::now();
    e.watch_deadline(&f, t0 + Duration::from_millis(50));
    assert_eq!(e.run_once(t0), Some(t0 + Duration::from_millis(50)));
    assert!(!f.is_signaled());
    assert_eq!(e.run_once(t0 + Duration::from_secs(1)), None);
    assert_eq!(f.status(), FenceStatus::Error(FenceError::TimedOut));
    assert_eq!(e.watched(), 0);
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn global_engine_times_out_a_never_signaled_fence() {
    let (f, drops) = counted(None);
    engine::watch_deadline(&f, Instant::now() + Duration::from_millis(5));
    assert_eq!(
        f.wait_timeout(Duration::from_secs(5)),
        Err(WaitError::Fence(FenceError::TimedOut))
    );
    drop(f);
    // The engine thread drops its handle right after signaling.
    let until = Instant::now() + Duration::from_secs(5);
    while drops.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn polled_fence_is_released_at_the_next_tick() {
    let e = engine::Engine::new();
    let word = Arc::new(AtomicU64::new(0));
    let (f, drops) = counted(Some(&word));
    let (g, _) = counted(Some(&word));
    let t0 = Instant::now();
    e.watch_polled(&f, Some(t0 + Duration::from_secs(60)));
    e.watch_polled(&g, Some(t0 + Duration::from_secs(60)));
    assert_eq!(e.watched(), 4, "a deadline and a poller each");
    // Signaled elsewhere (not by the poller): gone at the next tick.
    f.signal().unwrap();
    e.run_once(t0);
    assert_eq!(e.watched(), 2);
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the engine kept a handle");
    // Found signaled by the poller: gone in the same run.
    word.store(1, Ordering::Release);
    e.run_once(t0 + Duration::from_millis(1));
    assert!(g.is_signaled());
    assert_eq!(e.watched(), 0);
    assert_eq!(e.next_wakeup(), None);
}

#[test]
fn timeout_runs_callbacks_outside_the_engine_lock() {
    let e = engine::Engine::new();
    let f = Fence::software(alloc_contexts(1), 1);
    let seen = Arc::new(AtomicUsize::new(usize::MAX));
    {
        let (e, seen) = (e.clone(), seen.clone());
        // Takes the engine lock: would deadlock if run under it.
        f.add_callback(move |_| seen.store(e.watched(), Ordering::SeqCst))
            .unwrap();
    }
    let t0 = Instant::now();
    e.watch_deadline(&f, t0);
    e.run_once(t0);
    assert_eq!(f.status(), FenceStatus::Error(FenceError::TimedOut));
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[test]
fn stale_removal_leaves_a_reused_slot_alone() {
    let e = engine::Engine::new();
    let ctx = alloc_contexts(1);
    let f1 = Fence::software(ctx, 1);
    let f2 = Fence::software(ctx, 2);
    let t0 = Instant::now();
    {
        // Runs before the engine's own callback on f1 (callbacks run in the
        // order added): f2 takes the slot f1's timeout freed.
        let (e, f2) = (e.clone(), f2.clone());
        f1.add_callback(move |_| e.watch_deadline(&f2, t0 + Duration::from_secs(60)))
            .unwrap();
    }
    e.watch_deadline(&f1, t0 + Duration::from_millis(1));
    e.run_once(t0 + Duration::from_secs(1));
    assert_eq!(f1.status(), FenceStatus::Error(FenceError::TimedOut));
    assert_eq!(e.watched(), 1, "f1's late removal took f2's entry");
    assert_eq!(e.next_wakeup(), Some(t0 + Duration::from_secs(60)));
    f2.signal().unwrap();
    assert_eq!(e.watched(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any mix of deadlines, early signals and ticks: exactly the fences still
    /// pending at their deadline time out, in any order of registration, and
    /// the engine holds exactly the pending fences whose deadline is ahead.
    #[test]
    fn deadlines_fire_exactly_for_pending_fences(
        deadlines in prop::collection::vec(0u64..100, 1..64),
        signal_mask in prop::collection::vec(any::<bool>(), 64),
        ticks in prop::collection::vec(0u64..120, 1..8),
    ) {
        let e = engine::Engine::new();
        let ctx = alloc_contexts(1);
        let t0 = Instant::now();
        let fences: Vec<(Fence, u64)> = deadlines
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let f = Fence::software(ctx, i as u64 + 1);
                e.watch_deadline(&f, t0 + Duration::from_millis(d));
                (f, d)
            })
            .collect();
        let mut ticks = ticks;
        ticks.sort_unstable();
        for (n, &tick) in ticks.iter().enumerate() {
            // Signal a share of the fences between ticks.
            for (i, (f, _)) in fences.iter().enumerate() {
                if signal_mask[i] && i % ticks.len() == n && !f.is_signaled() {
                    f.signal().unwrap();
                }
            }
            e.run_once(t0 + Duration::from_millis(tick));
            let mut pending_ahead = 0;
            for (f, d) in &fences {
                match f.status() {
                    FenceStatus::Error(FenceError::TimedOut) => prop_assert!(*d <= tick),
                    FenceStatus::Pending => {
                        prop_assert!(*d > tick);
                        pending_ahead += 1;
                    }
                    FenceStatus::Signaled => {}
                    s => prop_assert!(false, "unexpected status {s:?}"),
                }
            }
            prop_assert_eq!(e.watched(), pending_ahead);
            let next = fences
                .iter()
                .filter(|(f, _)| !f.is_signaled())
                .map(|(_, d)| t0 + Duration::from_millis(*d))
                .min();
            prop_assert_eq!(e.next_wakeup(), next);
        }
    }
}
