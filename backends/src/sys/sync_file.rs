//! `include/uapi/linux/sync_file.h`: merge, info and deadline.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::ioctl::opcode;

/// `struct sync_merge_data`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sync_merge_data {
    /// Name of the new fence.
    pub name: [u8; 32],
    /// The second sync_file.
    pub fd2: i32,
    /// Returned: the merged sync_file.
    pub fence: i32,
    /// Must be zero.
    pub flags: u32,
    /// Must be zero.
    pub pad: u32,
}

/// `struct sync_fence_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sync_fence_info {
    /// Timeline name.
    pub obj_name: [u8; 32],
    /// Driver name.
    pub driver_name: [u8; 32],
    /// 1 signaled, 0 pending, negative errno on error.
    pub status: i32,
    /// Fence flags.
    pub flags: u32,
    /// Signal timestamp (CLOCK_MONOTONIC ns), 0 while pending.
    pub timestamp_ns: u64,
}

/// `struct sync_file_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sync_file_info {
    /// The sync_file's name.
    pub name: [u8; 32],
    /// Combined status.
    pub status: i32,
    /// Must be zero.
    pub flags: u32,
    /// In: capacity of the array (0 asks for the count); out: fence count.
    pub num_fences: u32,
    /// Must be zero.
    pub pad: u32,
    /// User pointer to `num_fences` `sync_fence_info`s.
    pub sync_fence_info: u64,
}

/// `struct sync_set_deadline`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sync_set_deadline {
    /// Absolute CLOCK_MONOTONIC deadline in ns.
    pub deadline_ns: u64,
    /// Must be zero.
    pub pad: u64,
}

const _: () = assert!(std::mem::size_of::<sync_merge_data>() == 48);
const _: () = assert!(std::mem::size_of::<sync_fence_info>() == 80);
const _: () = assert!(std::mem::size_of::<sync_file_info>() == 56);
const _: () = assert!(std::mem::size_of::<sync_set_deadline>() == 16);

/// `SYNC_IOC_MERGE` (0xc0303e03).
pub const IOC_MERGE: rustix::ioctl::Opcode = opcode::read_write::<sync_merge_data>(b'>', 3);
/// `SYNC_IOC_FILE_INFO` (0xc0383e04).
pub const IOC_FILE_INFO: rustix::ioctl::Opcode = opcode::read_write::<sync_file_info>(b'>', 4);
/// `SYNC_IOC_SET_DEADLINE` (0x40103e05).
pub const IOC_SET_DEADLINE: rustix::ioctl::Opcode = opcode::write::<sync_set_deadline>(b'>', 5);

/// `SYNC_IOC_MERGE`: a new sync_file signaled when both are.
pub fn merge(a: BorrowedFd<'_>, b: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    let mut arg = sync_merge_data {
        name: super::c_name(name),
        fd2: b.as_raw_fd(),
        fence: -1,
        flags: 0,
        pad: 0,
    };
    // SAFETY: `sync_merge_data` matches the uapi struct of this opcode.
    unsafe { super::update::<IOC_MERGE, _>(a, &mut arg) }?;
    // SAFETY: on success the kernel installed a new fd that we now own.
    unsafe { super::owned(arg.fence) }
}

/// `SYNC_IOC_FILE_INFO` with `num_fences = 0`: the summary and fence count.
/// Also the cheapest probe for "is this a sync_file".
pub fn file_info_count(sync: BorrowedFd<'_>) -> io::Result<sync_file_info> {
    let mut arg = sync_file_info::default();
    // SAFETY: `sync_file_info` matches the uapi struct; no array pointer.
    unsafe { super::update::<IOC_FILE_INFO, _>(sync, &mut arg) }?;
    Ok(arg)
}

/// `SYNC_IOC_FILE_INFO` with the per-fence array; returns the summary
/// (name, status) and one entry per fence.
pub fn file_info(sync: BorrowedFd<'_>) -> io::Result<(sync_file_info, Vec<sync_fence_info>)> {
    loop {
        let count = file_info_count(sync)?;
        let mut fences = vec![sync_fence_info::default(); count.num_fences as usize];
        let mut arg = sync_file_info {
            num_fences: count.num_fences,
            sync_fence_info: fences.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: `sync_fence_info` points at `num_fences` writable entries
        // that outlive the call.
        unsafe { super::update::<IOC_FILE_INFO, _>(sync, &mut arg) }?;
        // A sync_file's fence set is immutable, but be defensive.
        if arg.num_fences as usize == fences.len() {
            return Ok((arg, fences));
        }
    }
}

/// The name of a sync_file / fence entry as a `String`.
pub fn name_of(raw: &[u8]) -> String {
    super::from_c_name(raw)
}

/// `SYNC_IOC_SET_DEADLINE`: a hint that the fence is wanted by `deadline_ns`
/// (CLOCK_MONOTONIC). Kernels before 6.5 answer ENOTTY.
pub fn set_deadline(sync: BorrowedFd<'_>, deadline_ns: u64) -> io::Result<()> {
    let arg = sync_set_deadline {
        deadline_ns,
        pad: 0,
    };
    // SAFETY: `sync_set_deadline` matches the uapi struct of this opcode.
    unsafe { super::set::<IOC_SET_DEADLINE, _>(sync, arg) }
}

/// Polls a sync_file once without blocking: true when poll reports it
/// ready (every fence in it signaled, with or without error). A failed poll
/// reads as not signaled.
pub fn signaled_now(sync: BorrowedFd<'_>) -> bool {
    let ready = super::poll::poll_one(
        sync,
        rustix::event::PollFlags::IN,
        Some(std::time::Duration::ZERO),
    );
    matches!(ready, Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_the_uapi_header() {
        assert_eq!(IOC_MERGE as u64, 0xc030_3e03);
        assert_eq!(IOC_FILE_INFO as u64, 0xc038_3e04);
        assert_eq!(IOC_SET_DEADLINE as u64, 0x4010_3e05);
    }
}
