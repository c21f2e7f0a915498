//! A checked sync_file fd.
//!
//! Errors survive a merge: the kernel's `SYNC_IOC_MERGE` drops fences that
//! have already signaled, errors included (`dma_fence_unwrap_merge`), so a
//! merge of a failed fence with a pending one would come out clean. A
//! `SyncFile` therefore carries, beside its fd, the first error of any input
//! the kernel dropped; [`SyncFile::status`], [`SyncFile::wait`] and
//! [`SyncFile::info`] report it once the kernel fence has signaled (a set
//! reports after every member has ended, with the first error). The fd
//! itself cannot carry it: where it leaves bufsync ([`SyncFile::into_fd`],
//! `IN_FENCE_FD`), callers check [`SyncFile::carried_error`] first (the KMS
//! backend refuses such an in-fence).
//!
//! Locking: none. A sync_file's fence set never changes after creation, so
//! a `SyncFile` is freely shared (`Sync`); every method is a syscall.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use bufsync::fence::{FenceError, FenceStatus};
use rustix::event::PollFlags;

use super::SyncFileInfo;
use crate::error::{ioctl_err, Error, Result};
use crate::sys;

/// A sync_file: one fd that signals (POLLIN) when all its fences have.
#[derive(Debug)]
pub struct SyncFile {
    fd: OwnedFd,
    /// The first error of a merged input the kernel dropped (see the
    /// module docs).
    carried: Option<FenceError>,
}

impl SyncFile {
    /// Takes `fd` after checking it is a sync_file (`SYNC_IOC_FILE_INFO`
    /// with no array is the probe): [`Error::NotASyncFile`] for any other
    /// kind of fd, [`Error::BadFd`] for a closed one.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        Self::check(fd.as_fd())?;
        Ok(Self { fd, carried: None })
    }

    /// Duplicates `fd` (close-on-exec) after checking it is a sync_file, so
    /// a caller's raw fd becomes a typed `SyncFile` at the boundary; the
    /// caller keeps its own fd. Same errors as [`from_fd`](Self::from_fd).
    pub fn from_borrowed(fd: BorrowedFd<'_>) -> Result<Self> {
        Self::check(fd)?;
        let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0)
            .map_err(|e| Error::io("F_DUPFD_CLOEXEC", e.into()))?;
        Ok(Self { fd, carried: None })
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
        Self { fd, carried: None }
    }

    /// The fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives the fd up (a [carried error](Self::carried_error) does not
    /// travel with it: check it first).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// A second handle to the same sync_file (`dup`, close-on-exec), with the
    /// same carried error.
    pub fn try_clone(&self) -> Result<Self> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| Error::io("F_DUPFD_CLOEXEC", e.into()))?;
        Ok(Self {
            fd,
            carried: self.carried,
        })
    }

    /// The error of a merged input that had already failed when it was
    /// merged (the kernel's merge drops it; this `SyncFile` keeps it).
    pub fn carried_error(&self) -> Option<FenceError> {
        self.carried
    }

    /// Replaces the carried error (the caller knows which error came
    /// first); `None` keeps the current one.
    pub(crate) fn with_carried(mut self, e: Option<FenceError>) -> Self {
        self.carried = e.or(self.carried);
        self
    }

    /// The fences' combined status: pending until the kernel fence has
    /// signaled, then the first error (carried, else the kernel's), or
    /// signaled. `SYNC_IOC_FILE_INFO` plus the carried error.
    pub fn status(&self) -> Result<FenceStatus> {
        let status = sys::sync_file::file_info_count(self.fd())
            .map_err(ioctl_err("SYNC_IOC_FILE_INFO", self.fd.as_raw_fd()))?
            .status;
        Ok(self.status_from(status))
    }

    fn status_from(&self, kernel: i32) -> FenceStatus {
        match (kernel, self.carried) {
            (0, _) => FenceStatus::Pending,
            (_, Some(e)) => FenceStatus::Error(e),
            (s, None) => {
                FenceError::from_errno(s).map_or(FenceStatus::Signaled, FenceStatus::Error)
            }
        }
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
    /// errno mapped (from `SYNC_IOC_FILE_INFO`, or the carried error).
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.poll(Some(left))? {
                return match self.status()? {
                    FenceStatus::Error(e) => Err(Error::Fence(e)),
                    _ => Ok(()),
                };
            }
            if left.is_zero() {
                return Err(Error::TimedOut { what: "sync_file" });
            }
        }
    }

    /// `SYNC_IOC_FILE_INFO`: status plus per-fence driver/timeline names.
    /// A signaled sync_file that carries an error reports it as its status
    /// (the per-fence entries are the kernel's).
    pub fn info(&self) -> Result<SyncFileInfo> {
        let (file, fences) = sys::sync_file::file_info(self.fd())
            .map_err(ioctl_err("SYNC_IOC_FILE_INFO", self.fd.as_raw_fd()))?;
        let mut info = SyncFileInfo::from_raw(&file, &fences);
        info.status = self.status_from(info.status).to_kernel();
        Ok(info)
    }

    /// `SYNC_IOC_MERGE`: a new sync_file signaled when both are. Errors
    /// survive the merge: an input that had already failed (which the
    /// kernel's merge drops) is carried, the first error winning (inputs'
    /// carried errors, then `self`'s, then `other`'s kernel error); inputs
    /// that fail later fail the kernel's merged fence itself.
    pub fn merge(&self, other: &SyncFile, name: &str) -> Result<SyncFile> {
        let fd = sys::sync_file::merge(self.fd(), other.fd(), name)
            .map_err(ioctl_err("SYNC_IOC_MERGE", self.fd.as_raw_fd()))?;
        // Read the inputs after the merge: an error set before it was
        // dropped by the kernel and shows here; one set after it is kept by
        // the kernel's fence array.
        let kernel_error = |f: &SyncFile| -> Result<Option<FenceError>> {
            Ok(match f.status()? {
                FenceStatus::Error(e) => Some(e),
                _ => None,
            })
        };
        let carried = self
            .carried
            .or(other.carried)
            .or(kernel_error(self)?)
            .or(kernel_error(other)?);
        Ok(Self { fd, carried })
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
