//! Tickets (`ww_acquire_ctx`): a stamp kept across retries, the locks taken
//! with it, and the place kept after a back-off.
//!
//! Locking rules: a [`Ticket`] belongs to one thread (`Send`, not `Sync`);
//! its `Cell` fields are that thread's. [`TicketShared`] is what other threads
//! see: `stamp` (written only by the owner while it holds no lock of the
//! class), `wounded` and `cancelled` (atomics, set by anyone), `parker`, and
//! `debug` (a leaf mutex: what the ticket waits for, back-offs, for dumps;
//! taken on the slow path only). What a ticket holds is not recorded here:
//! each lock's owner word names its holder, and the diagnostics read the
//! locks (see [`crate::debug`]).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::resv::class::WwClass;
use crate::resv::parker::{lock, Parker};
use crate::resv::ww_mutex::{CoreError, Locker, WwCore, WwMutex};
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};

/// Why a ticket did not get a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WwError {
    /// An older ticket holds or waits for the object (wait-die), or this
    /// ticket was wounded (wound-wait): unlock everything, then
    /// [`Ticket::lock_slow`] this object and retry the rest.
    #[error("deadlock on object {object}: back off, then lock_slow it")]
    Deadlock {
        /// The contended object.
        object: u64,
    },
    /// This ticket already holds the object (`-EALREADY`).
    #[error("object {object} is already held by this ticket")]
    AlreadyHeld {
        /// The object.
        object: u64,
    },
    /// The ticket's deadline passed while waiting.
    #[error("timed out waiting for object {object}")]
    TimedOut {
        /// The object waited for.
        object: u64,
    },
    /// The ticket was cancelled while waiting.
    #[error("cancelled while waiting for object {object}")]
    Cancelled {
        /// The object waited for.
        object: u64,
    },
    /// A locking rule was broken (checked in debug builds).
    #[error("locking rule broken on object {object}: {misuse}")]
    Misuse {
        /// The object.
        object: u64,
        /// The rule.
        misuse: Misuse,
    },
}

/// The locking rules debug builds check (the kernel's `DEBUG_WW_MUTEXES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Misuse {
    /// A lock after [`Ticket::done_acquiring`].
    #[error("lock after the acquire phase was declared done")]
    AfterDone,
    /// `lock_slow` with no `Deadlock` to resolve.
    #[error("lock_slow without a prior Deadlock")]
    SlowWithoutDeadlock,
    /// `lock_slow` on another object than the contended one.
    #[error("lock_slow on the wrong object (contended: {expected})")]
    SlowWrongObject {
        /// The object that returned `Deadlock`.
        expected: u64,
    },
    /// `lock_slow` while still holding locks.
    #[error("lock_slow while holding {held} locks")]
    SlowWhileHolding {
        /// Locks still held.
        held: usize,
    },
    /// The mutex belongs to another class than the ticket.
    #[error("the mutex belongs to another class")]
    ClassMismatch,
    /// A lock that may wait, taken in a fence's signal path (a fence
    /// callback): the kernel forbids taking a reservation lock there, since
    /// its holder may be waiting for that very fence.
    #[error("lock taken in a fence's signal path")]
    InSignalPath,
}

/// What other threads may see of a ticket.
pub(crate) struct TicketShared {
    stamp: AtomicU64,
    pub(crate) wounded: AtomicBool,
    pub(crate) cancelled: AtomicBool,
    pub(crate) parker: Parker,
    pub(crate) debug: Mutex<TicketDebug>,
}

/// A ticket's entry in the registry (see [`crate::debug`]).
pub(crate) struct TicketDebug {
    pub(crate) started: Instant,
    /// The object waited for and since when, while waiting.
    pub(crate) waiting: Option<(u64, Instant)>,
    pub(crate) backoffs: u64,
    pub(crate) warned: bool,
}

impl TicketShared {
    /// The current stamp. Lock-free.
    #[inline]
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp.load(Ordering::Relaxed)
    }

    /// Records what the ticket waits for. Takes `debug`.
    pub(crate) fn set_waiting(&self, what: Option<(u64, Instant)>) {
        let mut d = lock(&self.debug);
        if what.is_none() {
            d.warned = false;
        }
        d.waiting = what;
    }
}

/// Cancels a ticket's waits from another thread.
#[derive(Clone)]
pub struct CancelHandle(Arc<TicketShared>);

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CancelHandle")
            .field(&self.0.stamp())
            .finish()
    }
}

impl CancelHandle {
    /// Makes the ticket's current and later waits return `Cancelled` until
    /// it restarts. Lock-free apart from the ticket's parker.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.parker.unpark();
    }
}

/// An acquire context (`ww_acquire_ctx`): locks many [`WwMutex`]es of one
/// class in any order without deadlock. Keeps its stamp across retries.
pub struct Ticket {
    pub(crate) shared: Arc<TicketShared>,
    pub(crate) class: Arc<WwClass>,
    acquired: Cell<usize>,
    done: Cell<bool>,
    contended: RefCell<Option<Arc<WwCore>>>,
    /// Debug builds: the locks held, so a drop with leaked guards can back off.
    #[cfg(debug_assertions)]
    held: RefCell<Vec<Arc<WwCore>>>,
    timeout: Cell<Option<Duration>>,
    deadline: Cell<Option<Instant>>,
    /// Deadlock injection: locks left before the next one, and the gap.
    inject_left: Cell<u64>,
    inject_gap: Cell<u64>,
    /// The stamp was taken by `new` / `restart` and not used yet.
    fresh: Cell<bool>,
    backoffs: Cell<u64>,
    pub(crate) exec: crate::resv::exec::Scratch,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("class", &self.class.name())
            .field("stamp", &self.stamp())
            .field("acquired", &self.acquired.get())
            .finish()
    }
}

impl Ticket {
    /// A ticket of `class` with a fresh stamp, listed in the registry.
    /// Takes the class's ticket list once.
    pub fn new(class: &Arc<WwClass>) -> Ticket {
        let stamp = class.take_stamp();
        let shared = Arc::new(TicketShared {
            stamp: AtomicU64::new(stamp),
            wounded: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            parker: Parker::default(),
            debug: Mutex::new(TicketDebug {
                started: Instant::now(),
                waiting: None,
                backoffs: 0,
                warned: false,
            }),
        });
        class.add_ticket(&shared);
        Ticket {
            shared,
            class: Arc::clone(class),
            acquired: Cell::new(0),
            done: Cell::new(false),
            contended: RefCell::new(None),
            #[cfg(debug_assertions)]
            held: RefCell::new(Vec::new()),
            timeout: Cell::new(None),
            deadline: Cell::new(None),
            inject_left: Cell::new(0),
            inject_gap: Cell::new(0),
            fresh: Cell::new(true),
            backoffs: Cell::new(0),
            exec: Default::default(),
        }
    }

    /// A ticket of the reservation class (wait-die).
    #[cfg(not(loom))]
    pub fn reservation() -> Ticket {
        Ticket::new(crate::resv::class::reservation_class())
    }

    /// The stamp (lower = older = wins).
    #[inline]
    pub fn stamp(&self) -> u64 {
        self.shared.stamp()
    }

    /// The class.
    pub fn class(&self) -> &Arc<WwClass> {
        &self.class
    }

    /// How many locks the ticket holds.
    pub fn acquired(&self) -> usize {
        self.acquired.get()
    }

    /// Whether an older ticket has wounded this one (wound-wait).
    pub fn is_wounded(&self) -> bool {
        self.shared.wounded.load(Ordering::Acquire)
    }

    /// A handle that cancels this ticket's waits from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(Arc::clone(&self.shared))
    }

    /// Bounds waiting: locks of this acquire sequence return `TimedOut` once
    /// `timeout` has passed from now; each later [`Ticket::reserve`] gets the
    /// same bound again from its start. `None` waits forever.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.timeout.set(timeout);
        self.deadline.set(timeout.map(|t| Instant::now() + t));
    }

    /// Declares the acquire phase over (`ww_acquire_done`): later locks are
    /// a [`Misuse`] in debug builds.
    #[inline]
    pub fn done_acquiring(&self) {
        self.done.set(true);
    }

    /// Starts a new acquire sequence (`ww_acquire_fini` + `ww_acquire_init`):
    /// a fresh stamp, no wound, no cancel, no timeout, no kept place. Must
    /// hold no lock;
    /// `&mut self` guarantees no guard is alive.
    pub fn restart(&mut self) {
        self.begin();
        self.fresh.set(true);
        self.shared.cancelled.store(false, Ordering::Release);
        self.timeout.set(None);
        self.deadline.set(None);
    }

    /// Starts the acquire sequence of [`Ticket::reserve`]: keeps the stamp
    /// of `new` / `restart` if unused, else takes a fresh one.
    #[inline]
    pub(crate) fn begin_sequence(&mut self) {
        if !self.fresh.replace(false) {
            self.begin();
        }
        if let Some(t) = self.timeout.get() {
            self.deadline.set(Some(Instant::now() + t));
        }
    }

    /// How many times this ticket has backed off (`Deadlock`), in total.
    pub fn backoffs(&self) -> u64 {
        self.backoffs.get()
    }

    /// A fresh stamp, no wound, no kept place; keeps timeout and cancel.
    #[inline]
    pub(crate) fn begin(&mut self) {
        self.forfeit_place();
        if self.acquired.get() > 0 {
            log::warn!("ticket {} restarted while holding locks", self.stamp());
        }
        self.shared.wounded.store(false, Ordering::Release);
        self.shared
            .stamp
            .store(self.class.take_stamp(), Ordering::Relaxed);
        self.done.set(false);
        self.inject_gap.set(0);
    }

    /// Locks `mutex` (`ww_mutex_lock`): waits, or returns `Deadlock` (back
    /// off) or `AlreadyHeld`. Needs no lock held except this ticket's.
    pub fn lock<'m>(&self, mutex: &'m WwMutex) -> Result<WwGuard<'m, '_>, WwError> {
        if !(self.fast_ok() && self.lock_fast(&mutex.core, self.stamp())) {
            self.lock_core(&mutex.core, false)?;
        }
        Ok(WwGuard {
            mutex,
            ticket: self,
        })
    }

    /// Locks the object that returned `Deadlock` (`ww_mutex_lock_slow`),
    /// holding nothing else: waits in its kept place, never backs off.
    pub fn lock_slow<'m>(&self, mutex: &'m WwMutex) -> Result<WwGuard<'m, '_>, WwError> {
        self.lock_core(&mutex.core, true)?;
        Ok(WwGuard {
            mutex,
            ticket: self,
        })
    }

    /// Takes `mutex` only if it is free and nobody waits (`ww_mutex_trylock`
    /// with a context); `None` if not, also when this ticket holds it. It
    /// cannot wait, so it is allowed in a fence's signal path.
    pub fn try_lock<'m>(&self, mutex: &'m WwMutex) -> Result<Option<WwGuard<'m, '_>>, WwError> {
        self.check(&mutex.core, false, false)?;
        if !mutex.core.try_fast(self.stamp()) {
            return Ok(None);
        }
        self.count_lock(&mutex.core);
        Ok(Some(WwGuard {
            mutex,
            ticket: self,
        }))
    }

    /// The debug-build rules (`DEBUG_WW_MUTEXES`); `waits`: the lock may
    /// wait, so the signal-path rule applies.
    fn check(&self, core: &Arc<WwCore>, slow: bool, waits: bool) -> Result<(), WwError> {
        if !cfg!(debug_assertions) {
            return Ok(());
        }
        let object = core.id();
        let misuse = if waits && crate::fence::in_signal_path() {
            Some(Misuse::InSignalPath)
        } else if self.done.get() {
            Some(Misuse::AfterDone)
        } else if core.class_id() != self.class.id() {
            Some(Misuse::ClassMismatch)
        } else if slow {
            match &*self.contended.borrow() {
                None => Some(Misuse::SlowWithoutDeadlock),
                Some(c) if !Arc::ptr_eq(c, core) => {
                    Some(Misuse::SlowWrongObject { expected: c.id() })
                }
                Some(_) if self.acquired.get() > 0 => Some(Misuse::SlowWhileHolding {
                    held: self.acquired.get(),
                }),
                Some(_) => None,
            }
        } else {
            None
        };
        match misuse {
            Some(misuse) => {
                log::warn!("ticket {}: {misuse} (object {object})", self.stamp());
                Err(WwError::Misuse { object, misuse })
            }
            None => Ok(()),
        }
    }

    /// The uncontended step of the reservation flow: takes `core` with one
    /// CAS if it is free and nobody waits, with no kept place pending and no
    /// deadlock injection (the caller checks both once per batch). Counts
    /// the lock; `false` leaves everything to [`Ticket::lock_core`].
    #[inline]
    pub(crate) fn lock_fast(&self, core: &Arc<WwCore>, stamp: u64) -> bool {
        if cfg!(debug_assertions) && self.check(core, false, true).is_err() {
            return false;
        }
        if self.acquired.get() == 0 {
            // As in `lock_core`: holding nothing, the ticket is in no cycle.
            // Before the CAS: a wound that comes once the lock is ours must
            // stay (loom's `abba_wound_wait` deadlocks otherwise).
            self.shared.wounded.store(false, Ordering::Release);
        }
        if !core.try_fast(stamp) {
            return false;
        }
        self.fresh.set(false);
        self.count_lock(core);
        true
    }

    /// Whether [`Ticket::lock_fast`] may be used: no kept place to resolve and
    /// no deadlock injection.
    #[inline]
    pub(crate) fn fast_ok(&self) -> bool {
        self.class.inject_every() == 0 && self.contended.borrow().is_none()
    }

    /// The lock step shared by [`Ticket::lock`], [`Ticket::lock_slow`] and the
    /// reservation flow.
    pub(crate) fn lock_core(&self, core: &Arc<WwCore>, slow: bool) -> Result<(), WwError> {
        self.check(core, slow, true)?;
        self.fresh.set(false);
        let object = core.id();
        let stamp = self.stamp();
        let pending = self.contended.borrow_mut().take();
        let expect_place = match pending {
            Some(p) if Arc::ptr_eq(&p, core) => true,
            Some(p) => {
                p.forfeit(stamp);
                false
            }
            None => false,
        };
        let holds = self.acquired.get() > 0;
        if !holds && !expect_place {
            // Holding nothing (not even a lock handed to a kept place), the
            // ticket is in no cycle: the wound heals. With a kept place the
            // wound may come from a waiter on that lock and must stay.
            self.shared.wounded.store(false, Ordering::Release);
        }
        let who = Locker {
            ticket: Some((&self.shared, &self.class)),
            holds,
            expect_place,
            deadline: self.deadline.get(),
        };
        match core.lock(stamp, &who) {
            Ok(()) => {
                if holds && self.inject() {
                    core.unlock(stamp);
                    // No place is kept: every wound is answered by the back-off.
                    self.shared.wounded.store(false, Ordering::Release);
                    return Err(self.backed_off(core));
                }
                self.count_lock(core);
                Ok(())
            }
            Err(CoreError::Deadlock) => Err(self.backed_off(core)),
            Err(CoreError::AlreadyHeld) => Err(WwError::AlreadyHeld { object }),
            Err(CoreError::TimedOut) => Err(WwError::TimedOut { object }),
            Err(CoreError::Cancelled) => Err(WwError::Cancelled { object }),
        }
    }

    fn backed_off(&self, core: &Arc<WwCore>) -> WwError {
        self.backoffs.set(self.backoffs.get() + 1);
        *self.contended.borrow_mut() = Some(Arc::clone(core));
        lock(&self.shared.debug).backoffs += 1;
        WwError::Deadlock { object: core.id() }
    }

    /// Whether the deadlock-injection test mode fires now. As the kernel's
    /// `ww_mutex_deadlock_injection`, the gap between injections grows
    /// (x3.5) within one acquire sequence, so every sequence finishes.
    fn inject(&self) -> bool {
        let every = self.class.inject_every();
        if every == 0 {
            return false;
        }
        if self.inject_gap.get() == 0 {
            self.inject_gap.set(every);
            self.inject_left.set(self.stamp() % every);
        }
        let left = self.inject_left.get();
        if left > 0 {
            self.inject_left.set(left - 1);
            return false;
        }
        let gap = self.inject_gap.get();
        let next = gap.saturating_mul(3).saturating_add(gap / 2).max(2);
        self.inject_gap.set(next);
        self.inject_left.set(next);
        true
    }

    /// Counts a lock just taken (and, in debug builds, remembers it).
    #[inline]
    fn count_lock(&self, core: &Arc<WwCore>) {
        self.acquired.set(self.acquired.get() + 1);
        #[cfg(debug_assertions)]
        self.held.borrow_mut().push(Arc::clone(core));
        #[cfg(not(debug_assertions))]
        let _ = core;
    }

    /// Releases a lock taken by [`Ticket::lock_core`].
    #[inline]
    pub(crate) fn unlock_core(&self, core: &WwCore) {
        core.unlock(self.stamp());
        self.acquired.set(self.acquired.get() - 1);
        #[cfg(debug_assertions)]
        {
            let mut held = self.held.borrow_mut();
            if let Some(i) = held.iter().rposition(|c| std::ptr::eq(&**c, core)) {
                held.swap_remove(i);
            }
        }
    }

    /// Gives up the place kept after a back-off, if any.
    #[inline]
    pub(crate) fn forfeit_place(&self) {
        if let Some(p) = self.contended.borrow_mut().take() {
            p.forfeit(self.stamp());
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.forfeit_place();
        if self.acquired.get() > 0 {
            log::warn!(
                "ticket {} of class {} dropped while holding {} locks (a guard was leaked)",
                self.stamp(),
                self.class.name(),
                self.acquired.get()
            );
            // Debug builds know the locks: back off. Release builds leave
            // them held, as a leaked std `MutexGuard` does.
            #[cfg(debug_assertions)]
            for core in self.held.take().into_iter().rev() {
                core.unlock(self.stamp());
            }
        }
        self.class.remove_ticket(&self.shared);
    }
}

/// A lock held by a ticket; unlocks on drop.
#[must_use = "dropping the guard unlocks at once"]
pub struct WwGuard<'m, 't> {
    mutex: &'m WwMutex,
    ticket: &'t Ticket,
}

impl std::fmt::Debug for WwGuard<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WwGuard")
            .field("object", &self.mutex.id())
            .field("stamp", &self.ticket.stamp())
            .finish()
    }
}

impl WwGuard<'_, '_> {
    /// The locked mutex.
    pub fn mutex(&self) -> &WwMutex {
        self.mutex
    }
}

impl Drop for WwGuard<'_, '_> {
    fn drop(&mut self) {
        self.ticket.unlock_core(&self.mutex.core);
    }
}
