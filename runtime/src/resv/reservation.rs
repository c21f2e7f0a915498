//! Reservation objects (`dma_resv`): a [`WwMutex`] plus the fences of whoever
//! uses the buffer, each with a [`Usage`].
//!
//! Locking rules:
//! - Writers (`reserve_fences`, `add_fence`) must hold the reservation's
//!   ww lock; the API enforces it: only a [`ResvGuard`] or a
//!   [`crate::resv::Reserved`] can call them.
//! - The fence list lives in a [`FenceList`]: a `Vec` the ww lock holder
//!   edits in place, and the snapshot readers share (an `Arc` of a copy,
//!   made by the first reader after an edit). Its mutex is held only to
//!   check and edit the list (the ww lock holder, once per `add_fence` that
//!   changes something), or to clone the snapshot pointer (readers; the
//!   first reader after an edit also makes the copy). Readers
//!   ([`Reservation::fences`], `test_signaled`, `wait`) never take the ww
//!   lock: they read their snapshot without any lock, and it never changes.
//! - No fence hook or callback runs under the list mutex: code holding it
//!   reads the signaled flag only (`test_signaled_flag`), never polls a
//!   fence. A fence an edit replaces is dropped after the mutex; signaled
//!   fences it prunes (and a stale snapshot) are dropped under it or after,
//!   and their drop runs no callback (a signaled fence has none left).
//! - No `unsafe`: the runtime is safe Rust (`#![forbid(unsafe_code)]`).
//! - `spare` (free capacity), `reserved` (slots the holder reserved) and
//!   `last` are atomics written only by the ww lock holder, so
//!   `reserve_fences` with room to spare and `add_fence` of the fence just
//!   placed take no lock. `reserved` is zeroed when a [`ResvGuard`] is made
//!   and dropped (the flow sets it at every lock): reserved slots are the
//!   holder's, forgotten at unlock.

use std::sync::Arc as StdArc;
use std::time::Duration;

use crate::fence::{first_of, wait_every, Fence, FenceError, FenceSet, WaitError};
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

/// What the list mutex guards.
struct ListState {
    /// The fences, edited in place by the ww lock holder.
    slots: Vec<Slot>,
    /// `slots` as of the last edit, shared by readers; `None` until a reader
    /// asks after an edit. Immutable once made.
    snap: Option<StdArc<Vec<Slot>>>,
    /// An emptied snapshot, held only here (so unique), whose allocation
    /// the next snapshot reuses: a steady frame loop (edit, snapshot, the
    /// reader done) allocates nothing.
    recycled: Option<StdArc<Vec<Slot>>>,
}

/// The fence list: edited in place under its mutex (the ww lock holder),
/// read through immutable snapshots (RCU-like: a reader keeps its snapshot
/// without any lock while writers go on).
struct FenceList {
    state: Mutex<ListState>,
}

impl FenceList {
    fn new() -> FenceList {
        FenceList {
            state: Mutex::new(ListState {
                slots: Vec::new(),
                snap: None,
                recycled: None,
            }),
        }
    }

    /// Runs `f` on the list under its mutex. Only a list edit, a reference
    /// count increment or the copy for a snapshot runs under it; no fence
    /// hook or callback.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut ListState) -> R) -> R {
        f(&mut lock(&self.state))
    }

    /// A snapshot for a reader: clones the shared pointer, or (first reader
    /// after an edit) copies the list into a new one, reusing the spare
    /// allocation when there is one. Never takes the ww lock.
    fn snapshot(&self) -> StdArc<Vec<Slot>> {
        self.with(|s| {
            let ListState {
                slots,
                snap,
                recycled,
            } = s;
            StdArc::clone(snap.get_or_insert_with(|| match recycled.take() {
                Some(mut reused) => {
                    StdArc::get_mut(&mut reused)
                        .expect("a recycled snapshot is never shared")
                        .extend_from_slice(slots);
                    reused
                }
                None => StdArc::new(slots.clone()),
            }))
        })
    }

    /// Keeps `stale`, a snapshot an edit replaced, for reuse when no
    /// reader holds it any more: its fences are dropped here, outside the
    /// list mutex, then the mutex is taken to store it. Shared: dropped.
    fn recycle(&self, mut stale: StdArc<Vec<Slot>>) {
        let Some(list) = StdArc::get_mut(&mut stale) else {
            return;
        };
        list.clear();
        self.with(|s| {
            if s.recycled.is_none() {
                s.recycled = Some(stale);
            }
        });
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
        Ok(ResvGuard::new(self, Hold::Ticket(ticket.lock(&self.lock)?)))
    }

    /// Locks the contended object after a back-off (`dma_resv_lock_slow`).
    pub fn lock_slow<'r, 't>(&'r self, ticket: &'t Ticket) -> Result<ResvGuard<'r, 't>, WwError> {
        Ok(ResvGuard::new(
            self,
            Hold::Ticket(ticket.lock_slow(&self.lock)?),
        ))
    }

    /// Locks without a ticket (`dma_resv_lock(obj, NULL)`): for code that
    /// locks this one object only.
    pub fn lock_alone(&self) -> ResvGuard<'_, '_> {
        ResvGuard::new(self, Hold::Alone(self.lock.lock()))
    }

    /// A consistent snapshot of the fences with usage `<= usage`
    /// (`dma_resv_iter` unlocked). Never takes the ww lock; takes the list
    /// mutex to clone the snapshot pointer (the first reader after an edit
    /// makes the snapshot: a copy into the allocation of an earlier one
    /// that no reader holds any more, or one allocation).
    pub fn fences(&self, usage: Usage) -> ResvFences {
        ResvFences {
            list: self.slots.snapshot(),
            usage,
        }
    }

    /// Whether every fence with usage `<= usage` has signaled
    /// (`dma_resv_test_signaled`), with or without an error. Never takes the
    /// ww lock; the list mutex briefly (a snapshot only if a fence must be
    /// polled).
    pub fn test_signaled(&self, usage: Usage) -> bool {
        let flagged = self.slots.with(|s| {
            s.slots
                .iter()
                .all(|slot| slot.usage > usage || slot.fence.test_signaled_flag())
        });
        flagged || self.fences(usage).iter().all(Fence::is_signaled)
    }

    /// Waits for every fence with usage `<= usage` (`dma_resv_wait_timeout`),
    /// at most `timeout` in all (`None`: forever). Follows the rule of
    /// `docs/fences.md`: a failed fence does not end the wait; once every
    /// fence has ended, the result is the error of the one that ended first
    /// among the failed ones. A fence still pending at the deadline is named
    /// ([`ResvWaitError::Pending`]) and stays in the reservation (nothing is
    /// pruned until it signals). Never takes the ww lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bufsync::fence::{FenceContext, FenceError};
    /// use bufsync::resv::{Reservation, ResvWaitError, Usage};
    ///
    /// let buf = Reservation::new();
    /// let (writer, reader) = (FenceContext::new("doc", "w").create_fence(),
    ///                         FenceContext::new("doc", "r").create_fence());
    /// let mut g = buf.lock_alone();
    /// g.reserve_fences(2).unwrap();
    /// g.add_fence(&writer, Usage::Write);
    /// g.add_fence(&reader, Usage::Read);
    /// drop(g);
    /// writer.signal_with_error(FenceError::DeviceLost).unwrap();
    /// // The reader still runs: the wait does not end at the failure, and
    /// // the error names the fence still pending.
    /// match buf.wait(Usage::Read, Some(Duration::from_millis(1))) {
    ///     Err(ResvWaitError::Pending { fence, .. }) => assert!(fence.ptr_eq(&reader)),
    ///     other => panic!("{other:?}"),
    /// }
    /// reader.signal().unwrap();
    /// assert_eq!(buf.wait(Usage::Read, None), Err(ResvWaitError::Fence(FenceError::DeviceLost)));
    /// ```
    pub fn wait(&self, usage: Usage, timeout: Option<Duration>) -> Result<(), ResvWaitError> {
        let start = std::time::Instant::now();
        let fences = self.fences(usage);
        if let Err(e) = wait_every(fences.iter(), timeout) {
            let pending = fences.iter().find(|f| !f.is_signaled());
            return match (e, pending) {
                (WaitError::Fence(e), _) => Err(ResvWaitError::Fence(e)),
                (_, Some(f)) => Err(ResvWaitError::Pending {
                    fence: f.clone(),
                    waited: start.elapsed(),
                }),
                // Signaled just after the deadline: it has ended after all.
                (_, None) => match first_of(fences.iter()) {
                    None => Ok(()),
                    Some(f) => Err(ResvWaitError::Fence(f.error)),
                },
            };
        }
        match first_of(fences.iter()) {
            None => Ok(()),
            Some(f) => Err(ResvWaitError::Fence(f.error)),
        }
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

    /// `reserve_locked` without room to spare: grows the list.
    #[cold]
    fn grow_locked(&self, n: usize) -> Result<(), ResvError> {
        let object = self.id();
        let spare = self.slots.with(|s| {
            s.slots
                .try_reserve(n)
                .map_err(|_| ResvError::NoMemory { object, wanted: n })?;
            Ok::<_, ResvError>(s.slots.capacity() - s.slots.len())
        })?;
        self.spare.store(spare, Ordering::Relaxed);
        self.reserved.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets the slots the holder reserved (a holder's reservation ends
    /// with its lock). Caller holds the ww lock.
    #[inline]
    fn forget_reserved(&self) {
        self.reserved.store(0, Ordering::Relaxed);
    }

    /// Adds `fence` with `usage` (`dma_resv_add_fence`): replaces the first
    /// slot that holds an earlier-or-same fence of the same context with a
    /// usage `>=` this one, or a stale fence (see [`stale`]); drops the other
    /// stale fences; else appends, using a reserved slot (an append without
    /// one is logged, as the kernel BUGs). Caller holds the ww lock; takes
    /// the list mutex once, unless `fence` is the fence the last edit placed
    /// with this usage (then nothing changes and no lock is taken).
    #[inline]
    pub(crate) fn add_locked(&self, fence: &Fence, usage: Usage) {
        // The fence the last edit placed, with this usage: already there.
        // (Skipping the edit skips its pruning too; signaled fences go at
        // the next edit, as the kernel's do.)
        let key = fence.addr() | usage as usize;
        if self.last.load(Ordering::Relaxed) == key {
            return;
        }
        self.add_edit(fence, usage, key);
    }

    /// The edit of [`Reservation::add_locked`].
    #[inline(never)]
    fn add_edit(&self, fence: &Fence, usage: Usage, key: usize) {
        let (replaced, stale_snap, appended, spare) = self.slots.with(|s| {
            let (changed, replaced, appended) = match edit(&mut s.slots, fence, usage) {
                Edit::Unchanged => (false, None, false),
                Edit::Changed(old) => (true, old, false),
                Edit::Appended => (true, None, true),
            };
            self.last.store(key, Ordering::Relaxed);
            // A stale snapshot goes (dropped after the mutex).
            let stale = if changed { s.snap.take() } else { None };
            (
                replaced,
                stale,
                appended,
                s.slots.capacity() - s.slots.len(),
            )
        });
        self.spare.store(spare, Ordering::Relaxed);
        if appended {
            let reserved = self.reserved.load(Ordering::Relaxed);
            if reserved == 0 {
                log::warn!(
                    "add_fence on object {} appended without a reserved slot",
                    self.id()
                );
            }
            self.reserved
                .store(reserved.saturating_sub(1), Ordering::Relaxed);
        }
        if let Some(stale) = stale_snap {
            self.slots.recycle(stale);
        }
        drop(replaced);
    }

    /// Adds the fences with usage `<= usage` that the new work must wait
    /// for to `set`: the unsignaled ones and those that failed (their
    /// errors are the new work's too). Caller holds the ww lock; takes the
    /// list mutex.
    pub(crate) fn collect_into(&self, usage: Usage, set: &mut FenceSet) {
        self.slots.with(|s| {
            for slot in s.slots.iter() {
                if slot.usage <= usage
                    && (!slot.fence.test_signaled_flag() || slot.fence.error().is_some())
                {
                    set.add(&slot.fence);
                }
            }
        });
    }
}

/// Whether `slot` holds a fence that an edit adding a fence with `usage`
/// may drop: a signaled one, unless it failed as a writer (`Kernel` or
/// `Write`) and the new fence does not write: a failed write stays until a
/// new writer (who waited for it, and saw the error) replaces the contents.
/// The kernel drops every signaled fence; keeping failed writes is what
/// lets a later reader still see that the contents are bad.
#[inline]
fn stale(slot: &Slot, usage: Usage) -> bool {
    slot.fence.test_signaled_flag()
        && (usage <= Usage::Write || slot.usage > Usage::Write || slot.fence.error().is_none())
}

/// Whether `slot` may take `fence` with `usage`: it is stale, or holds an
/// earlier-or-same fence of the same context with a usage `>=` this one.
#[inline]
fn replaceable(slot: &Slot, fence: &Fence, usage: Usage) -> bool {
    (slot.fence.context() == fence.context()
        && slot.usage >= usage
        && (slot.fence.ptr_eq(fence) || !slot.fence.is_later(fence)))
        || stale(slot, usage)
}

/// What [`edit`] did.
enum Edit {
    /// The same fence with the same usage was there and nothing was stale.
    Unchanged,
    /// A slot took the fence (or its new usage), stale ones went; the fence
    /// the slot held, if another one (dropped by the caller after the list
    /// mutex).
    Changed(Option<Fence>),
    /// The fence took a new slot.
    Appended,
}

/// The editing part of [`Reservation::add_locked`], under the list mutex:
/// edits `slots` in place. One pass for the usual one or two slots.
#[inline]
fn edit(slots: &mut Vec<Slot>, fence: &Fence, usage: Usage) -> Edit {
    // No slot is replaceable, so none is stale (stale ones are replaceable).
    let Some(i) = slots.iter().position(|s| replaceable(s, fence, usage)) else {
        slots.push(Slot {
            fence: fence.clone(),
            usage,
        });
        return Edit::Appended;
    };
    // Later replaceable slots are either stale (prune) or an older fence of
    // this context kept for a weaker usage.
    let prune = slots[i + 1..].iter().any(|s| stale(s, usage));
    let slot = &mut slots[i];
    let old = if slot.fence.ptr_eq(fence) {
        if slot.usage == usage && !prune {
            return Edit::Unchanged;
        }
        slot.usage = usage;
        None
    } else {
        slot.usage = usage;
        Some(std::mem::replace(&mut slot.fence, fence.clone()))
    };
    if prune {
        let mut k = 0;
        slots.retain(|s| {
            k += 1;
            k <= i + 1 || !stale(s, usage)
        });
    }
    Edit::Changed(old)
}

/// The lock a [`ResvGuard`] holds; its only use is its `Drop`.
#[allow(dead_code)]
enum Hold<'r, 't> {
    Ticket(WwGuard<'r, 't>),
    Alone(WwMutexGuard<'r>),
}

/// A locked reservation: the only way (with [`crate::resv::Reserved`]) to add
/// fences. Unlocks on drop; the slots it reserved are then forgotten (the
/// next holder reserves its own, as `dma_resv` drops reserved slots at
/// unlock).
#[must_use = "dropping the guard unlocks at once"]
pub struct ResvGuard<'r, 't> {
    resv: &'r Reservation,
    _hold: Hold<'r, 't>,
}

impl std::fmt::Debug for ResvGuard<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResvGuard")
            .field("object", &self.resv.id())
            .field("reserved", &self.reserved_slots())
            .finish()
    }
}

impl<'r, 't> ResvGuard<'r, 't> {
    /// A guard for `resv`, whose lock `hold` holds: starts with no slot
    /// reserved (whatever an earlier holder left is not this one's).
    fn new(resv: &'r Reservation, hold: Hold<'r, 't>) -> ResvGuard<'r, 't> {
        resv.forget_reserved();
        ResvGuard { resv, _hold: hold }
    }
}

impl ResvGuard<'_, '_> {
    /// The locked reservation.
    pub fn reservation(&self) -> &Reservation {
        self.resv
    }

    /// Makes room for `n` more fences (`dma_resv_reserve_fences`); may fail.
    /// Like the kernel's, it is not cumulative: afterwards `n` slots are
    /// reserved, whatever was reserved before.
    pub fn reserve_fences(&mut self, n: usize) -> Result<(), ResvError> {
        self.resv.reserve_locked(n)
    }

    /// How many of the slots this guard reserved are still unused: an
    /// `add_fence` that appends uses one, one that replaces a slot none.
    pub fn reserved_slots(&self) -> usize {
        self.resv.reserved.load(Ordering::Relaxed)
    }

    /// Adds a fence (`dma_resv_add_fence`); cannot fail. Call
    /// [`ResvGuard::reserve_fences`] first: an append without a reserved
    /// slot is logged (the kernel BUGs) and still done.
    pub fn add_fence(&mut self, fence: &Fence, usage: Usage) {
        self.resv.add_locked(fence, usage);
    }
}

impl Drop for ResvGuard<'_, '_> {
    fn drop(&mut self) {
        // Still locked here (the hold drops after this body).
        self.resv.forget_reserved();
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
