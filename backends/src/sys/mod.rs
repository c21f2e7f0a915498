//! Raw ioctl layer: `-sys` style structs checked against the kernel uapi
//! headers, and thin safe wrappers that return `io::Result`.
//!
//! Every `unsafe` block of the crate that issues an ioctl lives here. The
//! wrappers take `BorrowedFd`s and hand back `OwnedFd`s for new descriptors
//! (all created close-on-exec). Nothing here keeps state, so there are no
//! locks.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

pub mod dma_buf;
pub mod dma_heap;
pub mod drm;
pub mod poll;
pub mod sw_sync;
pub mod sync_file;
pub mod udmabuf;
pub mod vgem;

/// One ioctl call whose argument is a `T` the kernel reads and/or writes,
/// and whose integer return value is kept (some ioctls return an fd).
struct RawIoctl<'a, T> {
    opcode: Opcode,
    arg: &'a mut T,
}

// SAFETY: `as_ptr` points at a live, exclusively borrowed `T`; callers of
// `call` promise that `T` is the exact struct the kernel expects for
// `opcode` (checked against the uapi headers in each module, with size
// asserts), and the output is the plain integer the syscall returned.
unsafe impl<T> Ioctl for RawIoctl<'_, T> {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (self.arg as *mut T).cast()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _ptr: *mut std::ffi::c_void,
    ) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

/// Issues ioctl `opcode` on `fd` with `arg`, returning the syscall's value.
///
/// # Safety
/// `T` must be the argument type the kernel expects for `opcode`, and every
/// pointer stored inside `arg` must be valid for what the ioctl does with it.
unsafe fn call<T>(fd: BorrowedFd<'_>, opcode: Opcode, arg: &mut T) -> io::Result<i32> {
    // SAFETY: forwarded from this function's contract.
    let r = unsafe { rustix::ioctl::ioctl(fd.as_fd(), RawIoctl { opcode, arg }) };
    r.map_err(io::Error::from)
}

/// Takes ownership of a descriptor number the kernel just returned.
///
/// # Safety
/// `raw` must be a fresh descriptor returned by a successful ioctl that the
/// caller owns and that nothing else will close.
unsafe fn owned(raw: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if raw < 0 {
        return Err(io::Error::from_raw_os_error(libc_ebadf()));
    }
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

fn libc_ebadf() -> i32 {
    rustix::io::Errno::BADF.raw_os_error()
}

/// Copies `name` into a fixed, NUL-terminated C char array (truncating).
fn c_name<const N: usize>(name: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = name.len().min(N - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// Reads a NUL-terminated C char array as a `String` (lossy).
fn from_c_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}
