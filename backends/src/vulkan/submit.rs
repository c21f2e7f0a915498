//! Submissions that wait in hardware whenever they can.
//!
//! Each wait is classified ([`Submitter::classify`], by the shared
//! [`decide`](crate::wait_path::decide)):
//! - a pending timeline point of this device becomes a wait semaphore;
//! - a sync_file (a checked [`SyncFile`], never a raw fd) is imported into a
//!   temporary binary SYNC_FD semaphore where the device can import those;
//! - everything else is waited in software before `vkQueueSubmit`, all
//!   within the submission's bound: a dependency still pending at the
//!   bound fails the submission ([`VulkanError::DependencyPending`], naming
//!   the fence) and nothing is submitted, so a stuck dependency never
//!   stalls the queue for everyone. A failed dependency fails it too.
//!
//! Waits the GPU does (timeline points, imported sync_files) are the
//! kernel's: their producer completes them in finite time by contract.
//! Dropping a `Submitter` waits, bounded ([`DROP_TIMEOUT`], or
//! [`Submitter::finish`] with the caller's bound and a typed error), for its
//! submissions; if one is still running then, its objects are leaked
//! rather than destroyed under the GPU. What the caller's command buffers
//! use (pipelines, buffers, images) is the caller's to keep alive until the
//! work has finished: call `finish` first, and leak them if it fails
//! (destroying them under a running job is a use-after-free in the driver;
//! the demo's Vulkan renderer does exactly this).
//!
//! The submission signals the next point of the submitter's timeline; its
//! [`Submitted::fence`] is a [`TimelinePoint`] fence. Where SYNC_FD export
//! hands out pending fences (probed, see `caps`), the render-done fence also
//! gets a sync_file form (for KMS IN_FENCE_FD and dma-buf IMPORT_SYNC_FILE).
//!
//! Locking: `Submitter::state` (mutex) guards the command pool, the free
//! command buffers and the in-flight list; it is held from value allocation
//! through `vkQueueSubmit` so timeline values reach the queue in order, and
//! the context's queue lock nests inside it. Software waits happen before
//! it is taken.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ash::vk;
use bufsync::fence::{Fence, FenceStatus, WaitError};

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::semaphore::create_exportable_binary;
use super::timeline::{TimelinePoint, TimelineSemaphore};
use crate::sync_file::SyncFile;
use crate::wait_path::{decide, wait_fence, FenceForm, Route, Waiter};

/// How long dropping a [`Submitter`] waits for its submissions before it
/// gives up and leaks their objects (see [`Submitter::set_drop_timeout`]).
pub const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// How one wait of a submission was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitPath {
    /// Already signaled: nothing to wait for.
    Signaled,
    /// Same-device timeline point, waited on the GPU.
    TimelineHw,
    /// Foreign kernel fence (sync_file), waited on the GPU.
    SyncFileHw,
    /// Waited on the CPU before the submit.
    Software,
}

/// Which path each wait of a submission took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmitReport {
    /// Waits that were already signaled.
    pub signaled: u32,
    /// Same-device timeline waits done on the GPU.
    pub timeline_hw: u32,
    /// sync_file waits done on the GPU.
    pub sync_file_hw: u32,
    /// Waits done on the CPU.
    pub software: u32,
}

impl SubmitReport {
    fn count(&mut self, p: WaitPath) {
        match p {
            WaitPath::Signaled => self.signaled += 1,
            WaitPath::TimelineHw => self.timeline_hw += 1,
            WaitPath::SyncFileHw => self.sync_file_hw += 1,
            WaitPath::Software => self.software += 1,
        }
    }
}

/// What a submission produced.
#[derive(Debug)]
pub struct Submitted {
    /// The render-done fence (a [`TimelinePoint`]).
    pub fence: Fence,
    /// Its timeline value.
    pub value: u64,
    /// A pending sync_file of the same completion, where the device exports
    /// pending SYNC_FDs.
    pub sync_file: Option<SyncFile>,
    /// How the waits were done.
    pub report: SubmitReport,
}

/// One wait of a submission.
#[derive(Clone, Copy, Debug)]
pub enum Wait<'a> {
    /// A runtime fence of any kind.
    Fence(&'a Fence),
    /// A sync_file (checked when it became a [`SyncFile`]; not consumed).
    SyncFile(&'a SyncFile),
}

impl<'a> From<&'a SyncFile> for Wait<'a> {
    fn from(s: &'a SyncFile) -> Self {
        Wait::SyncFile(s)
    }
}

impl<'a> From<&'a Fence> for Wait<'a> {
    fn from(f: &'a Fence) -> Self {
        Wait::Fence(f)
    }
}

struct InFlight {
    value: u64,
    cmd: Option<vk::CommandBuffer>,
    temps: Vec<vk::Semaphore>,
    /// Fences whose semaphores the GPU waits on (keeps them alive).
    _keep: Vec<Fence>,
}

struct State {
    pool: vk::CommandPool,
    free: Vec<vk::CommandBuffer>,
    in_flight: VecDeque<InFlight>,
}

/// Submits work to the context's queue, signaling its own timeline.
pub struct Submitter {
    ctx: Arc<VulkanContext>,
    timeline: Arc<TimelineSemaphore>,
    state: Mutex<State>,
    drop_timeout: Duration,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter")
            .field("timeline", &self.timeline)
            .finish()
    }
}

impl Submitter {
    /// A submitter with a new timeline and command pool on `ctx`.
    pub fn new(ctx: &Arc<VulkanContext>) -> Result<Self> {
        let timeline = TimelineSemaphore::new(ctx, 0)?;
        let info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(ctx.queue_family_index())
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: valid device.
        let pool = unsafe { ctx.device().create_command_pool(&info, None) }
            .map_err(VulkanError::vk("vkCreateCommandPool"))?;
        Ok(Submitter {
            ctx: ctx.clone(),
            timeline,
            state: Mutex::new(State {
                pool,
                free: Vec::new(),
                in_flight: VecDeque::new(),
            }),
            drop_timeout: DROP_TIMEOUT,
        })
    }

    /// Sets how long dropping waits for the submissions still running
    /// (default [`DROP_TIMEOUT`]).
    pub fn set_drop_timeout(&mut self, t: Duration) {
        self.drop_timeout = t;
    }

    /// The timeline every submission signals.
    pub fn timeline(&self) -> &Arc<TimelineSemaphore> {
        &self.timeline
    }

    /// The context.
    pub fn vulkan(&self) -> &Arc<VulkanContext> {
        &self.ctx
    }

    /// How `wait` would be waited by a submission on this device: already
    /// signaled, or what [`decide`] says for its form and this device
    /// ([`Waiter::vulkan`]).
    pub fn classify(&self, wait: &Wait<'_>) -> WaitPath {
        let form = match wait {
            Wait::Fence(f) if f.is_signaled() => return WaitPath::Signaled,
            Wait::Fence(f) => FenceForm::of(f),
            Wait::SyncFile(sf) if crate::sys::sync_file::signaled_now(sf.fd()) => {
                return WaitPath::Signaled
            }
            Wait::SyncFile(_) => FenceForm::SyncFile,
        };
        match decide(form, &Waiter::vulkan(&self.ctx)).route {
            Route::GpuTimeline => WaitPath::TimelineHw,
            Route::GpuSyncFile => WaitPath::SyncFileHw,
            _ => WaitPath::Software,
        }
    }

    /// Records a command buffer with `record` and submits it after `waits`.
    /// Waits done in software share the bound `timeout`
    /// ([`VulkanError::DependencyPending`] when it passes: nothing is
    /// submitted). Takes the submitter's state lock (and the queue lock
    /// inside it) after the software waits.
    ///
    /// ```no_run
    /// # use bufsync_backends::vulkan::{Submitter, VulkanContext, Wait};
    /// # use std::time::Duration;
    /// # fn demo(ctx: &std::sync::Arc<VulkanContext>, dep: &bufsync::fence::Fence) -> bufsync_backends::vulkan::Result<()> {
    /// let sub = Submitter::new(ctx)?;
    /// let done = sub.submit(&[Wait::Fence(dep)], Duration::from_secs(1), |_dev, _cmd| Ok(()))?;
    /// bufsync_backends::vulkan::wait_fence(&done.fence, Duration::from_secs(1))
    ///     .map_err(|e| bufsync_backends::vulkan::VulkanError::Unsupported(e.to_string()))?;
    /// # Ok(()) }
    /// ```
    pub fn submit(
        &self,
        waits: &[Wait<'_>],
        timeout: Duration,
        record: impl FnOnce(&ash::Device, vk::CommandBuffer) -> Result<()>,
    ) -> Result<Submitted> {
        self.submit_inner(waits, timeout, Some(Box::new(record)), &[])
    }

    /// Submits the application's own recorded command buffers after `waits`
    /// (software waits bounded by `timeout`, as for [`submit`](Self::submit)).
    pub fn submit_command_buffers(
        &self,
        waits: &[Wait<'_>],
        timeout: Duration,
        cmds: &[vk::CommandBuffer],
    ) -> Result<Submitted> {
        self.submit_inner(waits, timeout, None, cmds)
    }

    #[allow(clippy::type_complexity)]
    fn submit_inner(
        &self,
        waits: &[Wait<'_>],
        timeout: Duration,
        record: Option<Box<dyn FnOnce(&ash::Device, vk::CommandBuffer) -> Result<()> + '_>>,
        app_cmds: &[vk::CommandBuffer],
    ) -> Result<Submitted> {
        let dev = self.ctx.device();
        let start = Instant::now();
        // A bound too far to represent is a year: still a bound.
        let deadline = start
            .checked_add(timeout)
            .unwrap_or(start + Duration::from_secs(365 * 86_400));
        let mut report = SubmitReport::default();
        let mut hw_timeline: Vec<(Fence, vk::Semaphore, u64)> = Vec::new();
        let mut hw_sync: Vec<OwnedFd> = Vec::new();
        for w in waits {
            let mut path = self.classify(w);
            match (w, path) {
                (Wait::Fence(f), WaitPath::TimelineHw) => {
                    if let Some(p) = f.kind_as::<TimelinePoint>() {
                        hw_timeline.push(((*f).clone(), p.semaphore().handle(), p.value()));
                    }
                }
                (Wait::SyncFile(sf), WaitPath::SyncFileHw) => {
                    // An error the kernel's merge dropped cannot go to the
                    // GPU with the fd: the dependency has failed.
                    if let Some(e) = sf.carried_error() {
                        return Err(VulkanError::Fence(e));
                    }
                    hw_sync.push(sf.try_clone()?.into_fd());
                }
                (Wait::Fence(f), WaitPath::SyncFileHw) => match crate::wait_path::to_sync_file(f) {
                    Ok(Some(sf)) if sf.carried_error().is_none() => hw_sync.push(sf.into_fd()),
                    Ok(Some(sf)) => {
                        return Err(VulkanError::Fence(sf.carried_error().unwrap_or(
                            bufsync::fence::FenceError::Errno(
                                rustix::io::Errno::INVAL.raw_os_error(),
                            ),
                        )))
                    }
                    Ok(None) => path = WaitPath::Signaled,
                    Err(crate::Error::Fence(e)) => return Err(VulkanError::Fence(e)),
                    Err(e) => {
                        log::debug!("vulkan: no sync_file form ({e}); waiting in software");
                        path = WaitPath::Software;
                        wait_dependency(f, start, deadline)?;
                    }
                },
                (Wait::Fence(f), WaitPath::Software) => wait_dependency(f, start, deadline)?,
                (Wait::SyncFile(sf), WaitPath::Software) => wait_sync_file(sf, deadline)?,
                (Wait::Fence(f), _) => {
                    // A dependency that failed fails the submission (as
                    // drm_sched skips a job whose dependency has an error).
                    if let Some(e) = f.error() {
                        return Err(VulkanError::Fence(e));
                    }
                    path = WaitPath::Signaled;
                }
                (Wait::SyncFile(sf), _) => {
                    if let FenceStatus::Error(e) = sf.status()? {
                        return Err(VulkanError::Fence(e));
                    }
                    path = WaitPath::Signaled;
                }
            }
            report.count(path);
        }

        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.retire_locked(&mut st);
        let mut flight = InFlight {
            value: 0,
            cmd: None,
            temps: Vec::new(),
            _keep: Vec::new(),
        };
        let result = self.submit_locked(
            &mut st,
            &mut flight,
            hw_timeline,
            hw_sync,
            record,
            app_cmds,
            &mut report,
            deadline,
        );
        match result {
            Ok((value, sync_file)) => {
                flight.value = value;
                st.in_flight.push_back(flight);
                let form = sync_file.as_ref().and_then(|s| s.try_clone().ok());
                let fence = self.timeline.point_with_sync_file(value, form);
                Ok(Submitted {
                    fence,
                    value,
                    sync_file,
                    report,
                })
            }
            Err(e) => {
                // Nothing was submitted: give everything back now.
                // SAFETY: the objects were never submitted.
                unsafe {
                    for s in flight.temps.drain(..) {
                        dev.destroy_semaphore(s, None);
                    }
                }
                if let Some(c) = flight.cmd {
                    st.free.push(c);
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn submit_locked(
        &self,
        st: &mut State,
        flight: &mut InFlight,
        hw_timeline: Vec<(Fence, vk::Semaphore, u64)>,
        hw_sync: Vec<OwnedFd>,
        record: Option<Box<dyn FnOnce(&ash::Device, vk::CommandBuffer) -> Result<()> + '_>>,
        app_cmds: &[vk::CommandBuffer],
        report: &mut SubmitReport,
        deadline: Instant,
    ) -> Result<(u64, Option<SyncFile>)> {
        let dev = self.ctx.device();
        let mut wait_sems = Vec::new();
        let mut wait_values = Vec::new();
        for (f, sem, v) in hw_timeline {
            wait_sems.push(sem);
            wait_values.push(v);
            flight._keep.push(f);
        }
        for fd in hw_sync {
            match self.import_sync_file(fd) {
                Ok(sem) => {
                    flight.temps.push(sem);
                    wait_sems.push(sem);
                    wait_values.push(0);
                }
                Err((e, fd)) => {
                    log::warn!("vulkan: sync_file import failed ({e}); waiting in software");
                    report.sync_file_hw -= 1;
                    report.software += 1;
                    wait_sync_fd(fd.as_fd(), deadline)?;
                }
            }
        }
        let mut cmds: Vec<vk::CommandBuffer> = app_cmds.to_vec();
        if let Some(record) = record {
            let cmd = self.command_buffer(st)?;
            flight.cmd = Some(cmd);
            let begin = vk::CommandBufferBeginInfo::default()
                .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
            // SAFETY: a free command buffer of our pool, under the state lock.
            unsafe { dev.begin_command_buffer(cmd, &begin) }
                .map_err(VulkanError::vk("vkBeginCommandBuffer"))?;
            record(dev, cmd)?;
            // SAFETY: recording started above.
            unsafe { dev.end_command_buffer(cmd) }
                .map_err(VulkanError::vk("vkEndCommandBuffer"))?;
            cmds.push(cmd);
        }
        let value = self.timeline.next_value();
        let mut signal_sems = vec![self.timeline.handle()];
        let mut signal_values = vec![value];
        let export = if self.ctx.sync_file_out() {
            let sem = create_exportable_binary(dev)?;
            flight.temps.push(sem);
            signal_sems.push(sem);
            signal_values.push(0);
            Some(sem)
        } else {
            None
        };
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; wait_sems.len()];
        let mut tl = vk::TimelineSemaphoreSubmitInfo::default()
            .wait_semaphore_values(&wait_values)
            .signal_semaphore_values(&signal_values);
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(&wait_sems)
            .wait_dst_stage_mask(&stages)
            .command_buffers(&cmds)
            .signal_semaphores(&signal_sems)
            .push_next(&mut tl);
        {
            let q = self.ctx.queue_lock();
            // SAFETY: queue lock held; all handles alive until retired (kept in `flight`).
            unsafe { dev.queue_submit(q.queue(), &[submit], vk::Fence::null()) }
                .map_err(VulkanError::vk("vkQueueSubmit"))?;
        }
        let sync_file = match (export, self.ctx.fns.semaphore_fd.as_ref()) {
            (Some(sem), Some(sfd)) => {
                let info = vk::SemaphoreGetFdInfoKHR::default()
                    .semaphore(sem)
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
                // SAFETY: the semaphore has a pending signal (just submitted).
                match unsafe { sfd.get_semaphore_fd(&info) } {
                    Ok(fd) if fd >= 0 => {
                        // SAFETY: vkGetSemaphoreFdKHR returned a new fd owned by us.
                        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                        SyncFile::from_fd(owned).ok()
                    }
                    Ok(_) => None,
                    Err(e) => {
                        log::warn!("vulkan: SYNC_FD export failed: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok((value, sync_file))
    }

    /// Imports a sync_file into a new temporary binary semaphore. On failure
    /// the fd comes back unless the driver already closed it.
    fn import_sync_file(
        &self,
        fd: OwnedFd,
    ) -> std::result::Result<vk::Semaphore, (VulkanError, OwnedFd)> {
        let dev = self.ctx.device();
        let Some(sfd) = self.ctx.fns.semaphore_fd.as_ref() else {
            return Err((VulkanError::Missing("VK_KHR_external_semaphore_fd"), fd));
        };
        // SAFETY: valid device.
        let sem = match unsafe { dev.create_semaphore(&vk::SemaphoreCreateInfo::default(), None) } {
            Ok(s) => s,
            Err(e) => return Err((VulkanError::vk("vkCreateSemaphore")(e), fd)),
        };
        // Keep a dup so a failed import (lavapipe may close the fd) can still
        // be waited on in software.
        let keep = match fd.try_clone() {
            Ok(k) => k,
            Err(e) => {
                // SAFETY: created above, unused.
                unsafe { dev.destroy_semaphore(sem, None) };
                return Err((
                    VulkanError::Os {
                        call: "dup",
                        errno: e.raw_os_error().unwrap_or(0),
                    },
                    fd,
                ));
            }
        };
        let raw = fd.into_raw_fd();
        let info = vk::ImportSemaphoreFdInfoKHR::default()
            .semaphore(sem)
            .flags(vk::SemaphoreImportFlags::TEMPORARY)
            .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD)
            .fd(raw);
        // SAFETY: valid semaphore; on success the driver owns `raw`.
        match unsafe { sfd.import_semaphore_fd(&info) } {
            Ok(()) => Ok(sem),
            Err(e) => {
                // SAFETY: `raw` is closed by us only if it still names the same file.
                let same = rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(raw) })
                    .ok()
                    .zip(rustix::fs::fstat(&keep).ok());
                if let Some((a, b)) = same {
                    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                        // SAFETY: the driver left our dup open; it is still ours.
                        drop(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
                // SAFETY: never submitted.
                unsafe { dev.destroy_semaphore(sem, None) };
                Err((VulkanError::vk("vkImportSemaphoreFdKHR")(e), keep))
            }
        }
    }

    fn command_buffer(&self, st: &mut State) -> Result<vk::CommandBuffer> {
        if let Some(c) = st.free.pop() {
            return Ok(c);
        }
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(st.pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: our pool, under the state lock.
        let v = unsafe { self.ctx.device().allocate_command_buffers(&info) }
            .map_err(VulkanError::vk("vkAllocateCommandBuffers"))?;
        Ok(v[0])
    }

    /// Frees what finished submissions held. Needs the state lock.
    fn retire_locked(&self, st: &mut State) {
        let Ok(done) = self.timeline.value() else {
            return;
        };
        while st.in_flight.front().is_some_and(|f| f.value <= done) {
            let Some(f) = st.in_flight.pop_front() else {
                break;
            };
            self.release(st, f);
        }
    }

    fn release(&self, st: &mut State, f: InFlight) {
        let dev = self.ctx.device();
        // SAFETY: the submission that used these finished (timeline passed it).
        unsafe {
            for s in f.temps {
                dev.destroy_semaphore(s, None);
            }
            if let Some(c) = f.cmd {
                if dev
                    .reset_command_buffer(c, vk::CommandBufferResetFlags::empty())
                    .is_ok()
                {
                    st.free.push(c);
                } else {
                    dev.free_command_buffers(st.pool, &[c]);
                }
            }
        }
    }

    /// Frees finished submissions' resources. Takes the state lock.
    pub fn retire(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.retire_locked(&mut st);
    }
}

impl Submitter {
    /// Waits (at most `timeout`) until every submission made so far has
    /// completed, then frees what they held. [`VulkanError::TimedOut`] when
    /// one is still running (nothing is freed under it).
    pub fn finish(&self, timeout: Duration) -> Result<()> {
        let last = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.in_flight.back().map(|f| f.value)
        };
        if let Some(last) = last {
            if !self.timeline.wait(last, timeout)? {
                return Err(VulkanError::TimedOut {
                    what: "submissions to finish",
                    waited: timeout,
                });
            }
        }
        self.retire();
        Ok(())
    }
}

/// Waits at most the drop bound for the submissions still running, then
/// frees what they held; leaks it instead if one is still running (see the
/// module docs: the caller's own objects need the same care).
impl Drop for Submitter {
    fn drop(&mut self) {
        let timeout = self.drop_timeout;
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = st.in_flight.back().map(|f| f.value) {
            match self.timeline.wait(last, timeout) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    // Still running (a dependency the GPU waits for has not
                    // signaled): destroying its command buffers, semaphores
                    // or timeline under it would be undefined behaviour, and
                    // waiting longer would stall the caller. Leak them.
                    log::error!(
                        "vulkan: submitter dropped with submission {last} still running after {timeout:?}: leaking its command pool, semaphores and timeline"
                    );
                    let st = std::mem::replace(
                        st,
                        State {
                            pool: vk::CommandPool::null(),
                            free: Vec::new(),
                            in_flight: VecDeque::new(),
                        },
                    );
                    std::mem::forget(st.in_flight);
                    std::mem::forget(Arc::clone(&self.timeline));
                    return;
                }
            }
        }
        let mut st = std::mem::replace(
            self.state.get_mut().unwrap_or_else(|p| p.into_inner()),
            State {
                pool: vk::CommandPool::null(),
                free: Vec::new(),
                in_flight: VecDeque::new(),
            },
        );
        while let Some(f) = st.in_flight.pop_front() {
            self.release(&mut st, f);
        }
        // SAFETY: no command buffer of the pool is pending any more.
        unsafe { self.ctx.device().destroy_command_pool(st.pool, None) };
    }
}

/// Waits on the CPU for a dependency until `deadline`: a pending one at the
/// deadline is named ([`VulkanError::DependencyPending`]), a failed one
/// fails the submission.
fn wait_dependency(f: &Fence, start: Instant, deadline: Instant) -> Result<()> {
    match wait_fence(f, deadline.saturating_duration_since(Instant::now())) {
        Ok(()) => Ok(()),
        Err(WaitError::Fence(e)) => Err(VulkanError::Fence(e)),
        Err(WaitError::TimedOut | WaitError::Cancelled) => Err(VulkanError::DependencyPending {
            fence: f.clone(),
            waited: start.elapsed(),
        }),
    }
}

/// Waits on the CPU until the sync_file signals or `deadline` passes.
fn wait_sync_file(sf: &SyncFile, deadline: Instant) -> Result<()> {
    match sf.wait(deadline.saturating_duration_since(Instant::now())) {
        Ok(()) => Ok(()),
        Err(crate::Error::Fence(e)) => Err(VulkanError::Fence(e)),
        Err(e) => Err(e.into()),
    }
}

/// [`wait_sync_file`] for a dup the driver handed back after a failed
/// import (same fd, so same fence; no error carried beyond the kernel's).
fn wait_sync_fd(fd: BorrowedFd<'_>, deadline: Instant) -> Result<()> {
    let sf = SyncFile::from_borrowed(fd)?;
    wait_sync_file(&sf, deadline)
}
