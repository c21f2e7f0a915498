//! Lock classes (`ww_class`): the algorithm and the stamp counter.
//!
//! Locking rules: `next_stamp` is an atomic counter (no lock). `tickets`, the
//! list of live tickets of the class, is guarded by its own mutex; it is a leaf
//! lock except that [`crate::resv::ww_mutex`] takes it while holding a mutex's
//! queue lock (queue -> tickets), to find the owner it wounds. A ticket's stamp
//! is written only by its owning thread, while it holds no lock of the class.

use std::time::Instant;

use crate::resv::parker::lock;
use crate::resv::ticket::TicketShared;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// How a class resolves a conflict between two tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Wait-die: a younger ticket that holds locks dies (backs off) when it
    /// meets an older owner or an older waiter; an older one waits. The
    /// kernel's `reservation_ww_class` is wait-die.
    WaitDie,
    /// Wound-wait: an older ticket wounds a younger owner, which backs off at
    /// its next contended lock; a younger ticket waits.
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
    /// [`crate::debug::dump`]. Needs no lock.
    pub fn new(name: &'static str, algorithm: Algorithm) -> Arc<WwClass> {
        let class = Arc::new(WwClass {
            id: CLASS_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name,
            algorithm,
            next_stamp: AtomicU64::new(1),
            inject_every: AtomicU64::new(0),
            created: Instant::now(),
            tickets: Mutex::new(Vec::new()),
        });
        crate::debug::register_class(&class);
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
}

#[cfg(not(loom))]
static RESERVATION_CLASS: std::sync::OnceLock<Arc<WwClass>> = std::sync::OnceLock::new();

/// The class of every [`crate::resv::Reservation`] made with
/// `Reservation::new()`: wait-die, as the kernel's `reservation_ww_class`.
#[cfg(not(loom))]
pub fn reservation_class() -> &'static Arc<WwClass> {
    RESERVATION_CLASS.get_or_init(|| WwClass::new("reservation_ww_class", Algorithm::WaitDie))
}
