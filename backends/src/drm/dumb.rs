//! Dumb buffers: CPU-renderable scanout buffers any KMS driver offers
//! (`DRM_IOCTL_MODE_CREATE_DUMB`), exported as dma-bufs through PRIME.
//!
//! Locking: none; owned by one holder, destroyed on drop (GEM_CLOSE, which
//! is what `DRM_IOCTL_MODE_DESTROY_DUMB` does in the kernel).

use std::os::fd::AsFd;
use std::sync::Arc;

use super::{DrmDevice, GemHandle};
use crate::dmabuf::{DmaBuf, Layout};
use crate::error::{Error, Result};
use crate::sys;

/// A dumb buffer and its geometry.
#[derive(Debug)]
pub struct DumbBuffer {
    gem: GemHandle,
    width: u32,
    height: u32,
    bpp: u32,
    pitch: u32,
    size: u64,
}

impl DumbBuffer {
    /// Creates a `width` x `height` buffer of `bpp` bits per pixel.
    pub fn create(dev: &Arc<DrmDevice>, width: u32, height: u32, bpp: u32) -> Result<Self> {
        if width == 0 || height == 0 || bpp == 0 || bpp % 8 != 0 {
            return Err(Error::InvalidArgument {
                what: format!("dumb buffer {width}x{height}@{bpp}bpp"),
            });
        }
        let (handle, pitch, size) = sys::drm::dumb_create(dev.as_fd(), width, height, bpp)
            .map_err(|e| Error::io("DRM_IOCTL_MODE_CREATE_DUMB", e))?;
        Ok(Self {
            gem: GemHandle::from_raw(Arc::clone(dev), handle),
            width,
            height,
            bpp,
            pitch,
            size,
        })
    }

    /// The GEM handle.
    pub fn handle(&self) -> &GemHandle {
        &self.gem
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bits per pixel.
    pub fn bpp(&self) -> u32 {
        self.bpp
    }

    /// Bytes per row.
    pub fn pitch(&self) -> u32 {
        self.pitch
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `DRM_IOCTL_MODE_MAP_DUMB`: the offset to mmap the device fd at.
    pub fn map_offset(&self) -> Result<u64> {
        sys::drm::dumb_map(self.gem.device().as_fd(), self.gem.raw())
            .map_err(|e| Error::io("DRM_IOCTL_MODE_MAP_DUMB", e))
    }

    /// Exports it as a read-write dma-buf carrying a single-plane linear
    /// layout of `fourcc` (which must be `bpp / 8` bytes per pixel; not
    /// checked beyond the plane fitting the buffer).
    pub fn export(&self, fourcc: u32) -> Result<DmaBuf> {
        let buf = self.gem.export(true)?;
        buf.with_layout(Layout::linear(self.width, self.height, fourcc, self.pitch))
    }
}
