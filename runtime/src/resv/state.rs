//! Read-only views of a lock: who holds it and who waits for it, in queue
//! order. For tests, tools and [`crate::debug`]; taking a view changes
//! nothing.
//!
//! Locking rules: a view is copied out of a mutex under its queue lock (see
//! [`crate::resv::WwMutex::state`]); once taken it is plain data.

/// Who holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// The ticket with this stamp (of the lock's class).
    Ticket {
        /// The holder's stamp.
        stamp: u64,
    },
    /// A ticket-less locker ([`crate::resv::WwMutex::lock`],
    /// [`crate::resv::Reservation::lock_alone`]).
    Ticketless,
}

/// One entry of a lock's waiter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueuedWaiter {
    /// The waiter's stamp; `None` for a ticket-less locker.
    pub stamp: Option<u64>,
    /// The place is kept for a ticket that backed off (`Deadlock`) and has
    /// not come back with `lock_slow` yet: it holds nothing and is not
    /// necessarily asleep here. It stays ahead of younger waiters (a running
    /// locker may still take the lock while it is free, as from any waiter).
    pub kept: bool,
    /// The waiter holds other locks of the class.
    pub holds_others: bool,
}

/// A lock at one instant: the holder and the queue, oldest first (ticket-less
/// waiters last, in arrival order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    /// The lock's object id ([`crate::resv::WwMutex::id`]).
    pub object: u64,
    /// Who holds it; `None` when it is free (it may still have waiters for a
    /// moment: the woken head takes it when it runs).
    pub holder: Option<Holder>,
    /// The queue, in the order the lock will be given out.
    pub waiters: Vec<QueuedWaiter>,
}

impl LockState {
    /// Whether the lock is held or waited for (what a dump lists).
    pub fn is_busy(&self) -> bool {
        self.holder.is_some() || !self.waiters.is_empty()
    }

    /// The stamps of the queued tickets, in queue order (kept places too).
    pub fn waiting_stamps(&self) -> impl Iterator<Item = u64> + '_ {
        self.waiters.iter().filter_map(|w| w.stamp)
    }
}
