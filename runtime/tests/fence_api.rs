//! Behaviour beyond the kernel self-tests: kinds, contexts, wait-sets,
//! cancellation, the engine and the debug rules.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bufsync::fence::{
    alloc_contexts, engine, in_signal_path, CancelToken, Fence, FenceContext, FenceError,
    FenceKind, FenceSet, FenceStatus, WaitError,
};

/// A kind whose state lives in a seqno word (like the old `seqno_fence`).
struct SeqnoWord {
    word: Arc<AtomicU64>,
    enabled: AtomicUsize,
    fail: bool,
}

impl FenceKind for SeqnoWord {
    fn driver_name(&self) -> &str {
        "seqno"
    }
    fn timeline_name(&self) -> &str {
        "word"
    }
    fn enable_signaling(&self, _fence: &Fence) -> Result<(), FenceError> {
        self.enabled.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            Err(FenceError::DeviceLost)
        } else {
            Ok(())
        }
    }
    fn poll_signaled(&self, fence: &Fence) -> bool {
        (self.word.load(Ordering::Acquire) as u32).wrapping_sub(fence.seqno() as u32) as i32 >= 0
    }
    fn needs_polling(&self) -> bool {
        true
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn is_64bit(&self) -> bool {
        false
    }
}

fn seqno_fence(word: &Arc<AtomicU64>, context: u64, seqno: u64, fail: bool) -> Fence {
    Fence::new(
        Arc::new(SeqnoWord {
            word: word.clone(),
            enabled: AtomicUsize::new(0),
            fail,
        }),
        context,
        seqno,
    )
}

#[test]
fn enable_signaling_runs_once_and_its_error_signals() {
    let word = Arc::new(AtomicU64::new(0));
    let f = seqno_fence(&word, alloc_contexts(1), 1, true);
    assert!(!f.is_signaled());
    f.enable_signaling();
    f.enable_signaling();
    assert_eq!(
        f.kind_as::<SeqnoWord>()
            .unwrap()
            .enabled
            .load(Ordering::SeqCst),
        1
    );
    assert_eq!(f.status(), FenceStatus::Error(FenceError::DeviceLost));
    assert!(f.add_callback(|_| {}).is_err());
}

#[test]
fn poll_hook_signals_and_engine_polls() {
    let word = Arc::new(AtomicU64::new(0));
    let ctx = alloc_contexts(1);
    let f1 = seqno_fence(&word, ctx, 1, false);
    let f2 = seqno_fence(&word, ctx, 2, false);
    assert!(!f1.is_signaled());
    word.store(1, Ordering::Release);
    assert!(f1.is_signaled(), "the poll hook signals");
    assert!(f1.timestamp().is_some());
    // f2 is waited on: the engine's poller must find it.
    let w = {
        let word = word.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(2));
            word.store(2, Ordering::Release);
        })
    };
    assert_eq!(f2.wait_timeout(Duration::from_secs(5)), Ok(()));
    w.join().unwrap();
    assert_eq!(f2.driver_name(), "seqno");
}

#[test]
fn is_later_32bit_wraps() {
    let word = Arc::new(AtomicU64::new(0));
    let ctx = alloc_contexts(1);
    let old = seqno_fence(&word, ctx, u32::MAX as u64, false);
    let new = seqno_fence(&word, ctx, 1, false);
    assert!(new.is_later(&old));
    assert!(!old.is_later(&new));
    let a = Fence::software(ctx, u32::MAX as u64);
    let b = Fence::software(ctx, u32::MAX as u64 + 1);
    assert!(b.is_later(&a), "64-bit kinds compare plainly");
    assert!(
        !b.is_later(&Fence::software(ctx + 1, 0)),
        "different contexts are not ordered"
    );
}

#[test]
fn contexts_and_seqnos_increase() {
    let a = FenceContext::new("test", "a");
    let b = FenceContext::new("test", "b");
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id(), 0);
    let f1 = a.create_fence();
    let f2 = a.create_fence();
    assert_eq!((f1.seqno(), f2.seqno()), (1, 2));
    assert!(f2.is_later(&f1));
    assert_eq!(f1.timeline_name(), "a");
    assert_eq!(f1.driver_name(), "test");
    let base = alloc_contexts(4);
    assert!(alloc_contexts(1) >= base + 4);
}

#[test]
fn callbacks_run_in_order_on_the_signaling_thread_inside_the_signal_path() {
    let f = Fence::software(alloc_contexts(1), 1);
    let (tx, rx) = mpsc::channel();
    for i in 0..3 {
        let tx = tx.clone();
        f.add_callback(move |fence| {
            assert!(fence.is_signaled());
            assert!(fence.timestamp().is_some());
            assert_eq!(
                in_signal_path(),
                cfg!(debug_assertions),
                "callbacks are part of the signal path"
            );
            tx.send(i).unwrap();
        })
        .unwrap();
    }
    assert!(!in_signal_path());
    f.signal().unwrap();
    assert!(!in_signal_path());
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[test]
fn callback_may_reenter_the_fence() {
    let f = Fence::software(alloc_contexts(1), 1);
    let g = Fence::software(alloc_contexts(1), 1);
    let g2 = g.clone();
    f.add_callback(move |fence| {
        // No internal lock is held: touching fences here must not deadlock.
        assert!(fence.add_callback(|_| {}).is_err());
        g2.signal().unwrap();
    })
    .unwrap();
    f.signal().unwrap();
    assert!(g.is_signaled());
}

#[test]
fn fence_set_dedups_per_context() {
    let ctx = alloc_contexts(2);
    let a1 = Fence::software(ctx, 1);
    let a2 = Fence::software(ctx, 2);
    let b1 = Fence::software(ctx + 1, 1);
    let mut set = FenceSet::new();
    set.add(&a2);
    set.add(&a1);
    set.add(&b1);
    set.add(&b1);
    assert_eq!(set.len(), 2);
    assert!(set.iter().any(|f| f.ptr_eq(&a2)));
    assert!(!set.iter().any(|f| f.ptr_eq(&a1)));
    assert!(!set.is_signaled());
    assert_eq!(
        set.wait_all(Some(Duration::from_millis(1))),
        Err(WaitError::TimedOut)
    );
    assert_eq!(set.wait_any(Some(Duration::ZERO)), Err(WaitError::TimedOut));
    b1.signal().unwrap();
    assert_eq!(set.wait_any(None), Ok(Some(1)));
    a2.signal_with_error(FenceError::Evicted).unwrap();
    assert_eq!(
        set.wait_all(None),
        Err(WaitError::Fence(FenceError::Evicted))
    );
    set.clear();
    assert!(set.is_empty());
    assert_eq!(set.wait_any(None), Ok(None));
}

#[test]
fn fence_set_wait_any_wakes_on_any() {
    let ctx = alloc_contexts(3);
    let fences: Vec<Fence> = (0..3).map(|i| Fence::software(ctx + i, 1)).collect();
    let mut set = FenceSet::new();
    set.extend(&fences);
    let f = fences[2].clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1));
        f.signal().unwrap();
    });
    assert_eq!(set.wait_any(Some(Duration::from_secs(5))), Ok(Some(2)));
    t.join().unwrap();
}

#[test]
fn on_all_signaled_fires_once() {
    let ctx = alloc_contexts(3);
    let fences: Vec<Fence> = (0..3).map(|i| Fence::software(ctx + i, 1)).collect();
    let mut set = FenceSet::new();
    set.extend(&fences);
    let fired = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    {
        let fired = fired.clone();
        set.on_all_signaled(move |r| {
            fired.fetch_add(1, Ordering::SeqCst);
            tx.send(r).unwrap();
        });
    }
    fences[0].signal().unwrap();
    fences[1].signal_with_error(FenceError::Cancelled).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    fences[2].signal().unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    assert_eq!(rx.recv().unwrap(), Err(FenceError::Cancelled));

    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    set.on_all_signaled(move |r| {
        assert_eq!(r, Err(FenceError::Cancelled));
        d.store(true, Ordering::SeqCst);
    });
    assert!(
        done.load(Ordering::SeqCst),
        "an all-signaled set fires at once"
    );
    let d = done.clone();
    d.store(false, Ordering::SeqCst);
    FenceSet::new().on_all_signaled(move |r| {
        assert_eq!(r, Ok(()));
        d.store(true, Ordering::SeqCst);
    });
    assert!(done.load(Ordering::SeqCst), "an empty set fires at once");
}

#[test]
fn cancel_wakes_a_blocked_wait() {
    let f = Fence::software(alloc_contexts(1), 1);
    let token = CancelToken::new();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let (f, token) = (f.clone(), token.clone());
        thread::spawn(move || {
            tx.send(()).unwrap();
            f.wait_cancellable(None, &token)
        })
    };
    rx.recv().unwrap();
    token.cancel();
    assert_eq!(waiter.join().unwrap(), Err(WaitError::Cancelled));
    assert!(!f.is_signaled());
    assert_eq!(
        f.wait_cancellable(Some(Duration::from_secs(1)), &token),
        Err(WaitError::Cancelled)
    );
    f.signal().unwrap();
    assert_eq!(
        f.wait_cancellable(None, &token),
        Ok(()),
        "a signaled fence wins over a fired token"
    );
}

#[test]
fn engine_never_signals_a_foreign_fence() {
    let e = engine::Engine::new();
    e.set_stuck_threshold(Duration::from_millis(1));
    let f = Fence::software(alloc_contexts(1), 1);
    e.watch(&f);
    e.run_once(Instant::now() + Duration::from_secs(3600));
    assert_eq!(f.status(), FenceStatus::Pending);
    assert_eq!(
        f.wait_timeout(Duration::from_millis(2)),
        Err(WaitError::TimedOut)
    );
    assert_eq!(e.stuck().len(), 1);
}

#[test]
fn engine_driven_by_caller_event_loop() {
    let e = engine::Engine::new();
    let word = Arc::new(AtomicU64::new(0));
    let ctx = alloc_contexts(1);
    let polled = seqno_fence(&word, ctx, 1, false);
    let stuck = seqno_fence(&word, ctx, 5, false);
    let t0 = Instant::now();
    e.watch_polled(&polled);
    e.watch_polled(&stuck);
    assert_eq!(e.watched(), 2);
    let next = e.run_once(t0).expect("work left");
    assert!(next > t0);
    word.store(1, Ordering::Release);
    e.run_once(t0 + Duration::from_millis(1));
    assert!(polled.is_signaled());
    assert!(!stuck.is_signaled());
    // Long after: still pending, still polled; only its producer ends it.
    assert!(e.run_once(t0 + Duration::from_secs(20)).is_some());
    assert_eq!(stuck.status(), FenceStatus::Pending);
    assert_eq!(e.watched(), 1);
    word.store(5, Ordering::Release);
    e.run_once(t0 + Duration::from_secs(21));
    assert_eq!(stuck.status(), FenceStatus::Signaled);
    assert_eq!(e.watched(), 0);
}

#[test]
fn set_error_after_signal_is_ignored() {
    let f = Fence::software(alloc_contexts(1), 1);
    f.signal().unwrap();
    f.set_error(FenceError::Errno(5));
    assert_eq!(f.status(), FenceStatus::Signaled);
    assert!(f.signal_with_error(FenceError::Errno(5)).is_err());
    assert_eq!(f.status(), FenceStatus::Signaled);
}

#[test]
fn fence_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Fence>();
    assert_send_sync::<CancelToken>();
    assert_eq!(std::mem::size_of::<Fence>(), std::mem::size_of::<usize>());
}

#[test]
fn signal_timestamp_records_the_callers_time_once() {
    let ctx = alloc_contexts(1);
    let (a, b) = (Fence::software(ctx, 1), Fence::software(ctx, 2));
    // One clock read for a batch, taken after the runtime's first timestamp.
    let _ = Fence::signaled(ctx, 0);
    let at = Instant::now();
    thread::sleep(Duration::from_millis(2));
    a.signal_timestamp(at).unwrap();
    b.signal_timestamp(at).unwrap();
    assert!(a.is_signaled() && b.is_signaled());
    let ts = a.timestamp().unwrap();
    assert_eq!(Some(ts), b.timestamp());
    // Nanosecond storage: equal to the caller's instant within 1 ns.
    assert!(ts <= at + Duration::from_nanos(1) && at <= ts + Duration::from_nanos(1));
    assert!(ts + Duration::from_millis(1) < Instant::now());
    // A second signal of either kind fails and keeps the first timestamp.
    assert!(a.signal_timestamp(Instant::now()).is_err());
    assert!(a.signal().is_err());
    assert_eq!(a.timestamp(), Some(ts));
}
