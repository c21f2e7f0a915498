//! Tickets (`ww_acquire_ctx` + the `drm_exec` loop): reserve a list of
//! (reservation, read | write) with the back-off and retry inside, read the
//! wait set, commit a fence or back off.
//!
//! A C ticket keeps the runtime's `Reserved` list between calls. That value
//! borrows the ticket and the entry list, so both live in boxes of their
//! own, reached through raw pointers while a list is reserved; this is the
//! one self-referential structure of the library (see `Held`).
//!
//! Locking: a ticket is used by one thread at a time (`state` is a mutex
//! taken with `try_lock`: a second thread gets -EBUSY, never a wait);
//! `bufsync_ticket_cancel` is the exception and touches only `cancel`. The
//! reservation locks are the runtime's ww locks, held from a successful
//! reserve until commit, back-off or destroy.

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};

use bufsync::fence::unwrap_merge;
use bufsync::resv::{Access, CancelHandle, Reserved, Ticket};

use crate::error::{call, call_or, CallError, CallResult};
use crate::fence::{bufsync_fence, give_fences};
use crate::handle::{borrow, destroy, new_handle, slice, timeout, Out};
use crate::reservation::{bufsync_reservation, ResvRef};

/// Read access: the job waits for writers (and kernel fences).
pub const BUFSYNC_ACCESS_READ: u32 = 0;
/// Write access: the job waits for readers and writers.
pub const BUFSYNC_ACCESS_WRITE: u32 = 1;

/// One entry of a reserve list.
#[repr(C)]
pub struct bufsync_reserve_entry {
    /// The reservation (borrowed for the call; the ticket keeps its own
    /// reference while it holds it).
    pub reservation: *const bufsync_reservation,
    /// `BUFSYNC_ACCESS_READ` or `BUFSYNC_ACCESS_WRITE`.
    pub access: u32,
}

/// A ticket: a place in the global order that lets one thread lock many
/// reservations in any order without deadlock. Create with
/// `bufsync_ticket_create`, destroy with `bufsync_ticket_destroy`.
pub struct bufsync_ticket {
    cancel: CancelHandle,
    /// Back-offs of the reserves that have finished (updated when no list
    /// is held, so reading it never touches the ticket itself).
    backoffs: AtomicU64,
    state: Mutex<Held>,
}

type HeldList = Vec<(ResvRef, Access)>;

/// The ticket, its last entry list, and the reserved list borrowing both.
///
/// Invariant: while `reserved` is `Some`, it holds the only reference to
/// `*ticket` (mutable) and to `*list` (shared); nothing else touches them.
/// While it is `None`, `ticket` and `list` are this struct's alone.
struct Held {
    ticket: NonNull<Ticket>,
    list: NonNull<HeldList>,
    reserved: Option<Reserved<'static, 'static, ResvRef>>,
}

fn _assert_send()
where
    Ticket: Send,
    ResvRef: Send + Sync,
    Reserved<'static, 'static, ResvRef>: Send,
{
}

// SAFETY: `ticket` and `list` are boxes owned by `Held` alone; `Ticket`
// is `Send`, `ResvRef` is `Send + Sync` and `Reserved` is `Send` (checked
// by `_assert_send`), so moving the whole to another thread is sound.
unsafe impl Send for Held {}

impl Held {
    fn new() -> Held {
        Held {
            ticket: NonNull::from(Box::leak(Box::new(Ticket::reservation()))),
            list: NonNull::from(Box::leak(Box::new(HeldList::new()))),
            reserved: None,
        }
    }

    /// The ticket, when no list is reserved.
    fn ticket_mut(&mut self) -> CallResult<&mut Ticket> {
        if self.reserved.is_some() {
            return Err(busy_holding());
        }
        // SAFETY: no `Reserved` exists (checked above), so by the invariant
        // nothing else refers to the ticket; `&mut self` keeps it so.
        Ok(unsafe { self.ticket.as_mut() })
    }

    /// Ends a reserved list (commit or back-off happen in `f`).
    fn finish(&mut self, f: impl FnOnce(Reserved<'static, 'static, ResvRef>)) -> CallResult {
        let r = self
            .reserved
            .take()
            .ok_or_else(|| CallError::invalid("the ticket holds no reserved list"))?;
        f(r);
        self.clear_list();
        Ok(0)
    }

    /// Drops the entry list's references (a destroyed dma-buf handle must
    /// not stay open through a ticket that no longer holds it).
    fn clear_list(&mut self) {
        if self.reserved.is_none() {
            // SAFETY: no list reserved: by the invariant the list is ours.
            unsafe { self.list.as_mut() }.clear();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // The reserved list first: it unlocks everything and ends the borrows.
        self.reserved = None;
        // SAFETY: both came from `Box::leak` in `Held::new`, nothing refers
        // to them any more (`reserved` is gone), and they are freed once.
        unsafe {
            drop(Box::from_raw(self.list.as_ptr()));
            drop(Box::from_raw(self.ticket.as_ptr()));
        }
    }
}

fn busy_holding() -> CallError {
    CallError::new(
        libc::EBUSY,
        "the ticket holds a reserved list: commit or back off first",
    )
}

impl bufsync_ticket {
    /// Runs `f` on the ticket's state, or -EBUSY if another thread is in a
    /// call on this ticket.
    fn with<T>(&self, f: impl FnOnce(&mut Held) -> CallResult<T>) -> CallResult<T> {
        let mut held = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(CallError::new(
                    libc::EBUSY,
                    "the ticket is in use by another thread (one thread at a time)",
                ))
            }
        };
        let r = f(&mut held);
        if held.reserved.is_none() {
            // No list reserved: the ticket can be read.
            if let Ok(t) = held.ticket_mut() {
                self.backoffs.store(t.backoffs(), Ordering::Relaxed);
            }
        }
        r
    }
}

/// Creates a ticket of the reservation class (wait-die).
///
/// Returns 0 with `*out` a new ticket, or -EINVAL.
///
/// Thread safety: any thread. The ticket is then used by one thread at a
/// time (it may move between threads between calls).
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_create(out: *mut *mut bufsync_ticket) -> c_int {
    call("bufsync_ticket_create", || {
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        let held = Held::new();
        // SAFETY: a fresh `Held`: no list reserved, the ticket is ours.
        let cancel = unsafe { held.ticket.as_ref() }.cancel_handle();
        out.write(new_handle(bufsync_ticket {
            cancel,
            backoffs: AtomicU64::new(0),
            state: Mutex::new(held),
        }));
        Ok(0)
    })
}

/// Destroys a ticket; a reserved list is backed off first (unlocked, no
/// fence added). NULL does nothing.
///
/// Thread safety: once no other call uses the ticket.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_destroy(ticket: *mut bufsync_ticket) {
    // SAFETY: NULL or a live ticket no one else uses (header contract).
    call_or("bufsync_ticket_destroy", (), || unsafe { destroy(ticket) })
}

/// Bounds every later reserve: each gives up with -ETIME once
/// `timeout_ns` has passed from its start (`BUFSYNC_TIMEOUT_INFINITE`, the
/// default: no limit).
///
/// Returns 0, -EBUSY (a list is reserved, or another thread uses the
/// ticket), or -EINVAL.
///
/// Thread safety: the ticket's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_set_timeout(
    ticket: *mut bufsync_ticket,
    timeout_ns: u64,
) -> c_int {
    call("bufsync_ticket_set_timeout", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        t.with(|h| {
            h.ticket_mut()?.set_timeout(timeout(timeout_ns));
            Ok(0)
        })
    })
}

/// Reserves every entry: locks all the reservations, in any order, without
/// deadlock against other tickets (on contention the younger ticket backs
/// off, drops what it holds, waits for the contended one and retries,
/// keeping its place; all inside this call). A reservation listed twice is
/// locked once, with write access if any entry writes. Each gets room for
/// one fence.
///
/// Returns 0 ("go": all locked until `bufsync_ticket_commit`,
/// `bufsync_ticket_backoff` or destroy), or with nothing held: -ETIME (the
/// ticket's timeout passed while waiting), -ECANCELED (cancelled while or
/// before waiting: `bufsync_ticket_cancel`), -ENOMEM,
/// -EBUSY (a list is already reserved, or another thread uses the ticket),
/// -EINVAL (NULL, a bad access value).
///
/// Thread safety: the ticket's thread. Never from a fence callback.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_reserve(
    ticket: *mut bufsync_ticket,
    entries: *const bufsync_reserve_entry,
    count: usize,
) -> c_int {
    call("bufsync_ticket_reserve", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        // SAFETY: `count` entries at `entries` (header contract).
        let entries = unsafe { slice(entries, count, "entries") }?;
        t.with(|h| {
            if h.reserved.is_some() {
                return Err(busy_holding());
            }
            // SAFETY: no list reserved: by `Held`'s invariant the list is
            // ours alone, and `&mut Held` keeps it so.
            let list = unsafe { h.list.as_mut() };
            // SAFETY: the entries' handles are NULL or live (header contract).
            if let Err(e) = unsafe { fill(list, entries) } {
                h.clear_list();
                return Err(e);
            }
            // SAFETY: the list and ticket live in their own boxes until
            // `Held` drops, which drops `reserved` first; from here until
            // `reserved` is taken, only `reserved` refers to them (the
            // invariant), so the 'static borrows never outlive their data
            // nor alias another reference.
            let (ticket, list): (&'static mut Ticket, &'static HeldList) =
                unsafe { (&mut *h.ticket.as_ptr(), &*h.list.as_ptr()) };
            match ticket.reserve(list.as_slice(), 1) {
                Ok(r) => {
                    h.reserved = Some(r);
                    Ok(0)
                }
                Err(e) => {
                    h.clear_list();
                    Err(e.into())
                }
            }
        })
    })
}

/// The wait set of the reserved list: the fences the new job must wait for
/// (a writer: every reader and writer; a reader: the writers), one per
/// context, signaled ones left out. Two-call idiom: `*count` gets their
/// number; with `capacity` enough, `fences[0..count]` get new handles
/// (destroy each). `fences` NULL with `capacity` 0 only counts.
///
/// Returns 0, -ENOSPC (`capacity` too small: only `*count` written),
/// -EINVAL (no list reserved, NULL).
///
/// Thread safety: the ticket's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_get_wait_set(
    ticket: *mut bufsync_ticket,
    fences: *mut *mut bufsync_fence,
    capacity: usize,
    count: *mut usize,
) -> c_int {
    call("bufsync_ticket_get_wait_set", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        t.with(|h| {
            let r = reserved(h)?;
            let set = r.wait_set();
            // SAFETY: `fences` has `capacity` slots, `count` is writable.
            unsafe { give_fences(set.iter(), fences, capacity, count) }
        })
    })
}

/// The wait set merged into one fence (`bufsync_fence_merge` of it):
/// signaled at once when there is nothing to wait for. Export it as a
/// sync_file for a GPU or KMS wait, or wait on it.
///
/// Returns 0 with `*out` a new fence handle, or -EINVAL (no list
/// reserved, NULL).
///
/// Thread safety: the ticket's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_get_wait_fence(
    ticket: *mut bufsync_ticket,
    out: *mut *mut bufsync_fence,
) -> c_int {
    call("bufsync_ticket_get_wait_fence", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        t.with(|h| {
            let merged = unwrap_merge(reserved(h)?.wait_set().as_slice());
            out.write(bufsync_fence::handle(merged));
            Ok(0)
        })
    })
}

/// Waits in software for the whole wait set, at most `timeout_ns`
/// (`BUFSYNC_TIMEOUT_INFINITE`: no limit). The list stays reserved.
///
/// Returns 0, -ETIME (some still pending), the first fence error met, or
/// -EINVAL (no list reserved, NULL).
///
/// Thread safety: the ticket's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_wait(
    ticket: *mut bufsync_ticket,
    timeout_ns: u64,
) -> c_int {
    call("bufsync_ticket_wait", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        t.with(|h| {
            reserved(h)?.wait_set().wait_all(timeout(timeout_ns))?;
            Ok(0)
        })
    })
}

/// Commits `fence` as the new job's fence: on every reserved reservation as
/// a writer (entries with write access: replaces the readers) or a reader
/// (added to the readers), then unlocks all. The job may start once the
/// wait set has signaled; the commit need not wait for that.
///
/// Returns 0, or -EINVAL (no list reserved, NULL); on -EINVAL the list
/// stays reserved.
///
/// Thread safety: the ticket's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_commit(
    ticket: *mut bufsync_ticket,
    fence: *const bufsync_fence,
) -> c_int {
    call("bufsync_ticket_commit", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        t.with(|h| h.finish(|r| r.commit(&f.fence)))
    })
}

/// Backs off: unlocks every reserved reservation without adding a fence.
///
/// Returns 0, or -EINVAL (no list reserved, NULL).
///
/// Thread safety: the ticket's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_backoff(ticket: *mut bufsync_ticket) -> c_int {
    call("bufsync_ticket_backoff", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        t.with(|h| h.finish(Reserved::backoff))
    })
}

/// Cancels the ticket's waits: a reserve waiting for a contended
/// reservation now, and every later reserve that would have to wait,
/// returns -ECANCELED with nothing held, until `bufsync_ticket_restart`
/// (an uncontended reserve still succeeds).
///
/// Returns 0, or -EINVAL.
///
/// Thread safety: any thread, also while the ticket's thread is in a call.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_cancel(ticket: *const bufsync_ticket) -> c_int {
    call("bufsync_ticket_cancel", || {
        // SAFETY: NULL or a live ticket (header contract); only the
        // `cancel` field is read, which no other call changes.
        let t = unsafe { borrow(ticket, "ticket") }?;
        t.cancel.cancel();
        Ok(0)
    })
}

/// Starts afresh (`ww_acquire_fini` + `ww_acquire_init`): a new stamp (a
/// younger place), no cancel, no timeout.
///
/// Returns 0, -EBUSY (a list is reserved, or another thread uses the
/// ticket), or -EINVAL.
///
/// Thread safety: the ticket's thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_restart(ticket: *mut bufsync_ticket) -> c_int {
    call("bufsync_ticket_restart", || {
        // SAFETY: NULL or a live ticket (header contract).
        let t = unsafe { borrow(ticket, "ticket") }?;
        t.with(|h| {
            h.ticket_mut()?.restart();
            Ok(0)
        })
    })
}

/// How many times the ticket's finished reserves backed off on contention
/// (each back-off is a drop-all, wait, retry inside a reserve); 0 for NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_ticket_backoffs(ticket: *const bufsync_ticket) -> u64 {
    call_or("bufsync_ticket_backoffs", 0, || {
        // SAFETY: NULL or a live ticket (header contract).
        unsafe { borrow(ticket, "ticket") }.map_or(0, |t| t.backoffs.load(Ordering::Relaxed))
    })
}

/// The C entries as the runtime's list, into `list` (reused: no
/// allocation once it has grown to the frame's size).
///
/// # Safety
/// Each entry's `reservation` is NULL or a live reservation handle.
unsafe fn fill(list: &mut HeldList, entries: &[bufsync_reserve_entry]) -> CallResult<()> {
    list.clear();
    for (i, e) in entries.iter().enumerate() {
        // SAFETY: NULL or a live reservation handle (this fn's contract).
        let r = unsafe { borrow(e.reservation, "reservation") }
            .map_err(|_| CallError::invalid(format!("entries[{i}].reservation is NULL")))?;
        let access = match e.access {
            BUFSYNC_ACCESS_READ => Access::Read,
            BUFSYNC_ACCESS_WRITE => Access::Write,
            a => {
                return Err(CallError::invalid(format!(
                    "entries[{i}].access {a} is not a BUFSYNC_ACCESS_*"
                )))
            }
        };
        list.push((r.resv.clone(), access));
    }
    Ok(())
}

fn reserved(h: &mut Held) -> CallResult<&mut Reserved<'static, 'static, ResvRef>> {
    h.reserved
        .as_mut()
        .ok_or_else(|| CallError::invalid("the ticket holds no reserved list"))
}
