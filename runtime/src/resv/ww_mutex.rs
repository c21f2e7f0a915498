//! The wound/wait mutex (`ww_mutex`): an owner word plus a stamp-ordered queue.
//!
//! Locking rules:
//! - `state` (atomic) holds `owner << 1 | WAITERS`. Owner 0 means unlocked;
//!   a ticket owner is its stamp; a ticket-less owner is [`TICKETLESS`].
//!   The fast paths CAS `0 -> me` and `me -> 0`; they fail whenever
//!   `WAITERS` is set, so every locker of a lock with waiters goes through
//!   `queue`, and with `WAITERS` set the word changes only under `queue`.
//! - `queue` (mutex) guards the waiter list and the hand-off flag. `WAITERS`
//!   is set and cleared only under it, and it is set whenever the list is not
//!   empty. An unlock that sees `WAITERS` takes `queue` and either hands the
//!   lock to the head, if the head asked for it (it was woken and found the
//!   lock taken: the kernel's `MUTEX_FLAG_HANDOFF`), or leaves the lock free
//!   (`WAITERS` only) and wakes the head.
//! - A free lock is taken by the first locker that finds it so under `queue`,
//!   queued or not (as the kernel's mutex: a running locker does not wait
//!   while a woken waiter is being scheduled), except that only the head
//!   takes it while a hand-off is pending. A locker that takes it ahead of
//!   queued waiters does what the kernel's `__ww_mutex_check_waiters` does:
//!   in wait-die it wakes the younger waiters that hold locks (they must
//!   die), in wound-wait it wounds itself if an older waiter holds locks
//!   (that waiter now waits for it).
//! - Before queueing, a locker spins a little on the owner word (lock-free,
//!   taking the lock only through the fast path), except where the queue
//!   would end its wait at once: a ticket that holds other locks stops
//!   after a few polls on an older ticket in wait-die (it dies) or on a
//!   younger one in wound-wait (it wounds it), as the kernel's
//!   `ww_mutex_spin_on_owner` does not spin for a ticket with locks; a
//!   wounded ticket stops too.
//! - Lock order: `queue` -> class ticket list -> a parker. No other lock is
//!   taken under `queue`.
//! - Waiters are ordered by stamp (older first); ticket-less waiters go last,
//!   FIFO. An entry left by a ticket that backed off (`Deadlock`) keeps its
//!   place until that ticket locks the object (`lock_slow`) or gives up: it
//!   stays ahead of younger waiters and makes younger lockers that hold
//!   locks die (wait-die), but a running locker may take the lock while it
//!   is free, as from any waiter (the kernel's `lock_slow` waiter is no
//!   different). An older rule let nobody younger take a free lock ahead of
//!   a kept place: 80% of the wait-die back-offs at 4 threads were younger
//!   tickets dying on such a free lock (see docs/reservations.md).

use std::time::{Duration, Instant};

use crate::resv::class::{Algorithm, WwClass, STAMP_LIMIT};
use crate::resv::parker::{lock, Parker};
use crate::resv::state::{Holder, LockState, QueuedWaiter};
use crate::resv::ticket::TicketShared;
use crate::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};

const WAITERS: u64 = 1;
/// Owner code of a lock taken without a ticket.
pub(crate) const TICKETLESS: u64 = STAMP_LIMIT;

static OBJECT_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Whether owner code `owner` is a ticket older than stamp `code` (0, free,
/// and [`TICKETLESS`] are no ticket).
#[inline]
fn older_ticket(owner: u64, code: u64) -> bool {
    owner != 0 && owner < STAMP_LIMIT && owner < code
}

/// Whether owner code `owner` is a ticket younger than stamp `code`.
#[inline]
fn younger_ticket(owner: u64, code: u64) -> bool {
    owner < STAMP_LIMIT && owner > code
}

/// Who wakes a waiter.
enum Wake {
    Ticket(Arc<TicketShared>),
    Plain(Arc<Parker>),
}

impl Wake {
    fn parker(&self) -> &Parker {
        match self {
            Wake::Ticket(t) => &t.parker,
            Wake::Plain(p) => p,
        }
    }
}

struct Waiter {
    /// Sort key: the stamp, `u64::MAX` for ticket-less waiters.
    key: u64,
    seq: u64,
    /// Whether the waiter holds other locks of the class (only those may die).
    holds: bool,
    /// A place kept by a ticket that backed off.
    kept: bool,
    wake: Wake,
}

#[derive(Default)]
struct Queue {
    waiters: Vec<Waiter>,
    seq: u64,
    /// The head was woken and found the lock taken: the next unlock hands
    /// the lock to the head instead of leaving it free.
    handoff: bool,
}

impl Queue {
    /// Whether a locker (queued as `mine`, or not queued) may take the free
    /// lock now: it is the head, or no hand-off is pending. A kept place is
    /// no exception: it keeps its position in the queue, and the hand-off
    /// bounds how often its ticket loses the free lock, as the kernel's
    /// `ww_mutex_lock_slow` waiter (see the rules at the top).
    fn may_take(&self, mine: Option<u64>) -> bool {
        match self.waiters.first() {
            None => true,
            Some(head) if Some(head.seq) == mine => true,
            Some(_) => !self.handoff,
        }
    }
}

/// What a locker brings to [`WwCore::lock`].
pub(crate) struct Locker<'a> {
    /// The ticket, with its class; `None` for a ticket-less lock.
    pub(crate) ticket: Option<(&'a Arc<TicketShared>, &'a WwClass)>,
    /// The locker holds other locks of the class.
    pub(crate) holds: bool,
    /// The locker has a place kept in this queue (or was handed the lock).
    pub(crate) expect_place: bool,
    /// Give up at this instant.
    pub(crate) deadline: Option<Instant>,
}

/// Why [`WwCore::lock`] did not take the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoreError {
    Deadlock,
    AlreadyHeld,
    TimedOut,
    Cancelled,
}

/// The shared part of a [`WwMutex`] (kept alive by a ticket that keeps its
/// place in the queue).
pub(crate) struct WwCore {
    state: AtomicU64,
    id: u64,
    class_id: u64,
    /// Wait-die waiters that hold locks must re-check when the queue or the
    /// owner changes; wound-wait waiters need not.
    wait_die: bool,
    queue: Mutex<Queue>,
}

impl WwCore {
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn class_id(&self) -> u64 {
        self.class_id
    }

    /// The current owner code (0 when unlocked). Lock-free.
    #[inline]
    pub(crate) fn owner(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> 1
    }

    /// Fast path: takes a free lock nobody waits for. Lock-free.
    #[inline]
    pub(crate) fn try_fast(&self, code: u64) -> bool {
        self.state
            .compare_exchange(0, code << 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Optimistic spinning: polls a briefly held lock before queueing. Only
    /// takes it through the fast path, so it stops as soon as anyone queues
    /// (a waiter's stamp may be older), and after a few polls when the
    /// owner is a ticket this locker must not wait for (see
    /// [`WwCore::may_spin`]) or a wound-wait ticket is wounded (it must back
    /// off, not wait).
    fn spin_fast(&self, code: u64, who: &Locker<'_>) -> bool {
        const SPINS: u32 = if cfg!(loom) { 0 } else { 100 };
        // Polls before the owner's stamp counts: a critical section often
        // ends within them, sparing a back-off. Reserve bench in the TCG
        // guest (two boots, 3 interleaved runs per value), wait-die, 4
        // threads, median ratio to sorted mutexes and back-offs per op:
        // 0 polls 0.29x / 0.0215, 2 polls 0.34-0.43x / 0.017-0.021, 3 polls
        // 0.44x / 0.0161, 5 polls 0.31x / 0.0187; 20 polls (a host run)
        // lose ops again, spinning on cycles.
        const GRACE: u32 = 3;
        for i in 0..SPINS {
            let st = self.state.load(Ordering::Relaxed);
            if st & WAITERS != 0 || st >> 1 == code {
                return false;
            }
            if st == 0 {
                if self.try_fast(code) {
                    return true;
                }
            } else if i >= GRACE && !self.may_spin(st >> 1, code, who) {
                return false;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Whether a locker may spin on a lock `owner` holds, the kernel's rule
    /// (`ww_mutex_spin_on_owner`) made finer: a ticket holding nothing else
    /// is in no cycle and spins; one holding locks does not spin where the
    /// queue would end its wait at once (wait-die: the owner is an older
    /// ticket, so it dies; wound-wait: the owner is a younger ticket, which
    /// it must wound first), nor once it is wounded itself. Lock-free.
    #[inline]
    fn may_spin(&self, owner: u64, code: u64, who: &Locker<'_>) -> bool {
        let Some((ticket, _)) = who.ticket else {
            return true;
        };
        if !who.holds {
            return true;
        }
        if self.wait_die {
            // An older owner: the queue says die.
            !older_ticket(owner, code)
        } else {
            // Wounded: back off; a younger owner: wound it first.
            let wounded = ticket.wounded.load(Ordering::Relaxed);
            !(wounded || younger_ticket(owner, code))
        }
    }

    /// A copy of the holder and the queue, taken under `queue`.
    pub(crate) fn state(&self) -> LockState {
        let q = lock(&self.queue);
        let holder = match self.owner() {
            0 => None,
            TICKETLESS => Some(Holder::Ticketless),
            stamp => Some(Holder::Ticket { stamp }),
        };
        LockState {
            object: self.id,
            holder,
            waiters: q
                .waiters
                .iter()
                .map(|w| QueuedWaiter {
                    stamp: (w.key != u64::MAX).then_some(w.key),
                    kept: w.kept,
                    holds_others: w.holds,
                })
                .collect(),
        }
    }

    /// Takes the lock for `code` (a stamp, or [`TICKETLESS`]), waiting in
    /// stamp order. Needs no lock; takes `queue` on the slow path.
    pub(crate) fn lock(&self, code: u64, who: &Locker<'_>) -> Result<(), CoreError> {
        if !who.expect_place && self.try_fast(code) {
            return Ok(());
        }
        if !who.expect_place && self.spin_fast(code, who) {
            return Ok(());
        }
        if code != TICKETLESS && !who.expect_place && self.owner() == code {
            return Err(CoreError::AlreadyHeld);
        }
        let key = if code == TICKETLESS { u64::MAX } else { code };
        let mut q = lock(&self.queue);
        let mut mine: Option<u64> = None;
        if who.expect_place {
            match q.waiters.iter().find(|w| w.key == key) {
                Some(w) => mine = Some(w.seq),
                None if self.owner() == code => return Ok(()),
                None => {}
            }
        }
        let mut plain: Option<Arc<Parker>> = None;
        let mut waited_since: Option<Instant> = None;
        let mut victim: Option<(u64, Arc<TicketShared>)> = None;
        loop {
            if let Some(seq) = mine {
                if !q.waiters.iter().any(|w| w.seq == seq) {
                    // Handed over by the previous owner.
                    self.clear_waiting(who);
                    return Ok(());
                }
            }
            let st = self.state.load(Ordering::Acquire);
            let owner = st >> 1;
            if owner == 0 {
                if q.may_take(mine) {
                    let others = q.waiters.iter().any(|w| Some(w.seq) != mine);
                    let new = code << 1 | if others { WAITERS } else { 0 };
                    if self
                        .state
                        .compare_exchange(st, new, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        if let Some(seq) = mine {
                            q.waiters.retain(|w| w.seq != seq);
                        }
                        self.taken(&mut q, key, who.ticket.map(|(t, _)| t));
                        self.clear_waiting(who);
                        return Ok(());
                    }
                    // Only a fast path racing with an empty queue gets here.
                    continue;
                }
                // Free, but handed to the head: make sure the head looks
                // (one swap if it is awake).
                q.waiters[0].wake.parker().unpark();
            }
            if let Some((ticket, class)) = who.ticket {
                if ticket.cancelled.load(Ordering::Acquire) {
                    self.leave(&mut q, mine);
                    self.clear_waiting(who);
                    return Err(CoreError::Cancelled);
                }
                if who.deadline.is_some_and(|d| Instant::now() >= d) {
                    self.leave(&mut q, mine);
                    self.clear_waiting(who);
                    return Err(CoreError::TimedOut);
                }
                let die = who.holds
                    && match class.algorithm() {
                        Algorithm::WaitDie => {
                            older_ticket(owner, code) || q.waiters.iter().any(|w| w.key < key)
                        }
                        Algorithm::WoundWait => ticket.wounded.load(Ordering::Acquire),
                    };
                if die {
                    // The back-off answers every wound so far. Cleared under
                    // `queue`, so a wound for the kept place (which needs
                    // `queue` to see this ticket own the lock) comes later
                    // and stays.
                    ticket.wounded.store(false, Ordering::Release);
                    // Back off, but keep the place in the queue.
                    match mine {
                        Some(seq) => {
                            if let Some(w) = q.waiters.iter_mut().find(|w| w.seq == seq) {
                                w.holds = false;
                                w.kept = true;
                            }
                        }
                        None => {
                            self.enqueue(
                                &mut q,
                                key,
                                false,
                                true,
                                Wake::Ticket(Arc::clone(ticket)),
                            );
                        }
                    }
                    self.clear_waiting(who);
                    return Err(CoreError::Deadlock);
                }
                if class.algorithm() == Algorithm::WoundWait
                    && who.holds
                    && younger_ticket(owner, code)
                {
                    // The lookup takes the class's list: once per owner.
                    if victim.as_ref().map(|(s, _)| *s) != Some(owner) {
                        victim = class.ticket_by_stamp(owner).map(|v| (owner, v));
                    }
                    // Checked on every pass: the owner may have backed off
                    // (answering the wound) and taken the lock again with
                    // the same stamp before this waiter queued; it must be
                    // wounded again (else both wait: a deadlock).
                    if let Some((_, v)) = &victim {
                        if !v.wounded.load(Ordering::Acquire)
                            && !v.wounded.swap(true, Ordering::AcqRel)
                        {
                            log::debug!(
                                "ticket {code} wounds ticket {owner} on object {}",
                                self.id
                            );
                            v.parker.unpark();
                        }
                    }
                }
            } else if who.deadline.is_some_and(|d| Instant::now() >= d) {
                self.leave(&mut q, mine);
                return Err(CoreError::TimedOut);
            }
            if mine.is_none() {
                let wake = match who.ticket {
                    Some((t, _)) => Wake::Ticket(Arc::clone(t)),
                    None => Wake::Plain(Arc::clone(plain.get_or_insert_with(Default::default))),
                };
                mine = Some(self.enqueue(&mut q, key, who.holds, false, wake));
                continue;
            }
            let since = *waited_since.get_or_insert_with(Instant::now);
            if let Some((t, _)) = who.ticket {
                t.set_waiting(Some((self.id, since)));
            }
            drop(q);
            let park_until = crate::resv::stall::park_deadline(since, who.deadline);
            match who.ticket {
                Some((t, _)) => t.parker.park(park_until),
                None => plain.as_deref().map_or((), |p| p.park(park_until)),
            }
            if let Some((t, class)) = who.ticket {
                crate::resv::stall::check_stall(class, t, self.id, since);
            }
            q = lock(&self.queue);
            // Woken as the head and the lock is taken (by a locker that
            // came first): the next unlock hands it over, so a waiter loses
            // the lock at most once per wake-up.
            if let Some(seq) = mine {
                if self.owner() != 0 && q.waiters.first().is_some_and(|w| w.seq == seq) {
                    q.handoff = true;
                }
            }
        }
    }

    /// What a locker with sort key `key` does once it took the lock (with
    /// its own entry already out of the queue). Needs `queue`.
    fn taken(&self, q: &mut MutexGuard<'_, Queue>, key: u64, ticket: Option<&Arc<TicketShared>>) {
        q.handoff = false;
        if key == u64::MAX {
            return;
        }
        if self.wait_die {
            // Younger waiters that hold locks now wait for an older owner:
            // they must die. Let them look.
            for w in q.waiters.iter().filter(|w| w.holds && w.key > key) {
                w.wake.parker().unpark();
            }
        } else if let Some(t) = ticket {
            // An older waiter that holds locks now waits for this younger
            // owner: the owner is wounded (it backs off at its next lock).
            if q.waiters.iter().any(|w| w.holds && w.key < key) {
                t.wounded.store(true, Ordering::Release);
            }
        }
    }

    fn clear_waiting(&self, who: &Locker<'_>) {
        if let Some((t, _)) = who.ticket {
            t.set_waiting(None);
        }
    }

    /// Inserts a waiter in stamp order and sets `WAITERS`. Needs `queue`.
    fn enqueue(
        &self,
        q: &mut MutexGuard<'_, Queue>,
        key: u64,
        holds: bool,
        kept: bool,
        wake: Wake,
    ) -> u64 {
        q.seq += 1;
        let seq = q.seq;
        let at = q.waiters.partition_point(|w| w.key <= key);
        q.waiters.insert(
            at,
            Waiter {
                key,
                seq,
                holds,
                kept,
                wake,
            },
        );
        self.state.fetch_or(WAITERS, Ordering::AcqRel);
        // Younger waiters that hold locks may now have to die: let them look.
        if self.wait_die {
            for w in q.waiters[at + 1..].iter().filter(|w| w.holds) {
                w.wake.parker().unpark();
            }
        }
        seq
    }

    /// Removes a waiter that gives up; keeps `WAITERS` truthful. Needs `queue`.
    fn leave(&self, q: &mut MutexGuard<'_, Queue>, mine: Option<u64>) {
        let Some(seq) = mine else { return };
        q.waiters.retain(|w| w.seq != seq);
        if q.waiters.is_empty() {
            q.handoff = false;
            self.state.fetch_and(!WAITERS, Ordering::AcqRel);
        } else if self.owner() == 0 {
            self.release_to_head(q);
        }
    }

    /// Releases the lock to the queue (the lock is free or its owner is
    /// releasing it). If the head asked for a hand-off, the head becomes the
    /// owner at once; otherwise the lock is left free with `WAITERS` set and
    /// the head is woken to take it (anyone who comes first may, see the
    /// rules at the top). Needs `queue` and a non-empty queue.
    fn release_to_head(&self, q: &mut MutexGuard<'_, Queue>) {
        if q.handoff {
            let head = q.waiters.remove(0);
            let code = if head.key == u64::MAX {
                TICKETLESS
            } else {
                head.key
            };
            let more = if q.waiters.is_empty() { 0 } else { WAITERS };
            self.state.store(code << 1 | more, Ordering::Release);
            // The head is the oldest waiter: nobody it overtakes is older.
            self.taken(q, head.key, None);
            head.wake.parker().unpark();
            return;
        }
        self.state.store(WAITERS, Ordering::Release);
        q.waiters[0].wake.parker().unpark();
    }

    /// Releases the lock held by `code`. Takes `queue` only when waiters exist.
    #[inline]
    pub(crate) fn unlock(&self, code: u64) {
        if self
            .state
            .compare_exchange(code << 1, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow(code);
        }
    }

    #[cold]
    fn unlock_slow(&self, code: u64) {
        let mut q = lock(&self.queue);
        debug_assert_eq!(self.owner(), code, "unlock by a non-owner");
        if q.waiters.is_empty() {
            self.state.store(0, Ordering::Release);
        } else {
            self.release_to_head(&mut q);
        }
    }

    /// Gives up a place kept by ticket `stamp` after a back-off: removes its
    /// queue entry, or releases the lock if the ticket already took it (or
    /// was handed it).
    pub(crate) fn forfeit(&self, stamp: u64) {
        let mut q = lock(&self.queue);
        if let Some(seq) = q.waiters.iter().find(|w| w.key == stamp).map(|w| w.seq) {
            self.leave(&mut q, Some(seq));
        } else if self.owner() == stamp {
            drop(q);
            self.unlock(stamp);
        }
    }
}

/// A wound/wait mutex. Lock it with a [`crate::resv::Ticket`] to take many in
/// any order, or without one ([`WwMutex::lock`]) for a single object.
pub struct WwMutex {
    pub(crate) core: Arc<WwCore>,
}

impl std::fmt::Debug for WwMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WwMutex")
            .field("id", &self.core.id)
            .field("owner", &self.core.owner())
            .finish()
    }
}

impl WwMutex {
    /// A new unlocked mutex of `class`, listed in the class's registry for
    /// [`crate::debug`] (takes the registry's mutex once).
    pub fn new(class: &WwClass) -> WwMutex {
        let core = Arc::new(WwCore {
            state: AtomicU64::new(0),
            id: OBJECT_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            class_id: class.id(),
            wait_die: class.algorithm() == Algorithm::WaitDie,
            queue: Mutex::new(Queue::default()),
        });
        #[cfg(not(loom))]
        class.register_lock(&core);
        WwMutex { core }
    }

    /// Who holds the lock and who waits for it, in queue order (a copy taken
    /// under the queue lock; it may be stale as soon as it returns).
    ///
    /// ```
    /// use bufsync::resv::{Algorithm, Holder, Ticket, WwClass, WwMutex};
    ///
    /// let class = WwClass::new("doc", Algorithm::WaitDie);
    /// let m = WwMutex::new(&class);
    /// let t = Ticket::new(&class);
    /// let _g = t.lock(&m).unwrap();
    /// let s = m.state();
    /// assert_eq!(s.holder, Some(Holder::Ticket { stamp: t.stamp() }));
    /// assert!(s.waiters.is_empty());
    /// ```
    pub fn state(&self) -> LockState {
        self.core.state()
    }

    /// A process-unique id (used in dumps and errors).
    #[inline]
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// Whether somebody holds the lock (a racy snapshot). Lock-free.
    pub fn is_locked(&self) -> bool {
        self.core.owner() != 0
    }

    /// The stamp of the ticket holding the lock, if a ticket holds it.
    pub fn owner_stamp(&self) -> Option<u64> {
        let owner = self.core.owner();
        (owner != 0 && owner < STAMP_LIMIT).then_some(owner)
    }

    /// Takes the lock without a ticket, waiting behind every queued ticket
    /// (FIFO among ticket-less lockers). Never backs off.
    ///
    /// # Panics
    ///
    /// In debug builds, when called in a fence's signal path (a fence
    /// callback): a reservation lock must not be taken there
    /// ([`crate::fence::in_signal_path`]).
    pub fn lock(&self) -> WwMutexGuard<'_> {
        assert_not_in_signal_path(self.id());
        let who = Locker {
            ticket: None,
            holds: false,
            expect_place: false,
            deadline: None,
        };
        // A ticket-less locker neither dies nor times out without a deadline.
        let _ = self.core.lock(TICKETLESS, &who);
        WwMutexGuard { mutex: self }
    }

    /// Like [`WwMutex::lock`], giving up after `timeout`.
    ///
    /// # Panics
    ///
    /// As [`WwMutex::lock`], in a fence's signal path (debug builds).
    pub fn lock_timeout(&self, timeout: Duration) -> Option<WwMutexGuard<'_>> {
        assert_not_in_signal_path(self.id());
        let who = Locker {
            ticket: None,
            holds: false,
            expect_place: false,
            deadline: Some(Instant::now() + timeout),
        };
        self.core
            .lock(TICKETLESS, &who)
            .ok()
            .map(|()| WwMutexGuard { mutex: self })
    }

    /// Takes the lock if it is free and nobody waits for it. Lock-free. It
    /// cannot wait, so it is allowed in a fence's signal path.
    pub fn try_lock(&self) -> Option<WwMutexGuard<'_>> {
        self.core
            .try_fast(TICKETLESS)
            .then(|| WwMutexGuard { mutex: self })
    }
}

/// The signal-path rule for ticket-less locks (which cannot return an error):
/// a panic in debug builds. Compiles to nothing in release builds.
#[inline]
#[track_caller]
fn assert_not_in_signal_path(object: u64) {
    assert!(
        !crate::fence::in_signal_path(),
        "bufsync rule broken: ww lock of object {object} taken in a fence's signal path \
         (a fence callback must not take a reservation lock)"
    );
}

/// A ticket-less hold of a [`WwMutex`]; unlocks on drop.
#[must_use = "dropping the guard unlocks at once"]
pub struct WwMutexGuard<'m> {
    mutex: &'m WwMutex,
}

impl std::fmt::Debug for WwMutexGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WwMutexGuard")
            .field("object", &self.mutex.id())
            .finish()
    }
}

impl Drop for WwMutexGuard<'_> {
    fn drop(&mut self) {
        self.mutex.core.unlock(TICKETLESS);
    }
}
