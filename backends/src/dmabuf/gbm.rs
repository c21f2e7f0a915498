//! dma-bufs from GBM buffer objects (linear or scanout) on a DRM device.
//!
//! The GBM device works on its own open file of the DRM node: GBM owns
//! the GEM handles of its buffer objects (it closes them when a BO is
//! destroyed), so they must not live in the handle table of the caller's
//! fd. The caller imports a BO's dma-buf on its own fd (PRIME: for a KMS
//! framebuffer, `Display::import_framebuffer`), which gives it a handle of
//! its own table.
//!
//! Locking: a `GbmAllocator` wraps a `gbm_device`, which is not
//! thread-safe: it is `Send` but not `Sync`; use one per thread or lock it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

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
    /// A GBM device on `drm`'s node, opened anew (its own DRM file: see
    /// the module docs).
    pub fn new(drm: &DrmDevice) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(drm.path())
            .map_err(|source| Error::Open {
                path: drm.path().to_path_buf(),
                source,
            })?;
        let dev =
            gbm::Device::new(GbmFd(file.into())).map_err(|e| Error::io("gbm_create_device", e))?;
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

    /// Allocates a `width` x `height` scanout BO of `fourcc` with a
    /// modifier GBM picks among `modifiers` (LINEAR usage when empty), and
    /// keeps it: the [`GbmBuffer`] owns the BO and a read-write dma-buf of
    /// it (exported with `DRM_RDWR` on GBM's own fd).
    pub fn create_buffer(
        &self,
        width: u32,
        height: u32,
        fourcc: u32,
        modifiers: &[u64],
    ) -> Result<GbmBuffer> {
        let format = Format::try_from(fourcc).map_err(|_| Error::UnsupportedFormat {
            fourcc,
            modifier: 0,
        })?;
        let usage = BufferObjectFlags::SCANOUT | BufferObjectFlags::RENDERING;
        let bo = if modifiers.is_empty() {
            let usage = usage | BufferObjectFlags::LINEAR;
            if !self.dev.is_format_supported(format, usage) {
                return Err(Error::UnsupportedFormat {
                    fourcc,
                    modifier: 0,
                });
            }
            self.dev
                .create_buffer_object::<()>(width, height, format, usage)
                .map_err(|e| Error::io("gbm_bo_create", e))?
        } else {
            let mods = modifiers.iter().map(|&m| gbm::Modifier::from(m));
            self.dev
                .create_buffer_object_with_modifiers2::<()>(width, height, format, mods, usage)
                .map_err(|e| Error::io("gbm_bo_create_with_modifiers2", e))?
        };
        // SAFETY: on the DRM backends GBM has (the only ones a DRM fd can
        // open), the handle union holds the GEM handle in `u32_`.
        let handle = unsafe { bo.handle().u32_ };
        let fd = crate::sys::drm::prime_handle_to_fd(self.dev.as_fd(), handle, true)
            .map_err(|e| Error::io("DRM_IOCTL_PRIME_HANDLE_TO_FD", e))?;
        let planes = (0..bo.plane_count() as i32)
            .map(|i| Plane {
                offset: bo.offset(i),
                stride: bo.stride_for_plane(i),
            })
            .collect();
        // A BO made with the LINEAR flag is linear even where GBM reports
        // no explicit modifier (DRM_FORMAT_MOD_INVALID, kms_swrast).
        let modifier = match u64::from(bo.modifier()) {
            super::MOD_INVALID if modifiers.is_empty() => super::MOD_LINEAR,
            m => m,
        };
        let layout = Layout {
            width,
            height,
            fourcc,
            modifier,
            planes,
        };
        let dmabuf = DmaBuf::from_fd(fd)?.with_layout(layout)?;
        Ok(GbmBuffer { bo, handle, dmabuf })
    }
}

/// A GBM buffer object kept alive with its GEM handle (on the allocating
/// DRM file) and a read-write dma-buf of it. Dropping it destroys the BO
/// (which closes the handle): keep it as long as a framebuffer uses it.
pub struct GbmBuffer {
    bo: gbm::BufferObject<()>,
    handle: u32,
    dmabuf: DmaBuf,
}

impl std::fmt::Debug for GbmBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbmBuffer")
            .field("handle", &self.handle)
            .field("layout", &self.dmabuf.layout())
            .finish()
    }
}

impl GbmBuffer {
    /// The GEM handle on the allocator's own DRM file (owned by the BO).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The read-write dma-buf (exported with `DRM_RDWR`, unlike
    /// `gbm_bo_get_fd`'s read-only one), carrying the BO's layout.
    pub fn dmabuf(&self) -> &DmaBuf {
        &self.dmabuf
    }

    /// The BO's size in bytes (its dma-buf's).
    pub fn size(&self) -> u64 {
        self.dmabuf.size()
    }

    /// The GBM buffer object.
    pub fn bo(&self) -> &gbm::BufferObject<()> {
        &self.bo
    }
}
