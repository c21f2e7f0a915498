//! Dumb buffers: CPU-renderable scanout buffers any KMS driver offers
//! (`DRM_IOCTL_MODE_CREATE_DUMB`), exported as dma-bufs through PRIME.
//!
//! Locking: none of its own; the buffer holds one reference of its GEM
//! handle in the device's table (created under the table's lock), so the
//! handle is closed (GEM_CLOSE, which is what `DRM_IOCTL_MODE_DESTROY_DUMB`
//! does in the kernel) when the last holder goes: the buffer, a PRIME
//! import of its own dma-buf on the same fd, or a framebuffer over it.

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
        let mut geometry = (0, 0);
        let gem = GemHandle::make(dev, || {
            let (handle, pitch, size) = sys::drm::dumb_create(dev.as_fd(), width, height, bpp)
                .map_err(|e| Error::io("DRM_IOCTL_MODE_CREATE_DUMB", e))?;
            geometry = (pitch, size);
            Ok(handle)
        })?;
        let (pitch, size) = geometry;
        Ok(Self {
            gem,
            width,
            height,
            bpp,
            pitch,
            size,
        })
    }

    /// The GEM handle (clone it to share it: the handle stays open until
    /// its last reference goes).
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

/// A CPU mapping of a dumb buffer through its device
/// (`DRM_IOCTL_MODE_MAP_DUMB` + mmap of the device fd): how the buffer's
/// own device driver would touch it, with no dma-buf fence waits and no
/// cache-maintenance ioctls (dumb buffers are CPU-coherent by contract).
/// Accesses are bounds-checked copies.
#[derive(Debug)]
pub struct DumbMap<'a> {
    map: memmap2::MmapRaw,
    _buffer: &'a DumbBuffer,
}

impl DumbBuffer {
    /// Maps the buffer read-write for CPU copies.
    pub fn map(&self) -> Result<DumbMap<'_>> {
        use std::os::fd::AsRawFd;
        let offset = self.map_offset()?;
        let len = usize::try_from(self.size).map_err(|_| Error::InvalidArgument {
            what: "dumb buffer larger than the address space".into(),
        })?;
        let map = memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_raw(self.gem.device().as_fd().as_raw_fd())
            .map_err(|e| Error::io("mmap(dumb buffer)", e))?;
        Ok(DumbMap { map, _buffer: self })
    }

    /// Copies the first `row_bytes` bytes of every row into `out`, resized
    /// to `row_bytes * height` (rows packed, the pitch padding left out):
    /// how a writeback capture is read. `out`'s allocation is reused.
    /// [`Error::InvalidArgument`] when `row_bytes` exceeds the pitch.
    pub fn read_packed(&self, row_bytes: usize, out: &mut Vec<u8>) -> Result<()> {
        let pitch = self.pitch as usize;
        if row_bytes > pitch {
            return Err(Error::InvalidArgument {
                what: format!("rows of {row_bytes} bytes in a dumb buffer of pitch {pitch}"),
            });
        }
        let map = self.map()?;
        out.resize(row_bytes * self.height as usize, 0);
        for (y, row) in out.chunks_exact_mut(row_bytes.max(1)).enumerate() {
            map.read_at(y * pitch, row)?;
        }
        Ok(())
    }
}

impl DumbMap<'_> {
    /// Copies `data` into the buffer at `offset`.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        crate::sys::mmap::write_at(&mut self.map, offset, data, "buffer")
    }

    /// Copies `out.len()` bytes from the buffer at `offset` into `out`.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        crate::sys::mmap::read_at(&self.map, offset, out, "buffer")
    }
}
