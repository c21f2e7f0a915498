//! dma-bufs: import an fd with its layout, its reservation, and the
//! implicit-sync bridge (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE` /
//! `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`, pull into and push from the runtime
//! reservation).
//!
//! Locking: a dma-buf handle is shared freely; the kernel serializes its
//! own `dma_resv`. Pulling kernel fences takes the runtime reservation's
//! lock without a ticket, briefly.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::Arc;

use bufsync_backends::dmabuf::{Access, DmaBuf, Layout, Plane};
use bufsync_backends::sync_file::SyncFile;

use crate::error::{call, call_or, CallError, CallResult};
use crate::fence::bufsync_fence;
use crate::handle::{borrow, destroy, dup_borrowed, new_handle, write_opt, Out};
use crate::reservation::{bufsync_reservation, ResvRef};
use crate::ticket::{BUFSYNC_ACCESS_READ, BUFSYNC_ACCESS_WRITE};

/// The most memory planes a layout has.
pub const BUFSYNC_MAX_PLANES: usize = 4;

/// One memory plane of an image in a dma-buf.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct bufsync_plane {
    /// Byte offset of the plane in the buffer.
    pub offset: u32,
    /// Bytes per row.
    pub stride: u32,
}

/// Format, modifier and planes of an image in a dma-buf (what `AddFB2` and
/// Vulkan's explicit DRM-modifier layouts need).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct bufsync_layout {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc (e.g. `DRM_FORMAT_XRGB8888`, 'XR24').
    pub fourcc: u32,
    /// Number of valid entries in `planes`, 1 to 4.
    pub plane_count: u32,
    /// DRM format modifier (`DRM_FORMAT_MOD_LINEAR` is 0).
    pub modifier: u64,
    /// The memory planes.
    pub planes: [bufsync_plane; BUFSYNC_MAX_PLANES],
}

impl bufsync_layout {
    fn to_layout(self) -> CallResult<Layout> {
        let n = self.plane_count as usize;
        if n == 0 || n > BUFSYNC_MAX_PLANES {
            return Err(CallError::invalid(format!(
                "plane_count {} is not 1 to {BUFSYNC_MAX_PLANES}",
                self.plane_count
            )));
        }
        Ok(Layout {
            width: self.width,
            height: self.height,
            fourcc: self.fourcc,
            modifier: self.modifier,
            planes: self.planes[..n]
                .iter()
                .map(|p| Plane {
                    offset: p.offset,
                    stride: p.stride,
                })
                .collect(),
        })
    }

    fn from_layout(l: &Layout) -> bufsync_layout {
        let mut out = bufsync_layout {
            width: l.width,
            height: l.height,
            fourcc: l.fourcc,
            plane_count: l.planes.len().min(BUFSYNC_MAX_PLANES) as u32,
            modifier: l.modifier,
            planes: Default::default(),
        };
        for (o, p) in out.planes.iter_mut().zip(&l.planes) {
            *o = bufsync_plane {
                offset: p.offset,
                stride: p.stride,
            };
        }
        out
    }
}

/// One reference to an imported dma-buf (its own dup of the fd, its size,
/// its layout when given, its runtime reservation). Destroy with
/// `bufsync_dmabuf_destroy`; the fd closes when the last reference (handles,
/// reservation handles of it, a ticket holding it) goes.
pub struct bufsync_dmabuf {
    buf: Arc<DmaBuf>,
}

fn access(a: u32) -> CallResult<Access> {
    match a {
        BUFSYNC_ACCESS_READ => Ok(Access::Read),
        BUFSYNC_ACCESS_WRITE => Ok(Access::Write),
        other => Err(CallError::invalid(format!(
            "access {other} is not a BUFSYNC_ACCESS_*"
        ))),
    }
}

/// Imports a dma-buf, with its image layout (`layout` NULL: none known).
/// The fd is checked to be a dma-buf; the layout against its size.
///
/// Fd: borrowed. The library keeps its own duplicate; the caller still owns
/// `fd`, on success and on failure.
///
/// Returns 0 with `*out` a new handle, -EBADF (negative or closed fd),
/// -EINVAL (not a dma-buf, a layout that does not fit, NULL `out`),
/// -EOPNOTSUPP (a linear layout of a format bufsync does not know).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_import(
    fd: c_int,
    layout: *const bufsync_layout,
    out: *mut *mut bufsync_dmabuf,
) -> c_int {
    call("bufsync_dmabuf_import", || {
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: NULL or a readable layout (header contract).
        let layout = unsafe { layout.as_ref() }
            .copied()
            .map(bufsync_layout::to_layout);
        let layout = layout.transpose()?;
        let own = dup_borrowed(fd, "fd")?;
        let mut buf = DmaBuf::from_fd(own)?;
        if let Some(l) = layout {
            buf = buf.with_layout(l)?;
        }
        out.write(new_handle(bufsync_dmabuf { buf: Arc::new(buf) }));
        Ok(0)
    })
}

/// Drops this handle's reference; NULL does nothing.
///
/// Thread safety: any thread, once no other call uses this handle.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_destroy(buf: *mut bufsync_dmabuf) {
    // SAFETY: NULL or a live handle no one else uses (header contract).
    call_or("bufsync_dmabuf_destroy", (), || unsafe { destroy(buf) })
}

/// The library's fd of the buffer, or -1 for NULL.
///
/// Fd: borrowed from the library, valid while the dma-buf lives; do not
/// close it (dup it to keep one).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_fd(buf: *const bufsync_dmabuf) -> c_int {
    call_or("bufsync_dmabuf_fd", -1, || {
        // SAFETY: NULL or a live handle (header contract).
        unsafe { borrow(buf, "buf") }.map_or(-1, |b| b.buf.fd().as_raw_fd())
    })
}

/// The buffer's size in bytes; 0 for NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_size(buf: *const bufsync_dmabuf) -> u64 {
    call_or("bufsync_dmabuf_size", 0, || {
        // SAFETY: NULL or a live handle (header contract).
        unsafe { borrow(buf, "buf") }.map_or(0, |b| b.buf.size())
    })
}

/// The layout given at import, in `*layout`.
///
/// Returns 0, -ENOENT (imported without one), or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_get_layout(
    buf: *const bufsync_dmabuf,
    layout: *mut bufsync_layout,
) -> c_int {
    call("bufsync_dmabuf_get_layout", || {
        // SAFETY: NULL or a live handle (header contract).
        let b = unsafe { borrow(buf, "buf") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(layout, "layout") }?;
        let l = b
            .buf
            .layout()
            .ok_or_else(|| CallError::new(libc::ENOENT, "imported without a layout"))?;
        out.write(bufsync_layout::from_layout(l));
        Ok(0)
    })
}

/// The buffer's runtime reservation (shared by every handle of the buffer),
/// to reserve with a ticket.
///
/// Returns 0 with `*out` a new reservation handle (it keeps the buffer
/// alive; destroy it with `bufsync_reservation_destroy`), or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_get_reservation(
    buf: *const bufsync_dmabuf,
    out: *mut *mut bufsync_reservation,
) -> c_int {
    call("bufsync_dmabuf_get_reservation", || {
        // SAFETY: NULL or a live handle (header contract).
        let b = unsafe { borrow(buf, "buf") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.write(new_handle(bufsync_reservation {
            resv: ResvRef::Buffer(Arc::clone(&b.buf)),
        }));
        Ok(0)
    })
}

/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: a sync_file snapshot of the kernel
/// fences an access must wait for (`BUFSYNC_ACCESS_READ`: the writers;
/// `BUFSYNC_ACCESS_WRITE`: everyone). Signaled at once when there are none.
///
/// Fd: returns a new fd in `*fd` that the caller owns and must close.
///
/// Returns 0, -EOPNOTSUPP (kernel before 6.0), -EINVAL, or the ioctl's error.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_export_sync_file(
    buf: *const bufsync_dmabuf,
    access: u32,
    fd: *mut c_int,
) -> c_int {
    call("bufsync_dmabuf_export_sync_file", || {
        // SAFETY: NULL or a live handle (header contract).
        let b = unsafe { borrow(buf, "buf") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(fd, "fd") }?;
        let file = b.buf.export_sync_file(self::access(access)?)?;
        out.write(file.into_fd().into_raw_fd());
        Ok(0)
    })
}

/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: adds the sync_file's fence to the
/// buffer's kernel reservation as a writer (`BUFSYNC_ACCESS_WRITE`) or a
/// reader, so implicit-sync users (KMS without IN_FENCE_FD, other drivers)
/// wait for it.
///
/// Fd: borrowed; the caller still owns `sync_file_fd` (as the kernel ioctl).
///
/// Returns 0, -EBADF, -EINVAL (not a sync_file, bad access), -EOPNOTSUPP
/// (kernel before 6.0), or the ioctl's error.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_import_sync_file(
    buf: *const bufsync_dmabuf,
    access: u32,
    sync_file_fd: c_int,
) -> c_int {
    call("bufsync_dmabuf_import_sync_file", || {
        // SAFETY: NULL or a live handle (header contract).
        let b = unsafe { borrow(buf, "buf") }?;
        let a = self::access(access)?;
        let file = SyncFile::from_fd(dup_borrowed(sync_file_fd, "sync_file_fd")?)?;
        b.buf.import_sync_file(a, &file)?;
        Ok(0)
    })
}

/// Pull: the kernel fences an access must wait for become one fence in the
/// buffer's runtime reservation (a writer's snapshot enters as READ usage,
/// a reader's as WRITE), so a ticket's wait set includes them. `*fence`
/// (optional) gets a new handle on it, or NULL when none were pending.
///
/// Returns 0, -EOPNOTSUPP (kernel before 6.0), -EINVAL, or the ioctl's
/// error. Takes the reservation's lock without a ticket (do not call it
/// while a ticket of this thread holds the buffer).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_pull_kernel_fences(
    buf: *const bufsync_dmabuf,
    access: u32,
    fence: *mut *mut bufsync_fence,
) -> c_int {
    call("bufsync_dmabuf_pull_kernel_fences", || {
        // SAFETY: NULL or a live handle (header contract).
        let b = unsafe { borrow(buf, "buf") }?;
        let pulled = b.buf.pull_kernel_fences(self::access(access)?)?;
        if !fence.is_null() {
            let handle = pulled.map_or(std::ptr::null_mut(), bufsync_fence::handle);
            // SAFETY: non-NULL, so writable (header contract).
            unsafe { write_opt(fence, handle) };
        }
        Ok(0)
    })
}

/// Push: adds `fence` to the buffer's kernel reservation as a writer
/// (`BUFSYNC_ACCESS_WRITE`) or a reader, through its sync_file form.
///
/// Returns 1 (added), 0 (it had already signaled cleanly: nothing to
/// add), -ENODATA (a pending fence without a kernel form: wait for it in
/// software before handing the buffer on, or pass it explicitly), the
/// fence's error, -EOPNOTSUPP (kernel before 6.0), or -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_dmabuf_push_fence(
    buf: *const bufsync_dmabuf,
    fence: *const bufsync_fence,
    access: u32,
) -> c_int {
    call("bufsync_dmabuf_push_fence", || {
        // SAFETY: NULL or a live handle (header contract).
        let b = unsafe { borrow(buf, "buf") }?;
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        let added = b.buf.push_fence(&f.fence, self::access(access)?)?;
        Ok(c_int::from(added))
    })
}
