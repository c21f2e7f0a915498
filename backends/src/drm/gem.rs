//! GEM handles: one refcounted handle table per DRM fd, and PRIME
//! (handle <-> dma-buf fd).
//!
//! The kernel keeps one handle per (file, buffer object): a PRIME import
//! of a dma-buf whose object already has a handle on this fd returns *that*
//! handle (`drm_gem_prime_fd_to_handle` looks it up), and a dumb buffer
//! exported and imported back on its own fd comes back as its own handle.
//! `GEM_CLOSE` drops the handle for every holder, and the kernel reuses the
//! number for the next object. So each handle number gets one refcount in
//! the device's [`GemTable`] (as Mesa's per-fd bo table does): imports,
//! dumb buffers and framebuffers each hold a [`GemHandle`] reference, and
//! only the last one dropped closes the handle.
//!
//! Locking: the table's mutex is held across every ioctl that creates,
//! looks up or closes a handle on the fd (PRIME import, dumb create,
//! `GEM_CLOSE`), so an import can never be handed a number that a
//! concurrent close is about to free. It is a leaf lock; nothing else is
//! taken under it. Handles made by other code on the same fd (a GBM device,
//! a Vulkan driver with its own fd is unaffected) must not be closed behind
//! the table's back.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use super::DrmDevice;
use crate::dmabuf::DmaBuf;
use crate::error::{ioctl_err, Error, Result};
use crate::sys;

/// The handle table of one DRM fd: handle number -> number of owners.
#[derive(Debug, Default)]
pub struct GemTable {
    refs: Mutex<HashMap<u32, u32>>,
}

impl GemTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, u32>> {
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many distinct handles the table holds open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table holds no handle.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How many owners handle `handle` has (0: not open through the table).
    pub fn owners(&self, handle: u32) -> u32 {
        self.lock().get(&handle).copied().unwrap_or(0)
    }

    /// Counts one more owner of `handle`.
    fn acquire(&self, handle: u32) {
        *self.lock().entry(handle).or_insert(0) += 1;
    }

    /// Runs `make` (an ioctl that returns a handle on `fd`) under the table
    /// lock and counts one more owner of what it returned.
    fn acquire_with(&self, make: impl FnOnce() -> Result<u32>) -> Result<u32> {
        let mut refs = self.lock();
        let handle = make()?;
        *refs.entry(handle).or_insert(0) += 1;
        Ok(handle)
    }

    /// Drops one owner of `handle`; the last one closes it (under the lock).
    fn release(&self, fd: BorrowedFd<'_>, handle: u32, driver: &str) {
        let mut refs = self.lock();
        let Some(n) = refs.get_mut(&handle) else {
            log::error!("GEM handle {handle} on {driver} released more often than acquired");
            return;
        };
        *n -= 1;
        if *n == 0 {
            refs.remove(&handle);
            if let Err(e) = sys::drm::gem_close(fd, handle) {
                log::warn!("GEM_CLOSE of handle {handle} on {driver} failed: {e}");
            }
        }
    }
}

/// One reference to a GEM handle of a device's table; the last reference
/// dropped closes the handle (`DRM_IOCTL_GEM_CLOSE`). `clone` adds a
/// reference to the same handle.
#[derive(Debug)]
pub struct GemHandle {
    dev: Arc<DrmDevice>,
    handle: u32,
}

impl GemHandle {
    /// Adopts `handle`, which the caller got from an ioctl on `dev`'s fd that
    /// creates or looks up a handle, and counts it as one owner. Prefer the
    /// constructors that make the handle under the table's lock
    /// ([`DrmDevice::import_dmabuf`], [`DumbBuffer::create`](super::DumbBuffer::create)):
    /// a handle made outside it may have raced a concurrent close.
    pub fn from_raw(dev: Arc<DrmDevice>, handle: u32) -> Self {
        dev.gem_table().acquire(handle);
        Self { dev, handle }
    }

    /// Runs `make` under `dev`'s table lock and owns what it returned.
    pub(crate) fn make(dev: &Arc<DrmDevice>, make: impl FnOnce() -> Result<u32>) -> Result<Self> {
        let handle = dev.gem_table().acquire_with(make)?;
        Ok(Self {
            dev: Arc::clone(dev),
            handle,
        })
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

impl Clone for GemHandle {
    fn clone(&self) -> Self {
        Self::from_raw(Arc::clone(&self.dev), self.handle)
    }
}

impl Drop for GemHandle {
    fn drop(&mut self) {
        self.dev
            .gem_table()
            .release(self.dev.as_fd(), self.handle, self.dev.driver());
    }
}

impl DrmDevice {
    /// `DRM_IOCTL_PRIME_FD_TO_HANDLE`: imports a dma-buf (possibly from
    /// another device: the cross-device case) as a GEM handle on `self`.
    /// Importing the same buffer again, or a buffer of this very fd (a dumb
    /// buffer exported and imported back), shares the one handle the kernel
    /// gives: the table counts the owners. Devices that refuse foreign
    /// buffers (virtio-gpu) give an error.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use bufsync_backends::drm::{DrmDevice, DumbBuffer};
    /// # fn main() -> bufsync_backends::Result<()> {
    /// let dev = Arc::new(DrmDevice::find("vkms")?);
    /// let dumb = DumbBuffer::create(&dev, 64, 64, 32)?;
    /// let buf = dumb.export(bufsync_backends::dmabuf::fourcc(b"XR24"))?;
    /// let again = dev.import_dmabuf(&buf)?; // its own buffer, back on its own fd
    /// assert_eq!(again.raw(), dumb.handle().raw());
    /// assert_eq!(dev.gem_table().owners(again.raw()), 2);
    /// drop(dumb); // the handle stays open: `again` still owns it
    /// # Ok(()) }
    /// ```
    pub fn import_dmabuf(self: &Arc<Self>, buf: &DmaBuf) -> Result<GemHandle> {
        GemHandle::make(self, || {
            sys::drm::prime_fd_to_handle(self.as_fd(), buf.fd()).map_err(ioctl_err(
                "DRM_IOCTL_PRIME_FD_TO_HANDLE",
                std::os::fd::AsRawFd::as_raw_fd(&buf.fd()),
            ))
        })
    }
}
