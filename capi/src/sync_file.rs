//! Fences to and from sync_file fds (`drivers/dma-buf/sync_file.c`).
//!
//! Import borrows the caller's fd (the library keeps its own dup); export
//! returns a new fd the caller owns. Locking: none of its own; importing
//! polls the fd, and software waits on it go through the backends' reactor.

use std::ffi::c_int;
use std::os::fd::IntoRawFd;

use bufsync::fence::{unwrap, FenceStatus};
use bufsync_backends::sync_file::{merge_to_sync_file, SyncFile, SyncFileFence};

use crate::error::{call, CallError};
use crate::fence::bufsync_fence;
use crate::handle::{borrow, dup_borrowed, Out};

/// Imports a sync_file as a fence: signaled when the sync_file is, with the
/// error the kernel gave it. Only the kernel ends it: bufsync never signals
/// it early (a wait with a timeout ends with -ETIME and the fence stays
/// pending).
///
/// Fd: borrowed. The library keeps its own duplicate; the caller still owns
/// `fd` and closes it when it likes, on success and on failure.
///
/// Returns 0 with `*out` a new fence handle, -EBADF (negative or closed
/// fd), -EINVAL (not a sync_file, NULL `out`).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_import_sync_file(
    fd: c_int,
    out: *mut *mut bufsync_fence,
) -> c_int {
    call("bufsync_fence_import_sync_file", || {
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(out, "out") }?;
        let own = dup_borrowed(fd, "fd")?;
        let file = SyncFile::from_fd(own)?;
        out.write(bufsync_fence::handle(SyncFileFence::fence(file)?));
        Ok(0)
    })
}

/// Exports a fence as a sync_file, for `IN_FENCE_FD`, a Vulkan SYNC_FD
/// semaphore import, or another process. Works for fences with a kernel
/// form: imported sync_files, merges of them, fences the backends made from
/// kernel objects.
///
/// Fd: returns a new fd in `*fd` that the caller owns and must close; or
/// -1 when the fence has already signaled without error (nothing to wait
/// for, as Vulkan's SYNC_FD convention).
///
/// Returns 0; -ENODATA for a pending fence with no kernel form (a software
/// fence: wait for it with `bufsync_fence_wait` instead); the fence's error
/// (a negative errno) when it carries one; -EINVAL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bufsync_fence_export_sync_file(
    fence: *const bufsync_fence,
    fd: *mut c_int,
) -> c_int {
    call("bufsync_fence_export_sync_file", || {
        // SAFETY: NULL or a live fence handle (header contract).
        let f = unsafe { borrow(fence, "fence") }?;
        // SAFETY: NULL or writable (header contract).
        let out = unsafe { Out::new(fd, "fd") }?;
        match f.fence.status() {
            FenceStatus::Signaled => {
                out.write(-1);
                return Ok(0);
            }
            FenceStatus::Error(e) => return Err(e.into()),
            FenceStatus::Pending => {}
        }
        if let Some(e) = f.fence.error() {
            return Err(CallError::new(
                e.to_errno().abs(),
                format!("the fence already carries an error ({e}) a sync_file cannot"),
            ));
        }
        match merge_to_sync_file(&unwrap(&f.fence), "bufsync")? {
            Some(file) => out.write(file.into_fd().into_raw_fd()),
            None => out.write(-1),
        }
        Ok(0)
    })
}
