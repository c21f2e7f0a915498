//! The decision's inputs taken from live objects ([`FenceForm::of`] a
//! runtime fence, [`Waiter::vulkan`] of a context), and the two helpers
//! that act on it for any fence kind: the CPU wait ([`wait_fence`]) and
//! the sync_file form ([`to_sync_file`]).
//!
//! Module order: this file imports the fence kinds (`sync_file`,
//! `drm::syncobj`, `seqno`, `vulkan::timeline`) and the pure
//! [`decide`](super::decide); the waiters' code (`vulkan::submit`,
//! `kms::fenced`, `dmabuf::implicit`, the presenter) imports this file;
//! no kind imports it back.
//!
//! Locking: none. `FenceForm::of` reads no kernel state (no syscall).

use std::time::Duration;

use ash::vk::Handle as _;
use bufsync::fence::{Fence, WaitError};

use super::decide::{decide, FenceForm, Route, Waiter};
use crate::drm::SyncobjPoint;
use crate::seqno::SeqnoFence;
use crate::sync_file::{SyncFile, SyncFileFence};
use crate::vulkan::{TimelinePoint, VulkanContext};

fn device_id(ctx: &VulkanContext) -> u64 {
    ctx.device().handle().as_raw()
}

impl FenceForm {
    /// The form of `fence`'s kind (whether or not it has signaled): a
    /// [`SyncFileFence`], a [`SyncobjPoint`], a Vulkan [`TimelinePoint`]
    /// (with its device and whether it carries a pending sync_file), a
    /// [`SeqnoFence`]; any other kind is [`FenceForm::Software`].
    pub fn of(fence: &Fence) -> FenceForm {
        if fence.kind_as::<SyncFileFence>().is_some() {
            FenceForm::SyncFile
        } else if fence.kind_as::<SyncobjPoint>().is_some() {
            FenceForm::SyncobjPoint
        } else if let Some(p) = fence.kind_as::<TimelinePoint>() {
            FenceForm::VulkanPoint {
                device: device_id(p.semaphore().vulkan()),
                sync_file: p.sync_file().is_some(),
            }
        } else if fence.kind_as::<SeqnoFence>().is_some() {
            FenceForm::Seqno
        } else {
            FenceForm::Software
        }
    }

    /// The form the render-done fences of `ctx`'s submissions
    /// ([`Submitter`](crate::vulkan::Submitter)) have: points of its
    /// timeline, with a pending sync_file where its SYNC_FD export hands
    /// them out (runs the lazy SYNC_FD export probe on first call).
    pub fn render_point(ctx: &VulkanContext) -> FenceForm {
        FenceForm::VulkanPoint {
            device: device_id(ctx),
            sync_file: ctx.sync_file_out(),
        }
    }

    /// The form of a point of a timeline semaphore of `ctx` that carries
    /// no sync_file (an application's or a host-signaled timeline).
    pub fn timeline_point(ctx: &VulkanContext) -> FenceForm {
        FenceForm::VulkanPoint {
            device: device_id(ctx),
            sync_file: false,
        }
    }
}

impl Waiter {
    /// A submission on `ctx`'s queue, with its probed SYNC_FD import.
    pub fn vulkan(ctx: &VulkanContext) -> Waiter {
        Waiter::Vulkan {
            device: device_id(ctx),
            sync_file_import: ctx.caps().sync_file_in(),
        }
    }
}

/// Waits for `fence` on the CPU, at most `timeout`, the way
/// [`decide`]`(FenceForm::of(fence), &Waiter::Cpu)` says: a Vulkan timeline
/// point through `vkWaitSemaphores` (then the runtime fence is signaled at
/// once), anything else through the runtime's wait (sync_files and syncobj
/// points through the reactor, seqno words through the engine's poller).
/// [`WaitError::TimedOut`] leaves the fence pending.
pub fn wait_fence(fence: &Fence, timeout: Duration) -> Result<(), WaitError> {
    if fence.test_signaled_flag() {
        return match fence.error() {
            Some(e) => Err(WaitError::Fence(e)),
            None => Ok(()),
        };
    }
    match decide(FenceForm::of(fence), &Waiter::Cpu).route {
        Route::CpuVkWaitSemaphores => {
            if let Some(point) = fence.kind_as::<TimelinePoint>() {
                point.wait_cpu(timeout)?;
                // The counter has reached the point: the poll signals it.
                fence.is_signaled();
            }
            match fence.error() {
                Some(e) => Err(WaitError::Fence(e)),
                None => Ok(()),
            }
        }
        _ => fence.wait_timeout(timeout),
    }
}

/// The sync_file form of any runtime fence: a Vulkan render-done point's
/// exported sync_file, else what [`crate::sync_file::to_sync_file`] gives
/// (`Ok(None)`: signaled cleanly; `Err(NoSyncFile)`: wait in software).
pub fn to_sync_file(fence: &Fence) -> crate::Result<Option<SyncFile>> {
    if let Some(p) = fence.kind_as::<TimelinePoint>() {
        if let Some(sf) = p.sync_file() {
            return sf.try_clone().map(Some);
        }
    }
    crate::sync_file::to_sync_file(fence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bufsync::fence::FenceContext;

    #[test]
    fn software_and_seqno_forms() {
        let ctx = FenceContext::new("t", "t");
        assert_eq!(FenceForm::of(&ctx.create_fence()), FenceForm::Software);
        let mem = crate::seqno::SeqnoMemory::anonymous(64).unwrap();
        let word = mem.word(0, crate::seqno::SeqnoWidth::U64).unwrap();
        assert_eq!(FenceForm::of(&word.fence(1)), FenceForm::Seqno);
    }

    #[test]
    fn cpu_wait_of_a_software_fence_is_bounded() {
        let ctx = FenceContext::new("t", "t");
        let f = ctx.create_fence();
        assert_eq!(
            wait_fence(&f, Duration::from_millis(5)),
            Err(WaitError::TimedOut)
        );
        assert!(!f.is_signaled(), "a timeout ends the wait, not the fence");
        f.signal().unwrap();
        assert_eq!(wait_fence(&f, Duration::ZERO), Ok(()));
    }
}
