//! loom models of the fence's signal / callback / wait protocol.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       cargo test -p bufsync --release --test loom_fence`
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use bufsync::fence::{CancelToken, Fence, FenceError, FenceSet, FenceStatus, WaitError};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Signals `f` on a new (modelled) thread.
fn signal_on_thread(f: &Fence) -> thread::JoinHandle<()> {
    let f = f.clone();
    thread::spawn(move || f.signal().unwrap())
}

fn counting(count: &Arc<AtomicUsize>) -> impl FnOnce(&Fence) + Send + 'static {
    let count = count.clone();
    move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    }
}

/// A callback added concurrently with the signal runs exactly once if it was
/// added, never if `add_callback` reported the fence signaled.
#[test]
fn signal_vs_add_callback() {
    model(|| {
        let f = Fence::software(1, 1);
        let count = Arc::new(AtomicUsize::new(0));
        let signaler = signal_on_thread(&f);
        let added = f.add_callback(counting(&count)).is_ok();
        signaler.join().unwrap();
        assert!(f.is_signaled());
        assert_eq!(count.load(Ordering::SeqCst), usize::from(added));
    });
}

/// add + remove racing a signal: a removed callback never runs; one whose
/// removal failed has been taken by the signal path and runs exactly once.
#[test]
fn signal_vs_add_vs_remove_callback() {
    model(|| {
        let f = Fence::software(1, 1);
        let count = Arc::new(AtomicUsize::new(0));
        let signaler = signal_on_thread(&f);
        let expected = match f.add_callback(counting(&count)) {
            Err(_) => 0,
            Ok(id) => {
                if f.remove_callback(id) {
                    0
                } else {
                    1
                }
            }
        };
        signaler.join().unwrap();
        assert_eq!(count.load(Ordering::SeqCst), expected);
    });
}

/// Two signalers: exactly one wins; the error set by the winner sticks.
#[test]
fn double_signal() {
    model(|| {
        let f = Fence::software(1, 1);
        let other = {
            let f = f.clone();
            thread::spawn(move || f.signal_with_error(FenceError::Cancelled).is_ok())
        };
        let mine = f.signal().is_ok();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one signal must win");
        let expect = if theirs {
            FenceStatus::Error(FenceError::Cancelled)
        } else {
            FenceStatus::Signaled
        };
        assert_eq!(f.status(), expect);
    });
}

/// A thread blocked in `wait` is always woken by the signal (loom reports a
/// deadlock if a wake-up can be lost).
#[test]
fn wait_wakeup() {
    model(|| {
        let f = Fence::software(1, 1);
        let waiter = {
            let f = f.clone();
            thread::spawn(move || f.wait())
        };
        f.signal().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
    });
}

/// A waiter and a callback on one fence: both are served by one signal.
#[test]
fn wait_and_callback_wakeup() {
    model(|| {
        let f = Fence::software(1, 1);
        let count = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let f = f.clone();
            thread::spawn(move || {
                f.set_error(FenceError::Evicted);
                f.wait()
            })
        };
        let added = f.add_callback(counting(&count)).is_ok();
        f.signal().unwrap();
        let r = waiter.join().unwrap();
        // The error may land before or after the signal; if after, it is ignored.
        assert!(r == Ok(()) || r == Err(FenceError::Evicted));
        assert_eq!(count.load(Ordering::SeqCst), usize::from(added));
    });
}

/// `wait_callbacks` returns only after the callbacks taken by the signal ran.
#[test]
fn wait_callbacks_after_signal() {
    model(|| {
        let f = Fence::software(1, 1);
        let count = Arc::new(AtomicUsize::new(0));
        f.add_callback(counting(&count)).unwrap();
        let signaler = signal_on_thread(&f);
        let _ = f.wait();
        f.wait_callbacks();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        signaler.join().unwrap();
    });
}

/// A cancel racing a blocked wait always wakes it (no lost wake-up).
#[test]
fn cancel_wakes_wait() {
    model(|| {
        let f = Fence::software(1, 1);
        let token = CancelToken::new();
        let canceller = {
            let token = token.clone();
            thread::spawn(move || token.cancel())
        };
        assert_eq!(f.wait_cancellable(None, &token), Err(WaitError::Cancelled));
        canceller.join().unwrap();
    });
}

/// `on_all_signaled` fires exactly once when two fences signal concurrently.
#[test]
fn on_all_signaled_fires_once() {
    model(|| {
        let a = Fence::software(1, 1);
        let b = Fence::software(2, 1);
        let mut set = FenceSet::new();
        set.add(&a);
        set.add(&b);
        let fired = Arc::new(AtomicUsize::new(0));
        {
            let fired = fired.clone();
            set.on_all_signaled(move |r| {
                assert_eq!(r, Ok(()));
                fired.fetch_add(1, Ordering::SeqCst);
            });
        }
        let other = {
            let b = b.clone();
            thread::spawn(move || b.signal().unwrap())
        };
        a.signal().unwrap();
        other.join().unwrap();
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    });
}

/// The error rule under a race: two members of an array fail on two
/// threads; the array reports the one that ended first (by timestamp, then
/// by place), whichever callback ran first.
#[test]
fn array_keeps_the_failure_that_ended_first() {
    use bufsync::fence::FenceArray;
    model(|| {
        let a = Fence::software(1, 1);
        let b = Fence::software(2, 1);
        let array = FenceArray::create(vec![a.clone(), b.clone()], 3, 1, false);
        array.enable_signaling();
        let other = {
            let b = b.clone();
            thread::spawn(move || b.signal_with_error(FenceError::Evicted).unwrap())
        };
        a.signal_with_error(FenceError::DeviceLost).unwrap();
        other.join().unwrap();
        let want = if (b.timestamp(), 1) < (a.timestamp(), 0) {
            FenceError::Evicted
        } else {
            FenceError::DeviceLost
        };
        assert_eq!(array.status(), FenceStatus::Error(want));
    });
}

/// The same for a set's `on_all_signaled`.
#[test]
fn on_all_signaled_keeps_the_failure_that_ended_first() {
    model(|| {
        let a = Fence::software(1, 1);
        let b = Fence::software(2, 1);
        let mut set = FenceSet::new();
        set.add(&a);
        set.add(&b);
        let got = Arc::new(loom::sync::Mutex::new(None));
        {
            let got = got.clone();
            set.on_all_signaled(move |r| *got.lock().unwrap() = Some(r));
        }
        let other = {
            let b = b.clone();
            thread::spawn(move || b.signal_with_error(FenceError::Evicted).unwrap())
        };
        a.signal_with_error(FenceError::Cancelled).unwrap();
        other.join().unwrap();
        let want = if (b.timestamp(), 1) < (a.timestamp(), 0) {
            FenceError::Evicted
        } else {
            FenceError::Cancelled
        };
        assert_eq!(*got.lock().unwrap(), Some(Err(want)));
        assert_eq!(set.first_error(), Some(want));
    });
}

/// Two walks of one chain collect links concurrently (one from the head,
/// one from the point below it): the failure of the bottom point is never
/// lost, whichever walk collects it first.
#[test]
fn concurrent_chain_walks_lose_no_failure() {
    use bufsync::fence::FenceChain;
    model(|| {
        let f1 = Fence::software(1, 1);
        let f2 = Fence::software(2, 1);
        let f3 = Fence::software(3, 1);
        let p1 = FenceChain::create(None, f1.clone(), 1);
        let p2 = FenceChain::create(Some(&p1), f2.clone(), 2);
        let p3 = FenceChain::create(Some(&p2), f3.clone(), 3);
        drop(p1);
        f1.signal_with_error(FenceError::DeviceLost).unwrap();
        f2.signal().unwrap();
        let other = {
            let p2 = p2.clone();
            thread::spawn(move || {
                let _ = FenceChain::walk(&p2);
            })
        };
        let _ = FenceChain::walk(&p3);
        other.join().unwrap();
        drop(p2);
        f3.signal().unwrap();
        assert_eq!(p3.wait(), Err(FenceError::DeviceLost));
    });
}

/// A reservation wait racing the signal of its last pending fence returns
/// only once that fence has ended, with the earlier failure.
#[test]
fn reservation_wait_ends_after_every_fence() {
    use bufsync::resv::{Algorithm, Reservation, Usage, WwClass};
    model(|| {
        let class = WwClass::new("loom-wait", Algorithm::WaitDie);
        let resv = Arc::new(Reservation::with_class(&class));
        let bad = Fence::software(1, 1);
        let slow = Fence::software(2, 1);
        bad.signal_with_error(FenceError::Evicted).unwrap();
        {
            let mut g = resv.lock_alone();
            g.reserve_fences(2).unwrap();
            g.add_fence(&bad, Usage::Write);
            g.add_fence(&slow, Usage::Read);
        }
        let waiter = {
            let (resv, slow) = (resv.clone(), slow.clone());
            thread::spawn(move || {
                let r = resv
                    .wait(Usage::Read, None)
                    .map_err(bufsync::fence::WaitError::from);
                assert!(
                    slow.test_signaled_flag(),
                    "the wait ended before every fence"
                );
                r
            })
        };
        slow.signal().unwrap();
        assert_eq!(
            waiter.join().unwrap(),
            Err(WaitError::Fence(FenceError::Evicted))
        );
    });
}

/// `wait_callbacks` on another thread than the waiter, racing the signal
/// path's end of the callbacks (RUNNING cleared without the list lock):
/// it never returns early and is never left asleep.
#[test]
fn wait_callbacks_racing_the_end_of_the_callbacks() {
    model(|| {
        let f = Fence::software(1, 1);
        let count = Arc::new(AtomicUsize::new(0));
        f.add_callback(counting(&count)).unwrap();
        let flusher = {
            let (f, count) = (f.clone(), count.clone());
            thread::spawn(move || {
                while !f.test_signaled_flag() {
                    thread::yield_now();
                }
                f.wait_callbacks();
                assert_eq!(count.load(Ordering::SeqCst), 1);
            })
        };
        f.signal().unwrap();
        flusher.join().unwrap();
    });
}
