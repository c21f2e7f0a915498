//! The crate's error type: one typed variant per failure, with context.

use std::io;
use std::path::PathBuf;

/// Errors from the backends. Each carries what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening a device node or file failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// No DRM device with this driver name is present.
    #[error("no DRM device with driver `{driver}`")]
    DeviceNotFound {
        /// The driver name searched for.
        driver: String,
    },
    /// An ioctl or system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation (usually the ioctl's name).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The fd is not a dma-buf.
    #[error("fd {fd} is not a dma-buf")]
    NotADmaBuf {
        /// The fd number.
        fd: i32,
    },
    /// The fd is not a sync_file.
    #[error("fd {fd} is not a sync_file")]
    NotASyncFile {
        /// The fd number.
        fd: i32,
    },
    /// The fd is not a drm_syncobj fd (an opaque syncobj export).
    #[error("fd {fd} is not a drm_syncobj")]
    NotASyncobj {
        /// The fd number.
        fd: i32,
    },
    /// The fd is closed or otherwise invalid.
    #[error("fd {fd} is not an open file descriptor")]
    BadFd {
        /// The fd number.
        fd: i32,
    },
    /// The kernel or device lacks this feature (ENOTTY/ENOSYS/EOPNOTSUPP).
    #[error("not supported here: {what}")]
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// Invalid flags or arguments were given.
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What was wrong.
        what: String,
    },
    /// The pixel format / modifier is not supported.
    #[error("unsupported format {fourcc:#010x} modifier {modifier:#x}")]
    UnsupportedFormat {
        /// DRM fourcc.
        fourcc: u32,
        /// DRM format modifier.
        modifier: u64,
    },
    /// A pending runtime fence has no sync_file form (software fences).
    #[error("a pending `{driver}` fence has no sync_file form")]
    NoSyncFile {
        /// The fence's driver name.
        driver: String,
    },
    /// A fence completed with an error.
    #[error("fence signaled with error: {0}")]
    Fence(bufsync::fence::FenceError),
    /// The reactor or the fence engine was already in use (its thread
    /// started) when the application asked to drive it.
    #[error("{what} is already running on its own thread")]
    AlreadyRunning {
        /// Which one.
        what: &'static str,
    },
    /// The shared reactor (epoll thread) could not be started.
    #[error("the fence reactor is unavailable: {what}")]
    ReactorUnavailable {
        /// Why.
        what: String,
    },
    /// The runtime reservation refused (e.g. no room for a fence).
    #[error("reservation: {0}")]
    Reservation(#[from] bufsync::resv::ResvError),
    /// A bounded wait ended before the fence signaled.
    #[error("timed out waiting for {what}")]
    TimedOut {
        /// What was waited for.
        what: &'static str,
    },
    /// A bounded wait ended with this runtime fence still pending: its
    /// producer has not finished (the fence stays where it was; a fence
    /// pending past the engine's threshold is listed by
    /// `bufsync::debug::dump()`).
    #[error("timed out waiting for {what}: fence {}:{} ({}/{}) still pending after {waited:?}", .fence.context(), .fence.seqno(), .fence.driver_name(), .fence.timeline_name())]
    Pending {
        /// What was waited for.
        what: &'static str,
        /// The fence the wait ended on.
        fence: bufsync::fence::Fence,
        /// How long the wait lasted.
        waited: std::time::Duration,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an OS error from `op`, mapping ENOTTY/ENOSYS/EOPNOTSUPP to
    /// [`Error::Unsupported`] (run-time probing as Mesa does).
    pub fn io(op: &'static str, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(e) if is_unsupported_errno(e) => Error::Unsupported { what: op },
            _ => Error::Io { op, source },
        }
    }

    /// The errno behind this error, if it came from the OS.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Open { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// ENOTTY, ENOSYS and EOPNOTSUPP mean "this kernel/driver lacks the ioctl".
pub(crate) fn is_unsupported_errno(e: i32) -> bool {
    use rustix::io::Errno;
    e == Errno::NOTTY.raw_os_error()
        || e == Errno::NOSYS.raw_os_error()
        || e == Errno::OPNOTSUPP.raw_os_error()
}

/// Maps an ioctl result, turning EBADF (and EBADFD, what some drivers say
/// of a closed fd inside their argument) into [`Error::BadFd`].
pub(crate) fn ioctl_err(op: &'static str, fd: i32) -> impl FnOnce(io::Error) -> Error {
    move |e| match e.raw_os_error() {
        Some(n) if n == rustix::io::Errno::BADF.raw_os_error() => Error::BadFd { fd },
        Some(n) if n == rustix::io::Errno::BADFD.raw_os_error() => Error::BadFd { fd },
        _ => Error::io(op, e),
    }
}

/// [`Error::BadFd`] unless `fd` is an open descriptor (`F_GETFD`): the
/// check at the boundary for fds the kernel would only look at inside an
/// ioctl argument, where a closed one reads as EINVAL.
pub(crate) fn check_open(fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    use std::os::fd::AsRawFd;
    rustix::io::fcntl_getfd(fd)
        .map(drop)
        .map_err(|_| Error::BadFd { fd: fd.as_raw_fd() })
}
