//! The few operations on what C hands in: handles (boxed Rust values behind
//! opaque pointers), out-pointers, arrays, fds and timeouts.
//!
//! Every pointer a C caller passes is NULL or what the header's contract
//! promises (a live handle of that type, an array of the stated length, a
//! writable out-pointer). NULL is checked here and becomes `-EINVAL`; the
//! rest is the caller's promise, the only thing these `unsafe` blocks rely on.
//!
//! Locking: none.

use std::ffi::{c_char, c_int, CStr};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use crate::error::{CallError, CallResult};

/// A timeout that never ends (`UINT64_MAX` nanoseconds).
pub const BUFSYNC_TIMEOUT_INFINITE: u64 = u64::MAX;

/// A new handle owning `value`, for the caller to destroy.
pub(crate) fn new_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Borrows the handle `p` for the call; `-EINVAL` for NULL.
///
/// # Safety
/// `p` is NULL or a live handle of type `T` made by [`new_handle`], not
/// destroyed during the call.
pub(crate) unsafe fn borrow<'a, T>(p: *const T, what: &str) -> CallResult<&'a T> {
    // SAFETY: the function's contract: NULL or a live `T` from `new_handle`.
    unsafe { p.as_ref() }.ok_or_else(|| CallError::invalid(format!("{what} is NULL")))
}

/// Destroys a handle made by [`new_handle`]; NULL does nothing.
///
/// # Safety
/// `p` is NULL or a live handle of type `T`, used by no one else now or later.
pub(crate) unsafe fn destroy<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: the contract: `p` came from `Box::into_raw` and is dropped once.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// An out-pointer checked before any work is done, written at the end.
pub(crate) struct Out<'a, T>(&'a mut std::mem::MaybeUninit<T>);

impl<'a, T> Out<'a, T> {
    /// Checks `p`; `-EINVAL` for NULL.
    ///
    /// # Safety
    /// `p` is NULL or valid for a write of one `T`.
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> CallResult<Out<'a, T>> {
        // SAFETY: the contract: NULL or writable; MaybeUninit needs no init.
        let slot = unsafe { p.cast::<std::mem::MaybeUninit<T>>().as_mut() };
        slot.map(Out)
            .ok_or_else(|| CallError::invalid(format!("{what} is NULL")))
    }

    /// Stores `value` (the caller owns whatever it holds from now on).
    pub(crate) fn write(self, value: T) {
        self.0.write(value);
    }
}

/// Writes `value` through `p` when it is not NULL (an optional out-pointer).
///
/// # Safety
/// `p` is NULL or valid for a write of one `T`.
pub(crate) unsafe fn write_opt<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: the contract: non-NULL means writable.
        unsafe { p.write(value) };
    }
}

/// The caller's array `(p, n)` as a slice; NULL is allowed only for `n == 0`.
///
/// # Safety
/// `p` is NULL or points to `n` initialized `T`s that stay valid and
/// unchanged for the call.
pub(crate) unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> CallResult<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(CallError::invalid(format!(
            "{what} is NULL with {n} entries"
        )));
    }
    if n > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(CallError::invalid(format!(
            "{what}: {n} entries is too many"
        )));
    }
    // SAFETY: the contract: `n` valid `T`s at `p`, aligned as C arrays are.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A C string argument, `None` for NULL; `-EINVAL` if it is not UTF-8.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> CallResult<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the contract: a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|_| CallError::invalid(format!("{what} is not UTF-8")))
}

/// The library's own copy of a borrowed fd (`F_DUPFD_CLOEXEC`, at 3 or
/// above): the caller's fd is left as it was, whatever happens next.
/// `-EBADF` for a negative or closed fd.
pub(crate) fn dup_borrowed(fd: c_int, what: &str) -> CallResult<OwnedFd> {
    if fd < 0 {
        return Err(CallError::new(
            libc::EBADF,
            format!("{what} {fd} is not an fd"),
        ));
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on any integer is defined: a new fd
    // or -1 with errno (EBADF for one that is not open). It touches nothing
    // of the caller's fd.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EBADF);
        let why = if errno == libc::EBADF {
            "is not an open fd".to_owned()
        } else {
            format!("cannot be duplicated (errno {errno})")
        };
        return Err(CallError::new(errno, format!("{what} {fd} {why}")));
    }
    // SAFETY: `new` is an open fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A timeout in nanoseconds: [`BUFSYNC_TIMEOUT_INFINITE`] is `None`.
pub(crate) fn timeout(ns: u64) -> Option<Duration> {
    (ns != BUFSYNC_TIMEOUT_INFINITE).then(|| Duration::from_nanos(ns))
}
