//! The kernel side of implicit sync: the fences in the dma-buf's own
//! `dma_resv`, read out and written in as sync_files (Linux 6.0+).
//!
//! Support is probed at run time as Mesa does: ENOTTY means the kernel
//! lacks the ioctls and gives [`Error::Unsupported`]. The fallback then is
//! polling the dma-buf fd itself (POLLIN: writers done, POLLOUT: all done),
//! which is what [`DmaBuf::wait_idle`] does; a fence cannot be pushed in,
//! so the consumer must be given it explicitly (e.g. IN_FENCE_FD).
//!
//! Locking: none in user space; the kernel locks the `dma_resv`.

use std::os::fd::AsRawFd;

use super::{Access, DmaBuf};
use crate::error::{ioctl_err, Result};
use crate::sync_file::SyncFile;
use crate::sys;

impl DmaBuf {
    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: a snapshot of the fences `access`
    /// must wait for (reading: the writers; writing: everyone). Signaled at
    /// once when there are none.
    pub fn export_sync_file(&self, access: Access) -> Result<SyncFile> {
        let fd = sys::dma_buf::export_sync_file(self.fd(), access.sync_file_flag()).map_err(
            ioctl_err("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", self.fd().as_raw_fd()),
        )?;
        Ok(SyncFile::from_fd_unchecked(fd))
    }

    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: adds `sync`'s fence to the buffer
    /// as a WRITE fence (`Access::Write`) or READ fence. Does not consume it.
    pub fn import_sync_file(&self, access: Access, sync: &SyncFile) -> Result<()> {
        sys::dma_buf::import_sync_file(self.fd(), access.sync_file_flag(), sync.fd()).map_err(
            ioctl_err("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", self.fd().as_raw_fd()),
        )
    }

    /// Whether this kernel has EXPORT_SYNC_FILE (probed on this buffer).
    pub fn supports_sync_file_export(&self) -> bool {
        !matches!(
            self.export_sync_file(Access::Read),
            Err(crate::Error::Unsupported { .. })
        )
    }
}
