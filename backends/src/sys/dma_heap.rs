//! `include/uapi/linux/dma-heap.h`: allocation from `/dev/dma_heap/*`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::ioctl::opcode;

/// `struct dma_heap_allocation_data`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct dma_heap_allocation_data {
    /// Size in bytes.
    pub len: u64,
    /// Returned dma-buf fd.
    pub fd: u32,
    /// `O_CLOEXEC | O_RDWR` etc.
    pub fd_flags: u32,
    /// Must be zero.
    pub heap_flags: u64,
}

const _: () = assert!(std::mem::size_of::<dma_heap_allocation_data>() == 24);

/// `DMA_HEAP_IOCTL_ALLOC`.
pub const IOCTL_ALLOC: rustix::ioctl::Opcode =
    opcode::read_write::<dma_heap_allocation_data>(b'H', 0);

/// `DMA_HEAP_IOCTL_ALLOC`: a read-write, close-on-exec dma-buf of `len` bytes.
pub fn alloc(heap: BorrowedFd<'_>, len: u64) -> io::Result<OwnedFd> {
    let fd_flags = (rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC).bits();
    let mut arg = dma_heap_allocation_data {
        len,
        fd: 0,
        fd_flags,
        heap_flags: 0,
    };
    // SAFETY: the struct matches the uapi header for this opcode.
    unsafe { super::update::<IOCTL_ALLOC, _>(heap, &mut arg) }?;
    // SAFETY: on success the kernel installed a new fd that we now own.
    unsafe { super::owned(arg.fd as i32) }
}
