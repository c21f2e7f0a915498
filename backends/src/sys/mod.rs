//! Raw ioctl layer: `-sys` style structs checked against the kernel uapi
//! headers, and thin safe wrappers that return `io::Result`.
//!
//! Every `unsafe` block of the crate that issues an ioctl lives here, through
//! rustix's ioctl patterns (`Updater` for `_IOWR`, `Setter` for `_IOW`; one
//! ioctl that returns an fd, `UDMABUF_CREATE`, has its own `Ioctl`). The
//! wrappers take `BorrowedFd`s and hand back `OwnedFd`s for new descriptors
//! (all created close-on-exec). Nothing here keeps state, so there are no
//! locks.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::ioctl::{Opcode, Setter, Updater};

pub mod dma_buf;
pub mod dma_heap;
pub mod drm;
pub(crate) mod mmap;
pub mod poll;
pub mod sw_sync;
pub mod sync_file;
pub mod udmabuf;
pub mod vgem;

/// An `_IOWR` ioctl: the kernel reads `arg` and writes its results back
/// into it (rustix's `Updater` pattern).
///
/// # Safety
/// `T` must be the argument type the kernel expects for `OPCODE`, and every
/// pointer stored inside `arg` must be valid for what the ioctl does with it.
unsafe fn update<const OPCODE: Opcode, T>(fd: BorrowedFd<'_>, arg: &mut T) -> io::Result<()> {
    // SAFETY: forwarded from this function's contract.
    unsafe { rustix::ioctl::ioctl(fd, Updater::<OPCODE, T>::new(arg)) }.map_err(io::Error::from)
}

/// An `_IOW` ioctl: the kernel only reads `arg` (rustix's `Setter`).
///
/// # Safety
/// As for [`update`].
unsafe fn set<const OPCODE: Opcode, T>(fd: BorrowedFd<'_>, arg: T) -> io::Result<()> {
    // SAFETY: forwarded from this function's contract.
    unsafe { rustix::ioctl::ioctl(fd, Setter::<OPCODE, T>::new(arg)) }.map_err(io::Error::from)
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
