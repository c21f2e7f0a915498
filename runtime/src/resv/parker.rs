//! A one-thread parking spot: the waiter sleeps on it, a waker sets a flag.
//!
//! Locking rules: `state` (an atomic: `EMPTY`, `PARKED`, `NOTIFIED`) carries
//! the wake-up; `lock` and `cv` are used only when the waiter really sleeps
//! (`PARKED`), so waking a waiter that is still spinning is one atomic swap,
//! no lock and no system call. `lock` is a leaf lock (taken under a mutex's
//! queue lock to wake a sleeper, never held while taking another). A wake
//! before the park is not lost: `NOTIFIED` stays until consumed. This is the
//! scheme of std's generic thread parker.

use std::time::Instant;

use crate::sync::{AtomicU32, Condvar, Mutex, MutexGuard, Ordering};

/// Locks a mutex, ignoring poisoning (no invariant of ours spans a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const EMPTY: u32 = 0;
const PARKED: u32 = 1;
const NOTIFIED: u32 = 2;

/// Before it sleeps, a waiter polls `SPINS` times (a hand-off from a running
/// owner then costs no futex round trip), then yields the CPU up to `YIELDS`
/// times, then sleeps. Since a free lock goes to whoever comes first (see
/// `ww_mutex.rs`), nobody waits for a waiter to run, and a waiter that stays
/// runnable only takes CPU time from the owners: on 2 CPUs with 4 threads
/// (reserve bench, 4 runs each, interleaved) 50 + 5 gave 0.58 / 0.51 of the
/// sorted-mutex baseline (wait-die / wound-wait) where 20 + 200 gave 0.43 /
/// 0.34, and in the TCG guest 0.28 / 0.35 where 20 + 200 gave 0.10 / 0.10
/// (0 yields: 0.22 / 0.22, the futex round trip is slow there).
const SPINS: u32 = 50;
const YIELDS: u32 = 5;

/// Where one waiter sleeps.
#[derive(Default)]
pub(crate) struct Parker {
    state: AtomicU32,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Parker {
    /// Wakes the waiter (or makes its next park return at once). One swap
    /// unless the waiter sleeps.
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::SeqCst) == PARKED {
            // The waiter sleeps or is about to: taking the lock orders this
            // notification after its check of `state`.
            drop(lock(&self.lock));
            self.cv.notify_one();
        }
    }

    /// Consumes a pending wake-up, if any.
    fn take(&self) -> bool {
        self.state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Sleeps until woken or until `until`; consumes the wake-up.
    pub(crate) fn park(&self, until: Option<Instant>) {
        if !cfg!(loom) {
            let mut i = 0;
            while self.state.load(Ordering::Relaxed) != NOTIFIED && i < SPINS + YIELDS {
                if i < SPINS {
                    std::hint::spin_loop();
                } else if i % 16 == 0 && until.is_some_and(|d| Instant::now() >= d) {
                    break;
                } else {
                    crate::sync::thread::yield_now();
                }
                i += 1;
            }
        }
        if self.take() {
            return;
        }
        let mut g = lock(&self.lock);
        if self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Notified in between (the only other value): consume it.
            self.state.swap(EMPTY, Ordering::SeqCst);
            return;
        }
        loop {
            match until {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // Give up: a wake-up that came meanwhile is consumed.
                        self.state.swap(EMPTY, Ordering::SeqCst);
                        return;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            if self.take() {
                return;
            }
        }
    }
}
