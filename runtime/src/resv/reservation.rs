//! Reservation objects (`dma_resv`): a [`WwMutex`] plus the fences of whoever
//! uses the buffer, each with a [`Usage`].
//!
//! Locking rules:
//! - Writers (`reserve_fences`, `add_fence`) must hold the reservation's
//!   ww lock; the API enforces it: only a [`ResvGuard`] or a
//!   [`crate::resv::Reserved`] can call them.
//! - The fence list is an immutable-once-shared `Arc<Vec<Slot>>` in a
//!   [`FenceList`], whose mutex is held only to clone the pointer (readers)
//!   or to check and edit the list (the ww lock holder, once per
//!   `add_fence`). Readers ([`Reservation::fences`], `test_signaled`,
//!   `wait`) never take the ww lock: they clone the pointer and read a
//!   consistent snapshot without any lock.
//! - A writer edits the list in place when no reader holds a snapshot
//!   (`Arc::make_mut`); otherwise it copies (the only allocation in steady state).
//! - No fence hook or callback runs under the list mutex: code holding it
//!   reads the signaled flag only (`test_signaled_flag`), never polls a fence.
//! - No `unsafe`: the runtime is safe Rust (`#![forbid(unsafe_code)]`).
//! - `spare` (free capacity) and `reserved` are atomics written only by the
//!   ww lock holder, so `reserve_fences` with room to spare takes no lock.

use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use crate::fence::{Fence, FenceError, FenceSet, WaitError};
use crate::resv::class::WwClass;
use crate::resv::parker::lock;
use crate::resv::ticket::{Ticket, WwError, WwGuard};
use crate::resv::ww_mutex::{WwMutex, WwMutexGuard};
use crate::sync::{AtomicUsize, Mutex, Ordering};

/// How a fence uses a buffer (`enum dma_resv_usage`). Ordered: a query for
/// usage `U` returns every fence with usage `<= U`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Usage {
    /// Kernel-internal work (moves, clears): everybody waits for it.
    Kernel,
    /// Implicit-sync writers.
    Write,
    /// Implicit-sync readers.
    Read,
    /// Tracked only (e.g. preemption fences): nobody waits implicitly.
    Bookkeep,
}

impl Usage {
    /// Every usage, in order.
    pub const ALL: [Usage; 4] = [Usage::Kernel, Usage::Write, Usage::Read, Usage::Bookkeep];

    /// What a new access must wait for (`dma_resv_usage_rw`): a writer waits
    /// for readers and writers (`Read`), a reader for writers (`Write`).
    pub fn for_access(write: bool) -> Usage {
        if write {
            Usage::Read
        } else {
            Usage::Write
        }
    }
}

/// Errors of reservations and the reservation flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResvError {
    /// Locking failed (timeout, cancel, misuse; `Deadlock` only escapes the
    /// low-level API, the flow resolves it).
    #[error(transparent)]
    Lock(#[from] WwError),
    /// `reserve_fences` could not allocate the slots.
    #[error("cannot reserve {wanted} fence slots on object {object}")]
    NoMemory {
        /// The object.
        object: u64,
        /// Slots asked for.
        wanted: usize,
    },
    /// A fence wait failed.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// An index past the end of the reserved list.
    #[error("no entry {index} in a list of {len}")]
    NoSuchEntry {
        /// The index given.
        index: usize,
        /// The list's length.
        len: usize,
    },
}

/// Why [`Reservation::wait`] returned before every fence signaled cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResvWaitError {
    /// The bound passed while `fence` was still pending: its producer has
    /// not finished. The fence stays in the reservation (nothing is pruned
    /// until it signals); a fence pending past the engine's threshold is
    /// also listed by `bufsync::debug::dump()`.
    Pending {
        /// The fence the wait ended on.
        fence: Fence,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// A fence signaled with an error.
    Fence(FenceError),
}

impl std::fmt::Display for ResvWaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResvWaitError::Pending { fence, waited } => write!(
                f,
                "fence {}:{} ({}/{}) still pending after {waited:?}",
                fence.context(),
                fence.seqno(),
                fence.driver_name(),
                fence.timeline_name()
            ),
            ResvWaitError::Fence(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for ResvWaitError {}

impl From<ResvWaitError> for WaitError {
    /// The plain wait error (the fence's name dropped).
    fn from(e: ResvWaitError) -> WaitError {
        match e {
            ResvWaitError::Pending { .. } => WaitError::TimedOut,
            ResvWaitError::Fence(e) => WaitError::Fence(e),
        }
    }
}

#[derive(Clone)]
struct Slot {
    fence: Fence,
    usage: Usage,
}

/// The published fence list (RCU-like): an `Arc<Vec<Slot>>` behind a mutex
/// held only to clone the pointer (readers) or to check and edit the list
/// (the ww lock holder). Readers keep their snapshot without any lock.
struct FenceList {
    list: Mutex<StdArc<Vec<Slot>>>,
}

impl FenceList {
    fn new() -> FenceList {
        FenceList {
            list: Mutex::new(StdArc::new(Vec::new())),
        }
    }

    /// Runs `f` on the list under its mutex. Only a reference-count increment
    /// or a short list edit runs under it; no fence hook or callback.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut StdArc<Vec<Slot>>) -> R) -> R {
        f(&mut lock(&self.list))
    }

    /// A snapshot for a reader: clones the pointer. Never takes the ww lock.
    fn snapshot(&self) -> StdArc<Vec<Slot>> {
        self.with(|list| StdArc::clone(list))
    }
}

/// A reservation object: embed it in any buffer struct
/// (`struct DmaBuf { resv: Reservation, .. }`).
pub struct Reservation {
    pub(crate) lock: WwMutex,
    slots: FenceList,
    /// Free capacity of the list and slots reserved: written only by the ww
    /// lock holder (the lock orders them; no other lock needed).
    spare: AtomicUsize,
    reserved: AtomicUsize,
    /// The fence the last edit placed and its usage (`addr | usage`), 0 if
    /// none: written only by the ww lock holder under the list mutex. That
    /// fence stays in the list until the next edit, which rewrites `last`,
    /// so a live fence at this address is that fence (no ABA).
    last: AtomicUsize,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id())
            .field("fences", &self.fences(Usage::Bookkeep).len())
            .finish()
    }
}

#[cfg(not(loom))]
impl Default for Reservation {
    fn default() -> Self {
        Reservation::new()
    }
}

impl Reservation {
    /// An empty reservation of the reservation class (wait-die).
    #[cfg(not(loom))]
    pub fn new() -> Reservation {
        Reservation::with_class(crate::resv::class::reservation_class())
    }

    /// An empty reservation whose lock belongs to `class`.
    pub fn with_class(class: &WwClass) -> Reservation {
        Reservation {
            lock: WwMutex::new(class),
            slots: FenceList::new(),
            spare: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            last: AtomicUsize::new(0),
        }
    }

    /// The object id (its lock's id).
    #[inline]
    pub fn id(&self) -> u64 {
        self.lock.id()
    }

    /// The reservation's lock.
    pub fn ww_mutex(&self) -> &WwMutex {
        &self.lock
    }

    /// Locks with `ticket` (`dma_resv_lock(obj, ctx)`); see [`Ticket::lock`].
    pub fn lock<'r, 't>(&'r self, ticket: &'t Ticket) -> Result<ResvGuard<'r, 't>, WwError> {
        Ok(ResvGuard {
            resv: self,
            _hold: Hold::Ticket(ticket.lock(&self.lock)?),
        })
    }

    /// Locks the contended object after a back-off (`dma_resv_lock_slow`).
    pub fn lock_slow<'r, 't>(&'r self, ticket: &'t Ticket) -> Result<ResvGuard<'r, 't>, WwError> {
        Ok(ResvGuard {
            resv: self,
            _hold: Hold::Ticket(ticket.lock_slow(&self.lock)?),
        })
    }

    /// Locks without a ticket (`dma_resv_lock(obj, NULL)`): for code that
    /// locks this one object only.
    pub fn lock_alone(&self) -> ResvGuard<'_, '_> {
        ResvGuard {
            resv: self,
            _hold: Hold::Alone(self.lock.lock()),
        }
    }

    /// A consistent snapshot of the fences with usage `<= usage`
    /// (`dma_resv_iter` unlocked). Never takes the ww lock.
    pub fn fences(&self, usage: Usage) -> ResvFences {
        ResvFences {
            list: self.slots.snapshot(),
            usage,
        }
    }

    /// Whether every fence with usage `<= usage` has signaled
    /// (`dma_resv_test_signaled`). Never takes the ww lock.
    pub fn test_signaled(&self, usage: Usage) -> bool {
        self.fences(usage).iter().all(Fence::is_signaled)
    }

    /// Waits for every fence with usage `<= usage` (`dma_resv_wait_timeout`),
    /// at most `timeout` in all (`None`: forever). A fence still pending at
    /// the bound is named ([`ResvWaitError::Pending`]) and stays in the
    /// reservation. Never takes the ww lock.
    pub fn wait(&self, usage: Usage, timeout: Option<Duration>) -> Result<(), ResvWaitError> {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        for f in self.fences(usage).iter() {
            let r = match deadline {
                Some(d) => f.wait_deadline(d),
                None => f.wait().map_err(WaitError::Fence),
            };
            match r {
                Ok(()) => {}
                Err(WaitError::Fence(e)) => return Err(ResvWaitError::Fence(e)),
                Err(WaitError::TimedOut | WaitError::Cancelled) => {
                    return Err(ResvWaitError::Pending {
                        fence: f.clone(),
                        waited: start.elapsed(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Makes room for `n` more fences. Caller holds the ww lock.
    #[inline]
    pub(crate) fn reserve_locked(&self, n: usize) -> Result<(), ResvError> {
        if self.spare.load(Ordering::Relaxed) >= n {
            self.reserved.store(n, Ordering::Relaxed);
            return Ok(());
        }
        self.grow_locked(n)
    }

    /// `reserve_locked` without room to spare: grows or copies the list.
    #[cold]
    fn grow_locked(&self, n: usize) -> Result<(), ResvError> {
        let object = self.id();
        let oom = |_| ResvError::NoMemory { object, wanted: n };
        let spare = self.slots.with(|list| {
            match StdArc::get_mut(list) {
                Some(v) => v.try_reserve(n).map_err(oom)?,
                None => {
                    let mut v = Vec::new();
                    v.try_reserve_exact(list.len() + n).map_err(oom)?;
                    v.extend(list.iter().cloned());
                    *list = StdArc::new(v);
                }
            }
            Ok::<_, ResvError>(list.capacity() - list.len())
        })?;
        self.spare.store(spare, Ordering::Relaxed);
        self.reserved.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Adds `fence` with `usage` (`dma_resv_add_fence`): replaces the first
    /// slot that holds a signaled fence or an earlier-or-same fence of the same
    /// context with a usage `>=` this one; drops other signaled fences; else
    /// takes a reserved slot. Caller holds the ww lock; takes the list mutex
    /// once.
    #[inline]
    pub(crate) fn add_locked(&self, fence: &Fence, usage: Usage) {
        let reserved = self.reserved.load(Ordering::Relaxed);
        if reserved == 0 {
            log::warn!("add_fence on object {} without a reserved slot", self.id());
        }
        self.reserved
            .store(reserved.saturating_sub(1), Ordering::Relaxed);
        // The fence the last edit placed, with this usage: already there.
        // (Skipping the edit skips its pruning too; signaled fences go at
        // the next edit, as the kernel's do.)
        let key = fence.addr() | usage as usize;
        if self.last.load(Ordering::Relaxed) == key {
            return;
        }
        let spare = self.slots.with(|list| {
            // The same fence with the same usage and nothing to prune: the
            // edit would write what is there (no reference moved, no copy).
            let unchanged = match list.iter().position(|s| replaceable(s, fence, usage)) {
                Some(i) => {
                    list[i].fence.ptr_eq(fence)
                        && list[i].usage == usage
                        && !list[i + 1..].iter().any(|s| s.fence.test_signaled_flag())
                }
                None => false,
            };
            let spare = (!unchanged).then(|| edit(list, fence, usage));
            self.last.store(key, Ordering::Relaxed);
            spare
        });
        if let Some(spare) = spare {
            self.spare.store(spare, Ordering::Relaxed);
        }
    }

    /// Adds the unsignaled fences with usage `<= usage` to `set`. Caller
    /// holds the ww lock; takes the list mutex.
    pub(crate) fn collect_into(&self, usage: Usage, set: &mut FenceSet) {
        self.slots.with(|list| {
            for slot in list.iter() {
                if slot.usage <= usage && !slot.fence.test_signaled_flag() {
                    set.add(&slot.fence);
                }
            }
        });
    }
}

/// Whether `slot` may take `fence` with `usage`: it is signaled, or holds an
/// earlier-or-same fence of the same context with a usage `>=` this one.
#[inline]
fn replaceable(slot: &Slot, fence: &Fence, usage: Usage) -> bool {
    (slot.fence.context() == fence.context()
        && slot.usage >= usage
        && (slot.fence.ptr_eq(fence) || !slot.fence.is_later(fence)))
        || slot.fence.test_signaled_flag()
}

/// The editing part of [`Reservation::add_locked`], under the list mutex:
/// edits in place unless a reader holds a snapshot (then copies). Returns
/// the spare capacity left.
#[inline(never)]
fn edit(list: &mut StdArc<Vec<Slot>>, fence: &Fence, usage: Usage) -> usize {
    let v = StdArc::make_mut(list);
    let mut placed = false;
    v.retain_mut(|slot| {
        if !replaceable(slot, fence, usage) {
            return true;
        }
        if placed {
            // Later replaceable slots are either signaled (prune) or an
            // older fence of this context kept for a weaker usage.
            return !slot.fence.test_signaled_flag();
        }
        placed = true;
        if !slot.fence.ptr_eq(fence) {
            slot.fence = fence.clone();
        }
        slot.usage = usage;
        true
    });
    if !placed {
        v.push(Slot {
            fence: fence.clone(),
            usage,
        });
    }
    v.capacity() - v.len()
}

/// The lock a [`ResvGuard`] holds; its only use is its `Drop`.
#[allow(dead_code)]
enum Hold<'r, 't> {
    Ticket(WwGuard<'r, 't>),
    Alone(WwMutexGuard<'r>),
}

/// A locked reservation: the only way (with [`crate::resv::Reserved`]) to add
/// fences. Unlocks on drop; reserved slots are then forgotten.
#[must_use = "dropping the guard unlocks at once"]
pub struct ResvGuard<'r, 't> {
    resv: &'r Reservation,
    _hold: Hold<'r, 't>,
}

impl std::fmt::Debug for ResvGuard<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResvGuard")
            .field("object", &self.resv.id())
            .finish()
    }
}

impl ResvGuard<'_, '_> {
    /// The locked reservation.
    pub fn reservation(&self) -> &Reservation {
        self.resv
    }

    /// Makes room for `n` more fences (`dma_resv_reserve_fences`); may fail.
    pub fn reserve_fences(&mut self, n: usize) -> Result<(), ResvError> {
        self.resv.reserve_locked(n)
    }

    /// Adds a fence (`dma_resv_add_fence`); cannot fail. Call
    /// [`ResvGuard::reserve_fences`] first (a missing reservation is logged).
    pub fn add_fence(&mut self, fence: &Fence, usage: Usage) {
        self.resv.add_locked(fence, usage);
    }
}

/// A snapshot of a reservation's fences for one usage; holding it makes the
/// next writer copy the list.
#[derive(Clone)]
pub struct ResvFences {
    list: StdArc<Vec<Slot>>,
    usage: Usage,
}

impl std::fmt::Debug for ResvFences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter_with_usage()).finish()
    }
}

impl ResvFences {
    /// The fences with usage `<=` the queried one.
    pub fn iter(&self) -> impl Iterator<Item = &Fence> + '_ {
        self.iter_with_usage().map(|(f, _)| f)
    }

    /// The fences with their usages.
    pub fn iter_with_usage(&self) -> impl Iterator<Item = (&Fence, Usage)> + '_ {
        let max = self.usage;
        self.list
            .iter()
            .filter(move |s| s.usage <= max)
            .map(|s| (&s.fence, s.usage))
    }

    /// How many fences match.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether none match.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
