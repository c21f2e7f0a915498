//! `FenceSet`: the wait-set a ticket hands out (the fences a new job must
//! wait for, one per context: `drm_sched_job_add_dependency`).
//!
//! Locking: a `FenceSet` is owned by one thread (`&mut self` to change it);
//! it takes no lock of its own. Waits take each fence's list lock as
//! [`Fence::wait`] does; `on_all_signaled` shares one small counter with the
//! callbacks it adds (atomics, plus a `Mutex` that only the last callback takes).
//! Steady state: `clear()` keeps the buffer, so `clear()` + `add()` up to the
//! previous length allocates nothing.
//!
//! Errors (the rule of `docs/fences.md`): the waits and `on_all_signaled`
//! end once every fence has, with the error of the fence that ended first
//! among the failed ones. A failed fence is never dropped for a later fence
//! of its context: the set keeps it beside the later one (at most one such
//! failed predecessor per context: the one that failed first).

use std::time::{Duration, Instant};

use super::failure::{first_of, Failure, FirstFailure};
use super::{Fence, FenceError, WaitError};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

/// A set of fences with one fence per context (the latest), plus, for a
/// context whose earlier fence had failed when a later one came, that
/// failed fence (so its error is not lost).
#[derive(Clone, Default, Debug)]
pub struct FenceSet {
    fences: Vec<Fence>,
    /// Some context may have a failed predecessor beside its latest fence.
    kept: bool,
}

type AllCallback = Box<dyn FnOnce(Result<(), FenceError>) + Send + 'static>;

struct AllState {
    remaining: AtomicUsize,
    first: FirstFailure,
    callback: Mutex<Option<AllCallback>>,
}

impl AllState {
    fn note(&self, f: &Fence, rank: u64) {
        self.first.note(Failure::of(f, rank));
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
                cb(self.first.get().map_or(Ok(()), |f| Err(f.error)));
            }
        }
    }
}

impl FenceSet {
    /// An empty set (no allocation).
    pub fn new() -> FenceSet {
        FenceSet {
            fences: Vec::new(),
            kept: false,
        }
    }

    /// An empty set with room for `n` fences.
    pub fn with_capacity(n: usize) -> FenceSet {
        FenceSet {
            fences: Vec::with_capacity(n),
            kept: false,
        }
    }

    /// Adds `fence`, keeping one fence per context: if the set already holds
    /// a fence of that context, the later of the two stays
    /// (`dma_fence_is_later`). The one that goes stays too if it has failed
    /// (signaled with an error), beside the later one; of two such failed
    /// predecessors the one that failed first stays. Allocates only when
    /// the buffer must grow.
    pub fn add(&mut self, fence: &Fence) {
        let ctx = fence.context();
        let Some(i) = self.fences.iter().position(|f| f.context() == ctx) else {
            self.fences.push(fence.clone());
            return;
        };
        // A second entry of the context exists only once a failure was kept.
        let j = if self.kept {
            self.fences[i + 1..]
                .iter()
                .position(|f| f.context() == ctx)
                .map(|k| k + i + 1)
        } else {
            None
        };
        // `latest` is the context's fence, `pred` its failed predecessor.
        let (latest, pred) = match j {
            Some(j) if self.fences[i].is_later(&self.fences[j]) => (i, Some(j)),
            Some(j) => (j, Some(i)),
            None => (i, None),
        };
        if self.fences[latest].ptr_eq(fence) || pred.is_some_and(|p| self.fences[p].ptr_eq(fence)) {
            return;
        }
        let gone = if fence.is_later(&self.fences[latest]) {
            std::mem::replace(&mut self.fences[latest], fence.clone())
        } else {
            fence.clone()
        };
        let Some(failed) = Failure::of(&gone, 0) else {
            return;
        };
        match pred {
            None => {
                self.fences.push(gone);
                self.kept = true;
            }
            Some(p) => {
                let old = Failure::of(&self.fences[p], 0);
                if Failure::first(old, Some(failed)) != old {
                    self.fences[p] = gone;
                }
            }
        }
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
        self.kept = false;
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

    /// The error of the fence that ended first among those that signaled
    /// with one (by signal timestamp, then by place in the set), if any.
    /// Polls pending fences of polled kinds. No lock.
    pub fn first_error(&self) -> Option<FenceError> {
        first_of(self.fences.iter().filter(|f| f.is_signaled())).map(|f| f.error)
    }

    /// Waits for every fence, at most `timeout` in all (forever if `None`).
    /// Once all have ended, returns the error of the one that ended first
    /// among the failed ones ([`first_error`](FenceSet::first_error)); a
    /// failed fence does not end the wait early. `TimedOut` if some fence
    /// is still pending at the deadline. Locks: each fence's list lock in
    /// turn, released while asleep.
    pub fn wait_all(&self, timeout: Option<Duration>) -> Result<(), WaitError> {
        wait_every(&self.fences, timeout)?;
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
    /// signaled, with the error of the fence that ended first among the
    /// failed ones. Runs it at once, on this thread, if they all already
    /// have; otherwise on the thread that signals the last one, with no
    /// fence lock held.
    pub fn on_all_signaled(&self, f: impl FnOnce(Result<(), FenceError>) + Send + 'static) {
        let state = Arc::new(AllState {
            remaining: AtomicUsize::new(self.fences.len() + 1),
            first: FirstFailure::new(None),
            callback: Mutex::new(Some(Box::new(f))),
        });
        for (i, fence) in self.fences.iter().enumerate() {
            let (s, rank) = (state.clone(), i as u64);
            if fence
                .add_callback(move |fence| s.note(fence, rank))
                .is_err()
            {
                state.note(fence, rank);
            }
        }
        state.done_one();
    }
}

/// Waits for every fence of `fences` to end, at most `timeout` in all
/// (forever if `None`): a failed fence does not end the wait, a deadline
/// does (`TimedOut`). Locks: each fence's list lock in turn, released while
/// asleep.
pub(crate) fn wait_every<'a>(
    fences: impl IntoIterator<Item = &'a Fence>,
    timeout: Option<Duration>,
) -> Result<(), WaitError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    for f in fences {
        let r = match deadline {
            None => f.wait().map_err(WaitError::Fence),
            Some(d) => f.wait_deadline(d),
        };
        match r {
            Ok(()) | Err(WaitError::Fence(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<'a> IntoIterator for &'a FenceSet {
    type Item = &'a Fence;
    type IntoIter = std::slice::Iter<'a, Fence>;
    fn into_iter(self) -> Self::IntoIter {
        self.fences.iter()
    }
}
