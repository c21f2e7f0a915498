//! Checked byte copies in and out of a shared mapping (`memmap2::MmapRaw`):
//! the one place where a dma-buf mapping ([`crate::dmabuf::DmaBufMap`]) and
//! a dumb buffer's mapping copy bytes. No lock; `what` names the mapping in
//! the range error.

use memmap2::MmapRaw;

use crate::error::{Error, Result};

/// Checks that `offset..offset + len` lies inside `map`.
pub(crate) fn range(map: &MmapRaw, offset: usize, len: usize, what: &str) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= map.len() => Ok(()),
        _ => Err(Error::InvalidArgument {
            what: format!("range {offset}+{len} outside a {} byte {what}", map.len()),
        }),
    }
}

/// Copies `out.len()` bytes at `offset` of `map` into `out`; an
/// `InvalidArgument` naming `what` when the range is outside it.
pub(crate) fn read_at(map: &MmapRaw, offset: usize, out: &mut [u8], what: &str) -> Result<()> {
    range(map, offset, out.len(), what)?;
    // SAFETY: the range lies inside the live mapping (checked above). The
    // mapping is shared memory: another writer can only race on the bytes,
    // never on this process's memory safety; they are copied out as plain
    // bytes and no reference into the mapping escapes.
    unsafe {
        std::ptr::copy_nonoverlapping(map.as_ptr().add(offset), out.as_mut_ptr(), out.len());
    }
    Ok(())
}

/// Copies `data` into `map` at `offset` (a writable mapping: the caller's
/// check); an `InvalidArgument` naming `what` when the range is outside it.
pub(crate) fn write_at(map: &mut MmapRaw, offset: usize, data: &[u8], what: &str) -> Result<()> {
    range(map, offset, data.len(), what)?;
    // SAFETY: as in `read_at`, into a writable shared mapping the caller
    // holds mutably.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), map.as_mut_ptr().add(offset), data.len());
    }
    Ok(())
}
