//! `include/uapi/drm/vgem_drm.h`: fences user space attaches and signals.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::ioctl::opcode;

/// `VGEM_FENCE_WRITE`: attach as an exclusive (write) fence.
pub const FENCE_WRITE: u32 = 1;

/// `struct drm_vgem_fence_attach`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct drm_vgem_fence_attach {
    /// GEM handle.
    pub handle: u32,
    /// `VGEM_FENCE_WRITE` or 0.
    pub flags: u32,
    /// Returned fence id.
    pub out_fence: u32,
    /// Must be zero.
    pub pad: u32,
}

/// `struct drm_vgem_fence_signal`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct drm_vgem_fence_signal {
    /// Fence id from attach.
    pub fence: u32,
    /// Must be zero.
    pub flags: u32,
}

const DRM_COMMAND_BASE: u8 = 0x40;
/// `DRM_IOCTL_VGEM_FENCE_ATTACH`.
pub const IOCTL_FENCE_ATTACH: rustix::ioctl::Opcode =
    opcode::read_write::<drm_vgem_fence_attach>(b'd', DRM_COMMAND_BASE + 1);
/// `DRM_IOCTL_VGEM_FENCE_SIGNAL`.
pub const IOCTL_FENCE_SIGNAL: rustix::ioctl::Opcode =
    opcode::write::<drm_vgem_fence_signal>(b'd', DRM_COMMAND_BASE + 2);

/// `DRM_IOCTL_VGEM_FENCE_ATTACH`: a pending fence on GEM `handle`.
pub fn fence_attach(vgem: BorrowedFd<'_>, handle: u32, flags: u32) -> io::Result<u32> {
    let mut arg = drm_vgem_fence_attach {
        handle,
        flags,
        out_fence: 0,
        pad: 0,
    };
    // SAFETY: the struct matches the uapi header for this opcode.
    unsafe { super::update::<IOCTL_FENCE_ATTACH, _>(vgem, &mut arg) }?;
    Ok(arg.out_fence)
}

/// `DRM_IOCTL_VGEM_FENCE_SIGNAL`.
pub fn fence_signal(vgem: BorrowedFd<'_>, fence: u32) -> io::Result<()> {
    let arg = drm_vgem_fence_signal { fence, flags: 0 };
    // SAFETY: the struct matches the uapi header for this opcode.
    unsafe { super::set::<IOCTL_FENCE_SIGNAL, _>(vgem, arg) }
}
