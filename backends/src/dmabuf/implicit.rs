//! The implicit-sync bridge between a dma-buf's kernel `dma_resv` and its
//! runtime [`Reservation`](bufsync::resv::Reservation).
//!
//! - Pull: `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` gives a sync_file snapshot of
//!   the kernel fences an access must wait for; it enters the reservation
//!   as a [`SyncFileFence`] (readers' snapshot = the kernel's writers, added
//!   with `Usage::Write`; writers' snapshot = everyone, `Usage::Read`).
//! - Push: a runtime fence that has a sync_file form is added to the kernel
//!   reservation with `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (WRITE or READ), so
//!   importers that rely on implicit sync (KMS without IN_FENCE_FD, other
//!   drivers) wait for it.
//!
//! Support is probed at run time as Mesa does: ENOTTY means the kernel
//! (before 5.20/6.0) lacks the ioctls, reported as [`Error::Unsupported`].
//! Fallback, documented for callers: without EXPORT, wait for the kernel
//! fences by polling the dma-buf itself ([`DmaBuf::wait_idle`]: POLLIN =
//! writers done, POLLOUT = all done) before the access; without IMPORT (or
//! for a pending software fence, [`Error::NoSyncFile`]), wait for the
//! runtime fence in software before handing the buffer to an implicit-sync
//! consumer, or pass the fence explicitly (IN_FENCE_FD).
//!
//! Locking: `pull_kernel_fences` and `push_reservation` take the runtime
//! reservation's ww lock without a ticket (`lock_alone`) briefly; the
//! `_locked` variants expect the caller to hold it (a `ResvGuard`). The
//! kernel locks its own `dma_resv`.

use std::os::fd::AsRawFd;

use bufsync::fence::Fence;
use bufsync::resv::{ResvGuard, Usage};

use super::{Access, DmaBuf};
use crate::error::{ioctl_err, Error, Result};
use crate::sync_file::{SyncFile, SyncFileFence};
use crate::sys;
use crate::wait_path::{decide, to_sync_file, FenceForm, Route, Waiter};

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
            Err(Error::Unsupported { .. })
        )
    }

    /// Whether this buffer takes IMPORT_SYNC_FILE (the input of
    /// [`Waiter::DmaBuf`]): probed by importing the buffer's own
    /// readers' snapshot back as a reader fence, which adds nothing to
    /// wait for. `Err` with the reason when it does not (a kernel before
    /// 6.0: [`Error::Unsupported`]; an exporter that refuses).
    pub fn probe_sync_file_import(&self) -> Result<()> {
        let snapshot = self.export_sync_file(Access::Read)?;
        self.import_sync_file(Access::Read, &snapshot)
    }

    /// Pull: the kernel fences `access` must wait for, as one runtime fence
    /// (`None` when there are none pending), added to `guard`'s reservation
    /// (which must be this buffer's). Lock: the caller holds the ww lock.
    pub fn pull_kernel_fences_locked(
        &self,
        guard: &mut ResvGuard<'_, '_>,
        access: Access,
    ) -> Result<Option<Fence>> {
        let file = self.export_sync_file(access)?;
        if file.is_signaled()? {
            return Ok(None);
        }
        let fence = SyncFileFence::fence(file)?;
        let usage = match access {
            Access::Read => Usage::Write,
            Access::Write => Usage::Read,
        };
        guard.reserve_fences(1)?;
        guard.add_fence(&fence, usage);
        Ok(Some(fence))
    }

    /// [`pull_kernel_fences_locked`](Self::pull_kernel_fences_locked) under
    /// the reservation's lock taken without a ticket.
    pub fn pull_kernel_fences(&self, access: Access) -> Result<Option<Fence>> {
        let mut guard = self.reservation().lock_alone();
        self.pull_kernel_fences_locked(&mut guard, access)
    }

    /// Push: adds `fence` to the kernel's reservation as a writer
    /// (`Access::Write`) or reader, where [`decide`] says the buffer's
    /// implicit sync can wait for it (it has a sync_file form; a kernel
    /// without the ioctl answers [`Error::Unsupported`]). `Ok(false)` when
    /// it had already signaled cleanly (nothing to add);
    /// [`Error::NoSyncFile`] for a pending fence without a sync_file form
    /// (see the module's fallback).
    pub fn push_fence(&self, fence: &Fence, access: Access) -> Result<bool> {
        if !fence.is_signaled() {
            let implicit = Waiter::DmaBuf {
                import_sync_file: true,
            };
            if decide(FenceForm::of(fence), &implicit).route != Route::ImportSyncFile {
                return Err(Error::NoSyncFile {
                    driver: fence.driver_name().to_owned(),
                });
            }
        }
        match to_sync_file(fence)? {
            Some(file) => self.import_sync_file(access, &file).map(|()| true),
            None => Ok(false),
        }
    }

    /// Pushes every unsignaled fence of the runtime reservation into the
    /// kernel's: `Usage::Kernel`/`Write` fences as writers, `Read` as
    /// readers (bookkeeping fences stay private). Fences without a
    /// sync_file form are skipped and returned for a software wait. Lock:
    /// none (reads a reservation snapshot).
    pub fn push_reservation(&self) -> Result<Vec<Fence>> {
        let mut software = Vec::new();
        for (fence, usage) in self.reservation().fences(Usage::Read).iter_with_usage() {
            if fence.is_signaled() {
                continue;
            }
            let access = if usage <= Usage::Write {
                Access::Write
            } else {
                Access::Read
            };
            match self.push_fence(fence, access) {
                Ok(_) => {}
                Err(Error::NoSyncFile { .. }) => software.push(fence.clone()),
                Err(e) => return Err(e),
            }
        }
        Ok(software)
    }
}
