//! A binary semaphore that carries a sync_file for a GPU-side wait: the
//! form an application's `vkQueueSubmit` can wait on for a fence of
//! another device (a flip's out-fence, a vgem job).
//!
//! Locking: none; owned by one holder. Vulkan's rules apply: import only
//! while no submission is pending on the semaphore.

use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;

use ash::vk;

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use crate::sync_file::SyncFile;

/// A binary semaphore made for temporary SYNC_FD imports, destroyed on drop.
pub struct SyncFileSemaphore {
    ctx: Arc<VulkanContext>,
    sem: vk::Semaphore,
}

impl std::fmt::Debug for SyncFileSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncFileSemaphore")
            .field("semaphore", &self.sem)
            .finish()
    }
}

impl SyncFileSemaphore {
    /// Creates one on `ctx` (needs SYNC_FD import:
    /// [`VulkanCaps::sync_file_in`](super::VulkanCaps::sync_file_in)).
    pub fn new(ctx: &Arc<VulkanContext>) -> Result<Self> {
        if !ctx.caps().sync_file_in() || ctx.fns.semaphore_fd.is_none() {
            return Err(VulkanError::Missing("SYNC_FD semaphore import"));
        }
        // SAFETY: valid device.
        let sem = unsafe {
            ctx.device()
                .create_semaphore(&vk::SemaphoreCreateInfo::default(), None)
        }
        .map_err(VulkanError::vk("vkCreateSemaphore"))?;
        Ok(Self {
            ctx: ctx.clone(),
            sem,
        })
    }

    /// The semaphore (wait on it once per import).
    pub fn handle(&self) -> vk::Semaphore {
        self.sem
    }

    /// Gives the semaphore a temporary payload: `sync`'s fence (a dup; the
    /// caller keeps its sync_file). The next wait on the semaphore waits for
    /// it on the GPU and consumes the payload.
    pub fn import(&self, sync: &SyncFile) -> Result<()> {
        let sfd = self
            .ctx
            .fns
            .semaphore_fd
            .as_ref()
            .ok_or(VulkanError::Missing("VK_KHR_external_semaphore_fd"))?;
        let dup: OwnedFd = sync
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| VulkanError::Os {
                call: "F_DUPFD_CLOEXEC",
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        let id = rustix::fs::fstat(&dup)
            .map(|s| (s.st_dev, s.st_ino))
            .map_err(VulkanError::os("fstat"))?;
        let raw = dup.into_raw_fd();
        let info = vk::ImportSemaphoreFdInfoKHR::default()
            .semaphore(self.sem)
            .flags(vk::SemaphoreImportFlags::TEMPORARY)
            .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD)
            .fd(raw);
        // SAFETY: our semaphore, no pending operation on it (the caller's
        // contract); on success the driver owns `raw`.
        match unsafe { sfd.import_semaphore_fd(&info) } {
            Ok(()) => Ok(()),
            Err(e) => {
                // SAFETY: only used for fstat; `raw` may be closed already.
                let still = rustix::fs::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) })
                    .is_ok_and(|s| (s.st_dev, s.st_ino) == id);
                if still {
                    // SAFETY: the driver left our dup open: still ours.
                    drop(unsafe { OwnedFd::from_raw_fd(raw) });
                }
                Err(VulkanError::vk("vkImportSemaphoreFdKHR")(e))
            }
        }
    }
}

impl Drop for SyncFileSemaphore {
    fn drop(&mut self) {
        // SAFETY: our semaphore; the owner keeps it alive while submissions
        // wait on it.
        unsafe { self.ctx.device().destroy_semaphore(self.sem, None) };
    }
}
