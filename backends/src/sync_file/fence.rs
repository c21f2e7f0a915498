//! `SyncFileFence`: a runtime fence kind over a sync_file fd, and the way
//! back (a runtime fence exported as a sync_file when it has one).
//!
//! `is_signaled` polls the fd; software signaling registers the fd with the
//! shared [`reactor`](crate::reactor), with no deadline: only the kernel
//! ends the fence (a waiter bounds its own wait), and the runtime engine
//! watches it so that one stuck past its threshold is reported. A fence
//! signaled any other way cancels its reactor entry. The error status the
//! kernel sets (`SYNC_IOC_FILE_INFO`) becomes the runtime fence's error;
//! bufsync never invents one.
//!
//! Locking: the kind holds immutable data plus the reactor token in a
//! mutex taken briefly by `enable_signaling` and the fence callback; no
//! lock is held while calling into the fence or the reactor.

use std::any::Any;
use std::sync::{Arc, Mutex};

use bufsync::fence::{alloc_contexts, engine, Fence, FenceError, FenceKind, FenceStatus};

use super::SyncFile;
use crate::error::{Error, Result};
use crate::reactor::{self, Outcome, Token};

/// The fence kind over a sync_file.
#[derive(Debug)]
pub struct SyncFileFence {
    file: Arc<SyncFile>,
    driver: String,
    timeline: String,
    token: Mutex<Option<Token>>,
}

impl SyncFileFence {
    /// A runtime fence over `file`, on a fresh context, with seqno 1. It
    /// stays pending until the kernel signals the sync_file.
    pub fn fence(file: SyncFile) -> Result<Fence> {
        let info = file.info()?;
        let (driver, timeline) = match info.fences.as_slice() {
            [one] => (one.driver_name.clone(), one.timeline_name.clone()),
            [] => ("sync_file".to_owned(), "stub".to_owned()),
            many => (
                "sync_file".to_owned(),
                format!(
                    "merged({}: {})",
                    many.len(),
                    many.iter()
                        .map(|f| f.timeline_name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
        };
        let kind = Arc::new(SyncFileFence {
            file: Arc::new(file),
            driver,
            timeline,
            token: Mutex::new(None),
        });
        let fence = Fence::new(kind, alloc_contexts(1), 1);
        if info.status != 0 {
            complete(&fence, info.status);
        }
        Ok(fence)
    }

    /// The sync_file.
    pub fn file(&self) -> &SyncFile {
        &self.file
    }

    fn error_status(&self) -> i32 {
        match self.file.info() {
            Ok(info) => info.status,
            Err(e) => {
                log::warn!("SYNC_IOC_FILE_INFO on a signaled sync_file failed: {e}");
                1
            }
        }
    }
}

/// Signals `fence` according to a kernel status (1 ok, <0 error).
fn complete(fence: &Fence, status: i32) {
    let _ = match FenceError::from_errno(status) {
        Some(e) => fence.signal_with_error(e),
        None => fence.signal(),
    };
}

impl SyncFileFence {
    /// One reactor registration that completes `fence` from the kernel's
    /// status when the fd becomes readable.
    fn register(&self, fence: &Fence) -> Result<()> {
        let reactor = reactor::global()?;
        let waiter = fence.clone();
        let token = reactor.register(self.file.clone(), None, move |outcome| match outcome {
            Outcome::Ready => {
                let status = waiter
                    .kind_as::<SyncFileFence>()
                    .map_or(1, |k| k.error_status());
                complete(&waiter, status);
            }
            // No deadline was given: never expires.
            Outcome::Expired => {}
        })?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(())
    }
}

impl FenceKind for SyncFileFence {
    fn driver_name(&self) -> &str {
        &self.driver
    }

    fn timeline_name(&self) -> &str {
        &self.timeline
    }

    /// Registers the fd with the reactor (no deadline) and the fence with
    /// the engine's stuck watch. If the reactor cannot take it, the engine
    /// polls the fd instead: the fence is never ended for bufsync's own
    /// trouble.
    fn enable_signaling(&self, fence: &Fence) -> std::result::Result<(), FenceError> {
        if let Err(e) = self.register(fence) {
            log::warn!("sync_file fence: {e}; polling it instead");
            engine::global().watch_polled(fence);
            return Ok(());
        }
        engine::watch(fence);
        // Signaled another way first (a poll, a direct signal): the reactor
        // entry goes at once, and with it its hold on the fd.
        let _ = fence.add_callback(|f| {
            if let Some(kind) = f.kind_as::<SyncFileFence>() {
                if let Some(token) = kind.token.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    if let Ok(r) = reactor::global() {
                        r.cancel(token);
                    }
                }
            }
        });
        Ok(())
    }

    fn poll_signaled(&self, fence: &Fence) -> bool {
        match self.file.is_signaled() {
            Ok(true) => {
                if let Some(e) = FenceError::from_errno(self.error_status()) {
                    fence.set_error(e);
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                log::warn!("poll on sync_file failed: {e}");
                false
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The sync_file form of a runtime fence, if it has one: `Ok(None)` when
/// it signaled cleanly (nothing to wait for), [`Error::Fence`] when it
/// signaled with an error, a dup of the fd for a pending [`SyncFileFence`]
/// (with the error its file carries), a syncobj point's exported sync_file
/// for a [`SyncobjPoint`](crate::drm::SyncobjPoint); [`Error::NoSyncFile`]
/// for a pending fence of another kind (wait for it in software instead).
pub fn to_sync_file(fence: &Fence) -> Result<Option<SyncFile>> {
    match fence.status() {
        FenceStatus::Signaled => return Ok(None),
        FenceStatus::Error(e) => return Err(Error::Fence(e)),
        FenceStatus::Pending => {}
    }
    if let Some(k) = fence.kind_as::<SyncFileFence>() {
        return k.file.try_clone().map(Some);
    }
    if let Some(p) = fence.kind_as::<crate::drm::SyncobjPoint>() {
        return p.export_sync_file().map(Some);
    }
    Err(Error::NoSyncFile {
        driver: fence.driver_name().to_owned(),
    })
}

/// One sync_file for several runtime fences (`SYNC_IOC_MERGE` of their
/// sync_file parts); `Ok(None)` when all signaled cleanly. Errors survive:
/// a fence that already failed is carried by the result (the first error
/// wins), or is the error when nothing else is pending.
pub fn merge_to_sync_file<'a>(
    fences: impl IntoIterator<Item = &'a Fence>,
    name: &str,
) -> Result<Option<SyncFile>> {
    let mut acc: Option<SyncFile> = None;
    // The first error in list order, already failed or carried by a part.
    let mut first: Option<FenceError> = None;
    for f in fences {
        match to_sync_file(f) {
            Ok(Some(part)) => {
                first = first.or(part.carried_error());
                acc = Some(match acc {
                    None => part,
                    Some(prev) => prev.merge(&part, name)?,
                });
            }
            Ok(None) => {}
            Err(Error::Fence(e)) => first = first.or(Some(e)),
            Err(e) => return Err(e),
        }
    }
    match (acc, first) {
        (Some(file), first) => Ok(Some(file.with_carried(first))),
        (None, Some(e)) => Err(Error::Fence(e)),
        (None, None) => Ok(None),
    }
}
