//! DRM core ioctls the crate uses: version, capabilities, PRIME, dumb
//! buffers, GEM close and syncobj. Mostly `drm-ffi` underneath; the raw
//! syncobj handle ioctls are ours because `drm-ffi` hard-codes handle 0
//! and point 0 (a sync_file import then fails with ENOENT).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use drm_ffi::drm_syncobj_handle;
use rustix::ioctl::opcode;

pub use drm_ffi::{
    DRM_CAP_DUMB_BUFFER, DRM_CAP_PRIME, DRM_CAP_SYNCOBJ, DRM_CAP_SYNCOBJ_TIMELINE,
    DRM_PRIME_CAP_EXPORT, DRM_PRIME_CAP_IMPORT, DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED,
    DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE,
    DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT,
};

/// `DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD`.
pub const IOCTL_SYNCOBJ_HANDLE_TO_FD: rustix::ioctl::Opcode =
    opcode::read_write::<drm_syncobj_handle>(b'd', 0xC1);
/// `DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE`.
pub const IOCTL_SYNCOBJ_FD_TO_HANDLE: rustix::ioctl::Opcode =
    opcode::read_write::<drm_syncobj_handle>(b'd', 0xC2);

/// The driver name from `DRM_IOCTL_VERSION`.
pub fn driver_name(dev: BorrowedFd<'_>) -> io::Result<String> {
    let mut name = Vec::with_capacity(64);
    drm_ffi::get_version(dev, Some(&mut name), None, None)?;
    let bytes: Vec<u8> = name
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `DRM_IOCTL_GET_CAP`.
pub fn get_cap(dev: BorrowedFd<'_>, cap: u32) -> io::Result<u64> {
    Ok(drm_ffi::get_capability(dev, cap as u64)?.value)
}

/// `DRM_IOCTL_SET_CLIENT_CAP`.
pub fn set_client_cap(dev: BorrowedFd<'_>, cap: u32, on: bool) -> io::Result<()> {
    drm_ffi::set_capability(dev, cap as u64, on).map(drop)
}

/// `DRM_IOCTL_PRIME_HANDLE_TO_FD` (close-on-exec; read-write when `rdwr`).
pub fn prime_handle_to_fd(dev: BorrowedFd<'_>, handle: u32, rdwr: bool) -> io::Result<OwnedFd> {
    let flags = drm_ffi::DRM_CLOEXEC | if rdwr { drm_ffi::DRM_RDWR } else { 0 };
    let out = drm_ffi::gem::handle_to_fd(dev, handle, flags)?;
    // SAFETY: the kernel installed a new fd that we now own.
    unsafe { super::owned(out.fd) }
}

/// `DRM_IOCTL_PRIME_FD_TO_HANDLE`: the GEM handle of `dmabuf` on `dev`.
pub fn prime_fd_to_handle(dev: BorrowedFd<'_>, dmabuf: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(drm_ffi::gem::fd_to_handle(dev, dmabuf)?.handle)
}

/// `DRM_IOCTL_GEM_CLOSE`.
pub fn gem_close(dev: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    drm_ffi::gem::close(dev, handle).map(drop)
}

/// `DRM_IOCTL_MODE_CREATE_DUMB`: (handle, pitch, size).
pub fn dumb_create(
    dev: BorrowedFd<'_>,
    width: u32,
    height: u32,
    bpp: u32,
) -> io::Result<(u32, u32, u64)> {
    let d = drm_ffi::mode::dumbbuffer::create(dev, width, height, bpp, 0)?;
    Ok((d.handle, d.pitch, d.size))
}

/// `DRM_IOCTL_MODE_MAP_DUMB`: the fake mmap offset of a dumb buffer.
pub fn dumb_map(dev: BorrowedFd<'_>, handle: u32) -> io::Result<u64> {
    Ok(drm_ffi::mode::dumbbuffer::map(dev, handle, 0, 0)?.offset)
}

/// `DRM_IOCTL_MODE_DESTROY_DUMB`.
pub fn dumb_destroy(dev: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    drm_ffi::mode::dumbbuffer::destroy(dev, handle).map(drop)
}

/// `DRM_IOCTL_SYNCOBJ_CREATE`.
pub fn syncobj_create(dev: BorrowedFd<'_>, signaled: bool) -> io::Result<u32> {
    Ok(drm_ffi::syncobj::create(dev, signaled)?.handle)
}

/// `DRM_IOCTL_SYNCOBJ_DESTROY`.
pub fn syncobj_destroy(dev: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    drm_ffi::syncobj::destroy(dev, handle).map(drop)
}

fn syncobj_handle_ioctl<const OPCODE: rustix::ioctl::Opcode>(
    dev: BorrowedFd<'_>,
    arg: &mut drm_syncobj_handle,
) -> io::Result<()> {
    // SAFETY: `drm_syncobj_handle` is drm-sys' binding of the uapi struct
    // for both handle ioctls; it holds no pointers.
    unsafe { super::update::<OPCODE, _>(dev, arg) }
}

/// `DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD` without flags: an opaque syncobj fd.
pub fn syncobj_to_fd(dev: BorrowedFd<'_>, handle: u32) -> io::Result<OwnedFd> {
    let mut arg = drm_syncobj_handle {
        handle,
        flags: 0,
        fd: -1,
        pad: 0,
        point: 0,
    };
    syncobj_handle_ioctl::<IOCTL_SYNCOBJ_HANDLE_TO_FD>(dev, &mut arg)?;
    // SAFETY: the kernel installed a new fd that we now own.
    unsafe { super::owned(arg.fd) }
}

/// `DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE` without flags: a handle for an opaque
/// syncobj fd.
pub fn syncobj_from_fd(dev: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut arg = drm_syncobj_handle {
        handle: 0,
        flags: 0,
        fd: fd.as_raw_fd(),
        pad: 0,
        point: 0,
    };
    syncobj_handle_ioctl::<IOCTL_SYNCOBJ_FD_TO_HANDLE>(dev, &mut arg)?;
    Ok(arg.handle)
}

/// `DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD` with `EXPORT_SYNC_FILE`: a sync_file of
/// a binary syncobj's current fence (EINVAL if it has none yet).
pub fn syncobj_export_sync_file(dev: BorrowedFd<'_>, handle: u32) -> io::Result<OwnedFd> {
    let mut arg = drm_syncobj_handle {
        handle,
        flags: drm_ffi::DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE,
        fd: -1,
        pad: 0,
        point: 0,
    };
    syncobj_handle_ioctl::<IOCTL_SYNCOBJ_HANDLE_TO_FD>(dev, &mut arg)?;
    // SAFETY: the kernel installed a new fd that we now own.
    unsafe { super::owned(arg.fd) }
}

/// `DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE` with `IMPORT_SYNC_FILE`: replaces the
/// fence of the existing binary syncobj `handle` with the sync_file's.
pub fn syncobj_import_sync_file(
    dev: BorrowedFd<'_>,
    handle: u32,
    sync: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut arg = drm_syncobj_handle {
        handle,
        flags: drm_ffi::DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE,
        fd: sync.as_raw_fd(),
        pad: 0,
        point: 0,
    };
    syncobj_handle_ioctl::<IOCTL_SYNCOBJ_FD_TO_HANDLE>(dev, &mut arg)
}

/// `DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL` of one point.
pub fn syncobj_timeline_signal(dev: BorrowedFd<'_>, handle: u32, point: u64) -> io::Result<()> {
    drm_ffi::syncobj::timeline_signal(dev, &[handle], &[point]).map(drop)
}

/// `DRM_IOCTL_SYNCOBJ_SIGNAL` of a binary syncobj.
pub fn syncobj_signal(dev: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    drm_ffi::syncobj::signal(dev, &[handle]).map(drop)
}

/// `DRM_IOCTL_SYNCOBJ_QUERY`: the last signaled point (or, with
/// `last_submitted`, the last submitted one).
pub fn syncobj_query(dev: BorrowedFd<'_>, handle: u32, last_submitted: bool) -> io::Result<u64> {
    let mut point = 0u64;
    drm_ffi::syncobj::query(
        dev,
        &[handle],
        std::slice::from_mut(&mut point),
        last_submitted,
    )?;
    Ok(point)
}

/// `DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT` on one point; `abs_timeout_ns` is an
/// absolute CLOCK_MONOTONIC time. Returns ETIME on timeout.
pub fn syncobj_timeline_wait(
    dev: BorrowedFd<'_>,
    handle: u32,
    point: u64,
    abs_timeout_ns: i64,
    flags: u32,
) -> io::Result<()> {
    let wait_all = flags & DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL != 0;
    let for_submit = flags & DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT != 0;
    let available = flags & DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE != 0;
    drm_ffi::syncobj::timeline_wait(
        dev,
        &[handle],
        &[point],
        abs_timeout_ns,
        wait_all,
        for_submit,
        available,
    )
    .map(drop)
}

/// `DRM_IOCTL_SYNCOBJ_TRANSFER` from a timeline point to a point (0: binary).
pub fn syncobj_transfer(
    dev: BorrowedFd<'_>,
    src: u32,
    src_point: u64,
    dst: u32,
    dst_point: u64,
) -> io::Result<()> {
    drm_ffi::syncobj::transfer(dev, src, dst, src_point, dst_point).map(drop)
}

/// `DRM_IOCTL_SYNCOBJ_EVENTFD`: `eventfd` becomes readable once `point` is
/// signaled (or, with `available`, once a fence for it exists).
pub fn syncobj_eventfd(
    dev: BorrowedFd<'_>,
    handle: u32,
    point: u64,
    eventfd: BorrowedFd<'_>,
    available: bool,
) -> io::Result<()> {
    drm_ffi::syncobj::eventfd(dev, handle, point, eventfd, available).map(drop)
}
