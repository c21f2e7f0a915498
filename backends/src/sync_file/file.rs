//! A checked sync_file fd.
//!
//! Locking: none. A sync_file's fence set never changes after creation, so
//! a `SyncFile` is freely shared (`Sync`); every method is a syscall.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::SyncFileInfo;
use crate::error::{ioctl_err, Error, Result};
use crate::sys;

/// A sync_file: one fd that signals (POLLIN) when all its fences have.
#[derive(Debug)]
pub struct SyncFile {
    fd: OwnedFd,
}

impl SyncFile {
    /// Takes `fd` after checking it is a sync_file (`SYNC_IOC_FILE_INFO`
    /// with no array is the probe): [`Error::NotASyncFile`] for any other
    /// kind of fd, [`Error::BadFd`] for a closed one.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        Self::check(fd.as_fd())?;
        Ok(Self { fd })
    }

    /// Checks that `fd` is a sync_file without taking it.
    pub fn check(fd: BorrowedFd<'_>) -> Result<()> {
        let raw = fd.as_raw_fd();
        match sys::sync_file::file_info_count(fd) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BADF.raw_os_error()) => {
                Err(Error::BadFd { fd: raw })
            }
            // Any other fd answers ENOTTY (or EINVAL/EFAULT from a driver
            // that happens to reuse the number): not a sync_file.
            Err(_) => Err(Error::NotASyncFile { fd: raw }),
        }
    }

    /// Wraps `fd` without checking (it came from an ioctl that returns
    /// sync_files).
    pub(crate) fn from_fd_unchecked(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// The fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives the fd up.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// A second handle to the same sync_file (`dup`, close-on-exec).
    pub fn try_clone(&self) -> Result<Self> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| Error::io("F_DUPFD_CLOEXEC", e.into()))?;
        Ok(Self { fd })
    }

    /// Polls without blocking: true once every fence has signaled (with or
    /// without error).
    pub fn is_signaled(&self) -> Result<bool> {
        self.poll(Some(Duration::ZERO))
    }

    fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        sys::poll::poll_one(self.fd.as_fd(), PollFlags::IN, timeout)
            .map(|r| r.is_some_and(|r| r.intersects(PollFlags::IN | PollFlags::ERR)))
            .map_err(|e| Error::io("poll(sync_file)", e))
    }

    /// Blocks until signaled or `timeout` passes ([`Error::TimedOut`]).
    /// A fence that signaled with an error gives [`Error::Fence`] with its
    /// errno mapped (from `SYNC_IOC_FILE_INFO`).
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.poll(Some(left))? {
                return match bufsync::fence::FenceError::from_errno(self.info()?.status) {
                    Some(e) => Err(Error::Fence(e)),
                    None => Ok(()),
                };
            }
            if left.is_zero() {
                return Err(Error::TimedOut { what: "sync_file" });
            }
        }
    }

    /// `SYNC_IOC_FILE_INFO`: status plus per-fence driver/timeline names.
    pub fn info(&self) -> Result<SyncFileInfo> {
        let (file, fences) = sys::sync_file::file_info(self.fd())
            .map_err(ioctl_err("SYNC_IOC_FILE_INFO", self.fd.as_raw_fd()))?;
        Ok(SyncFileInfo::from_raw(&file, &fences))
    }

    /// `SYNC_IOC_MERGE`: a new sync_file signaled when both are (errors
    /// survive the merge).
    pub fn merge(&self, other: &SyncFile, name: &str) -> Result<SyncFile> {
        let fd = sys::sync_file::merge(self.fd(), other.fd(), name)
            .map_err(ioctl_err("SYNC_IOC_MERGE", self.fd.as_raw_fd()))?;
        Ok(Self { fd })
    }

    /// `SYNC_IOC_SET_DEADLINE`: tells the producers the fence is wanted by
    /// `deadline`. [`Error::Unsupported`] on kernels before 6.5.
    pub fn set_deadline(&self, deadline: Instant) -> Result<()> {
        let ns = crate::clock::monotonic_ns_at(deadline);
        sys::sync_file::set_deadline(self.fd(), ns)
            .map_err(ioctl_err("SYNC_IOC_SET_DEADLINE", self.fd.as_raw_fd()))
    }
}

impl AsFd for SyncFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
