//! Cancel tokens for waits (the analogue of an interruptible wait's signal).
//!
//! Locking: `watchers` (a `Mutex`) guards the fences that have a thread
//! waiting with this token. `cancel` sets the flag first, then takes the
//! watcher list and wakes each fence's sleepers through the fence's own list
//! lock (one at a time, never nested with `watchers`). A waiter checks the
//! flag under its fence's list lock, so a cancel cannot slip between the
//! check and the sleep.

use super::Fence;
use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

struct Shared {
    cancelled: AtomicBool,
    watchers: Mutex<Watchers>,
}

#[derive(Default)]
struct Watchers {
    next: u64,
    list: Vec<(u64, Fence)>,
}

/// A cloneable token that cancels the waits it was passed to.
#[derive(Clone)]
pub struct CancelToken(Arc<Shared>);

/// A registration of one waiting fence on a token.
pub(crate) struct Registration(u64);

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken::new()
    }
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> CancelToken {
        CancelToken(Arc::new(Shared {
            cancelled: AtomicBool::new(false),
            watchers: Mutex::new(Watchers::default()),
        }))
    }

    /// True once [`cancel`](CancelToken::cancel) was called. No lock.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// Fires the token: every wait using it returns `WaitError::Cancelled`.
    /// Lock: the token's watcher lock, then (after releasing it) each waiting
    /// fence's list lock in turn.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        let fences: Vec<Fence> = {
            let g = self.0.watchers.lock().unwrap_or_else(|e| e.into_inner());
            g.list.iter().map(|(_, f)| f.clone()).collect()
        };
        for f in fences {
            f.wake_sleepers();
        }
    }

    pub(crate) fn register(&self, fence: &Fence) -> Registration {
        let mut g = self.0.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let id = g.next;
        g.next += 1;
        g.list.push((id, fence.clone()));
        Registration(id)
    }

    pub(crate) fn unregister(&self, r: Registration) {
        let removed = {
            let mut g = self.0.watchers.lock().unwrap_or_else(|e| e.into_inner());
            g.list
                .iter()
                .position(|(id, _)| *id == r.0)
                .map(|i| g.list.swap_remove(i))
        };
        drop(removed);
    }
}
