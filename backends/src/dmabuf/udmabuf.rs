//! dma-bufs over memfd pages through `/dev/udmabuf`.
//!
//! Locking: none; each call opens what it needs.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{MemfdFlags, SealFlags};

use super::DmaBuf;
use crate::error::{Error, Result};
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

    /// A dma-buf over `size` bytes at `offset` of `memfd` (which must be
    /// sealed against shrinking; both page aligned; EINVAL otherwise).
    pub fn from_memfd(memfd: BorrowedFd<'_>, offset: u64, size: u64) -> Result<DmaBuf> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(UDMABUF_PATH)
            .map_err(|source| Error::Open {
                path: UDMABUF_PATH.into(),
                source,
            })?;
        let fd = sys::udmabuf::create(dev.as_fd(), memfd, offset, size)
            .map_err(|e| Error::io("UDMABUF_CREATE", e))?;
        DmaBuf::from_fd(fd)
    }
}
