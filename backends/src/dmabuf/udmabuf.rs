//! dma-bufs over memfd pages through `/dev/udmabuf`.
//!
//! Locking: none; each call opens what it needs.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{MemfdFlags, SealFlags};

use super::DmaBuf;
use crate::error::{check_open, ioctl_err, Error, Result};
use crate::sys;

/// The udmabuf device node.
pub const UDMABUF_PATH: &str = "/dev/udmabuf";

/// The udmabuf source of dma-bufs.
#[derive(Debug)]
pub struct Udmabuf;

impl Udmabuf {
    /// Whether `/dev/udmabuf` exists.
    pub fn is_available() -> bool {
        std::path::Path::new(UDMABUF_PATH).exists()
    }

    /// A new dma-buf of `size` bytes (rounded up to pages) over a fresh,
    /// sealed memfd.
    pub fn create(size: u64) -> Result<DmaBuf> {
        let page = rustix::param::page_size() as u64;
        if size == 0 {
            return Err(Error::InvalidArgument {
                what: "udmabuf of 0 bytes".into(),
            });
        }
        let size = size.div_ceil(page) * page;
        let memfd = rustix::fs::memfd_create(
            "bufsync-udmabuf",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| Error::io("memfd_create", e.into()))?;
        rustix::fs::ftruncate(&memfd, size).map_err(|e| Error::io("ftruncate(memfd)", e.into()))?;
        rustix::fs::fcntl_add_seals(&memfd, SealFlags::SHRINK)
            .map_err(|e| Error::io("F_ADD_SEALS", e.into()))?;
        Self::from_memfd(memfd.as_fd(), 0, size)
    }

    /// A dma-buf over `size` bytes at `offset` of `memfd` (not consumed).
    /// A closed fd is [`Error::BadFd`]; anything but a memfd sealed
    /// against shrinking, or an offset or size that is not page aligned, is
    /// [`Error::InvalidArgument`] (the kernel's EINVAL).
    pub fn from_memfd(memfd: BorrowedFd<'_>, offset: u64, size: u64) -> Result<DmaBuf> {
        check_open(memfd)?;
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(UDMABUF_PATH)
            .map_err(|source| Error::Open {
                path: UDMABUF_PATH.into(),
                source,
            })?;
        let raw = memfd.as_raw_fd();
        let fd = sys::udmabuf::create(dev.as_fd(), memfd, offset, size).map_err(|e| {
            use rustix::io::Errno;
            let why = match e.raw_os_error() {
                // The fd is open (checked above): the kernel says EBADFD of
                // a file that is not shmem.
                Some(n) if n == Errno::BADFD.raw_os_error() => "not a memfd",
                Some(n) if n == Errno::INVAL.raw_os_error() => {
                    "not sealed against shrinking, or not page aligned"
                }
                _ => return ioctl_err("UDMABUF_CREATE", raw)(e),
            };
            Error::InvalidArgument {
                what: format!("udmabuf of fd {raw} at {offset}+{size}: {why}"),
            }
        })?;
        DmaBuf::from_fd(fd)
    }
}
