//! A one-thread parking spot: the waiter sleeps on it, a waker sets a flag.
//!
//! Locking rules: `woken` is an atomic; `sleep` (a leaf mutex, taken under a
//! mutex's queue lock to wake a waiter, never held while taking another) only
//! orders the flag against the condvar so no wake-up is lost. A wake before
//! the park is not lost: the flag stays set until consumed.

use std::time::Instant;

use crate::sync::{AtomicBool, Condvar, Mutex, MutexGuard, Ordering};

/// Locks a mutex, ignoring poisoning (no invariant of ours spans a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many times a waiter polls its flag before it sleeps: a hand-off to a
/// running thread then costs no futex round trip.
const SPINS: u32 = if cfg!(loom) { 0 } else { 200 };

/// Where one waiter sleeps.
#[derive(Default)]
pub(crate) struct Parker {
    woken: AtomicBool,
    sleep: Mutex<()>,
    cv: Condvar,
}

impl Parker {
    /// Wakes the waiter (or makes its next park return at once).
    pub(crate) fn unpark(&self) {
        self.woken.store(true, Ordering::Release);
        let _g = lock(&self.sleep);
        self.cv.notify_one();
    }

    /// Sleeps until woken or until `until`; consumes the wake-up.
    pub(crate) fn park(&self, until: Option<Instant>) {
        for i in 0..SPINS {
            if self.woken.swap(false, Ordering::Acquire) {
                return;
            }
            if i % 16 == 15 {
                // Oversubscribed CPUs: let the lock holder run.
                crate::sync::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let mut g = lock(&self.sleep);
        while !self.woken.swap(false, Ordering::Acquire) {
            match until {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}
