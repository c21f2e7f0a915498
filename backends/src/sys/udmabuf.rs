//! `include/uapi/linux/udmabuf.h`: dma-bufs over memfd pages.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::ioctl::opcode;

/// `UDMABUF_FLAGS_CLOEXEC`.
pub const FLAGS_CLOEXEC: u32 = 1;

/// `struct udmabuf_create`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct udmabuf_create {
    /// A sealed (F_SEAL_SHRINK) memfd.
    pub memfd: u32,
    /// `UDMABUF_FLAGS_*`.
    pub flags: u32,
    /// Page-aligned offset into the memfd.
    pub offset: u64,
    /// Page-aligned size.
    pub size: u64,
}

const _: () = assert!(std::mem::size_of::<udmabuf_create>() == 24);

/// `UDMABUF_CREATE`.
pub const CREATE: rustix::ioctl::Opcode = opcode::write::<udmabuf_create>(b'u', 0x42);

/// `UDMABUF_CREATE` on `/dev/udmabuf`: the ioctl returns the new dma-buf fd.
pub fn create(
    dev: BorrowedFd<'_>,
    memfd: BorrowedFd<'_>,
    offset: u64,
    size: u64,
) -> io::Result<OwnedFd> {
    let mut arg = udmabuf_create {
        memfd: memfd.as_raw_fd() as u32,
        flags: FLAGS_CLOEXEC,
        offset,
        size,
    };
    // SAFETY: the struct matches the uapi header for this opcode.
    let fd = unsafe { super::call(dev, CREATE, &mut arg) }?;
    // SAFETY: the ioctl's return value is a new fd that we now own.
    unsafe { super::owned(fd) }
}
