//! Fence contexts and fences (`dma_fence`): create, signal, status, wait,
//! callbacks, merge.
//!
//! A `bufsync_fence` handle is one reference to a fence; fences are shared
//! (the reservation, other handles, the wait set hold theirs), so destroying
//! a handle never signals or frees a fence someone else still holds.
//!
//! Locking: the runtime's fence rules (docs/fences.md). No call here holds a
//! lock while it runs a callback; callbacks run on the signaling thread
//! after the fence is marked signaled.

use std::ffi::{c_char, c_int, c_void};

use bufsync::fence::{unwrap_merge, CallbackId, Fence, FenceContext, FenceError};

use crate::error::{call, call_or, CallError};
use crate::handle::{borrow, destroy, new_handle, opt_str, slice, timeout, Out};

/// A fence context (a timeline): hands out fences with increasing seqnos.
/// Create with `bufsync_context_create`, destroy with
/// `bufsync_context_destroy`; its fences outlive it.
pub struct bufsync_context {
    ctx: FenceContext,
}

/// One reference to a fence. Made by the calls that return fences; destroy
/// each with `bufsync_fence_destroy`.
pub struct bufsync_fence {
    pub(crate) fence: Fence,
}

impl bufsync_fence {
    /// A new handle on `fence` for the caller.
    pub(crate) fn handle(fence: Fence) -> *mut bufsync_fence {
        new_handle(bufsync_fence { fence })
    }
}

/// Called once when a fence signals, on the signaling thread, with a fence
/// handle that is valid only during the call (clone it to keep it) and the
/// `user_data` given to `bufsync_fence_add_callback`. It must not block, and
/// must not reserve (no `bufsync_ticket_reserve`): it runs in the signal path.
pub type bufsync_fence_callback =
    Option<unsafe extern "C" fn(fence: *const bufsync_fence, user_data: *mut c_void)>;

/// The caller's `user_data`, moved to the signaling thread.
struct UserData(*mut c_void);

// SAFETY: the header requires `user_data` to be usable from whichever
// thread signals the fence; the library only passes it back.
unsafe impl Send for UserData {}

/// Creates a fence context with diagnostic names (NULL: "bufsync-capi" and
/// "timeline"). On success `*out` is a new context.
///
/// Returns 0, or -EINVAL (NULL `out`, a name that is not UTF-8).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_context_create(
    driver: *const c_char,
    timeline: *const c_char,
    out: *mut *mut bufsync_context,
) -> c_int {
    call("bufsync_context_create", || {
        // SAFETY: `out` is NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: NULL or NUL-terminated strings (header contract).
        let driver = unsafe { opt_str(driver, "driver") }?.unwrap_or("bufsync-capi");
        // SAFETY: as above.
        let timeline = unsafe { opt_str(timeline, "timeline") }?.unwrap_or("timeline");
        out.write(new_handle(bufsync_context {
            ctx: FenceContext::new(driver, timeline),
        }));
        Ok(0)
    })
}

/// Destroys a context; NULL does nothing. Fences made on it stay valid.
///
/// Thread safety: any thread, once no other call uses the context.
#[no_mangle]
pub unsafe extern "C" fn bufsync_context_destroy(ctx: *mut bufsync_context) {
    // SAFETY: NULL or a live context no one else uses (header contract).
    call_or("bufsync_context_destroy", (), || unsafe { destroy(ctx) })
}

/// The context's id (the `context` of its fences); 0 for NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_context_id(ctx: *const bufsync_context) -> u64 {
    call_or("bufsync_context_id", 0, || {
        // SAFETY: NULL or a live context (header contract).
        unsafe { borrow(ctx, "ctx") }.map_or(0, |c| c.ctx.id())
    })
}

/// Creates a pending fence on `ctx` with the context's next seqno
/// (`dma_fence_init`). The caller is its producer: it must signal it,
/// with or without an error, in finite time.
///
/// Returns 0 with `*out` a new fence handle, or -EINVAL.
///
/// Thread safety: any thread, concurrently on one context.
#[no_mangle]
pub unsafe extern "C" fn bufsync_context_create_fence(
    ctx: *const bufsync_context,
    out: *mut *mut bufsync_fence,
) -> c_int {
    call("bufsync_context_create_fence", || {
        // SAFETY: NULL or a live context (header contract).
        let ctx = unsafe { borrow(ctx, "ctx") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.write(bufsync_fence::handle(ctx.ctx.create_fence()));
        Ok(0)
    })
}

/// A second handle on the same fence (a new reference).
///
/// Returns 0 with `*out` a new handle, or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_clone(
    fence: *const bufsync_fence,
    out: *mut *mut bufsync_fence,
) -> c_int {
    call("bufsync_fence_clone", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.write(bufsync_fence::handle(f.fence.clone()));
        Ok(0)
    })
}

/// Drops this handle's reference; NULL does nothing. The fence itself lives
/// on while other references exist, and is never signaled by this.
///
/// Thread safety: any thread, once no other call uses this handle.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_destroy(fence: *mut bufsync_fence) {
    // SAFETY: NULL or a live handle no one else uses (header contract).
    call_or("bufsync_fence_destroy", (), || unsafe { destroy(fence) })
}

/// The fence's context; 0 for NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_context(fence: *const bufsync_fence) -> u64 {
    call_or("bufsync_fence_context", 0, || {
        // SAFETY: NULL or a live fence handle (header contract).
        unsafe { borrow(fence, "fence") }.map_or(0, |f| f.fence.context())
    })
}

/// The fence's seqno on its context; 0 for NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_seqno(fence: *const bufsync_fence) -> u64 {
    call_or("bufsync_fence_seqno", 0, || {
        // SAFETY: NULL or a live fence handle (header contract).
        unsafe { borrow(fence, "fence") }.map_or(0, |f| f.fence.seqno())
    })
}

/// Signals the fence (`dma_fence_signal`); waiters wake, callbacks run on
/// this thread before it returns. Only the fence's producer signals it.
///
/// Returns 0, -EALREADY (signaled before: nothing changed), or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_signal(fence: *const bufsync_fence) -> c_int {
    call("bufsync_fence_signal", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        f.fence
            .signal()
            .map_err(|e| CallError::new(libc::EALREADY, e.to_string()))?;
        Ok(0)
    })
}

/// Signals the fence with an error (`dma_fence_set_error` +
/// `dma_fence_signal`): `error` is a negative errno (e.g. -ECANCELED,
/// -ENODEV for a lost device). Waiters see it; merges keep it.
///
/// Returns 0, -EALREADY (signaled before: nothing changed), or -EINVAL
/// (NULL, or `error` not negative).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_signal_error(
    fence: *const bufsync_fence,
    error: c_int,
) -> c_int {
    call("bufsync_fence_signal_error", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        let e = FenceError::from_errno(error)
            .ok_or_else(|| CallError::invalid(format!("error {error} is not a negative errno")))?;
        f.fence
            .signal_with_error(e)
            .map_err(|e| CallError::new(libc::EALREADY, e.to_string()))?;
        Ok(0)
    })
}

/// The fence's status (`dma_fence_get_status`) in `*status`: 0 pending,
/// 1 signaled, a negative errno when signaled with that error.
///
/// Returns 0, or -EINVAL (NULL argument).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_get_status(
    fence: *const bufsync_fence,
    status: *mut c_int,
) -> c_int {
    call("bufsync_fence_get_status", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(status, "status") }?;
        out.write(f.fence.status().to_kernel());
        Ok(0)
    })
}

/// Waits for the fence at most `timeout_ns` nanoseconds
/// (`BUFSYNC_TIMEOUT_INFINITE`: no limit; 0: only checks). A timeout ends
/// the wait, never the fence.
///
/// Returns 0 (signaled without error), -ETIME (still pending when the
/// timeout passed), the fence's error (a negative errno such as -ECANCELED,
/// -ETIMEDOUT, -ENODEV) when it signaled with one, or -EINVAL (NULL).
/// `bufsync_fence_get_status` tells a fence error from a call error.
///
/// Thread safety: any thread, any number at once.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_wait(fence: *const bufsync_fence, timeout_ns: u64) -> c_int {
    call("bufsync_fence_wait", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        match timeout(timeout_ns) {
            None => f.fence.wait()?,
            Some(t) => f.fence.wait_timeout(t)?,
        }
        Ok(0)
    })
}

/// Adds `callback`, called once with `user_data` when the fence signals
/// (`dma_fence_add_callback`); see `bufsync_fence_callback` for where it
/// runs. `*id` (optional) identifies it for `bufsync_fence_remove_callback`.
///
/// Returns 0, -ENOENT when the fence has already signaled (the callback is
/// not added and not called, as in the kernel), or -EINVAL.
///
/// Thread safety: any thread; `user_data` must be usable from the thread
/// that signals the fence.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_add_callback(
    fence: *const bufsync_fence,
    callback: bufsync_fence_callback,
    user_data: *mut c_void,
    id: *mut u64,
) -> c_int {
    call("bufsync_fence_add_callback", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        let cb = callback.ok_or_else(|| CallError::invalid("callback is NULL"))?;
        let user = UserData(user_data);
        let added = f.fence.add_callback(move |signaled: &Fence| {
            let user = user;
            // A handle valid for the call only: one reference, no allocation.
            let handle = bufsync_fence {
                fence: signaled.clone(),
            };
            // SAFETY: `cb` is the caller's function, called as its type says
            // with a valid fence pointer and the caller's own `user_data`.
            unsafe { cb(&handle, user.0) };
        });
        match added {
            Ok(cid) => {
                // SAFETY: NULL or writable (header contract).
                unsafe { crate::handle::write_opt(id, cid.to_raw()) };
                Ok(0)
            }
            Err(e) => Err(CallError::new(libc::ENOENT, e.to_string())),
        }
    })
}

/// Removes a callback that has not run (`dma_fence_remove_callback`).
///
/// Returns 1 when removed (it will never run), 0 when it has run, is
/// running, or is not this fence's, or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_remove_callback(
    fence: *const bufsync_fence,
    id: u64,
) -> c_int {
    call("bufsync_fence_remove_callback", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        Ok(c_int::from(
            f.fence.remove_callback(CallbackId::from_raw(id)),
        ))
    })
}

/// Merges `count` fences into one (`dma_fence_unwrap_merge`): signaled when
/// all are; one per context kept (the latest); an error of any of them is
/// the merged fence's error. `count` 0 gives a signaled fence.
///
/// Returns 0 with `*out` a new fence handle, or -EINVAL (NULL `out`, a NULL
/// array with `count` > 0, a NULL entry).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_merge(
    fences: *const *const bufsync_fence,
    count: usize,
    out: *mut *mut bufsync_fence,
) -> c_int {
    call("bufsync_fence_merge", || {
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: `count` pointers at `fences` (header contract).
        let list = unsafe { slice(fences, count, "fences") }?;
        let mut all = Vec::with_capacity(list.len());
        for (i, &p) in list.iter().enumerate() {
            // SAFETY: each entry is NULL or a live fence handle.
            let f = unsafe { borrow(p, "fences[i]") }
                .map_err(|_| CallError::invalid(format!("fences[{i}] is NULL")))?;
            all.push(f.fence.clone());
        }
        out.write(bufsync_fence::handle(unwrap_merge(&all)));
        Ok(0)
    })
}

/// Hands `fences` to the caller through the two-call idiom: `*count` gets
/// how many there are; with `capacity` enough, `out[0..count]` get new
/// handles. Writes no handle when `capacity` is too small (-ENOSPC) or
/// `out` is NULL with `capacity` 0 (a query: 0).
///
/// # Safety
/// `out` is NULL or writable for `capacity` pointers; `count` is NULL or
/// writable.
pub(crate) unsafe fn give_fences<'f>(
    fences: impl ExactSizeIterator<Item = &'f Fence>,
    out: *mut *mut bufsync_fence,
    capacity: usize,
    count: *mut usize,
) -> crate::error::CallResult {
    // SAFETY: NULL or writable (the caller's contract).
    let count = unsafe { Out::new(count, "count") }?;
    let n = fences.len();
    count.write(n);
    if out.is_null() {
        return if capacity == 0 {
            Ok(0)
        } else {
            Err(CallError::invalid(format!(
                "the fence array is NULL with capacity {capacity}"
            )))
        };
    }
    if capacity < n {
        return Err(CallError::new(
            libc::ENOSPC,
            format!("{n} fences do not fit in {capacity}"),
        ));
    }
    for (i, f) in fences.enumerate() {
        // SAFETY: `i < n <= capacity` slots are writable (the contract).
        unsafe { out.add(i).write(bufsync_fence::handle(f.clone())) };
    }
    Ok(0)
}
