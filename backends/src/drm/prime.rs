//! GEM handles and PRIME (handle <-> dma-buf fd).
//!
//! Locking: none; a `GemHandle` is owned by one holder and closed on drop.
//! The kernel deduplicates PRIME imports: importing the same dma-buf twice
//! on one device yields the same handle, and the first `GemHandle` dropped
//! closes it. Keep one `GemHandle` per (device, buffer).

use std::os::fd::AsFd;
use std::sync::Arc;

use super::DrmDevice;
use crate::dmabuf::DmaBuf;
use crate::error::{Error, Result};
use crate::sys;

/// A GEM handle on a device, closed (`DRM_IOCTL_GEM_CLOSE`) on drop.
#[derive(Debug)]
pub struct GemHandle {
    dev: Arc<DrmDevice>,
    handle: u32,
}

impl GemHandle {
    /// Takes ownership of `handle` on `dev`.
    pub fn from_raw(dev: Arc<DrmDevice>, handle: u32) -> Self {
        Self { dev, handle }
    }

    /// The raw handle number.
    pub fn raw(&self) -> u32 {
        self.handle
    }

    /// The device the handle belongs to.
    pub fn device(&self) -> &Arc<DrmDevice> {
        &self.dev
    }

    /// `DRM_IOCTL_PRIME_HANDLE_TO_FD`: exports the object as a dma-buf,
    /// read-write (`DRM_RDWR`) when `writable`.
    pub fn export(&self, writable: bool) -> Result<DmaBuf> {
        let fd = sys::drm::prime_handle_to_fd(self.dev.as_fd(), self.handle, writable)
            .map_err(|e| Error::io("DRM_IOCTL_PRIME_HANDLE_TO_FD", e))?;
        DmaBuf::from_fd(fd)
    }
}

impl Drop for GemHandle {
    fn drop(&mut self) {
        if let Err(e) = sys::drm::gem_close(self.dev.as_fd(), self.handle) {
            log::debug!(
                "GEM_CLOSE of handle {} on {} failed: {e}",
                self.handle,
                self.dev.driver()
            );
        }
    }
}

impl DrmDevice {
    /// `DRM_IOCTL_PRIME_FD_TO_HANDLE`: imports a dma-buf (possibly from
    /// another device: the cross-device case) as a GEM handle on `self`.
    /// Devices that refuse foreign buffers (virtio-gpu) give an error.
    pub fn import_dmabuf(self: &Arc<Self>, buf: &DmaBuf) -> Result<GemHandle> {
        let handle = sys::drm::prime_fd_to_handle(self.as_fd(), buf.fd())
            .map_err(|e| Error::io("DRM_IOCTL_PRIME_FD_TO_HANDLE", e))?;
        Ok(GemHandle::from_raw(Arc::clone(self), handle))
    }
}
