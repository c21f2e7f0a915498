//! A one-thread parking spot: the waiter sleeps on it, a waker sets a flag.
//!
//! Locking rules: `woken` is guarded by its own mutex, a leaf lock (taken
//! under a mutex's queue lock to wake a waiter, never held while taking
//! another). A wake before the park is not lost: the flag stays set until
//! consumed. `hint` (an atomic) mirrors a pending wake so a waiter can spin
//! briefly before it sleeps; it decides nothing.

use std::time::Instant;

use crate::sync::{AtomicBool, Condvar, Mutex, MutexGuard, Ordering};

/// Locks a mutex, ignoring poisoning (no invariant of ours spans a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many times a waiter polls before it sleeps: a hand-off to a running
/// thread then costs no futex round trip.
const SPINS: u32 = if cfg!(loom) { 0 } else { 200 };

/// Where one waiter sleeps.
#[derive(Default)]
pub(crate) struct Parker {
    woken: Mutex<bool>,
    cv: Condvar,
    hint: AtomicBool,
}

impl Parker {
    /// Wakes the waiter (or makes its next park return at once).
    pub(crate) fn unpark(&self) {
        self.hint.store(true, Ordering::Release);
        *lock(&self.woken) = true;
        self.cv.notify_one();
    }

    /// Sleeps until woken or until `until`; consumes the wake-up.
    pub(crate) fn park(&self, until: Option<Instant>) {
        for i in 0..SPINS {
            if self.hint.load(Ordering::Acquire) {
                break;
            }
            if i % 16 == 15 {
                // Oversubscribed CPUs: let the lock holder run.
                crate::sync::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let mut woken = lock(&self.woken);
        while !*woken {
            match until {
                None => woken = self.cv.wait(woken).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    woken = self
                        .cv
                        .wait_timeout(woken, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        *woken = false;
        self.hint.store(false, Ordering::Relaxed);
    }
}
