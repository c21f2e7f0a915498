//! The logging hook: bufsync logs through the `log` crate; this library's
//! logger forwards each record to the application's callback. Until one is
//! set, bufsync is silent (a library never prints).
//!
//! Locking: `SINK` is a read-write lock. Each record is forwarded under the
//! read lock, so `bufsync_set_log_callback` (the write lock) returns only
//! once no call of the old callback is running. A record logged from inside
//! the callback (the callback calls bufsync) is dropped, never forwarded
//! recursively; setting the callback from inside it is refused.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{OnceLock, RwLock};

use crate::error::{call, CallError};

/// No logging.
pub const BUFSYNC_LOG_OFF: u32 = 0;
/// Errors.
pub const BUFSYNC_LOG_ERROR: u32 = 1;
/// Warnings and up.
pub const BUFSYNC_LOG_WARN: u32 = 2;
/// Information and up.
pub const BUFSYNC_LOG_INFO: u32 = 3;
/// Debug messages and up.
pub const BUFSYNC_LOG_DEBUG: u32 = 4;
/// Everything.
pub const BUFSYNC_LOG_TRACE: u32 = 5;

/// Receives one log line: its level (`BUFSYNC_LOG_ERROR` ..
/// `BUFSYNC_LOG_TRACE`), its target (the bufsync module, e.g.
/// "bufsync_backends::reactor") and the message, both NUL-terminated and
/// valid only during the call. Called on whichever thread logs, possibly
/// several at once; it must not block for long.
pub type bufsync_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: u32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

struct Sink {
    f: unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char),
    user: *mut c_void,
}

// SAFETY: the header requires the callback and `user_data` to be usable
// from any thread, at once; the library only passes `user_data` back.
unsafe impl Send for Sink {}
// SAFETY: as above: shared use from several threads is the contract.
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// The `log::Log` that forwards to the C callback.
struct Forward;

static FORWARD: Forward = Forward;

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || IN_CALLBACK.with(Cell::get) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = sink.as_ref() else {
            return;
        };
        let text = |s: String| CString::new(s.replace('\0', "\\0")).unwrap_or_default();
        let target = text(record.target().to_owned());
        let message = text(record.args().to_string());
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the application's callback, called as its type says with
        // two valid C strings and its own `user_data`.
        unsafe {
            (sink.f)(
                sink.user,
                record.level() as u32,
                target.as_ptr(),
                message.as_ptr(),
            )
        };
        IN_CALLBACK.with(|c| c.set(false));
    }

    fn flush(&self) {}
}

fn filter(level: u32) -> log::LevelFilter {
    match level {
        BUFSYNC_LOG_OFF => log::LevelFilter::Off,
        BUFSYNC_LOG_ERROR => log::LevelFilter::Error,
        BUFSYNC_LOG_WARN => log::LevelFilter::Warn,
        BUFSYNC_LOG_INFO => log::LevelFilter::Info,
        BUFSYNC_LOG_DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Sets the callback that receives bufsync's log lines of `max_level` and
/// more severe (`BUFSYNC_LOG_OFF` .. `BUFSYNC_LOG_TRACE`; above TRACE
/// means TRACE); `callback` NULL turns logging off. Replaces the previous
/// callback: when this returns, the old one is no longer being called.
///
/// Returns 0, -EDEADLK (called from inside the callback), or -EBUSY
/// (another logger owns this library's `log` facade: only possible when the
/// static library is linked into a Rust program that set one).
///
/// Thread safety: any thread; the callback and `user_data` must be usable
/// from any thread, several at once.
#[no_mangle]
pub unsafe extern "C" fn bufsync_set_log_callback(
    callback: bufsync_log_callback,
    user_data: *mut c_void,
    max_level: u32,
) -> c_int {
    call("bufsync_set_log_callback", || {
        if IN_CALLBACK.with(Cell::get) {
            return Err(CallError::new(
                libc::EDEADLK,
                "called from inside the log callback",
            ));
        }
        static INSTALLED: OnceLock<bool> = OnceLock::new();
        if !*INSTALLED.get_or_init(|| log::set_logger(&FORWARD).is_ok()) {
            return Err(CallError::new(libc::EBUSY, "another logger is installed"));
        }
        let mut sink = SINK.write().unwrap_or_else(|e| e.into_inner());
        *sink = callback.map(|f| Sink { f, user: user_data });
        log::set_max_level(if sink.is_some() {
            filter(max_level)
        } else {
            log::LevelFilter::Off
        });
        Ok(0)
    })
}

/// Logs `message` at `level` through bufsync's logger, as if bufsync had
/// (target "bufsync_capi"); for tests of the hook and for applications that
/// want their lines in the same stream. NULL logs nothing.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_log(level: u32, message: *const c_char) -> c_int {
    call("bufsync_log", || {
        // SAFETY: NULL or a NUL-terminated string (header contract).
        let Some(m) = (unsafe { crate::handle::opt_str(message, "message") })? else {
            return Ok(0);
        };
        let l = match filter(level).to_level() {
            Some(l) => l,
            None => return Ok(0),
        };
        log::log!(target: "bufsync_capi", l, "{m}");
        Ok(0)
    })
}
