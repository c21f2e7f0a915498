//! Port of the kernel's drivers/dma-buf/st-dma-fence.c, one test per case.

mod common;
use common::mock_fence;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bufsync::fence::{Fence, FenceError, FenceStatus, WaitError};

fn seen_callback(seen: &Arc<AtomicBool>) -> impl FnOnce(&Fence) + Send + 'static {
    let seen = seen.clone();
    move |_| seen.store(true, Ordering::SeqCst)
}

#[test]
fn test_sanitycheck() {
    let f = mock_fence();
    f.enable_signaling();
    f.signal().unwrap();
    drop(f);
}

#[test]
fn test_signaling() {
    let f = mock_fence();
    f.enable_signaling();
    assert!(!f.is_signaled(), "Fence unexpectedly signaled on creation");
    assert!(f.signal().is_ok(), "Fence reported being already signaled");
    assert!(f.is_signaled(), "Fence not reporting signaled");
    assert!(
        f.test_signaled_flag(),
        "Fence reported not being already signaled"
    );
    assert!(f.signal().is_err(), "Second signal not reported");
    assert_eq!(f.driver_name(), "mock");
    assert_eq!(f.timeline_name(), "mock");
}

#[test]
fn test_add_callback() {
    let seen = Arc::new(AtomicBool::new(false));
    let f = mock_fence();
    assert!(
        f.add_callback(seen_callback(&seen)).is_ok(),
        "Failed to add callback, fence already signaled!"
    );
    f.signal().unwrap();
    assert!(seen.load(Ordering::SeqCst), "Callback failed!");
}

#[test]
fn test_late_add_callback() {
    let seen = Arc::new(AtomicBool::new(false));
    let f = mock_fence();
    f.enable_signaling();
    f.signal().unwrap();
    assert!(
        f.add_callback(seen_callback(&seen)).is_err(),
        "Added callback, but fence was already signaled!"
    );
    let _ = f.signal();
    assert!(
        !seen.load(Ordering::SeqCst),
        "Callback called after failed attachment!"
    );
}

#[test]
fn test_rm_callback() {
    let seen = Arc::new(AtomicBool::new(false));
    let f = mock_fence();
    let id = f
        .add_callback(seen_callback(&seen))
        .expect("Failed to add callback, fence already signaled!");
    assert!(f.remove_callback(id), "Failed to remove callback!");
    f.signal().unwrap();
    assert!(
        !seen.load(Ordering::SeqCst),
        "Callback still signaled after removal!"
    );
}

#[test]
fn test_late_rm_callback() {
    let seen = Arc::new(AtomicBool::new(false));
    let f = mock_fence();
    let id = f
        .add_callback(seen_callback(&seen))
        .expect("Failed to add callback, fence already signaled!");
    f.signal().unwrap();
    assert!(seen.load(Ordering::SeqCst), "Callback failed!");
    assert!(
        !f.remove_callback(id),
        "Callback removal succeeded after being executed!"
    );
}

#[test]
fn test_status() {
    let f = mock_fence();
    f.enable_signaling();
    assert_eq!(
        f.status(),
        FenceStatus::Pending,
        "Fence unexpectedly has signaled status on creation"
    );
    assert_eq!(f.status().to_kernel(), 0);
    assert_eq!(f.timestamp(), None);
    f.signal().unwrap();
    assert_eq!(
        f.status(),
        FenceStatus::Signaled,
        "Fence not reporting signaled status"
    );
    assert_eq!(f.status().to_kernel(), 1);
    assert!(f.timestamp().is_some());
}

#[test]
fn test_error() {
    let f = mock_fence();
    f.enable_signaling();
    f.set_error(FenceError::Errno(5)); // EIO
    assert_eq!(
        f.status(),
        FenceStatus::Pending,
        "Fence unexpectedly has error status before signal"
    );
    f.signal().unwrap();
    assert_eq!(
        f.status(),
        FenceStatus::Error(FenceError::Errno(5)),
        "Fence not reporting error status"
    );
    assert_eq!(f.status().to_kernel(), -5);
    assert_eq!(f.wait(), Err(FenceError::Errno(5)));
}

#[test]
fn test_wait() {
    let f = mock_fence();
    f.enable_signaling();
    assert_eq!(
        f.wait_timeout(Duration::ZERO),
        Err(WaitError::TimedOut),
        "Wait reported complete before being signaled"
    );
    f.signal().unwrap();
    assert_eq!(
        f.wait_timeout(Duration::ZERO),
        Ok(()),
        "Wait reported incomplete after being signaled"
    );
}

#[test]
fn test_wait_timeout() {
    let f = mock_fence();
    f.enable_signaling();
    assert_eq!(
        f.wait_timeout(Duration::from_millis(1)),
        Err(WaitError::TimedOut),
        "Wait reported complete before being signaled"
    );
    // The kernel arms a timer one jiffy out; a thread stands in for it.
    let timer = {
        let f = f.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(1));
            f.signal().unwrap();
        })
    };
    assert_eq!(
        f.wait_timeout(Duration::from_secs(5)),
        Ok(()),
        "Wait reported incomplete after timeout"
    );
    timer.join().unwrap();
}

#[test]
fn test_stub() {
    let stubs: Vec<Fence> = (0..64).map(|_| Fence::stub()).collect();
    for f in &stubs {
        assert!(f.is_signaled(), "Obtained unsignaled stub fence!");
    }
}

/// `thread_signal_callback`: each thread publishes a fence, hangs a callback
/// on the other thread's fence and signals its own, before or after.
fn thread_signal_callback(
    id: usize,
    before: bool,
    slots: Arc<[Mutex<Option<Fence>>; 2]>,
    stop: Arc<AtomicBool>,
    passes: usize,
) -> Result<(usize, usize), String> {
    let mut miss = 0;
    let mut pass = 0;
    while pass < passes && !stop.load(Ordering::SeqCst) {
        let f1 = mock_fence();
        f1.enable_signaling();
        *slots[id].lock().unwrap() = Some(f1.clone());

        let f2 = loop {
            if let Some(f) = slots[1 - id].lock().unwrap().clone() {
                break Some(f);
            }
            if stop.load(Ordering::SeqCst) {
                break None;
            }
            thread::yield_now();
        };

        if before {
            f1.signal().unwrap();
        }
        let seen = Arc::new(AtomicBool::new(false));
        match &f2 {
            Some(f2) if f2.add_callback(seen_callback(&seen)).is_ok() => {}
            _ => {
                miss += 1;
                seen.store(true, Ordering::SeqCst);
            }
        }
        if !before {
            f1.signal().unwrap();
        }
        if !seen.load(Ordering::SeqCst) {
            if let Some(f2) = &f2 {
                let _ = f2.wait();
                f2.wait_callbacks();
            }
        }
        if !seen.load(Ordering::SeqCst) {
            stop.store(true, Ordering::SeqCst);
            return Err(format!(
                "Callback not seen on thread {id}, pass {pass} ({miss} misses), signaling {} add_callback",
                if before { "before" } else { "after" }
            ));
        }
        *slots[id].lock().unwrap() = None;
        pass += 1;
    }
    // Let the other thread finish its pass: leave a signaled fence behind.
    *slots[id].lock().unwrap() = Some(Fence::stub());
    Ok((pass, miss))
}

#[test]
fn test_race_signal_callback() {
    for before in [false, true] {
        let slots: Arc<[Mutex<Option<Fence>>; 2]> = Arc::new([Mutex::new(None), Mutex::new(None)]);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|id| {
                let (slots, stop, done) = (slots.clone(), stop.clone(), done.clone());
                thread::spawn(move || {
                    let r = thread_signal_callback(id, before, slots, stop, 2000);
                    done.fetch_add(1, Ordering::SeqCst);
                    r
                })
            })
            .collect();
        for h in handles {
            let r = h.join().unwrap();
            // One thread may finish first; the other then sees the stub.
            stop.store(true, Ordering::SeqCst);
            r.unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 2);
    }
}
