//! Timeline semaphores as fences: the [`TimelinePoint`] fence kind.
//!
//! A point `(semaphore, value)` is signaled once the semaphore's counter
//! reaches `value`. `is_signaled` reads the counter; a CPU wait uses
//! `vkWaitSemaphores` on the one semaphore with a bound
//! ([`TimelinePoint::wait_cpu`], [`wait_fence`]). Software signaling (a
//! runtime wait, a callback) hands the point to the runtime's fence engine,
//! which polls the counter with back-off (50 µs doubling to 5 ms): no
//! thread of bufsync's own, and an event loop can drive it.
//!
//! Why not a waiter thread blocked in `vkWaitSemaphores(ANY)` over every
//! pending point plus a wake semaphore (what this module did before): on a
//! driver whose timelines are emulated (Mesa's `vk_sync_timeline`, e.g.
//! lavapipe), a wait for ANY of several semaphores is a busy loop of
//! zero-timeout checks (`vk_sync_wait_many`), so that thread burned a CPU
//! for as long as any point was pending.
//!
//! Locking: none of bufsync's own; a `TimelineSemaphore` is a handle plus an
//! atomic counter of issued values. Vulkan allows concurrent waits, signals
//! and counter reads on one semaphore.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ash::vk;
use bufsync::fence::{alloc_contexts, Fence, FenceError, FenceKind, WaitError};

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::semaphore::{create_timeline_semaphore, timeout_ns};
use crate::sync_file::SyncFile;

/// A Vulkan timeline semaphore, one runtime fence context.
pub struct TimelineSemaphore {
    ctx: Arc<VulkanContext>,
    sem: vk::Semaphore,
    owned: bool,
    context: u64,
    name: String,
    /// Last value handed out by [`TimelineSemaphore::next_value`].
    issued: AtomicU64,
}

impl std::fmt::Debug for TimelineSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimelineSemaphore")
            .field("semaphore", &self.sem)
            .field("context", &self.context)
            .field("issued", &self.issued.load(Ordering::Relaxed))
            .finish()
    }
}

impl TimelineSemaphore {
    /// Creates a timeline semaphore whose counter starts at `initial`.
    pub fn new(ctx: &Arc<VulkanContext>, initial: u64) -> Result<Arc<Self>> {
        let sem = create_timeline_semaphore(ctx.device(), initial)?;
        Ok(Self::wrap(ctx, sem, true, initial))
    }

    /// Wraps an application's timeline semaphore (not destroyed on drop).
    ///
    /// # Safety
    /// `sem` must be a timeline semaphore of `ctx`'s device that outlives the
    /// returned object.
    pub unsafe fn from_raw(ctx: &Arc<VulkanContext>, sem: vk::Semaphore) -> Result<Arc<Self>> {
        // SAFETY: the caller guarantees `sem` is a valid timeline semaphore.
        let value = unsafe { ctx.device().get_semaphore_counter_value(sem) }
            .map_err(VulkanError::vk("vkGetSemaphoreCounterValue"))?;
        Ok(Self::wrap(ctx, sem, false, value))
    }

    fn wrap(ctx: &Arc<VulkanContext>, sem: vk::Semaphore, owned: bool, issued: u64) -> Arc<Self> {
        let context = alloc_contexts(1);
        Arc::new(TimelineSemaphore {
            ctx: ctx.clone(),
            sem,
            owned,
            context,
            name: format!("vk-timeline-{context}"),
            issued: AtomicU64::new(issued),
        })
    }

    /// The Vulkan handle.
    pub fn handle(&self) -> vk::Semaphore {
        self.sem
    }

    /// The context this semaphore lives on.
    pub fn vulkan(&self) -> &Arc<VulkanContext> {
        &self.ctx
    }

    /// The runtime fence context of this timeline.
    pub fn fence_context(&self) -> u64 {
        self.context
    }

    /// Reserves the next value for a signal operation (strictly increasing).
    pub fn next_value(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The current counter (`vkGetSemaphoreCounterValue`).
    pub fn value(&self) -> Result<u64> {
        // SAFETY: valid semaphore of this device.
        unsafe { self.ctx.device().get_semaphore_counter_value(self.sem) }
            .map_err(VulkanError::vk("vkGetSemaphoreCounterValue"))
    }

    /// Signals `value` from the host (`vkSignalSemaphore`): for semaphores
    /// the application (or a test) produces itself; it must be greater
    /// than the current counter and than any pending signal.
    pub fn signal(&self, value: u64) -> Result<()> {
        self.issued.fetch_max(value, Ordering::AcqRel);
        let info = vk::SemaphoreSignalInfo::default()
            .semaphore(self.sem)
            .value(value);
        // SAFETY: valid semaphore; value ordering is the caller's contract and
        // a violation is reported by the driver, not undefined here.
        unsafe { self.ctx.device().signal_semaphore(&info) }
            .map_err(VulkanError::vk("vkSignalSemaphore"))
    }

    /// Waits on the CPU until the counter reaches `value` or `timeout`
    /// passes (`vkWaitSemaphores` on this one semaphore). `Ok(false)` on
    /// timeout.
    pub fn wait(&self, value: u64, timeout: Duration) -> Result<bool> {
        let sems = [self.sem];
        let values = [value];
        let info = vk::SemaphoreWaitInfo::default()
            .semaphores(&sems)
            .values(&values);
        // SAFETY: valid semaphore; arrays live across the call.
        match unsafe {
            self.ctx
                .device()
                .wait_semaphores(&info, timeout_ns(timeout))
        } {
            Ok(()) => Ok(true),
            Err(vk::Result::TIMEOUT) => Ok(false),
            Err(e) => Err(VulkanError::vk("vkWaitSemaphores")(e)),
        }
    }

    /// A runtime fence for the point `value` of this timeline.
    pub fn point(self: &Arc<Self>, value: u64) -> Fence {
        self.point_with_sync_file(value, None)
    }

    /// A runtime fence for the point `value`, carrying a pending sync_file
    /// of the same completion (see [`TimelinePoint::sync_file`]).
    pub fn point_with_sync_file(
        self: &Arc<Self>,
        value: u64,
        sync_file: Option<SyncFile>,
    ) -> Fence {
        let kind = Arc::new(TimelinePoint {
            sem: self.clone(),
            value,
            sync_file,
        });
        Fence::new(kind, self.context, value)
    }
}

impl Drop for TimelineSemaphore {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: every fence of this timeline holds an Arc of it, and a
            // submitter keeps one while a submission signals it (or leaks it
            // when that submission is stuck); so the GPU is done with it.
            unsafe { self.ctx.device().destroy_semaphore(self.sem, None) };
        }
    }
}

/// The fence kind of a Vulkan timeline point `(semaphore, value)`.
pub struct TimelinePoint {
    sem: Arc<TimelineSemaphore>,
    value: u64,
    sync_file: Option<SyncFile>,
}

impl TimelinePoint {
    /// The timeline semaphore.
    pub fn semaphore(&self) -> &Arc<TimelineSemaphore> {
        &self.sem
    }

    /// The point's value.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The sync_file form of this point: present for render-done fences of
    /// devices whose SYNC_FD export hands out pending fences.
    pub fn sync_file(&self) -> Option<&SyncFile> {
        self.sync_file.as_ref()
    }

    /// Whether this point lives on `ctx`'s device (it can be waited on the GPU).
    pub fn same_device(&self, ctx: &VulkanContext) -> bool {
        self.sem.ctx.device().handle() == ctx.device().handle()
    }

    /// CPU wait with `vkWaitSemaphores` on the point's semaphore (no
    /// runtime machinery), at most `timeout`: [`WaitError::TimedOut`] when
    /// it passes (the point stays pending), `DeviceLost` when the driver
    /// reports a lost device.
    pub fn wait_cpu(&self, timeout: Duration) -> Result<(), WaitError> {
        match self.sem.wait(self.value, timeout) {
            Ok(true) => Ok(()),
            Ok(false) => Err(WaitError::TimedOut),
            Err(_) => Err(WaitError::Fence(FenceError::DeviceLost)),
        }
    }
}

/// Waits for `fence` on the CPU, at most `timeout`: a timeline point through
/// `vkWaitSemaphores` (then the runtime fence is signaled at once), anything
/// else through the runtime. [`WaitError::TimedOut`] leaves the fence
/// pending.
pub fn wait_fence(fence: &Fence, timeout: Duration) -> Result<(), WaitError> {
    if let Some(point) = fence.kind_as::<TimelinePoint>() {
        if !fence.test_signaled_flag() {
            point.wait_cpu(timeout)?;
            // The counter has reached the point: the poll signals it.
            fence.is_signaled();
        }
        return match fence.error() {
            Some(e) => Err(WaitError::Fence(e)),
            None => Ok(()),
        };
    }
    fence.wait_timeout(timeout)
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

impl FenceKind for TimelinePoint {
    fn driver_name(&self) -> &str {
        "vulkan"
    }

    fn timeline_name(&self) -> &str {
        &self.sem.name
    }

    /// The counter has reached the point; a lost device (the driver's own
    /// error, mirrored) ends the point with `DeviceLost`.
    fn poll_signaled(&self, fence: &Fence) -> bool {
        match self.sem.value() {
            Ok(v) => v >= self.value,
            Err(VulkanError::Vk {
                result: vk::Result::ERROR_DEVICE_LOST,
                ..
            }) => {
                fence.set_error(FenceError::DeviceLost);
                true
            }
            Err(e) => {
                log::warn!("vulkan: reading timeline {}: {e}", self.sem.name);
                false
            }
        }
    }

    /// Software signaling: the runtime's fence engine polls the counter.
    fn needs_polling(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
