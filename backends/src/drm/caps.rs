//! Driver capabilities from `DRM_IOCTL_GET_CAP`.

use std::os::fd::AsFd;

use super::DrmDevice;
use crate::sys::drm as ffi;

/// What a driver says it supports. A cap the kernel does not know reads as
/// absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// `DRM_PRIME_CAP_IMPORT`: accepts foreign dma-bufs.
    pub prime_import: bool,
    /// `DRM_PRIME_CAP_EXPORT`: exports GEM objects as dma-bufs.
    pub prime_export: bool,
    /// `DRM_CAP_DUMB_BUFFER` (vgem answers 0 yet creates dumb buffers).
    pub dumb_buffer: bool,
    /// `DRM_CAP_SYNCOBJ`.
    pub syncobj: bool,
    /// `DRM_CAP_SYNCOBJ_TIMELINE`.
    pub syncobj_timeline: bool,
}

impl DrmDevice {
    /// Reads the capabilities (no lock needed).
    pub fn caps(&self) -> Caps {
        let cap = |c| ffi::get_cap(self.as_fd(), c).unwrap_or(0);
        let prime = cap(ffi::DRM_CAP_PRIME);
        Caps {
            prime_import: prime & ffi::DRM_PRIME_CAP_IMPORT as u64 != 0,
            prime_export: prime & ffi::DRM_PRIME_CAP_EXPORT as u64 != 0,
            dumb_buffer: cap(ffi::DRM_CAP_DUMB_BUFFER) != 0,
            syncobj: cap(ffi::DRM_CAP_SYNCOBJ) != 0,
            syncobj_timeline: cap(ffi::DRM_CAP_SYNCOBJ_TIMELINE) != 0,
        }
    }
}
