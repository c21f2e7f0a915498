//! Lock classes (`ww_class`): the algorithm, the stamp counter, and the
//! registries the diagnostics read (live tickets, the class's locks, the
//! list of classes).
//!
//! Locking rules: `next_stamp` is an atomic counter (no lock). `tickets`, the
//! list of live tickets of the class, is guarded by its own mutex; it is a leaf
//! lock except that [`crate::resv::ww_mutex`] takes it while holding a mutex's
//! queue lock (queue -> tickets), to find the owner it wounds. `locks`, the
//! class's registry of mutexes, is a leaf mutex taken when a mutex is made
//! and when the diagnostics list the class (never under a queue lock: the
//! reader copies the list, then visits each mutex). The process-wide class
//! list is a leaf mutex too. A ticket's stamp is written only by its owning
//! thread, while it holds no lock of the class.
//!
//! Bounded growth: `tickets` holds live tickets only (a dropped ticket removes
//! itself; the list's capacity shrinks when it is mostly empty); `locks` and
//! the class list hold weak references, pruned whenever they have doubled
//! since the last pruning and whenever the diagnostics read them, so each
//! stays within twice the most entries ever live at once plus a small
//! constant, however many come and go.

use std::time::Instant;

use crate::resv::parker::lock;
use crate::resv::ticket::TicketShared;
#[cfg(not(loom))]
use crate::resv::ww_mutex::WwCore;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// How a class resolves a conflict between two tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Wait-die: a younger ticket that holds locks dies (backs off) when it
    /// meets an older owner or an older waiter; an older one waits. The
    /// kernel's `reservation_ww_class` is wait-die.
    WaitDie,
    /// Wound-wait: an older ticket wounds a younger owner, which backs off at
    /// its next contended lock (at once if it is asleep in a queue); a
    /// younger ticket waits.
    WoundWait,
}

impl Algorithm {
    /// A short name for dumps.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::WaitDie => "wait-die",
            Algorithm::WoundWait => "wound-wait",
        }
    }
}

/// Stamps at or above this value are never handed out (they encode the
/// owner of a ticket-less lock).
pub(crate) const STAMP_LIMIT: u64 = 1 << 61;

static CLASS_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A list of weak references that prunes its dead entries whenever it has
/// doubled since the last pruning (and when read): at most twice the
/// entries live at the last pruning plus [`WeakList::MIN_PRUNE`]. A dead
/// entry keeps only its allocation, not its contents. Not under loom
/// (loom's `Arc` has no `Weak`).
#[cfg(not(loom))]
pub(crate) struct WeakList<T> {
    list: std::sync::Mutex<(Vec<std::sync::Weak<T>>, usize)>,
}

#[cfg(not(loom))]
impl<T> WeakList<T> {
    const MIN_PRUNE: usize = 32;

    pub(crate) const fn new() -> WeakList<T> {
        WeakList {
            list: std::sync::Mutex::new((Vec::new(), WeakList::<T>::MIN_PRUNE)),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, (Vec<std::sync::Weak<T>>, usize)> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `item`; prunes first if the list has doubled. Takes the list mutex.
    pub(crate) fn push(&self, item: &std::sync::Arc<T>) {
        let mut g = self.guard();
        let (list, prune_at) = &mut *g;
        if list.len() >= *prune_at {
            list.retain(|w| w.strong_count() > 0);
            *prune_at = (2 * list.len()).max(WeakList::<T>::MIN_PRUNE);
            if list.capacity() > 2 * *prune_at {
                list.shrink_to(*prune_at);
            }
        }
        list.push(std::sync::Arc::downgrade(item));
    }

    /// The live entries; drops the dead ones on the way. Takes the list
    /// mutex.
    pub(crate) fn live(&self) -> Vec<std::sync::Arc<T>> {
        let mut g = self.guard();
        let (list, prune_at) = &mut *g;
        let live: Vec<std::sync::Arc<T>> =
            list.iter().filter_map(std::sync::Weak::upgrade).collect();
        if live.len() < list.len() {
            list.retain(|w| w.strong_count() > 0);
            *prune_at = (2 * list.len()).max(WeakList::<T>::MIN_PRUNE);
        }
        live
    }

    /// How many entries (live or not yet pruned) the list holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.guard().0.len()
    }
}

/// Every class made so far that is still alive (for [`crate::debug`]).
#[cfg(not(loom))]
static CLASSES: WeakList<WwClass> = WeakList::new();

/// The live classes, oldest first. Takes the class list mutex.
#[cfg(not(loom))]
pub(crate) fn live_classes() -> Vec<Arc<WwClass>> {
    CLASSES.live()
}

/// Under loom there is no registry (loom's `Arc` has no `Weak`).
#[cfg(loom)]
pub(crate) fn live_classes() -> Vec<Arc<WwClass>> {
    Vec::new()
}

/// A lock class: every [`crate::resv::WwMutex`] and [`crate::resv::Ticket`]
/// belongs to one; stamps are comparable only within a class.
pub struct WwClass {
    id: u64,
    name: &'static str,
    algorithm: Algorithm,
    next_stamp: AtomicU64,
    inject_every: AtomicU64,
    created: Instant,
    pub(crate) tickets: Mutex<Vec<Arc<TicketShared>>>,
    #[cfg(not(loom))]
    locks: WeakList<WwCore>,
}

impl std::fmt::Debug for WwClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WwClass")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl WwClass {
    /// A new class with its own stamp counter. Registered for
    /// [`crate::debug::dump`]: takes the class list mutex once.
    pub fn new(name: &'static str, algorithm: Algorithm) -> Arc<WwClass> {
        let class = Arc::new(WwClass {
            id: CLASS_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name,
            algorithm,
            next_stamp: AtomicU64::new(1),
            inject_every: AtomicU64::new(0),
            created: Instant::now(),
            tickets: Mutex::new(Vec::new()),
            #[cfg(not(loom))]
            locks: WeakList::new(),
        });
        #[cfg(not(loom))]
        CLASSES.push(&class);
        class
    }

    /// The class's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The class's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A unique id (used to catch mixed classes).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the class was created (dumps print ages relative to it).
    pub(crate) fn created(&self) -> Instant {
        self.created
    }

    /// Takes the next stamp (lower = older = wins). Lock-free.
    #[inline]
    pub(crate) fn take_stamp(&self) -> u64 {
        self.next_stamp.fetch_add(1, Ordering::Relaxed)
    }

    /// Test mode (the kernel's `CONFIG_DEBUG_WW_MUTEX_SLOWPATH`): a lock taken
    /// by a ticket that already holds one returns `Deadlock` instead, first
    /// within `n` locks of an acquire sequence, then at gaps growing x3.5 (so
    /// every sequence finishes), to exercise back-off paths. `0` turns it off.
    pub fn inject_deadlock_every(&self, n: u64) {
        self.inject_every.store(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn inject_every(&self) -> u64 {
        self.inject_every.load(Ordering::Relaxed)
    }

    /// Finds the live ticket holding `stamp` (queue -> tickets lock order).
    pub(crate) fn ticket_by_stamp(&self, stamp: u64) -> Option<Arc<TicketShared>> {
        lock(&self.tickets)
            .iter()
            .find(|t| t.stamp() == stamp)
            .cloned()
    }

    /// Lists a ticket (`Ticket::new`). Takes the ticket list.
    pub(crate) fn add_ticket(&self, t: &Arc<TicketShared>) {
        lock(&self.tickets).push(Arc::clone(t));
    }

    /// Unlists a ticket (its drop); gives memory back once the list is
    /// mostly empty. Takes the ticket list.
    pub(crate) fn remove_ticket(&self, t: &Arc<TicketShared>) {
        let mut list = lock(&self.tickets);
        if let Some(i) = list.iter().rposition(|x| Arc::ptr_eq(x, t)) {
            list.swap_remove(i);
        }
        if list.capacity() > 64 && list.len() < list.capacity() / 4 {
            let keep = (2 * list.len()).max(16);
            list.shrink_to(keep);
        }
    }

    /// The live tickets, a copy of the list. Takes the ticket list.
    pub(crate) fn live_tickets(&self) -> Vec<Arc<TicketShared>> {
        lock(&self.tickets).clone()
    }

    /// Lists a mutex of this class for the diagnostics. Takes the registry.
    #[cfg(not(loom))]
    pub(crate) fn register_lock(&self, core: &Arc<WwCore>) {
        self.locks.push(core);
    }

    /// The class's live mutexes, oldest first. Takes the registry.
    #[cfg(not(loom))]
    pub(crate) fn live_locks(&self) -> Vec<Arc<WwCore>> {
        self.locks.live()
    }

    /// Under loom there is no registry.
    #[cfg(loom)]
    pub(crate) fn live_locks(&self) -> Vec<Arc<crate::resv::ww_mutex::WwCore>> {
        Vec::new()
    }
}

#[cfg(not(loom))]
static RESERVATION_CLASS: std::sync::OnceLock<Arc<WwClass>> = std::sync::OnceLock::new();

/// The class of every [`crate::resv::Reservation`] made with
/// `Reservation::new()`: wait-die, as the kernel's `reservation_ww_class`.
#[cfg(not(loom))]
pub fn reservation_class() -> &'static Arc<WwClass> {
    RESERVATION_CLASS.get_or_init(|| WwClass::new("reservation_ww_class", Algorithm::WaitDie))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn weak_list_stays_within_twice_its_live_entries() {
        let list: WeakList<u32> = WeakList::new();
        let keep: Vec<std::sync::Arc<u32>> = (0..10).map(std::sync::Arc::new).collect();
        for k in &keep {
            list.push(k);
        }
        for i in 0..100_000 {
            let gone = std::sync::Arc::new(i);
            list.push(&gone);
            assert!(list.len() <= 2 * keep.len() + WeakList::<u32>::MIN_PRUNE + 1);
        }
        assert_eq!(list.live().len(), keep.len());
    }

    #[test]
    fn registries_give_memory_back() {
        let class = WwClass::new("bounded", Algorithm::WaitDie);
        let tickets: Vec<crate::resv::Ticket> = (0..10_000)
            .map(|_| crate::resv::Ticket::new(&class))
            .collect();
        assert_eq!(lock(&class.tickets).len(), 10_000);
        drop(tickets);
        let list = lock(&class.tickets);
        assert!(list.is_empty());
        assert!(list.capacity() <= 64, "capacity {}", list.capacity());
        drop(list);
        let locks: Vec<crate::resv::WwMutex> = (0..10_000)
            .map(|_| crate::resv::WwMutex::new(&class))
            .collect();
        drop(locks);
        let _m = crate::resv::WwMutex::new(&class);
        // Reading the registry (a dump) drops the dead entries.
        assert_eq!(class.live_locks().len(), 1);
        assert_eq!(class.locks.len(), 1);
        // Churn without reading stays within twice the most ever live.
        for _ in 0..100_000 {
            drop(crate::resv::WwMutex::new(&class));
            assert!(class.locks.len() <= 2 * 10_000 + WeakList::<WwCore>::MIN_PRUNE + 1);
        }
    }
}
