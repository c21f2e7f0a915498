//! The render → display edge: what form the fences a flip must wait for
//! have, and the bounded software wait for those without a sync_file.
//!
//! Probed per frame, as Mesa and Smithay do: a fence with a *pending*
//! sync_file form (a kernel GPU fence, a vgem job, a Vulkan render point
//! whose device exports pending SYNC_FDs) can be handed to the display
//! (`IN_FENCE_FD`) or to the buffer (`IMPORT_SYNC_FILE`); anything else
//! (lavapipe's timeline points, software fences) is waited on the CPU.
//!
//! Locking: none. Callers do the software wait before taking any
//! reservation (a fence's signaler may need what a waiter holds).

use std::time::{Duration, Instant};

use bufsync::fence::{Fence, FenceError, WaitError};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::vulkan::{to_sync_file, wait_fence};

/// The sync_file form of a list of fences.
#[derive(Debug)]
pub(crate) enum SyncForm {
    /// All signaled cleanly: nothing to wait for.
    Signaled,
    /// Every pending fence has a sync_file form: one (merged) sync_file.
    SyncFile(SyncFile),
    /// At least one pending fence has none: wait in software.
    Software,
}

/// The form of `fences`; a fence that signaled with an error is `Err`.
pub(crate) fn sync_form<'a>(
    fences: impl IntoIterator<Item = &'a Fence>,
) -> Result<SyncForm, FenceError> {
    let mut acc: Option<SyncFile> = None;
    for f in fences {
        if f.is_signaled() {
            if let Some(e) = f.error() {
                return Err(e);
            }
            continue;
        }
        match to_sync_file(f) {
            Ok(None) => {}
            Ok(Some(part)) => {
                acc = Some(match acc {
                    None => part,
                    Some(prev) => match prev.merge(&part, "bufsync-present") {
                        Ok(m) => m,
                        Err(e) => {
                            log::warn!("SYNC_IOC_MERGE failed ({e}): waiting in software");
                            return Ok(SyncForm::Software);
                        }
                    },
                });
            }
            Err(bufsync_backends::Error::Fence(e)) => return Err(e),
            Err(bufsync_backends::Error::NoSyncFile { .. }) => return Ok(SyncForm::Software),
            Err(e) => {
                log::warn!("no sync_file form ({e}): waiting in software");
                return Ok(SyncForm::Software);
            }
        }
    }
    Ok(match acc {
        Some(s) => SyncForm::SyncFile(s),
        None => SyncForm::Signaled,
    })
}

/// Whether a pending `fence` has a sync_file form, without making one (no
/// syscall): a sync_file fence, a syncobj point, or a Vulkan point whose
/// device exported a pending SYNC_FD. `Err` when it signaled with an error.
pub(crate) fn has_sync_form(fence: &Fence) -> Result<bool, FenceError> {
    if fence.is_signaled() {
        return match fence.error() {
            Some(e) => Err(e),
            None => Ok(true),
        };
    }
    Ok(fence
        .kind_as::<bufsync_backends::sync_file::SyncFileFence>()
        .is_some()
        || fence
            .kind_as::<bufsync_backends::drm::SyncobjPoint>()
            .is_some()
        || fence
            .kind_as::<bufsync_backends::vulkan::TimelinePoint>()
            .is_some_and(|p| p.sync_file().is_some()))
}

/// Waits for every fence of `fences` on the CPU, at most `timeout` in all
/// (a Vulkan timeline point through `vkWaitSemaphores`, anything else
/// through the runtime). Returns when they signaled (`Instant`), or the
/// first error (`TimedOut` at the bound).
pub(crate) fn wait_software<'a>(
    fences: impl IntoIterator<Item = &'a Fence>,
    timeout: Duration,
) -> Result<Instant, FenceError> {
    let deadline = Instant::now() + timeout;
    for f in fences {
        if f.is_signaled() {
            if let Some(e) = f.error() {
                return Err(e);
            }
            continue;
        }
        wait_fence(f, deadline.saturating_duration_since(Instant::now())).map_err(|e| match e {
            WaitError::TimedOut => FenceError::TimedOut,
            WaitError::Cancelled => FenceError::Cancelled,
            WaitError::Fence(e) => e,
        })?;
    }
    Ok(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bufsync::fence::FenceContext;

    #[test]
    fn forms_of_software_fences() {
        let ctx = FenceContext::new("t", "t");
        let done = ctx.create_fence();
        done.signal().unwrap();
        assert!(matches!(sync_form([&done]), Ok(SyncForm::Signaled)));
        let pending = ctx.create_fence();
        assert!(matches!(
            sync_form([&done, &pending]),
            Ok(SyncForm::Software)
        ));
        let failed = ctx.create_fence();
        failed.signal_with_error(FenceError::DeviceLost).unwrap();
        assert_eq!(sync_form([&failed]).unwrap_err(), FenceError::DeviceLost);
    }

    #[test]
    fn software_wait_is_bounded() {
        let ctx = FenceContext::new("t", "t");
        let never = ctx.create_fence();
        let t = Instant::now();
        assert_eq!(
            wait_software([&never], Duration::from_millis(30)).unwrap_err(),
            FenceError::TimedOut
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(
            !never.is_signaled(),
            "a timeout ends the wait, not the fence"
        );
    }
}
