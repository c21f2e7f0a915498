//! Waiting on a fence: blocking, bounded and cancellable waits.
//!
//! Locking: a waiter takes the fence's list lock, sets LISTED, counts itself
//! as a sleeper and sleeps on the fence's condvar (which releases the lock).
//! The signal path sets SIGNALED before it takes the list lock, and notifies
//! after, so a waiter that saw the fence pending under the lock is always
//! woken. Cancel tokens wake sleepers through the same lock.

use std::time::{Duration, Instant};

use super::cancel::CancelToken;
use super::handle::{LISTED, RUNNING, WAITER};
use super::{Fence, FenceError, WaitError};
use crate::sync::Ordering;

impl Fence {
    fn result_if_signaled(&self) -> Option<Result<(), FenceError>> {
        if !self.is_signaled() {
            return None;
        }
        Some(
            match FenceError::decode(self.0.state.load(Ordering::Acquire)) {
                None => Ok(()),
                Some(e) => Err(e),
            },
        )
    }

    /// Blocks until the fence signals (`dma_fence_wait`, uninterruptible).
    /// `Ok` when signaled cleanly, `Err(e)` when signaled with error `e`.
    /// Lock: the fence's list lock, released while asleep.
    pub fn wait(&self) -> Result<(), FenceError> {
        match self.wait_until(None, None) {
            Ok(()) => Ok(()),
            Err(WaitError::Fence(e)) => Err(e),
            // Without a deadline or a cancel token neither can happen.
            Err(WaitError::TimedOut) | Err(WaitError::Cancelled) => Err(FenceError::TimedOut),
        }
    }

    /// Waits at most `t` (`dma_fence_wait_timeout`); a zero timeout only checks.
    pub fn wait_timeout(&self, t: Duration) -> Result<(), WaitError> {
        self.wait_until(Some(Instant::now() + t), None)
    }

    /// Waits until `deadline` at the latest.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<(), WaitError> {
        self.wait_until(Some(deadline), None)
    }

    /// Waits at most `t` (forever if `None`), returning
    /// [`WaitError::Cancelled`] as soon as `cancel` fires (the analogue of an
    /// interruptible wait).
    pub fn wait_cancellable(
        &self,
        t: Option<Duration>,
        cancel: &CancelToken,
    ) -> Result<(), WaitError> {
        self.wait_until(t.map(|t| Instant::now() + t), Some(cancel))
    }

    fn wait_until(
        &self,
        deadline: Option<Instant>,
        cancel: Option<&CancelToken>,
    ) -> Result<(), WaitError> {
        if let Some(r) = self.result_if_signaled() {
            return r.map_err(WaitError::Fence);
        }
        if cancel.is_some_and(|c| c.is_cancelled()) {
            return Err(WaitError::Cancelled);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitError::TimedOut);
        }
        self.enable_signaling();
        let registration = cancel.map(|c| c.register(self));
        let outcome = self.sleep(deadline, cancel);
        if let (Some(c), Some(r)) = (cancel, registration) {
            c.unregister(r);
        }
        match outcome {
            Some(e) => Err(e),
            None => self
                .result_if_signaled()
                .unwrap_or(Ok(()))
                .map_err(WaitError::Fence),
        }
    }

    /// Sleeps on the condvar; returns `None` once signaled.
    fn sleep(&self, deadline: Option<Instant>, cancel: Option<&CancelToken>) -> Option<WaitError> {
        let mut g = self.lock();
        self.0.state.fetch_or(LISTED, Ordering::AcqRel);
        g.guard.sleepers += 1;
        let outcome = loop {
            if self.test_signaled_flag() {
                break None;
            }
            if cancel.is_some_and(|c| c.is_cancelled()) {
                break Some(WaitError::Cancelled);
            }
            match deadline {
                None => {
                    g.guard = self.0.cond.wait(g.guard).unwrap_or_else(|e| e.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break Some(WaitError::TimedOut);
                    }
                    g.guard = match self.0.cond.wait_timeout(g.guard, d - now) {
                        Ok((guard, _)) => guard,
                        Err(e) => e.into_inner().0,
                    };
                }
            }
        };
        g.guard.sleepers -= 1;
        self.maybe_unlist(&g.guard);
        outcome
    }

    /// Wakes every thread sleeping in a wait on this fence so it re-checks its
    /// conditions (used by cancel tokens). Lock: the fence's list lock.
    pub(crate) fn wake_sleepers(&self) {
        let g = self.lock();
        drop(g);
        self.0.cond.notify_all();
    }

    /// Blocks until the callbacks the signal path took have all returned
    /// (the kernel's lock/unlock of `fence->lock` after a wait). Returns at
    /// once on a pending fence. Must not be called from a callback of this
    /// same fence. Lock: the fence's list lock, released while asleep.
    pub fn wait_callbacks(&self) {
        if !self.test_signaled_flag() {
            return;
        }
        let mut g = self.lock();
        // Callbacks still listed on a signaled fence were added before the
        // signal, so its slow path is on the way to take them.
        if g.guard.no_callbacks() && self.0.running.load(Ordering::Acquire) & RUNNING == 0 {
            return;
        }
        self.0.state.fetch_or(LISTED, Ordering::AcqRel);
        g.guard.sleepers += 1;
        loop {
            // WAITER before the check: a signaler whose clear of RUNNING comes
            // after this RMW sees WAITER and wakes us under the list lock.
            let running = self.0.running.fetch_or(WAITER, Ordering::AcqRel) & RUNNING != 0;
            if g.guard.no_callbacks() && !running {
                break;
            }
            g.guard = self.0.cond.wait(g.guard).unwrap_or_else(|e| e.into_inner());
        }
        g.guard.sleepers -= 1;
        self.maybe_unlist(&g.guard);
    }
}
