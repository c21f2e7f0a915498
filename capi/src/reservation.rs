//! Reservations (`dma_resv`): one per buffer, holding the fences of whoever
//! uses it (writers exclusive, readers shared; usages KERNEL < WRITE < READ
//! < BOOKKEEP). Fences are added only through a ticket (`ticket.rs`).
//!
//! Locking: the queries here read a snapshot of the fence list and never
//! take the reservation's lock (the runtime's rule: readers go lock-free).

use std::ffi::c_int;
use std::sync::Arc;

use bufsync::resv::{AsReservation, Reservation, Usage};
use bufsync_backends::dmabuf::DmaBuf;

use crate::error::{call, CallError, CallResult};
use crate::fence::{bufsync_fence, give_fences};
use crate::handle::{borrow, destroy, new_handle, timeout, Out};

/// `Usage::Kernel`: kernel-internal work (moves, clears); everybody waits for it.
pub const BUFSYNC_USAGE_KERNEL: u32 = 0;
/// `Usage::Write`: implicit-sync writers.
pub const BUFSYNC_USAGE_WRITE: u32 = 1;
/// `Usage::Read`: implicit-sync readers.
pub const BUFSYNC_USAGE_READ: u32 = 2;
/// `Usage::Bookkeep`: tracked only; nobody waits for it implicitly.
pub const BUFSYNC_USAGE_BOOKKEEP: u32 = 3;

/// The usage named by a C constant; `-EINVAL` for any other value.
pub(crate) fn usage(u: u32) -> CallResult<Usage> {
    match u {
        BUFSYNC_USAGE_KERNEL => Ok(Usage::Kernel),
        BUFSYNC_USAGE_WRITE => Ok(Usage::Write),
        BUFSYNC_USAGE_READ => Ok(Usage::Read),
        BUFSYNC_USAGE_BOOKKEEP => Ok(Usage::Bookkeep),
        other => Err(CallError::invalid(format!(
            "usage {other} is not a BUFSYNC_USAGE_*"
        ))),
    }
}

/// Where a reservation lives: on its own, or in a dma-buf.
#[derive(Clone)]
pub(crate) enum ResvRef {
    Own(Arc<Reservation>),
    Buffer(Arc<DmaBuf>),
}

impl AsReservation for ResvRef {
    fn as_reservation(&self) -> &Reservation {
        match self {
            ResvRef::Own(r) => r,
            ResvRef::Buffer(b) => b.reservation(),
        }
    }
}

/// One reference to a reservation. Made by `bufsync_reservation_create`
/// (a reservation of its own, for a buffer the application tracks) or
/// `bufsync_dmabuf_get_reservation` (a dma-buf's); destroy each with
/// `bufsync_reservation_destroy`.
pub struct bufsync_reservation {
    pub(crate) resv: ResvRef,
}

/// Creates an empty reservation of the reservation class (wait-die, as the
/// kernel's `reservation_ww_class`).
///
/// Returns 0 with `*out` a new handle, or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_reservation_create(out: *mut *mut bufsync_reservation) -> c_int {
    call("bufsync_reservation_create", || {
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.write(new_handle(bufsync_reservation {
            resv: ResvRef::Own(Arc::new(Reservation::new())),
        }));
        Ok(0)
    })
}

/// Drops this handle's reference; NULL does nothing. A ticket that holds
/// the reservation keeps its own reference until it commits or backs off.
///
/// Thread safety: any thread, once no other call uses this handle.
#[no_mangle]
pub unsafe extern "C" fn bufsync_reservation_destroy(resv: *mut bufsync_reservation) {
    // SAFETY: NULL or a live handle no one else uses (header contract).
    crate::error::call_or("bufsync_reservation_destroy", (), || unsafe {
        destroy(resv)
    })
}

/// The reservation's object id (what ticket messages and dumps name); 0
/// for NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_reservation_id(resv: *const bufsync_reservation) -> u64 {
    crate::error::call_or("bufsync_reservation_id", 0, || {
        // SAFETY: NULL or a live handle (header contract).
        unsafe { borrow(resv, "resv") }.map_or(0, |r| r.resv.as_reservation().id())
    })
}

/// Whether every fence with a usage up to `usage` has signaled
/// (`dma_resv_test_signaled`). Never takes the reservation's lock.
///
/// Returns 1 (all signaled), 0 (some pending), or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_reservation_test_signaled(
    resv: *const bufsync_reservation,
    usage: u32,
) -> c_int {
    call("bufsync_reservation_test_signaled", || {
        // SAFETY: NULL or a live handle (header contract).
        let r = unsafe { borrow(resv, "resv") }?;
        let u = self::usage(usage)?;
        Ok(c_int::from(r.resv.as_reservation().test_signaled(u)))
    })
}

/// Waits for every fence with a usage up to `usage`
/// (`dma_resv_wait_timeout`), at most `timeout_ns` in all
/// (`BUFSYNC_TIMEOUT_INFINITE`: no limit). Never takes the reservation's lock.
///
/// Returns 0, -ETIME (some still pending), the first fence error met, or
/// -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_reservation_wait(
    resv: *const bufsync_reservation,
    usage: u32,
    timeout_ns: u64,
) -> c_int {
    call("bufsync_reservation_wait", || {
        // SAFETY: NULL or a live handle (header contract).
        let r = unsafe { borrow(resv, "resv") }?;
        let u = self::usage(usage)?;
        r.resv.as_reservation().wait(u, timeout(timeout_ns))?;
        Ok(0)
    })
}

/// A snapshot of the fences with a usage up to `usage` (`dma_resv_iter`),
/// in the two-call idiom: `*count` gets their number; with `fences` holding
/// `capacity` >= that, `fences[0..count]` get new handles (destroy each).
/// `fences` NULL with `capacity` 0 only counts.
///
/// Returns 0, -ENOSPC (`capacity` too small: nothing written but
/// `*count`), or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_reservation_get_fences(
    resv: *const bufsync_reservation,
    usage: u32,
    fences: *mut *mut bufsync_fence,
    capacity: usize,
    count: *mut usize,
) -> c_int {
    call("bufsync_reservation_get_fences", || {
        // SAFETY: NULL or a live handle (header contract).
        let r = unsafe { borrow(resv, "resv") }?;
        let u = self::usage(usage)?;
        let snapshot: Vec<_> = r.resv.as_reservation().fences(u).iter().cloned().collect();
        // SAFETY: `fences` has `capacity` slots, `count` is writable (contract).
        unsafe { give_fences(snapshot.iter(), fences, capacity, count) }
    })
}
