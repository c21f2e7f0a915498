//! vgem buffers with user-controlled fences.
//!
//! Locking: none; the kernel serializes.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::dmabuf::fourcc;
use crate::drm::{DrmDevice, DumbBuffer};
use crate::error::{Error, Result};
use crate::sys;

/// A vgem buffer (a dumb buffer on the vgem device).
#[derive(Debug)]
pub struct VgemBuffer {
    dumb: DumbBuffer,
}

/// A pending vgem fence in a buffer's reservation.
#[derive(Debug)]
pub struct VgemFence {
    dev: Arc<DrmDevice>,
    id: u32,
}

impl VgemBuffer {
    /// Opens the vgem device (by driver name).
    pub fn device() -> Result<Arc<DrmDevice>> {
        DrmDevice::find("vgem").map(Arc::new)
    }

    /// A `width` x `height` 32-bpp buffer on `vgem`.
    pub fn create(vgem: &Arc<DrmDevice>, width: u32, height: u32) -> Result<Self> {
        Ok(Self {
            dumb: DumbBuffer::create(vgem, width, height, 32)?,
        })
    }

    /// The underlying dumb buffer.
    pub fn dumb(&self) -> &DumbBuffer {
        &self.dumb
    }

    /// Exports it through PRIME as a read-write XRGB8888 dma-buf.
    pub fn export(&self) -> Result<crate::dmabuf::DmaBuf> {
        self.dumb.export(fourcc(b"XR24"))
    }

    /// `DRM_IOCTL_VGEM_FENCE_ATTACH`: a pending fence in the buffer's
    /// reservation, as its writer (`write`) or a reader.
    pub fn attach_fence(&self, write: bool) -> Result<VgemFence> {
        let dev = self.dumb.handle().device();
        let flags = if write { sys::vgem::FENCE_WRITE } else { 0 };
        let id = sys::vgem::fence_attach(dev.as_fd(), self.dumb.handle().raw(), flags)
            .map_err(|e| Error::io("DRM_IOCTL_VGEM_FENCE_ATTACH", e))?;
        Ok(VgemFence {
            dev: Arc::clone(dev),
            id,
        })
    }
}

impl VgemFence {
    /// The fence id vgem gave.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `DRM_IOCTL_VGEM_FENCE_SIGNAL` (ETIMEDOUT if vgem already signaled it
    /// itself after 10 s; ENOENT for an unknown id).
    pub fn signal(&self) -> Result<()> {
        sys::vgem::fence_signal(self.dev.as_fd(), self.id)
            .map_err(|e| Error::io("DRM_IOCTL_VGEM_FENCE_SIGNAL", e))
    }
}
