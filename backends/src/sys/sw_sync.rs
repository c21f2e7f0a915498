//! `drivers/dma-buf/sw_sync.c` private uapi: debugfs software timelines.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::ioctl::opcode;

/// `struct sw_sync_create_fence_data`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sw_sync_create_fence_data {
    /// The timeline value at which the fence signals.
    pub value: u32,
    /// Fence name.
    pub name: [u8; 32],
    /// Returned sync_file fd.
    pub fence: i32,
}

const _: () = assert!(std::mem::size_of::<sw_sync_create_fence_data>() == 40);

/// `SW_SYNC_IOC_CREATE_FENCE`.
pub const IOC_CREATE_FENCE: rustix::ioctl::Opcode =
    opcode::read_write::<sw_sync_create_fence_data>(b'W', 0);
/// `SW_SYNC_IOC_INC`.
pub const IOC_INC: rustix::ioctl::Opcode = opcode::write::<u32>(b'W', 1);

/// `SW_SYNC_IOC_CREATE_FENCE`: a sync_file that signals at `value`.
pub fn create_fence(timeline: BorrowedFd<'_>, value: u32, name: &str) -> io::Result<OwnedFd> {
    let mut arg = sw_sync_create_fence_data {
        value,
        name: super::c_name(name),
        fence: -1,
    };
    // SAFETY: the struct matches the driver's uapi for this opcode.
    unsafe { super::update::<IOC_CREATE_FENCE, _>(timeline, &mut arg) }?;
    // SAFETY: on success the kernel installed a new fd that we now own.
    unsafe { super::owned(arg.fence) }
}

/// `SW_SYNC_IOC_INC`: advances the timeline by `by`.
pub fn inc(timeline: BorrowedFd<'_>, by: u32) -> io::Result<()> {
    // SAFETY: the driver reads one u32 from the pointer.
    unsafe { super::set::<IOC_INC, u32>(timeline, by) }
}
