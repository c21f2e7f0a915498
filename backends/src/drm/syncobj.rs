//! drm_syncobj: a kernel container of fences with timeline points, and
//! [`SyncobjPoint`], the runtime fence kind over one timeline point.
//!
//! Waits take absolute CLOCK_MONOTONIC deadlines (the kernel's contract).
//! Timeline points are exported/imported as sync_files by transferring
//! them through a temporary binary syncobj (the `drm` crate hard-codes
//! point 0 and handle 0, so the raw ioctls are used). Software signaling
//! of a point registers an eventfd (`DRM_IOCTL_SYNCOBJ_EVENTFD`) with the
//! shared reactor, with no deadline: only the kernel ends the fence (the
//! runtime engine reports it if it stays pending past its threshold).
//!
//! Locking: a `Syncobj` is a handle on a device and needs no lock; the
//! kind keeps its reactor token in a mutex taken briefly.

use std::any::Any;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bufsync::fence::{alloc_contexts, engine, Fence, FenceError, FenceKind};

use super::DrmDevice;
use crate::error::{check_open, ioctl_err, Error, Result};
use crate::reactor::{self, Outcome, Token};
use crate::sync_file::SyncFile;
use crate::sys::drm as ffi;

/// What a wait waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitFor {
    /// The point's fence signaled (fails with EINVAL if no fence was
    /// submitted for it yet).
    #[default]
    Signaled,
    /// Like `Signaled`, but first wait for a fence to be submitted
    /// (`WAIT_FOR_SUBMIT`).
    SubmitThenSignaled,
    /// Only for a fence to exist (`WAIT_AVAILABLE`).
    Available,
}

/// A drm_syncobj on a device; destroyed on drop.
#[derive(Debug)]
pub struct Syncobj {
    dev: Arc<DrmDevice>,
    handle: u32,
}

impl Syncobj {
    fn check_cap(dev: &DrmDevice) -> Result<()> {
        if dev.caps().syncobj {
            Ok(())
        } else {
            Err(Error::Unsupported {
                what: "DRM_CAP_SYNCOBJ",
            })
        }
    }

    /// `DRM_IOCTL_SYNCOBJ_CREATE` (already signaled when `signaled`).
    pub fn create(dev: &Arc<DrmDevice>, signaled: bool) -> Result<Self> {
        Self::check_cap(dev)?;
        let handle = ffi::syncobj_create(dev.as_fd(), signaled)
            .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_CREATE", e))?;
        Ok(Self {
            dev: Arc::clone(dev),
            handle,
        })
    }

    /// `DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE`: imports an opaque syncobj fd (not
    /// consumed). A closed fd is [`Error::BadFd`], an open fd of any other
    /// kind (a sync_file, a dma-buf, a memfd...) [`Error::NotASyncobj`]:
    /// the kernel answers EINVAL to both.
    pub fn import(dev: &Arc<DrmDevice>, fd: BorrowedFd<'_>) -> Result<Self> {
        Self::check_cap(dev)?;
        check_open(fd)?;
        let handle = ffi::syncobj_from_fd(dev.as_fd(), fd).map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                Error::NotASyncobj { fd: fd.as_raw_fd() }
            } else {
                ioctl_err("DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE", fd.as_raw_fd())(e)
            }
        })?;
        Ok(Self {
            dev: Arc::clone(dev),
            handle,
        })
    }

    /// `DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD`: an opaque fd another process or
    /// device (Vulkan OPAQUE_FD) can import.
    pub fn export(&self) -> Result<OwnedFd> {
        ffi::syncobj_to_fd(self.dev.as_fd(), self.handle)
            .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD", e))
    }

    /// The raw handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The device.
    pub fn device(&self) -> &Arc<DrmDevice> {
        &self.dev
    }

    /// `DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL` of `point` (must be later than
    /// the last point; 0 signals a binary syncobj).
    pub fn signal(&self, point: u64) -> Result<()> {
        let r = if point == 0 {
            ffi::syncobj_signal(self.dev.as_fd(), self.handle)
        } else {
            ffi::syncobj_timeline_signal(self.dev.as_fd(), self.handle, point)
        };
        r.map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL", e))
    }

    /// `DRM_IOCTL_SYNCOBJ_QUERY`: the last signaled point.
    pub fn query(&self) -> Result<u64> {
        ffi::syncobj_query(self.dev.as_fd(), self.handle, false)
            .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_QUERY", e))
    }

    /// `DRM_IOCTL_SYNCOBJ_QUERY` with `LAST_SUBMITTED`.
    pub fn query_last_submitted(&self) -> Result<u64> {
        ffi::syncobj_query(self.dev.as_fd(), self.handle, true)
            .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_QUERY", e))
    }

    /// `DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT` on `point` until `deadline`
    /// (absolute; converted to CLOCK_MONOTONIC ns). [`Error::TimedOut`]
    /// when the deadline passes (ETIME).
    pub fn wait(&self, point: u64, deadline: Instant, what: WaitFor) -> Result<()> {
        let flags = match what {
            WaitFor::Signaled => 0,
            WaitFor::SubmitThenSignaled => ffi::DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT,
            WaitFor::Available => {
                ffi::DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT
                    | ffi::DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE
            }
        };
        let abs = crate::clock::monotonic_ns_at(deadline).min(i64::MAX as u64) as i64;
        ffi::syncobj_timeline_wait(self.dev.as_fd(), self.handle, point, abs, flags).map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::TIME.raw_os_error()) {
                Error::TimedOut {
                    what: "drm_syncobj point",
                }
            } else {
                Error::io("DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT", e)
            }
        })
    }

    /// `DRM_IOCTL_SYNCOBJ_TRANSFER`: `dst` point `dst_point` (0: binary)
    /// gets the fence of our point `src_point`.
    pub fn transfer(&self, src_point: u64, dst: &Syncobj, dst_point: u64) -> Result<()> {
        ffi::syncobj_transfer(
            self.dev.as_fd(),
            self.handle,
            src_point,
            dst.handle,
            dst_point,
        )
        .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_TRANSFER", e))
    }

    /// A sync_file of `point` (0: the binary fence), through a temporary
    /// binary syncobj for timeline points.
    pub fn export_sync_file(&self, point: u64) -> Result<SyncFile> {
        let export = |s: &Syncobj| {
            ffi::syncobj_export_sync_file(s.dev.as_fd(), s.handle)
                .map(SyncFile::from_fd_unchecked)
                .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD(EXPORT_SYNC_FILE)", e))
        };
        if point == 0 {
            return export(self);
        }
        let tmp = Syncobj::create(&self.dev, false)?;
        self.transfer(point, &tmp, 0)?;
        export(&tmp)
    }

    /// Sets `point` (0: the binary fence) to `sync`'s fence, through a
    /// temporary binary syncobj for timeline points.
    pub fn import_sync_file(&self, point: u64, sync: &SyncFile) -> Result<()> {
        let import = |s: &Syncobj| {
            ffi::syncobj_import_sync_file(s.dev.as_fd(), s.handle, sync.fd())
                .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE(IMPORT_SYNC_FILE)", e))
        };
        if point == 0 {
            return import(self);
        }
        let tmp = Syncobj::create(&self.dev, false)?;
        import(&tmp)?;
        tmp.transfer(0, self, point)
    }

    /// `DRM_IOCTL_SYNCOBJ_EVENTFD`: an eventfd readable once `point` is
    /// signaled (or only available, with `available`).
    pub fn eventfd(&self, point: u64, available: bool) -> Result<OwnedFd> {
        let efd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| Error::io("eventfd", e.into()))?;
        ffi::syncobj_eventfd(self.dev.as_fd(), self.handle, point, efd.as_fd(), available)
            .map_err(|e| Error::io("DRM_IOCTL_SYNCOBJ_EVENTFD", e))?;
        Ok(efd)
    }

    /// A runtime fence for timeline `point` of this syncobj.
    pub fn point_fence(self: &Arc<Self>, point: u64) -> Fence {
        SyncobjPoint::fence(Arc::clone(self), point)
    }
}

impl Drop for Syncobj {
    fn drop(&mut self) {
        if let Err(e) = ffi::syncobj_destroy(self.dev.as_fd(), self.handle) {
            log::debug!("DRM_IOCTL_SYNCOBJ_DESTROY of {} failed: {e}", self.handle);
        }
    }
}

/// The fence kind over one drm_syncobj timeline point.
#[derive(Debug)]
pub struct SyncobjPoint {
    syncobj: Arc<Syncobj>,
    point: u64,
    timeline: String,
    token: Mutex<Option<Token>>,
}

impl SyncobjPoint {
    /// A runtime fence for `point` of `syncobj`: context per syncobj
    /// point, seqno = the point.
    pub fn fence(syncobj: Arc<Syncobj>, point: u64) -> Fence {
        let timeline = format!("{}:syncobj{}", syncobj.dev.driver(), syncobj.handle);
        let kind = Arc::new(SyncobjPoint {
            syncobj,
            point,
            timeline,
            token: Mutex::new(None),
        });
        Fence::new(kind, alloc_contexts(1), point)
    }

    /// The syncobj.
    pub fn syncobj(&self) -> &Arc<Syncobj> {
        &self.syncobj
    }

    /// The timeline point.
    pub fn point(&self) -> u64 {
        self.point
    }

    /// The point's fence as a sync_file (it must have been submitted).
    pub fn export_sync_file(&self) -> Result<SyncFile> {
        self.syncobj.export_sync_file(self.point)
    }

    fn status(&self) -> i32 {
        // The syncobj itself carries no error: ask its fence.
        match self.export_sync_file().and_then(|f| f.info()) {
            Ok(info) => info.status,
            Err(_) => 1,
        }
    }
}

impl SyncobjPoint {
    /// One reactor registration of an eventfd of the point that completes
    /// `fence` from the point's fence status when it fires.
    fn register(&self, fence: &Fence) -> Result<()> {
        let reactor = reactor::global()?;
        let efd: Arc<OwnedFd> = Arc::new(self.syncobj.eventfd(self.point, false)?);
        let waiter = fence.clone();
        let token = reactor.register(efd, None, move |outcome| {
            if outcome == Outcome::Ready {
                let status = waiter.kind_as::<SyncobjPoint>().map_or(1, |k| k.status());
                let _ = match FenceError::from_errno(status) {
                    Some(e) => waiter.signal_with_error(e),
                    None => waiter.signal(),
                };
            }
        })?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(())
    }
}

impl FenceKind for SyncobjPoint {
    fn driver_name(&self) -> &str {
        "drm_syncobj"
    }

    fn timeline_name(&self) -> &str {
        &self.timeline
    }

    /// Registers an eventfd of the point with the reactor (no deadline)
    /// and the fence with the engine's stuck watch. If that fails, the
    /// engine polls the point instead: the fence is never ended for
    /// bufsync's own trouble.
    fn enable_signaling(&self, fence: &Fence) -> std::result::Result<(), FenceError> {
        if let Err(e) = self.register(fence) {
            log::warn!("syncobj point fence: {e}; polling it instead");
            engine::global().watch_polled(fence);
            return Ok(());
        }
        engine::watch(fence);
        let _ = fence.add_callback(|f| {
            if let Some(kind) = f.kind_as::<SyncobjPoint>() {
                if let Some(token) = kind.token.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    if let Ok(r) = reactor::global() {
                        r.cancel(token);
                    }
                }
            }
        });
        Ok(())
    }

    /// Signaled once the point is (a zero-time wait for a binary syncobj,
    /// QUERY for a timeline point), with the error its fence carries.
    fn poll_signaled(&self, fence: &Fence) -> bool {
        let done = if self.point == 0 {
            self.syncobj
                .wait(0, Instant::now(), WaitFor::Signaled)
                .is_ok()
        } else {
            self.syncobj.query().is_ok_and(|p| p >= self.point)
        };
        if done {
            if let Some(e) = FenceError::from_errno(self.status()) {
                fence.set_error(e);
            }
        }
        done
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
