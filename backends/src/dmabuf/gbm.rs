//! dma-bufs from GBM buffer objects (linear or scanout) on a DRM device.
//!
//! Locking: a `GbmAllocator` wraps a `gbm_device`, which is not
//! thread-safe: it is `Send` but not `Sync`; use one per thread or lock it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use gbm::{BufferObjectFlags, Format};

use super::{DmaBuf, Layout, Plane};
use crate::drm::DrmDevice;
use crate::error::{Error, Result};

/// A dup of the DRM device fd, owned by the gbm device.
#[derive(Debug)]
struct GbmFd(OwnedFd);

impl AsFd for GbmFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Allocates buffer objects through Mesa's GBM and exports them.
pub struct GbmAllocator {
    dev: gbm::Device<GbmFd>,
}

impl std::fmt::Debug for GbmAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbmAllocator")
            .field("backend", &self.dev.backend_name())
            .finish()
    }
}

impl GbmAllocator {
    /// A GBM device over (a dup of) `drm`'s fd.
    pub fn new(drm: &DrmDevice) -> Result<Self> {
        let fd = rustix::io::fcntl_dupfd_cloexec(drm, 0)
            .map_err(|e| Error::io("F_DUPFD_CLOEXEC", e.into()))?;
        let dev = gbm::Device::new(GbmFd(fd)).map_err(|e| Error::io("gbm_create_device", e))?;
        Ok(Self { dev })
    }

    /// GBM's backend name (e.g. `drm`).
    pub fn backend_name(&self) -> &str {
        self.dev.backend_name()
    }

    /// Allocates a `width` x `height` BO of `fourcc`, `LINEAR` and/or
    /// `SCANOUT`, and exports it with its layout. The exported fd is
    /// read-only in GBM (a writable mmap fails with EACCES).
    pub fn create(
        &self,
        width: u32,
        height: u32,
        fourcc: u32,
        linear: bool,
        scanout: bool,
    ) -> Result<DmaBuf> {
        let format = Format::try_from(fourcc).map_err(|_| Error::UnsupportedFormat {
            fourcc,
            modifier: 0,
        })?;
        let mut usage = BufferObjectFlags::RENDERING;
        if linear {
            usage |= BufferObjectFlags::LINEAR;
        }
        if scanout {
            usage |= BufferObjectFlags::SCANOUT;
        }
        if !self.dev.is_format_supported(format, usage) {
            return Err(Error::UnsupportedFormat {
                fourcc,
                modifier: 0,
            });
        }
        let bo = self
            .dev
            .create_buffer_object::<()>(width, height, format, usage)
            .map_err(|e| Error::io("gbm_bo_create", e))?;
        let fd = bo.fd().map_err(|e| Error::InvalidArgument {
            what: format!("gbm_bo_get_fd: {e}"),
        })?;
        let planes = (0..bo.plane_count() as i32)
            .map(|i| Plane {
                offset: bo.offset(i),
                stride: bo.stride_for_plane(i),
            })
            .collect();
        let layout = Layout {
            width,
            height,
            fourcc,
            modifier: u64::from(bo.modifier()),
            planes,
        };
        DmaBuf::from_fd(fd)?.with_layout(layout)
    }
}
