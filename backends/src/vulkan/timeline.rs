//! Timeline semaphores as fences: the [`TimelinePoint`] fence kind and the
//! per-device waiter thread that signals runtime fences.
//!
//! A point `(semaphore, value)` is signaled once the semaphore's counter
//! reaches `value`. `is_signaled` reads the counter; a CPU wait uses
//! `vkWaitSemaphores` with a timeout; enabling signaling hands the fence to
//! the device's one [`Waiter`], a thread blocked in `vkWaitSemaphores(ANY)`
//! on every registered point plus a private "wake" timeline semaphore that
//! registration bumps from the host.
//!
//! Locking: `WaiterShared::state` (a mutex) guards the pending list and the
//! wake counter; it is never held while a fence is signaled (callbacks run on
//! the waiter thread with no lock held) nor across `vkWaitSemaphores`. Only
//! the waiter thread removes entries, so the semaphores it waits on stay alive
//! (each entry holds an `Arc<TimelineSemaphore>`) while it waits unlocked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ash::vk;
use bufsync::fence::{alloc_contexts, Fence, FenceError, FenceKind};

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use crate::sync_file::SyncFile;

/// Creates a timeline semaphore with `initial` as its counter.
pub(crate) fn create_timeline_semaphore(dev: &ash::Device, initial: u64) -> Result<vk::Semaphore> {
    let mut ty = vk::SemaphoreTypeCreateInfo::default()
        .semaphore_type(vk::SemaphoreType::TIMELINE)
        .initial_value(initial);
    let info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
    // SAFETY: valid device (timeline feature enabled); chain points to locals.
    unsafe { dev.create_semaphore(&info, None) }.map_err(VulkanError::vk("vkCreateSemaphore"))
}

fn duration_ns(timeout: Option<Duration>) -> u64 {
    timeout.map_or(u64::MAX, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    })
}

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

    /// Signals `value` from the host (`vkSignalSemaphore`); it must be greater
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
    /// passes (`None`: forever). `Ok(false)` on timeout.
    pub fn wait(&self, value: u64, timeout: Option<Duration>) -> Result<bool> {
        let sems = [self.sem];
        let values = [value];
        let info = vk::SemaphoreWaitInfo::default()
            .semaphores(&sems)
            .values(&values);
        // SAFETY: valid semaphore; arrays live across the call.
        match unsafe {
            self.ctx
                .device()
                .wait_semaphores(&info, duration_ns(timeout))
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
            // SAFETY: no waiter entry holds this semaphore (entries hold an
            // Arc of it); submissions that use it hold an Arc until retired.
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

    /// CPU wait with `vkWaitSemaphores` (no runtime machinery); `TimedOut`
    /// after `timeout`, `DeviceLost` on a lost device.
    pub fn wait_cpu(&self, timeout: Option<Duration>) -> Result<(), FenceError> {
        match self.sem.wait(self.value, timeout) {
            Ok(true) => Ok(()),
            Ok(false) => Err(FenceError::TimedOut),
            Err(_) => Err(FenceError::DeviceLost),
        }
    }
}

/// Waits for `fence` on the CPU: a timeline point through `vkWaitSemaphores`
/// (and then signals the runtime fence), anything else through the runtime.
pub fn wait_fence(fence: &Fence, timeout: Option<Duration>) -> Result<(), FenceError> {
    if let Some(point) = fence.kind_as::<TimelinePoint>() {
        point.wait_cpu(timeout)?;
        let _ = fence.signal();
        return match fence.error() {
            Some(e) => Err(e),
            None => Ok(()),
        };
    }
    match timeout {
        None => fence.wait(),
        Some(t) => fence.wait_timeout(t).map_err(|e| match e {
            bufsync::fence::WaitError::Fence(f) => f,
            bufsync::fence::WaitError::TimedOut => FenceError::TimedOut,
            bufsync::fence::WaitError::Cancelled => FenceError::Cancelled,
        }),
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

impl FenceKind for TimelinePoint {
    fn driver_name(&self) -> &str {
        "vulkan"
    }

    fn timeline_name(&self) -> &str {
        &self.sem.name
    }

    fn enable_signaling(&self, fence: &Fence) -> Result<(), FenceError> {
        let ctx = &self.sem.ctx;
        let waiter = match ctx.waiter.get() {
            Some(w) => w,
            None => {
                let started = Waiter::start(ctx.device().clone()).map_err(|e| {
                    log::error!("vulkan: cannot start the timeline waiter: {e}");
                    FenceError::DeviceLost
                })?;
                match ctx.waiter.set(started) {
                    Ok(()) => {}
                    // Lost a race: stop ours, use the winner's.
                    Err(ours) => ours.shutdown(ctx.device()),
                }
                ctx.waiter.get().ok_or(FenceError::DeviceLost)?
            }
        };
        waiter.add(self.sem.clone(), self.value, fence.clone())
    }

    fn poll_signaled(&self, _fence: &Fence) -> bool {
        self.sem.value().is_ok_and(|v| v >= self.value)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct Entry {
    sem: Arc<TimelineSemaphore>,
    value: u64,
    fence: Fence,
}

struct WaiterState {
    pending: Vec<Entry>,
    wake_value: u64,
    shutdown: bool,
    /// The thread exited after a device error.
    dead: bool,
}

struct WaiterShared {
    device: ash::Device,
    wake: vk::Semaphore,
    state: Mutex<WaiterState>,
}

/// One thread per device that turns timeline progress into fence signals.
pub(crate) struct Waiter {
    shared: Arc<WaiterShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Waiter {
    fn start(device: ash::Device) -> Result<Waiter> {
        let wake = create_timeline_semaphore(&device, 0)?;
        let shared = Arc::new(WaiterShared {
            device,
            wake,
            state: Mutex::new(WaiterState {
                pending: Vec::new(),
                wake_value: 0,
                shutdown: false,
                dead: false,
            }),
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bufsync-vk-waiter".into())
            .spawn(move || waiter_loop(&s2));
        match thread {
            Ok(t) => Ok(Waiter {
                shared,
                thread: Mutex::new(Some(t)),
            }),
            Err(e) => {
                // SAFETY: the semaphore was created above and is unused.
                unsafe { shared.device.destroy_semaphore(wake, None) };
                Err(VulkanError::Os {
                    call: "thread spawn",
                    errno: e.raw_os_error().unwrap_or(0),
                })
            }
        }
    }

    /// Registers a point. Takes the waiter's state lock.
    fn add(&self, sem: Arc<TimelineSemaphore>, value: u64, fence: Fence) -> Result<(), FenceError> {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.shutdown {
            return Err(FenceError::Cancelled);
        }
        if st.dead {
            return Err(FenceError::DeviceLost);
        }
        st.pending.push(Entry { sem, value, fence });
        st.wake_value += 1;
        bump(&self.shared, st.wake_value).map_err(|_| FenceError::DeviceLost)
    }

    /// Stops the thread and destroys the wake semaphore. Takes the state lock.
    pub(crate) fn shutdown(&self, _device: &ash::Device) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.shutdown = true;
            st.wake_value += 1;
            if let Err(e) = bump(&self.shared, st.wake_value) {
                log::error!("vulkan: cannot wake the timeline waiter: {e}");
            }
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            // The last context reference may be dropped by the waiter thread
            // itself (it drops signaled fences): then it cannot be joined, but
            // it checks `shutdown` before its next Vulkan call and exits.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        // SAFETY: the waiter thread has exited, or is this thread and makes no
        // further Vulkan call after seeing `shutdown`.
        unsafe { self.shared.device.destroy_semaphore(self.shared.wake, None) };
    }
}

fn bump(shared: &WaiterShared, value: u64) -> Result<()> {
    let info = vk::SemaphoreSignalInfo::default()
        .semaphore(shared.wake)
        .value(value);
    // SAFETY: our own semaphore, bumped under the state lock so values increase.
    unsafe { shared.device.signal_semaphore(&info) }.map_err(VulkanError::vk("vkSignalSemaphore"))
}

fn waiter_loop(shared: &WaiterShared) {
    let mut seen_wake = 0u64;
    let mut done: Vec<(Fence, Option<FenceError>)> = Vec::new();
    loop {
        // Dropping signaled fences may drop the last reference to the context,
        // whose drop shuts this waiter down from this very thread and then
        // destroys the device: after `signal_all`, always come back here and
        // check `shutdown` before any Vulkan call.
        let (sems, values) = {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.shutdown {
                let rest: Vec<Entry> = st.pending.drain(..).collect();
                drop(st);
                for e in rest {
                    let _ = e.fence.signal_with_error(FenceError::Cancelled);
                }
                return;
            }
            st.pending.retain(|e| match e.sem.value() {
                Ok(v) if v >= e.value => {
                    done.push((e.fence.clone(), None));
                    false
                }
                Ok(_) => true,
                Err(_) => {
                    done.push((e.fence.clone(), Some(FenceError::DeviceLost)));
                    false
                }
            });
            let mut sems = vec![shared.wake];
            let mut values = vec![seen_wake + 1];
            for e in &st.pending {
                sems.push(e.sem.handle());
                values.push(e.value);
            }
            (sems, values)
        };
        if !done.is_empty() {
            drop((sems, values));
            signal_all(&mut done);
            continue;
        }
        let info = vk::SemaphoreWaitInfo::default()
            .flags(vk::SemaphoreWaitFlags::ANY)
            .semaphores(&sems)
            .values(&values);
        // SAFETY: every semaphore is kept alive by its pending entry (only this
        // thread removes entries) or is the waiter's own wake semaphore, which
        // is destroyed only after this thread exits or from this thread.
        let r = unsafe { shared.device.wait_semaphores(&info, u64::MAX) };
        match r {
            Ok(()) | Err(vk::Result::TIMEOUT) => {}
            Err(e) => {
                log::error!("vulkan: timeline waiter: vkWaitSemaphores: {e}");
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                st.dead = true;
                let rest: Vec<Entry> = st.pending.drain(..).collect();
                drop(st);
                for e in rest {
                    let _ = e.fence.signal_with_error(FenceError::DeviceLost);
                }
                return;
            }
        }
        // SAFETY: our own semaphore; no fence was dropped since the shutdown check.
        seen_wake =
            unsafe { shared.device.get_semaphore_counter_value(shared.wake) }.unwrap_or(seen_wake);
    }
}

fn signal_all(done: &mut Vec<(Fence, Option<FenceError>)>) {
    for (fence, err) in done.drain(..) {
        let _ = match err {
            None => fence.signal(),
            Some(e) => fence.signal_with_error(e),
        };
    }
}
