//! A one-thread parking spot: the waiter sleeps on it, a waker sets a flag.
//!
//! Locking rules: `flag` is guarded by its own mutex, a leaf lock (taken under
//! a mutex's queue lock to wake a waiter, never held while taking another).
//! A wake before the park is not lost: the flag stays set until consumed.

use std::time::Instant;

use crate::sync::{Condvar, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning (no invariant of ours spans a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where one waiter sleeps.
#[derive(Default)]
pub(crate) struct Parker {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Parker {
    /// Wakes the waiter (or makes its next park return at once).
    pub(crate) fn unpark(&self) {
        *lock(&self.flag) = true;
        self.cv.notify_one();
    }

    /// Sleeps until woken or until `until`; consumes the wake-up.
    pub(crate) fn park(&self, until: Option<Instant>) {
        let mut woken = lock(&self.flag);
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
    }
}
