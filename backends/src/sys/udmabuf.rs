//! `include/uapi/linux/udmabuf.h`: dma-bufs over memfd pages.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::ioctl::{opcode, Ioctl, IoctlOutput, Opcode};

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

/// `UDMABUF_CREATE`, an `_IOW` ioctl whose return value is the new fd
/// (rustix's `Setter` drops the return value, so this one has its own
/// `Ioctl`).
struct Create<'a>(&'a mut udmabuf_create);

// SAFETY: `as_ptr` points at a live, exclusively borrowed `udmabuf_create`,
// the struct the kernel reads for `CREATE`; the output is the plain integer
// the syscall returned (the fd, owned by the caller from then on).
unsafe impl Ioctl for Create<'_> {
    type Output = i32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        CREATE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (self.0 as *mut udmabuf_create).cast()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _ptr: *mut std::ffi::c_void,
    ) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

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
    let fd = unsafe { rustix::ioctl::ioctl(dev, Create(&mut arg)) }.map_err(io::Error::from)?;
    // SAFETY: the ioctl's return value is a new fd that we now own.
    unsafe { super::owned(fd) }
}
