//! Reservation objects (`dma_resv`): a [`WwMutex`] plus the fences of whoever
//! uses the buffer, each with a [`Usage`].
//!
//! Locking rules:
//! - Writers (`reserve_fences`, `add_fence`) must hold the reservation's
//!   ww lock; the API enforces it: only a [`ResvGuard`] or a
//!   [`crate::resv::Reserved`] can call them.
//! - The fence list is an immutable-once-shared `Arc<Vec<Slot>>` in a
//!   [`FenceList`]: `busy`, a one-bit spin lock, is held only to clone the
//!   pointer (readers) or to replace or edit the list (the ww lock holder).
//!   Readers ([`Reservation::fences`], `test_signaled`, `wait`) never take
//!   the ww lock: they clone the pointer and read a consistent snapshot.
//! - The ww lock holder reads the list without `busy` (it is the only
//!   writer, readers never write), so an `add_fence` that changes nothing
//!   (the same fence again, nothing to prune) takes no lock at all.
//! - A writer edits the list in place when no reader holds a snapshot
//!   (`Arc::make_mut`); otherwise it copies (the only allocation in steady state).
//! - No fence hook or callback runs under `busy`: code holding it reads the
//!   signaled flag only (`test_signaled_flag`), never polls a fence.
//! - `spare` (free capacity) and `reserved` are atomics written only by the
//!   ww lock holder, so `reserve_fences` with room to spare takes no lock.

use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use crate::fence::{Fence, FenceSet, WaitError};
use crate::resv::class::WwClass;
use crate::resv::ticket::{Ticket, WwError, WwGuard};
use crate::resv::ww_mutex::{WwMutex, WwMutexGuard};
#[cfg(not(loom))]
use crate::sync::AtomicBool;
use crate::sync::{AtomicUsize, Ordering};

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

#[derive(Clone)]
struct Slot {
    fence: Fence,
    usage: Usage,
}

#[cfg(loom)]
use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's `with` / `with_mut` interface, so the
/// loom models check every access to the fence list.
#[cfg(not(loom))]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// The published fence list (RCU-like): an `Arc<Vec<Slot>>` that readers
/// clone under `busy` (a spin lock held for a reference-count increment) and
/// that only the ww lock holder replaces or edits, also under `busy`.
struct FenceList {
    #[cfg(not(loom))]
    busy: AtomicBool,
    #[cfg(loom)]
    busy: crate::sync::Mutex<()>,
    list: UnsafeCell<StdArc<Vec<Slot>>>,
}

// SAFETY: `list` is only reached through `snapshot` (under `busy`), `peek`
// and `edit` (whose callers hold the ww lock, see their contracts); `Slot`s
// are `Send + Sync` (fences are), so sharing the list between threads is
// sound once those accesses are exclusive as described.
unsafe impl Sync for FenceList {}

impl FenceList {
    fn new() -> FenceList {
        FenceList {
            busy: Default::default(),
            list: UnsafeCell::new(StdArc::new(Vec::new())),
        }
    }

    /// Runs `f` under `busy`: a reference-count increment or a short list
    /// edit is all that runs under it, so spinning (then yielding) is enough.
    #[cfg(not(loom))]
    #[inline]
    fn with_busy<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut spins = 0u32;
        while self.busy.swap(true, Ordering::Acquire) {
            while self.busy.load(Ordering::Relaxed) {
                spins += 1;
                if spins % 64 == 0 {
                    crate::sync::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        let r = f();
        self.busy.store(false, Ordering::Release);
        r
    }

    /// Under loom, `busy` is a mutex (loom does not model spinning well);
    /// the models check every access to `list` against it and the ww lock.
    #[cfg(loom)]
    fn with_busy<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = crate::resv::parker::lock(&self.busy);
        f()
    }

    /// A snapshot for a reader: clones the pointer under `busy`. Lock-free
    /// apart from `busy`; never takes the ww lock.
    fn snapshot(&self) -> StdArc<Vec<Slot>> {
        // SAFETY: under `busy` nobody replaces or edits `list` (`edit` takes
        // `busy` too); other holders of `&` access only read it.
        self.with_busy(|| self.list.with(|p| StdArc::clone(unsafe { &*p })))
    }

    /// Reads the list without `busy`.
    ///
    /// # Safety
    /// The caller holds the reservation's ww lock: it is the only writer
    /// (`edit` is called only under the ww lock), and readers never write.
    unsafe fn peek<R>(&self, f: impl FnOnce(&Vec<Slot>) -> R) -> R {
        // SAFETY: the caller's contract: no `edit` runs concurrently, and a
        // previous `edit` by another holder happened before (ww lock).
        self.list.with(|p| f(unsafe { &*p }))
    }

    /// Replaces or edits the list under `busy`.
    ///
    /// # Safety
    /// The caller holds the reservation's ww lock (no concurrent `peek` or
    /// `edit`).
    unsafe fn edit<R>(&self, f: impl FnOnce(&mut StdArc<Vec<Slot>>) -> R) -> R {
        // SAFETY: `busy` excludes readers' `snapshot`; the ww lock excludes
        // every other `peek` and `edit` (the caller's contract).
        self.with_busy(|| self.list.with_mut(|p| f(unsafe { &mut *p })))
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
    /// at most `timeout` in all (`None`: forever). Never takes the ww lock.
    pub fn wait(&self, usage: Usage, timeout: Option<Duration>) -> Result<(), WaitError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        for f in self.fences(usage).iter() {
            match deadline {
                Some(d) => f.wait_deadline(d)?,
                None => f.wait()?,
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
        // SAFETY: the caller holds the ww lock.
        let spare = unsafe {
            self.slots.edit(|list| {
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
            })?
        };
        self.spare.store(spare, Ordering::Relaxed);
        self.reserved.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Adds `fence` with `usage` (`dma_resv_add_fence`): replaces the first
    /// slot that holds a signaled fence or an earlier-or-same fence of the same
    /// context with a usage `>=` this one; drops other signaled fences; else
    /// takes a reserved slot. Caller holds the ww lock.
    #[inline]
    pub(crate) fn add_locked(&self, fence: &Fence, usage: Usage) {
        let reserved = self.reserved.load(Ordering::Relaxed);
        if reserved == 0 {
            log::warn!("add_fence on object {} without a reserved slot", self.id());
        }
        self.reserved
            .store(reserved.saturating_sub(1), Ordering::Relaxed);
        let replaceable = |slot: &Slot| {
            (slot.fence.context() == fence.context()
                && slot.usage >= usage
                && (slot.fence.ptr_eq(fence) || !slot.fence.is_later(fence)))
                || slot.fence.test_signaled_flag()
        };
        // SAFETY: the caller holds the ww lock.
        let unchanged = unsafe {
            self.slots.peek(|v| match v.iter().position(replaceable) {
                // The same fence with the same usage, nothing to prune: the
                // edit would write what is there (no lock, no reference moved).
                Some(i) => {
                    v[i].fence.ptr_eq(fence)
                        && v[i].usage == usage
                        && !v[i + 1..].iter().any(|s| s.fence.test_signaled_flag())
                }
                None => false,
            })
        };
        if !unchanged {
            self.edit_locked(fence, usage);
        }
    }

    /// The editing part of [`Reservation::add_locked`]. Caller holds the ww
    /// lock.
    #[inline(never)]
    fn edit_locked(&self, fence: &Fence, usage: Usage) {
        let replaceable = |slot: &Slot| {
            (slot.fence.context() == fence.context()
                && slot.usage >= usage
                && (slot.fence.ptr_eq(fence) || !slot.fence.is_later(fence)))
                || slot.fence.test_signaled_flag()
        };
        // SAFETY: the caller holds the ww lock.
        let spare = unsafe {
            self.slots.edit(|list| {
                // Copies only when a reader holds the old snapshot.
                let v = StdArc::make_mut(list);
                let mut placed = false;
                v.retain_mut(|slot| {
                    if !replaceable(slot) {
                        return true;
                    }
                    if placed {
                        // Later replaceable slots are either signaled (prune)
                        // or an older fence of this context kept for a weaker
                        // usage.
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
            })
        };
        self.spare.store(spare, Ordering::Relaxed);
    }

    /// Adds the unsignaled fences with usage `<= usage` to `set`. Caller
    /// holds the ww lock.
    pub(crate) fn collect_into(&self, usage: Usage, set: &mut FenceSet) {
        // SAFETY: the caller holds the ww lock.
        unsafe {
            self.slots.peek(|v| {
                for slot in v {
                    if slot.usage <= usage && !slot.fence.test_signaled_flag() {
                        set.add(&slot.fence);
                    }
                }
            });
        }
    }
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
