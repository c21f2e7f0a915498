//! `include/uapi/linux/dma-buf.h`: CPU-access brackets and implicit-fence
//! export/import.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::ioctl::opcode;

/// `DMA_BUF_SYNC_READ`: the CPU will read through the mapping.
pub const SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`: the CPU will write through the mapping.
pub const SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_RW`.
pub const SYNC_RW: u64 = SYNC_READ | SYNC_WRITE;
/// `DMA_BUF_SYNC_START`: an access session begins.
pub const SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`: an access session ends.
pub const SYNC_END: u64 = 4;
/// `DMA_BUF_SYNC_VALID_FLAGS_MASK`.
pub const SYNC_VALID_FLAGS_MASK: u64 = SYNC_RW | SYNC_END;

/// `struct dma_buf_sync`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct dma_buf_sync {
    /// `DMA_BUF_SYNC_*` flags.
    pub flags: u64,
}

/// `struct dma_buf_export_sync_file` (also the layout of the import struct).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct dma_buf_sync_file {
    /// `DMA_BUF_SYNC_READ` and/or `DMA_BUF_SYNC_WRITE`.
    pub flags: u32,
    /// The sync_file fd (returned by export, given to import).
    pub fd: i32,
}

const _: () = assert!(std::mem::size_of::<dma_buf_sync>() == 8);
const _: () = assert!(std::mem::size_of::<dma_buf_sync_file>() == 8);

/// `DMA_BUF_IOCTL_SYNC` (0x40086200).
pub const IOCTL_SYNC: rustix::ioctl::Opcode = opcode::write::<dma_buf_sync>(b'b', 0);
/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` (0xc0086202).
pub const IOCTL_EXPORT_SYNC_FILE: rustix::ioctl::Opcode =
    opcode::read_write::<dma_buf_sync_file>(b'b', 2);
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (0x40086203).
pub const IOCTL_IMPORT_SYNC_FILE: rustix::ioctl::Opcode =
    opcode::write::<dma_buf_sync_file>(b'b', 3);

/// `DMA_BUF_IOCTL_SYNC` with raw `flags` (START/END | READ/WRITE).
pub fn sync(dmabuf: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    // SAFETY: `dma_buf_sync` matches the uapi struct of this opcode.
    unsafe { super::set::<IOCTL_SYNC, _>(dmabuf, dma_buf_sync { flags }) }
}

/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: a sync_file snapshot of the fences a
/// reader (`SYNC_READ`) or writer (`SYNC_WRITE`) must wait for.
pub fn export_sync_file(dmabuf: BorrowedFd<'_>, flags: u32) -> io::Result<OwnedFd> {
    let mut arg = dma_buf_sync_file { flags, fd: -1 };
    // SAFETY: `dma_buf_sync_file` matches `struct dma_buf_export_sync_file`.
    unsafe { super::update::<IOCTL_EXPORT_SYNC_FILE, _>(dmabuf, &mut arg) }?;
    // SAFETY: on success the kernel installed a new fd that we now own.
    unsafe { super::owned(arg.fd) }
}

/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: adds the sync_file's fence to the
/// dma-buf as a WRITE (`SYNC_WRITE`) or READ fence. Does not consume `sync`.
pub fn import_sync_file(
    dmabuf: BorrowedFd<'_>,
    flags: u32,
    sync: BorrowedFd<'_>,
) -> io::Result<()> {
    let arg = dma_buf_sync_file {
        flags,
        fd: sync.as_raw_fd(),
    };
    // SAFETY: `dma_buf_sync_file` matches `struct dma_buf_import_sync_file`.
    unsafe { super::set::<IOCTL_IMPORT_SYNC_FILE, _>(dmabuf, arg) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_the_uapi_header() {
        assert_eq!(IOCTL_SYNC as u64, 0x4008_6200);
        assert_eq!(IOCTL_EXPORT_SYNC_FILE as u64, 0xc008_6202);
        assert_eq!(IOCTL_IMPORT_SYNC_FILE as u64, 0x4008_6203);
    }
}
