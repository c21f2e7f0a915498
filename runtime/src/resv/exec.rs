//! The reservation flow (`drm_exec`, the 2012 review's dmabufmgr): reserve a
//! list of (buffer, access) with one call, learn what to wait for, commit one
//! fence on all of them.
//!
//! Locking rules: [`Ticket::reserve`] takes the ww lock of every listed
//! reservation (back-off and retry are inside) and returns a [`Reserved`]
//! guard that borrows the ticket mutably; only the guard can add fences, and
//! dropping it unlocks everything in reverse order with no side effect. The
//! per-entry state (`Scratch::states`) and the wait-set belong to the ticket's
//! thread; they keep their capacity so a steady-state frame allocates nothing.

use std::cell::Cell;

use crate::fence::{Fence, FenceSet};
use crate::resv::reservation::{Reservation, ResvError, Usage};
use crate::resv::ticket::{Ticket, WwError};

/// How a job uses a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Shared: the job reads; it waits for writers.
    Read,
    /// Exclusive: the job writes; it waits for readers and writers.
    Write,
}

/// Anything that embeds a [`Reservation`] (a dma-buf, a GEM object...).
pub trait AsReservation {
    /// The embedded reservation.
    fn as_reservation(&self) -> &Reservation;
}

impl AsReservation for Reservation {
    fn as_reservation(&self) -> &Reservation {
        self
    }
}

impl<T: AsReservation + ?Sized> AsReservation for &T {
    fn as_reservation(&self) -> &Reservation {
        (**self).as_reservation()
    }
}

impl<T: AsReservation + ?Sized> AsReservation for std::sync::Arc<T> {
    fn as_reservation(&self) -> &Reservation {
        (**self).as_reservation()
    }
}

const LOCKED: u8 = 1;
const DUPLICATE: u8 = 2;
const WRITE: u8 = 4;

/// Per-ticket buffers of the flow, reused from one reservation to the next.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Cells, so the flow can update them through `&Ticket`.
    states: Vec<Cell<u8>>,
    set: FenceSet,
}

fn write_bit(access: Access) -> u8 {
    match access {
        Access::Write => WRITE,
        Access::Read => 0,
    }
}

impl Ticket {
    /// Reserves every listed buffer (the whole `drm_exec` loop): locks them
    /// in the given order; on `Deadlock` unlocks all in reverse, `lock_slow`s
    /// the contended one and starts over, keeping the stamp. A buffer listed
    /// twice is locked once, with write access if any entry writes. Each
    /// buffer gets `fences_per_obj` (at least one) fence slots reserved.
    ///
    /// Starts a new acquire sequence: the stamp of `Ticket::new` /
    /// `Ticket::restart` if still unused, else a fresh one. A timeout set
    /// with [`Ticket::set_timeout`] bounds each call afresh; a cancel stays
    /// until [`Ticket::restart`]. Returns `Lock(TimedOut | Cancelled |
    /// Misuse)` or `NoMemory` with nothing held.
    #[inline(always)]
    pub fn reserve<'t, 'a, R: AsReservation>(
        &'t mut self,
        objs: &'a [(R, Access)],
        fences_per_obj: usize,
    ) -> Result<Reserved<'t, 'a, R>, ResvError> {
        self.begin_sequence();
        let slots = fences_per_obj.max(1);
        // Every path out of the flow leaves the states zeroed
        // (`unlock_listed`), so a list of the same length needs no reset.
        if self.exec.states.len() != objs.len() {
            self.exec.states.clear();
            self.exec.states.resize_with(objs.len(), Cell::default);
        }
        debug_assert!(self.exec.states.iter().all(|s| s.get() == 0));
        self.lock_all(objs, &self.exec.states, slots)?;
        self.done_acquiring();
        Ok(Reserved { ticket: self, objs })
    }

    /// Locks every entry: the uncontended pass (one CAS per object) inline,
    /// the rest in [`Ticket::lock_rest`].
    #[inline]
    fn lock_all<R: AsReservation>(
        &self,
        objs: &[(R, Access)],
        states: &[Cell<u8>],
        slots: usize,
    ) -> Result<(), ResvError> {
        if self.fast_ok() {
            let stamp = self.stamp();
            for (i, ((obj, access), state)) in objs.iter().zip(states).enumerate() {
                let resv = obj.as_reservation();
                if !self.lock_fast(&resv.lock.core, stamp) {
                    return self.lock_rest(objs, states, slots, i);
                }
                state.set(LOCKED | write_bit(*access));
                if let Err(e) = resv.reserve_locked(slots) {
                    self.unlock_listed(objs, states);
                    return Err(e);
                }
            }
            return Ok(());
        }
        self.lock_rest(objs, states, slots, 0)
    }

    /// The general loop of [`Ticket::lock_all`], from entry `from` on: waits,
    /// merges duplicates, backs off and retries.
    #[inline(never)]
    fn lock_rest<R: AsReservation>(
        &self,
        objs: &[(R, Access)],
        states: &[Cell<u8>],
        slots: usize,
        from: usize,
    ) -> Result<(), ResvError> {
        let stamp = self.stamp();
        let mut fast = self.fast_ok();
        let mut i = from;
        while i < objs.len() {
            if states[i].get() & LOCKED != 0 {
                i += 1;
                continue;
            }
            let (obj, access) = &objs[i];
            let resv = obj.as_reservation();
            if fast && self.lock_fast(&resv.lock.core, stamp) {
                if let Err(e) = self.took(resv, states, i, *access, slots) {
                    self.unlock_listed(objs, states);
                    return Err(e);
                }
                i += 1;
                continue;
            }
            match self.lock_core(&resv.lock.core, false) {
                Ok(()) => {
                    if let Err(e) = self.took(resv, states, i, *access, slots) {
                        self.unlock_listed(objs, states);
                        return Err(e);
                    }
                }
                Err(WwError::AlreadyHeld { .. }) => {
                    let first = objs
                        .iter()
                        .zip(states.iter())
                        .position(|((o, _), s)| {
                            s.get() & LOCKED != 0 && std::ptr::eq(o.as_reservation(), resv)
                        })
                        .unwrap_or(i);
                    states[first].set(states[first].get() | write_bit(*access));
                    states[i].set(DUPLICATE);
                }
                Err(WwError::Deadlock { .. }) => {
                    self.unlock_listed(objs, states);
                    if let Err(e) = self.lock_core(&resv.lock.core, true) {
                        self.forfeit_place();
                        return Err(e.into());
                    }
                    // `lock_slow` resolved the kept place.
                    fast = self.fast_ok();
                    if let Err(e) = self.took(resv, states, i, *access, slots) {
                        self.unlock_listed(objs, states);
                        return Err(e);
                    }
                    i = 0;
                    continue;
                }
                Err(e) => {
                    self.unlock_listed(objs, states);
                    self.forfeit_place();
                    return Err(e.into());
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Marks entry `i` locked and reserves its slots.
    #[inline]
    fn took(
        &self,
        resv: &Reservation,
        states: &[Cell<u8>],
        i: usize,
        access: Access,
        slots: usize,
    ) -> Result<(), ResvError> {
        states[i].set(LOCKED | write_bit(access));
        resv.reserve_locked(slots)
    }

    /// Unlocks every locked entry in reverse order and clears all states.
    fn unlock_listed<R: AsReservation>(&self, objs: &[(R, Access)], states: &[Cell<u8>]) {
        for (i, state) in states.iter().enumerate().rev() {
            if state.get() & LOCKED != 0 {
                self.unlock_core(&objs[i].0.as_reservation().lock.core);
            }
            state.set(0);
        }
    }
}

/// A reserved list: every buffer is locked by the ticket. Fences can be added
/// only through it. Dropping it backs off (unlocks all, adds nothing).
#[must_use = "dropping the reservation backs off at once"]
pub struct Reserved<'t, 'a, R: AsReservation> {
    ticket: &'t mut Ticket,
    objs: &'a [(R, Access)],
}

impl<R: AsReservation> std::fmt::Debug for Reserved<'_, '_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserved")
            .field("stamp", &self.ticket.stamp())
            .field("entries", &self.objs.len())
            .finish()
    }
}

impl<R: AsReservation> Reserved<'_, '_, R> {
    /// How many entries the list has (duplicates included).
    pub fn len(&self) -> usize {
        self.objs.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.objs.is_empty()
    }

    /// The locked entries with their effective access (duplicates merged).
    pub fn locked(&self) -> impl Iterator<Item = (&Reservation, Access)> + '_ {
        self.objs
            .iter()
            .zip(&self.ticket.exec.states)
            .filter(|(_, s)| s.get() & LOCKED != 0)
            .map(|((r, _), s)| {
                let access = if s.get() & WRITE != 0 {
                    Access::Write
                } else {
                    Access::Read
                };
                (r.as_reservation(), access)
            })
    }

    /// The fences the new job must wait for: for a writer every reader and
    /// writer, for a reader every writer (plus kernel fences), one per
    /// context (the latest), signaled ones left out. Reuses the ticket's set.
    pub fn wait_set(&mut self) -> &FenceSet {
        let mut set = std::mem::take(&mut self.ticket.exec.set);
        set.clear();
        for (resv, access) in self.locked() {
            resv.collect_into(Usage::for_access(access == Access::Write), &mut set);
        }
        self.ticket.exec.set = set;
        &self.ticket.exec.set
    }

    /// Adds `fence` with any `usage` to entry `index`'s buffer (e.g. a
    /// `Bookkeep` fence); uses one of the slots reserved for it.
    pub fn add_fence(&self, index: usize, fence: &Fence, usage: Usage) -> Result<(), ResvError> {
        let len = self.objs.len();
        let (obj, _) = self
            .objs
            .get(index)
            .ok_or(ResvError::NoSuchEntry { index, len })?;
        obj.as_reservation().add_locked(fence, usage);
        Ok(())
    }

    /// Puts `fence` on every reserved buffer (`Write` usage where the list
    /// writes, `Read` where it only reads) and unreserves.
    #[inline(always)]
    pub fn commit(self, fence: &Fence) {
        for (resv, access) in self.locked() {
            let usage = match access {
                Access::Write => Usage::Write,
                Access::Read => Usage::Read,
            };
            resv.add_locked(fence, usage);
        }
        // Dropping unlocks.
    }

    /// Unreserves everything without adding a fence (same as dropping).
    pub fn backoff(self) {}
}

impl<R: AsReservation> Drop for Reserved<'_, '_, R> {
    #[inline]
    fn drop(&mut self) {
        self.ticket
            .unlock_listed(self.objs, &self.ticket.exec.states);
    }
}
