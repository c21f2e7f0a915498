//! The presenter's bookkeeping: where each buffer is (free, with the
//! renderer, waiting for the display, flipping, on screen, out of
//! rotation) and today's ticket flow on the buffers' reservations. It
//! holds no kernel object: the [`Presenter`](crate::Presenter) drives it
//! with real fences and flips; benchmarks and other outputs can drive it
//! with their own.
//!
//! Per frame (buffer `i`):
//! 1. [`FrameQueue::acquire`]: a free buffer, an idle one first, else the
//!    one released longest ago, with a snapshot of what a writer must wait
//!    for (its readers: the out-fence of the flip that took it off screen);
//! 2. [`FrameQueue::commit_render`]: a ticket reserves `(i, Write)` and
//!    commits the render fence (on the render-side buffer of a copy);
//! 3. copy strategy only, [`FrameQueue::copy`]: `(render i, Read)` +
//!    `(display i, Write)`, the copy after the wait-set, its fence
//!    committed;
//! 4. [`FrameQueue::present`]: `i` is ready (FIFO: queued in order;
//!    mailbox: replaces an older ready frame, which is dropped);
//! 5. [`FrameQueue::scanout`]: `(i, Read)` + `(front, Read)`, the flip
//!    after the wait-set (the render or copy fence), its out-fence
//!    committed on both: it signals when `i` is on screen, which is when
//!    the old front is released (its *release fence*);
//! 6. [`FrameQueue::flip_done`]: `i` is on screen.
//!
//! Locking: a `FrameQueue` is owned by one thread (`&mut self`). Its
//! ticket takes the buffers' ww locks inside each step and drops them
//! before returning; no lock is held between calls, none while a caller's
//! closure waits for nothing but its own device. Steady state allocates
//! nothing (the wait snapshots and the ticket's lists keep their capacity).

use std::fmt;
use std::time::Duration;

use bufsync::fence::{Fence, FenceSet};
use bufsync::resv::{Access, AsReservation, ResvError, Ticket, Usage};

use crate::config::PresentMode;

/// Where a buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// In rotation, not in use.
    Free,
    /// Handed to the renderer ([`FrameQueue::acquire`]).
    Acquired,
    /// Rendered and presented, waiting for its flip.
    Ready,
    /// Its flip is committed, not on screen yet.
    Flipping,
    /// On screen.
    OnScreen,
    /// Out of rotation until its render fence ends (it never signaled in
    /// time: its producer may still write the buffer).
    Quarantined,
}

/// The reservations of one buffer slot: the display's buffer and, for the
/// copy strategy, the renderer's own buffer it is copied from.
#[derive(Debug)]
pub struct SlotReservations<R> {
    /// The buffer the display scans out.
    pub display: R,
    /// The renderer's buffer (copy strategy only).
    pub render: Option<R>,
}

#[derive(Debug)]
struct Slot<R> {
    resv: SlotReservations<R>,
    state: SlotState,
    /// When it became free (a counter): the oldest free goes first.
    freed: u64,
    /// The fence a quarantined slot waits out.
    quarantine: Option<Fence>,
    /// What the renderer must wait for (filled at acquire, capacity kept).
    waits: FenceSet,
}

/// What [`FrameQueue::present`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// A ready frame this one replaced (mailbox): dropped, back in rotation.
    pub dropped: Option<usize>,
}

/// The bookkeeping of a swapchain. See the module docs.
pub struct FrameQueue<R: AsReservation> {
    slots: Vec<Slot<R>>,
    ticket: Ticket,
    mode: PresentMode,
    front: Option<usize>,
    flipping: Option<usize>,
    /// Ready frames in presentation order (mailbox: at most one).
    ready: std::collections::VecDeque<usize>,
    clock: u64,
}

impl<R: AsReservation> fmt::Debug for FrameQueue<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameQueue")
            .field("mode", &self.mode)
            .field("states", &self.describe())
            .finish()
    }
}

impl<R: AsReservation> FrameQueue<R> {
    /// A queue over `slots` (all free), presenting in `mode`. Each ticket
    /// step waits at most `lock_timeout` for a buffer another thread holds
    /// ([`ResvError::Lock`] with `TimedOut` then).
    pub fn new(slots: Vec<SlotReservations<R>>, mode: PresentMode, lock_timeout: Duration) -> Self {
        let n = slots.len();
        let ticket = Ticket::reservation();
        ticket.set_timeout(Some(lock_timeout));
        FrameQueue {
            slots: slots
                .into_iter()
                .enumerate()
                .map(|(i, resv)| Slot {
                    resv,
                    state: SlotState::Free,
                    freed: i as u64,
                    quarantine: None,
                    waits: FenceSet::with_capacity(4),
                })
                .collect(),
            ticket,
            mode,
            front: None,
            flipping: None,
            ready: std::collections::VecDeque::with_capacity(n),
            clock: n as u64,
        }
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The presentation mode.
    pub fn mode(&self) -> PresentMode {
        self.mode
    }

    /// Slot `i`'s state.
    pub fn state(&self, i: usize) -> SlotState {
        self.slots[i].state
    }

    /// Slot `i`'s reservations.
    pub fn reservations(&self, i: usize) -> &SlotReservations<R> {
        &self.slots[i].resv
    }

    /// The slot on screen.
    pub fn front(&self) -> Option<usize> {
        self.front
    }

    /// The slot whose flip is committed but not on screen yet.
    pub fn flipping(&self) -> Option<usize> {
        self.flipping
    }

    /// The next ready slot to flip (FIFO: the oldest; mailbox: the only).
    pub fn next_ready(&self) -> Option<usize> {
        self.ready.front().copied()
    }

    /// The states as one line, for errors and logs.
    pub fn describe(&self) -> String {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{i}:{:?}", s.state))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Quarantined slots whose fence has ended go back into rotation.
    fn reclaim(&mut self) {
        for s in &mut self.slots {
            if s.state == SlotState::Quarantined
                && s.quarantine.as_ref().map_or(true, Fence::is_signaled)
            {
                s.quarantine = None;
                s.state = SlotState::Free;
            }
        }
    }

    /// Hands out a free slot (`None` when none is free): one no reader or
    /// writer uses any more if there is one, else the one released longest
    /// ago; with the snapshot of what a writer of it must wait for (its
    /// readers and writers, signaled ones left out): [`FrameQueue::waits`].
    /// Reads the fence lists without locking (a snapshot).
    pub fn acquire(&mut self) -> Option<usize> {
        self.reclaim();
        let usage = Usage::for_access(true);
        let idle = |s: &Slot<R>| {
            let target = s.resv.render.as_ref().unwrap_or(&s.resv.display);
            target.as_reservation().test_signaled(usage)
        };
        let free = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == SlotState::Free)
        };
        let i = free()
            .filter(|(_, s)| idle(s))
            .min_by_key(|(_, s)| s.freed)
            .or_else(|| free().min_by_key(|(_, s)| s.freed))
            .map(|(i, _)| i)?;
        let slot = &mut self.slots[i];
        slot.state = SlotState::Acquired;
        slot.waits.clear();
        let target = slot.resv.render.as_ref().unwrap_or(&slot.resv.display);
        for f in target.as_reservation().fences(usage).iter() {
            if !f.is_signaled() {
                slot.waits.add(f);
            }
        }
        Some(i)
    }

    /// What the renderer of acquired slot `i` must wait for.
    pub fn waits(&self, i: usize) -> &FenceSet {
        &self.slots[i].waits
    }

    /// Takes slot `i`'s wait snapshot out (to hand to the renderer with
    /// the frame); give it back with [`FrameQueue::return_waits`] so its
    /// capacity is reused.
    pub fn take_waits(&mut self, i: usize) -> FenceSet {
        std::mem::take(&mut self.slots[i].waits)
    }

    /// Gives a wait set taken with [`FrameQueue::take_waits`] back.
    pub fn return_waits(&mut self, i: usize, mut set: FenceSet) {
        set.clear();
        self.slots[i].waits = set;
    }

    /// An acquired slot that will not be presented goes back into rotation.
    pub fn cancel(&mut self, i: usize) {
        if self.slots[i].state == SlotState::Acquired {
            self.free(i);
        }
    }

    fn free(&mut self, i: usize) {
        self.clock += 1;
        let s = &mut self.slots[i];
        s.state = SlotState::Free;
        s.freed = self.clock;
    }

    /// Commits `fence` (render-done) on slot `i`'s render-side buffer as
    /// its writer: a ticket reserves `(i, Write)`, adds the fence, unlocks.
    pub fn commit_render(&mut self, i: usize, fence: &Fence) -> Result<(), ResvError> {
        let slot = &self.slots[i];
        let target = slot.resv.render.as_ref().unwrap_or(&slot.resv.display);
        let objs = [(target.as_reservation(), Access::Write)];
        self.ticket.reserve(&objs, 1)?.commit(fence);
        Ok(())
    }

    /// The copy step of slot `i` (copy strategy): reserves `(render i,
    /// Read)` and `(display i, Write)`, calls `copy` with the wait-set (the
    /// render fence, the display buffer's readers), commits the fence it
    /// returns on both and unlocks. An error from `copy` commits nothing.
    pub fn copy<E: From<ResvError>>(
        &mut self,
        i: usize,
        copy: impl FnOnce(&FenceSet) -> Result<Fence, E>,
    ) -> Result<(), E> {
        let slot = &self.slots[i];
        let Some(render) = slot.resv.render.as_ref() else {
            return Err(ResvError::NoSuchEntry { index: 1, len: 1 }.into());
        };
        let objs = [
            (render.as_reservation(), Access::Read),
            (slot.resv.display.as_reservation(), Access::Write),
        ];
        let mut reserved = self.ticket.reserve(&objs, 1)?;
        let fence = copy(reserved.wait_set())?;
        reserved.commit(&fence);
        Ok(())
    }

    /// Slot `i` (acquired) was presented. FIFO queues it behind earlier
    /// ready frames; mailbox makes it the only ready frame, dropping the
    /// one it replaces (back into rotation with its fences: the next
    /// writer waits for them).
    pub fn present(&mut self, i: usize) -> Queued {
        self.slots[i].state = SlotState::Ready;
        let mut dropped = None;
        if self.mode == PresentMode::Mailbox {
            if let Some(old) = self.ready.pop_front() {
                self.free(old);
                dropped = Some(old);
            }
        }
        self.ready.push_back(i);
        Queued { dropped }
    }

    /// A slot that could not be flipped (acquired or ready) leaves the
    /// flow: back into rotation, or into quarantine behind `fence` (a
    /// render fence that did not signal in time).
    pub fn drop_ready(&mut self, i: usize, quarantine: Option<Fence>) {
        self.ready.retain(|&r| r != i);
        match quarantine {
            Some(f) => {
                let s = &mut self.slots[i];
                s.state = SlotState::Quarantined;
                s.quarantine = Some(f);
            }
            None => self.free(i),
        }
    }

    /// The scanout step of ready slot `i` (no flip may be in flight):
    /// reserves `(i, Read)` and `(front, Read)`, calls `flip` with the
    /// wait-set (the frame's writers: the render or copy fence), commits
    /// the out-fence it returns on both (the front's release fence) and
    /// unlocks. Then `i` is flipping and the old front free. An error from
    /// `flip` commits nothing and changes no state.
    pub fn scanout<E: From<ResvError>>(
        &mut self,
        i: usize,
        flip: impl FnOnce(&FenceSet) -> Result<Fence, E>,
    ) -> Result<(), E> {
        debug_assert!(self.flipping.is_none(), "one flip in flight");
        let front = self.front.filter(|&f| f != i);
        let display = self.slots[i].resv.display.as_reservation();
        let objs_two;
        let objs_one;
        let objs: &[(&bufsync::resv::Reservation, Access)] = match front {
            Some(f) => {
                objs_two = [
                    (display, Access::Read),
                    (self.slots[f].resv.display.as_reservation(), Access::Read),
                ];
                &objs_two
            }
            None => {
                objs_one = [(display, Access::Read)];
                &objs_one
            }
        };
        let mut reserved = self.ticket.reserve(objs, 1)?;
        let out = flip(reserved.wait_set())?;
        reserved.commit(&out);
        self.ready.retain(|&r| r != i);
        self.slots[i].state = SlotState::Flipping;
        self.flipping = Some(i);
        if let Some(f) = front {
            self.front = None;
            self.free(f);
        }
        Ok(())
    }

    /// The flip in flight completed: its slot is on screen. Returns it.
    pub fn flip_done(&mut self) -> Option<usize> {
        let i = self.flipping.take()?;
        self.slots[i].state = SlotState::OnScreen;
        self.front = Some(i);
        Some(i)
    }

    /// The flip in flight will never complete (the commit was refused after
    /// all, or the display went away): its slot goes back to free.
    pub fn flip_failed(&mut self) -> Option<usize> {
        let i = self.flipping.take()?;
        self.free(i);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bufsync::fence::FenceContext;
    use bufsync::resv::Reservation;

    fn queue(n: usize, mode: PresentMode) -> FrameQueue<Reservation> {
        let slots = (0..n)
            .map(|_| SlotReservations {
                display: Reservation::new(),
                render: None,
            })
            .collect();
        FrameQueue::new(slots, mode, Duration::from_secs(1))
    }

    fn frame(q: &mut FrameQueue<Reservation>, ctx: &FenceContext, out: &FenceContext) -> usize {
        let i = q.acquire().expect("a free slot");
        let r = ctx.create_fence();
        q.commit_render(i, &r).unwrap();
        r.signal().unwrap();
        q.present(i);
        let i = q.next_ready().unwrap();
        q.scanout(i, |_| Ok::<_, ResvError>(out.create_fence()))
            .unwrap();
        i
    }

    #[test]
    fn fifo_rotates_and_releases_the_old_front() {
        let (r, o) = (FenceContext::new("t", "r"), FenceContext::new("t", "o"));
        let mut q = queue(3, PresentMode::Fifo);
        let a = frame(&mut q, &r, &o);
        assert_eq!(q.flip_done(), Some(a));
        let b = frame(&mut q, &r, &o);
        assert_ne!(a, b);
        assert_eq!(q.state(a), SlotState::Free, "released by b's flip");
        // The old front's writer must wait for b's out-fence (its release).
        q.flip_done();
        let c = q.acquire().unwrap();
        assert!(q.waits(c).is_empty(), "never shown: nothing to wait for");
        assert_eq!(q.acquire(), Some(a), "released last, handed out last");
        assert_eq!(q.acquire(), None, "b is on screen");
        assert_eq!(q.waits(a).len(), 1, "a's writer waits for b's out-fence");
    }

    #[test]
    fn mailbox_drops_the_older_ready_frame() {
        let mut q = queue(4, PresentMode::Mailbox);
        let a = q.acquire().unwrap();
        let b = q.acquire().unwrap();
        assert_eq!(q.present(a).dropped, None);
        assert_eq!(q.present(b).dropped, Some(a));
        assert_eq!(q.next_ready(), Some(b));
        assert_eq!(q.state(a), SlotState::Free);
    }

    #[test]
    fn quarantine_lasts_until_the_fence_ends() {
        let r = FenceContext::new("t", "r");
        let mut q = queue(2, PresentMode::Fifo);
        let a = q.acquire().unwrap();
        let never = r.create_fence();
        q.commit_render(a, &never).unwrap();
        q.present(a);
        q.drop_ready(a, Some(never.clone()));
        let b = q.acquire().unwrap();
        assert_ne!(a, b);
        q.cancel(b);
        assert_eq!(q.acquire(), Some(b), "a stays out");
        never.signal().unwrap();
        assert_eq!(q.acquire(), Some(a), "back once its fence ended");
    }

    #[test]
    fn a_failed_flip_commits_nothing() {
        let r = FenceContext::new("t", "r");
        let mut q = queue(2, PresentMode::Fifo);
        let a = q.acquire().unwrap();
        q.commit_render(a, &r.create_fence()).unwrap();
        q.present(a);
        let e = q.scanout(a, |_| {
            Err::<Fence, _>(ResvError::NoSuchEntry { index: 0, len: 0 })
        });
        assert!(e.is_err());
        assert_eq!(q.state(a), SlotState::Ready);
        assert_eq!(q.flipping(), None);
        assert_eq!(
            q.reservations(a).display.fences(Usage::Read).len(),
            1,
            "only the render fence"
        );
    }
}
