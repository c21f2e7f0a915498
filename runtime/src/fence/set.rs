//! `FenceSet`: the wait-set a ticket hands out (the fences a new job must
//! wait for, one per context: `drm_sched_job_add_dependency`).
//!
//! Locking: a `FenceSet` is owned by one thread (`&mut self` to change it);
//! it takes no lock of its own. Waits take each fence's list lock as
//! [`Fence::wait`] does; `on_all_signaled` shares one small counter with the
//! callbacks it adds (atomics, plus a `Mutex` that only the last callback takes).
//! Steady state: `clear()` keeps the buffer, so `clear()` + `add()` up to the
//! previous length allocates nothing.

use std::time::{Duration, Instant};

use super::{Fence, FenceError, WaitError};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

/// A set of fences with at most one fence per context (the latest).
#[derive(Clone, Default, Debug)]
pub struct FenceSet {
    fences: Vec<Fence>,
}

type AllCallback = Box<dyn FnOnce(Result<(), FenceError>) + Send + 'static>;

struct AllState {
    remaining: AtomicUsize,
    /// First error seen, encoded (0 = none).
    error: AtomicU64,
    callback: Mutex<Option<AllCallback>>,
}

impl AllState {
    fn note(&self, f: &Fence) {
        if let Some(e) = f.error() {
            let _ = self
                .error
                .compare_exchange(0, e.encode(), Ordering::AcqRel, Ordering::Acquire);
        }
        self.done_one();
    }

    fn done_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let cb = self
                .callback
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(cb) = cb {
                let result = match FenceError::decode(self.error.load(Ordering::Acquire)) {
                    None => Ok(()),
                    Some(e) => Err(e),
                };
                cb(result);
            }
        }
    }
}

impl FenceSet {
    /// An empty set (no allocation).
    pub fn new() -> FenceSet {
        FenceSet { fences: Vec::new() }
    }

    /// An empty set with room for `n` fences.
    pub fn with_capacity(n: usize) -> FenceSet {
        FenceSet {
            fences: Vec::with_capacity(n),
        }
    }

    /// Adds `fence`, keeping one fence per context: if the set already holds
    /// a fence of that context, the later of the two stays
    /// (`dma_fence_is_later`). Allocates only when the buffer must grow.
    pub fn add(&mut self, fence: &Fence) {
        for slot in self.fences.iter_mut() {
            if slot.context() == fence.context() {
                if fence.is_later(slot) {
                    *slot = fence.clone();
                }
                return;
            }
        }
        self.fences.push(fence.clone());
    }

    /// Adds every fence of `fences` (see [`add`](FenceSet::add)).
    pub fn extend<'a>(&mut self, fences: impl IntoIterator<Item = &'a Fence>) {
        for f in fences {
            self.add(f);
        }
    }

    /// Number of fences (distinct contexts).
    pub fn len(&self) -> usize {
        self.fences.len()
    }

    /// True if the set holds no fence.
    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }

    /// The fences, in insertion order of their contexts.
    pub fn iter(&self) -> std::slice::Iter<'_, Fence> {
        self.fences.iter()
    }

    /// The fences as a slice.
    pub fn as_slice(&self) -> &[Fence] {
        &self.fences
    }

    /// Empties the set, keeping its buffer (no deallocation).
    pub fn clear(&mut self) {
        self.fences.clear();
    }

    /// Drops the fences that signaled without error. Returns how many went.
    pub fn prune_signaled(&mut self) -> usize {
        let before = self.fences.len();
        self.fences
            .retain(|f| !(f.is_signaled() && f.error().is_none()));
        before - self.fences.len()
    }

    /// True when every fence has signaled (an empty set is signaled).
    pub fn is_signaled(&self) -> bool {
        self.fences.iter().all(Fence::is_signaled)
    }

    /// The first error among signaled fences, if any.
    pub fn first_error(&self) -> Option<FenceError> {
        self.fences
            .iter()
            .filter(|f| f.is_signaled())
            .find_map(Fence::error)
    }

    /// Waits for every fence, at most `timeout` in all (forever if `None`).
    /// Returns the first fence error once all signaled. Locks: each fence's
    /// list lock in turn, released while asleep.
    pub fn wait_all(&self, timeout: Option<Duration>) -> Result<(), WaitError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        for f in &self.fences {
            let r = match deadline {
                None => f.wait().map_err(WaitError::Fence),
                Some(d) => f.wait_deadline(d),
            };
            match r {
                Ok(()) | Err(WaitError::Fence(_)) => {}
                Err(e) => return Err(e),
            }
        }
        match self.first_error() {
            None => Ok(()),
            Some(e) => Err(WaitError::Fence(e)),
        }
    }

    /// Waits until any fence signals, at most `timeout` (forever if `None`)
    /// (`dma_fence_wait_any_timeout`). Returns the index of a signaled fence
    /// (check its [`status`](Fence::status) for an error), or `None` for an
    /// empty set. Adds one callback per fence for the duration of the wait.
    pub fn wait_any(&self, timeout: Option<Duration>) -> Result<Option<usize>, WaitError> {
        if self.fences.is_empty() {
            return Ok(None);
        }
        if let Some(i) = self.fences.iter().position(Fence::is_signaled) {
            return Ok(Some(i));
        }
        let any = Fence::software(0, 0);
        let mut ids = Vec::with_capacity(self.fences.len());
        for f in &self.fences {
            let waker = any.clone();
            match f.add_callback(move |_| {
                let _ = waker.signal();
            }) {
                Ok(id) => ids.push(Some(id)),
                Err(_) => {
                    let _ = any.signal();
                    ids.push(None);
                }
            }
        }
        let r = match timeout {
            None => any.wait().map_err(WaitError::Fence),
            Some(t) => any.wait_timeout(t),
        };
        for (f, id) in self.fences.iter().zip(ids) {
            if let Some(id) = id {
                f.remove_callback(id);
            }
        }
        match r {
            Err(WaitError::TimedOut) => Err(WaitError::TimedOut),
            _ => Ok(self.fences.iter().position(Fence::is_signaled)),
        }
    }

    /// Runs `f` once, when every fence of the set (as it is now) has
    /// signaled, with the first error seen. Runs it at once, on this thread,
    /// if they all already have; otherwise on the thread that signals the
    /// last one, with no fence lock held.
    pub fn on_all_signaled(&self, f: impl FnOnce(Result<(), FenceError>) + Send + 'static) {
        let state = Arc::new(AllState {
            remaining: AtomicUsize::new(self.fences.len() + 1),
            error: AtomicU64::new(0),
            callback: Mutex::new(Some(Box::new(f))),
        });
        for fence in &self.fences {
            let s = state.clone();
            if fence.add_callback(move |fence| s.note(fence)).is_err() {
                state.note(fence);
            }
        }
        state.done_one();
    }
}

impl<'a> IntoIterator for &'a FenceSet {
    type Item = &'a Fence;
    type IntoIter = std::slice::Iter<'a, Fence>;
    fn into_iter(self) -> Self::IntoIter {
        self.fences.iter()
    }
}
