//! Error codes, the thread-local last error message, and the boundary that
//! turns every Rust error and every panic into a code.
//!
//! Locking: none. The last error is a thread-local `CString`; the panic
//! hook (installed once, in this library's own copy of std) records the
//! panic's location in another thread-local, read by `call` when it
//! catches the unwind.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use bufsync::fence::{FenceError, WaitError};
use bufsync::resv::{ResvError, ResvWaitError, WwError};
use bufsync_backends::Error as BackendError;

/// A failed call: a negative errno value and what went wrong.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) code: c_int,
    pub(crate) message: String,
}

impl CallError {
    /// An error with code `-errno`.
    pub(crate) fn new(errno: c_int, message: impl Into<String>) -> CallError {
        CallError {
            code: -errno.abs(),
            message: message.into(),
        }
    }

    /// `-EINVAL`: a NULL or malformed argument.
    pub(crate) fn invalid(message: impl Into<String>) -> CallError {
        CallError::new(libc::EINVAL, message)
    }
}

/// What a fallible call returns inside the library.
pub(crate) type CallResult<T = c_int> = Result<T, CallError>;

/// The code of a caught panic, -ENOTRECOVERABLE (131 on Linux): the call
/// did not finish; the library stays usable.
pub const BUFSYNC_EPANIC: c_int = -131;

const _: () = assert!(BUFSYNC_EPANIC == -libc::ENOTRECOVERABLE);

impl From<FenceError> for CallError {
    fn from(e: FenceError) -> CallError {
        CallError::new(e.to_errno(), format!("fence signaled with an error: {e}"))
    }
}

impl From<WaitError> for CallError {
    fn from(e: WaitError) -> CallError {
        match e {
            WaitError::TimedOut => CallError::new(
                libc::ETIME,
                "the wait timed out; the fence is still pending",
            ),
            WaitError::Cancelled => CallError::new(libc::ECANCELED, "the wait was cancelled"),
            WaitError::Fence(f) => f.into(),
        }
    }
}

impl From<WwError> for CallError {
    fn from(e: WwError) -> CallError {
        let errno = match e {
            WwError::Deadlock { .. } => libc::EDEADLK,
            WwError::AlreadyHeld { .. } => libc::EALREADY,
            WwError::TimedOut { .. } => libc::ETIME,
            WwError::Cancelled { .. } => libc::ECANCELED,
            WwError::Misuse { .. } => libc::EINVAL,
        };
        CallError::new(errno, e.to_string())
    }
}

impl From<ResvError> for CallError {
    fn from(e: ResvError) -> CallError {
        match e {
            ResvError::Lock(w) => w.into(),
            ResvError::NoMemory { .. } => CallError::new(libc::ENOMEM, e.to_string()),
            ResvError::Wait(w) => w.into(),
            ResvError::NoSuchEntry { .. } => CallError::invalid(e.to_string()),
        }
    }
}

impl From<ResvWaitError> for CallError {
    fn from(e: ResvWaitError) -> CallError {
        match e {
            ResvWaitError::Pending { .. } => CallError::new(libc::ETIME, e.to_string()),
            ResvWaitError::Fence(f) => f.into(),
        }
    }
}

impl From<BackendError> for CallError {
    fn from(e: BackendError) -> CallError {
        CallError::new(backend_errno(&e), e.to_string())
    }
}

/// The errno a backends error is reported with.
pub(crate) fn backend_errno(e: &BackendError) -> c_int {
    {
        match e {
            BackendError::Open { source, .. } | BackendError::Io { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            BackendError::DeviceNotFound { .. } => libc::ENODEV,
            BackendError::NotADmaBuf { .. }
            | BackendError::NotASyncFile { .. }
            | BackendError::NotASyncobj { .. } => libc::EINVAL,
            BackendError::BadFd { .. } => libc::EBADF,
            BackendError::Unsupported { .. } => libc::EOPNOTSUPP,
            BackendError::InvalidArgument { .. } => libc::EINVAL,
            BackendError::UnsupportedFormat { .. } => libc::EOPNOTSUPP,
            BackendError::NoSyncFile { .. } => libc::ENODATA,
            BackendError::Fence(f) => f.to_errno().abs(),
            BackendError::ReactorUnavailable { .. } => libc::EAGAIN,
            BackendError::AlreadyRunning { .. } => libc::EBUSY,
            BackendError::Reservation(r) => CallError::from(*r).code.abs(),
            BackendError::TimedOut { .. } | BackendError::Pending { .. } => libc::ETIME,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records `message` as this thread's last error.
pub(crate) fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // During thread exit the slot may be gone: the message is then dropped.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = text);
}

/// Routes panics of this library (its own copy of std: a C program's other
/// libraries are not affected) to the log and to [`call`], instead of
/// stderr: a library never prints.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_else(|| "unknown location".into());
            log::error!("bufsync panicked at {at}: {}", payload_text(info.payload()));
            PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-text panic payload)".to_owned()
    }
}

/// The boundary of every exported function that can fail: runs `f`, turns
/// its error into a code (recording the message) and a panic into
/// [`BUFSYNC_EPANIC`]. `name` prefixes the message.
pub(crate) fn call(name: &'static str, f: impl FnOnce() -> CallResult) -> c_int {
    install_panic_hook();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            set_last_error(&format!("{name}: {}", e.message));
            e.code
        }
        Err(payload) => {
            let at = PANIC_AT
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "unknown location".into());
            set_last_error(&format!(
                "{name}: internal error (panic at {at}: {}); the call did not complete",
                payload_text(&*payload)
            ));
            BUFSYNC_EPANIC
        }
    }
}

/// [`call`] for functions without an error channel (queries, destroys): a
/// panic gives `fallback` and is recorded as the last error.
pub(crate) fn call_or<T>(name: &'static str, fallback: T, f: impl FnOnce() -> T) -> T {
    let mut out = None;
    call(name, || {
        out = Some(f());
        Ok(0)
    });
    out.unwrap_or(fallback)
}

/// A message describing the last call on this thread that failed (returned
/// a negative code), or an empty string if none has. Calls that succeed
/// leave it as it was.
///
/// Returns a pointer owned by the library, valid until the next failing
/// call on the same thread; never NULL.
///
/// Thread safety: any thread; each thread has its own message.
#[no_mangle]
pub extern "C" fn bufsync_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Panics inside the library, for tests of the panic boundary: returns
/// `BUFSYNC_EPANIC` and sets the last error message; the library stays
/// usable. Not for production use.
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn bufsync_test_panic() -> c_int {
    call("bufsync_test_panic", || {
        panic!("bufsync_test_panic was called");
    })
}
