//! The per-frame flow of [`Presenter`]: `acquire` → render → `present`,
//! with today's ticket flow inside (see `queue`), the copy step of the
//! copy strategy, the render → display edge chosen per frame, flips with
//! out-fences whose next one releases the old front, and page-flip events
//! read from the display's fd (by the calls here, or by an event loop
//! through [`Presenter::dispatch`]).
//!
//! Locking: `&mut Presenter`. Software waits for render fences happen
//! before any reservation is taken (a fence's signaler must never need a
//! lock its waiter holds); the reservations of each step are held only
//! across the commit that uses them.

use std::time::{Duration, Instant};

use bufsync::fence::{Fence, FenceError};
use bufsync_backends::kms::{FlipEvent, FlipRequest, KmsError};
use bufsync_backends::sync_file::{SyncFile, SyncFileFence};
use bufsync_backends::vulkan::{ash::vk, SyncFileSemaphore};

use crate::config::{EdgeChoice, PresentMode, RenderDevice};
use crate::copy;
use crate::edge::{self, SyncForm};
use crate::error::PresentError;
use crate::frame::{Frame, RenderDone};
use crate::presenter::{InFlight, Presenter, ReadyInfo};
use crate::stats::{Edge, PresentStats};
use crate::strategy::CopyEngine;

/// How long `acquire` sleeps between looks at buffers out of rotation.
const QUARANTINE_POLL: Duration = Duration::from_millis(1);

impl Presenter {
    /// A free buffer to render into, waiting at most `timeout` for one
    /// (completed flips free them). The frame says what the renderer must
    /// wait for before writing ([`Frame::wait_fences`]).
    ///
    /// [`PresentError::AcquireTimeout`] when none frees up in time.
    pub fn acquire(&mut self, timeout: Duration) -> Result<Frame, PresentError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll_flip(Duration::ZERO)?;
            if let Some(i) = self.queue.acquire() {
                let number = self.next_frame;
                self.next_frame += 1;
                return Ok(Frame {
                    presenter: self.id,
                    slot: i,
                    number,
                    waits: self.queue.take_waits(i),
                    target: self.slots[i].target.clone(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PresentError::AcquireTimeout {
                    timeout,
                    states: self.queue.describe(),
                });
            }
            if self.queue.flipping().is_some() {
                self.poll_flip(left.min(self.cfg.flip_timeout))?;
            } else {
                // Only buffers out of rotation (or all with the caller):
                // look again shortly.
                std::thread::sleep(left.min(QUARANTINE_POLL));
            }
        }
    }

    /// Gives an acquired frame back without presenting it.
    pub fn cancel(&mut self, frame: Frame) -> Result<(), PresentError> {
        self.check_frame(&frame)?;
        let i = frame.slot;
        self.queue.return_waits(i, frame.waits);
        self.queue.cancel(i);
        Ok(())
    }

    /// One semaphore a Vulkan submission can wait on (on the GPU) for
    /// everything [`Frame::wait_fences`] holds: a binary semaphore of the
    /// presenter with the fences' merged sync_file as temporary payload.
    /// `None` when there is nothing to wait for (fences without a sync_file
    /// form are waited here, bounded by the render timeout). Wait on it in
    /// the frame's submission; it is the frame's until presented.
    pub fn acquire_semaphore(
        &mut self,
        frame: &Frame,
    ) -> Result<Option<vk::Semaphore>, PresentError> {
        self.check_frame(frame)?;
        let RenderDevice::Vulkan(ctx) = &self.render else {
            return Err(PresentError::Config(
                "acquire semaphores are for Vulkan render devices".into(),
            ));
        };
        let sync = match edge::sync_form(frame.waits.iter()) {
            Ok(SyncForm::Signaled) => return Ok(None),
            Ok(SyncForm::SyncFile(s)) => s,
            Ok(SyncForm::Software) => {
                edge::wait_software(frame.waits.iter(), self.cfg.render_timeout)
                    .map_err(|e| self.render_error(frame.number, frame.slot, e))?;
                return Ok(None);
            }
            Err(e) => return Err(self.render_error(frame.number, frame.slot, e)),
        };
        let sem = match &mut self.semaphores[frame.slot] {
            Some(s) => s,
            slot => slot.insert(SyncFileSemaphore::new(ctx)?),
        };
        sem.import(&sync)?;
        Ok(Some(sem.handle()))
    }

    /// Presents `frame`, rendered once `done` signals. The render fence is
    /// committed as the buffer's writer; for the copy strategy the copy
    /// follows it; then the flip, in FIFO order (waiting for the previous
    /// flip first) or mailbox (queued behind the flip in flight, replacing
    /// an older queued frame). The display waits for the render fence
    /// itself where it can (`IN_FENCE_FD`, or `IMPORT_SYNC_FILE` into the
    /// buffer); otherwise the presenter waits, bounded by the render
    /// timeout.
    ///
    /// On error the frame is dropped and the display keeps its last frame:
    /// [`PresentError::RenderTimeout`] (the buffer stays out of rotation
    /// until the fence ends), [`PresentError::RenderFailed`],
    /// [`PresentError::DisplayGone`], a refused commit.
    pub fn present(
        &mut self,
        frame: Frame,
        done: impl Into<RenderDone>,
    ) -> Result<(), PresentError> {
        self.check_frame(&frame)?;
        let i = frame.slot;
        let number = frame.number;
        self.queue.return_waits(i, frame.waits);
        let render = match done.into().into_fence() {
            Ok(f) => f,
            Err(e) => {
                self.queue.cancel(i);
                return Err(e.into());
            }
        };
        if let Err(e) = self.queue.commit_render(i, &render) {
            self.queue.cancel(i);
            return Err(e.into());
        }
        self.totals.presented += 1;
        let mut info = ReadyInfo {
            frame: number,
            render: render.clone(),
            waited: None,
            cpu_wait: Duration::ZERO,
            copy: None,
            copy_time: Duration::ZERO,
        };
        let flip_fence = match self.strategy().copies() {
            Some(engine) => match self.copy_step(i, number, engine, &render, &mut info) {
                Ok(f) => f,
                Err(e) => return Err(self.drop_frame(i, &render, e)),
            },
            None => render.clone(),
        };
        // The software edge, before any lock.
        let software = match edge::has_sync_form(&flip_fence) {
            Err(e) => return Err(self.drop_frame(i, &render, self.render_error(number, i, e))),
            Ok(false) => true,
            Ok(true) => self.cfg.edge == EdgeChoice::Software && !flip_fence.is_signaled(),
        };
        if software {
            let t = Instant::now();
            match edge::wait_software([&flip_fence], self.cfg.render_timeout) {
                Ok(at) => {
                    info.waited = Some(at);
                    info.cpu_wait = t.elapsed();
                }
                Err(e) => {
                    return Err(self.drop_frame(i, &render, self.render_error(number, i, e)));
                }
            }
        }
        self.poll_flip(Duration::ZERO)?;
        let queued = self.queue.present(i);
        self.ready[i] = Some(info);
        if let Some(d) = queued.dropped {
            self.frame_dropped(d);
        }
        if self.queue.flipping().is_some() {
            if self.cfg.mode == PresentMode::Mailbox {
                return Ok(());
            }
            self.poll_flip(self.cfg.flip_timeout)?;
            if self.queue.flipping().is_some() {
                return Err(self.stuck_flip());
            }
        }
        self.flip_next()
    }

    /// Reads completed flips from the display's fd without blocking (call
    /// it when [`Presenter::as_fd`] is readable) and, in mailbox mode,
    /// flips the newest ready frame. Returns the number of flips completed.
    pub fn dispatch(&mut self) -> Result<usize, PresentError> {
        let before = self.totals.shown;
        self.poll_flip(Duration::ZERO)?;
        Ok((self.totals.shown - before) as usize)
    }

    /// Waits (at most `timeout`) for the flip in flight, if any, and for
    /// the frames queued behind it (mailbox) to be flipped.
    pub fn wait_idle(&mut self, timeout: Duration) -> Result<(), PresentError> {
        let deadline = Instant::now() + timeout;
        while self.queue.flipping().is_some() || self.queue.next_ready().is_some() {
            if self.queue.flipping().is_none() {
                self.flip_next()?;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.stuck_flip());
            }
            self.poll_flip(left)?;
        }
        Ok(())
    }

    fn check_frame(&self, frame: &Frame) -> Result<(), PresentError> {
        if frame.presenter != self.id || frame.slot >= self.slots.len() {
            return Err(PresentError::ForeignFrame {
                frame: frame.number,
            });
        }
        Ok(())
    }

    pub(crate) fn render_error(&self, frame: u64, slot: usize, e: FenceError) -> PresentError {
        match e {
            FenceError::TimedOut => PresentError::RenderTimeout {
                frame,
                slot,
                timeout: self.cfg.render_timeout,
            },
            error => PresentError::RenderFailed { frame, error },
        }
    }

    /// Takes slot `i` (acquired or ready) out of the flow after `e`: out of
    /// rotation behind `render` when it timed out, else back to free.
    fn drop_frame(&mut self, i: usize, render: &Fence, e: PresentError) -> PresentError {
        self.ready[i] = None;
        let quarantine = match &e {
            PresentError::RenderTimeout { .. } => {
                self.totals.render_timeouts += 1;
                Some(render.clone())
            }
            PresentError::RenderFailed { .. } => {
                self.totals.render_failures += 1;
                None
            }
            _ => None,
        };
        self.queue.drop_ready(i, quarantine);
        log::warn!("presenter: {e}");
        e
    }

    fn frame_dropped(&mut self, slot: usize) {
        self.totals.dropped += 1;
        if let Some(info) = self.ready[slot].take() {
            self.push_stats(PresentStats {
                frame: info.frame,
                slot,
                edge: Edge::Signaled,
                copy: info.copy,
                copy_time: info.copy_time,
                cpu_wait: info.cpu_wait,
                latency: None,
                shown: false,
                early: false,
                vblank: None,
            });
        }
    }

    /// The copy strategy's step: the copy after the render fence and the
    /// display buffer's readers; returns the copy's fence.
    fn copy_step(
        &mut self,
        i: usize,
        number: u64,
        engine: CopyEngine,
        render: &Fence,
        info: &mut ReadyInfo,
    ) -> Result<Fence, PresentError> {
        let t = Instant::now();
        let timeout = self.cfg.render_timeout;
        if engine == CopyEngine::Cpu {
            // Everything the CPU copy waits for, before its locks.
            let display = self.slots[i].display.clone();
            let readers = display.reservation().fences(bufsync::resv::Usage::Read);
            edge::wait_software(std::iter::once(render).chain(readers.iter()), timeout)
                .map_err(|e| self.render_error(number, i, e))?;
            info.waited = Some(Instant::now());
            info.cpu_wait = t.elapsed();
        }
        let t = Instant::now();
        let mut out = None;
        let mut bytes = 0;
        let (slots, submitter, ctx) = (&mut self.slots, self.submitter.as_ref(), &self.copy_ctx);
        self.queue.copy(i, |waits| -> Result<Fence, PresentError> {
            let f = match (engine, submitter) {
                (CopyEngine::Gpu, Some(sub)) => copy::gpu_copy(sub, &slots[i], waits, timeout)?,
                _ => {
                    let (f, n) = copy::cpu_copy(&mut slots[i], i, waits, ctx, number, timeout)?;
                    bytes = n;
                    f
                }
            };
            out = Some(f.clone());
            Ok(f)
        })?;
        info.copy = Some(engine);
        info.copy_time = t.elapsed();
        self.totals.copies += 1;
        self.totals.copy_bytes += bytes;
        Ok(out.expect("the copy step returned a fence"))
    }

    /// Reads the flip in flight's event, waiting at most `timeout`; then
    /// (mailbox) flips the next ready frame.
    pub(crate) fn poll_flip(&mut self, timeout: Duration) -> Result<(), PresentError> {
        if self.queue.flipping().is_none() {
            return Ok(());
        }
        match self.display.wait_flip(timeout) {
            Ok(ev) => self.flip_completed(ev),
            Err(KmsError::TimedOut { .. }) => return Ok(()),
            Err(e) => {
                let e = self.display_error(e);
                if matches!(e, PresentError::DisplayGone { .. }) {
                    self.queue.flip_failed();
                    self.inflight = None;
                }
                return Err(e);
            }
        }
        if self.cfg.mode == PresentMode::Mailbox && self.queue.next_ready().is_some() {
            self.flip_next()?;
        }
        Ok(())
    }

    /// The error for a flip that did not complete in time: its render
    /// fence is still pending (the display waits for it: `IN_FENCE_FD`), or
    /// the display did not flip.
    fn stuck_flip(&self) -> PresentError {
        match &self.inflight {
            Some(f)
                if f.render_sync
                    .as_ref()
                    .is_some_and(|s| !s.is_signaled().unwrap_or(true)) =>
            {
                PresentError::RenderTimeout {
                    frame: f.stats.frame,
                    slot: f.stats.slot,
                    timeout: self.cfg.flip_timeout,
                }
            }
            _ => PresentError::Display(KmsError::TimedOut {
                what: "page-flip event",
            }),
        }
    }

    fn flip_completed(&mut self, ev: Option<FlipEvent>) {
        self.queue.flip_done();
        let Some(mut f) = self.inflight.take() else {
            return;
        };
        self.totals.shown += 1;
        let done_ns = f
            .render_sync
            .as_ref()
            .and_then(|s| s.info().ok())
            .and_then(|i| i.fences.iter().map(|x| x.timestamp_ns).max())
            .filter(|&ns| ns > 0)
            .or_else(|| f.done_at.map(bufsync_backends::clock::monotonic_ns_at));
        // On screen: when the kernel signaled the flip's out-fence (the
        // event's vblank time is the driver's estimate; vkms reports its
        // timer's scheduled expiry, which TCG delays).
        let shown_ns = f
            .out
            .as_ref()
            .and_then(|o| o.info().ok())
            .and_then(|i| i.fences.iter().map(|x| x.timestamp_ns).max())
            .filter(|&ns| ns > 0)
            .or_else(|| ev.map(|e| u64::try_from(e.time.as_nanos()).unwrap_or(u64::MAX)));
        if let (Some(shown), Some(done)) = (shown_ns, done_ns) {
            f.stats.latency = Some(Duration::from_nanos(shown.saturating_sub(done)));
        }
        f.stats.vblank = ev.map(|e| e.frame);
        // The implicit edge relies on the display waiting for the buffer's
        // fences; one that flipped while the render fence was still pending
        // does not (virtio_gpu's primary plane ignores them): no more
        // implicit edge. Proof: the render fence still pending when the flip
        // event is read, or signaled more than a frame after the flip's
        // vblank (the kernel stamps the out-fence with the driver's vblank
        // time, which may lag the real one: vkms reports its timer's
        // scheduled expiry, late under emulation; hence the frame of slack).
        if f.stats.edge == Edge::Implicit {
            let pending = f
                .render_sync
                .as_ref()
                .is_some_and(|s| !s.is_signaled().unwrap_or(true));
            let slack = u64::try_from(self.display.frame_time().as_nanos()).unwrap_or(0);
            let before = matches!((shown_ns, done_ns), (Some(s), Some(d)) if d > s + slack);
            if pending || before {
                f.stats.early = true;
                self.totals.implicit_unhonored += 1;
                if self.implicit_ok {
                    self.implicit_ok = false;
                    log::warn!(
                        "presenter: {} flipped frame {} before its render fence signaled: it does \
                         not wait for implicit fences; the implicit edge is off from now on",
                        self.display.driver(),
                        f.stats.frame
                    );
                }
            }
        }
        self.push_stats(f.stats);
    }

    /// Flips the next ready frame (no flip may be in flight).
    fn flip_next(&mut self) -> Result<(), PresentError> {
        let Some(i) = self.queue.next_ready() else {
            return Ok(());
        };
        let info = self.ready[i].take().expect("ready frames carry their info");
        let number = info.frame;
        let mut edge_taken = if info.waited.is_some() {
            Edge::Software
        } else {
            Edge::Signaled
        };
        let mut render_sync: Option<SyncFile> = None;
        let mut out_sync: Option<SyncFile> = None;
        let mut done_at = info.waited;
        let edge_pref = self.cfg.edge;
        let implicit_ok = self.implicit_ok;
        let render_timeout = self.cfg.render_timeout;
        let (display, slots, ext) = (&mut self.display, &self.slots, &mut self.extension);
        let in_fence_ok = display.props().plane.in_fence_fd.is_some();
        let result = self.queue.scanout(i, |waits| -> Result<Fence, FlipError> {
            let sync = match edge::sync_form(waits.iter()).map_err(FlipError::Fence)? {
                SyncForm::Signaled => None,
                SyncForm::SyncFile(s) if s.is_signaled().unwrap_or(false) => None,
                SyncForm::SyncFile(s) => Some(s),
                SyncForm::Software => {
                    // A writer added behind the presenter's back: wait for
                    // it (bounded), as the kernel's implicit sync would.
                    done_at = Some(
                        edge::wait_software(waits.iter(), render_timeout)
                            .map_err(FlipError::Fence)?,
                    );
                    edge_taken = Edge::Software;
                    None
                }
            };
            let mut in_fence = None;
            if let Some(s) = &sync {
                let implicit = implicit_ok && (edge_pref == EdgeChoice::Implicit || !in_fence_ok);
                if implicit {
                    slots[i]
                        .display
                        .import_sync_file(bufsync_backends::dmabuf::Access::Write, s)
                        .map_err(|e| FlipError::Kms(e.into()))?;
                    edge_taken = Edge::Implicit;
                } else if in_fence_ok {
                    in_fence = Some(s);
                    edge_taken = Edge::InFence;
                } else {
                    done_at = Some(
                        edge::wait_software(waits.iter(), render_timeout)
                            .map_err(FlipError::Fence)?,
                    );
                    edge_taken = Edge::Software;
                }
            }
            let req = FlipRequest {
                fb: &slots[i].fb,
                in_fence,
                want_out_fence: true,
                nonblock: true,
            };
            let (mut atomic, mut flags) = display.flip_request(&req).map_err(FlipError::Kms)?;
            if let Some(ext) = ext.as_mut() {
                ext.extend(display, number, &mut atomic, &mut flags)
                    .map_err(FlipError::Kms)?;
            }
            let mut outcome = match display.commit_request(&atomic, flags) {
                Ok(o) => o,
                Err(e) => {
                    if let Some(ext) = ext.as_mut() {
                        ext.failed(number);
                    }
                    return Err(FlipError::Kms(e));
                }
            };
            drop((req, atomic));
            if let Some(ext) = ext.as_mut() {
                ext.committed(display, number, &mut outcome);
            }
            let crtc = display.output().crtc;
            let out = outcome
                .take(crtc)
                .ok_or(FlipError::Kms(KmsError::MissingProperty {
                    object: crtc,
                    name: "OUT_FENCE_PTR",
                }))?;
            render_sync = sync;
            out_sync = out.try_clone().ok();
            SyncFileFence::fence(out).map_err(|e| FlipError::Kms(e.into()))
        });
        match result {
            Ok(()) => {
                self.totals.count_edge(edge_taken);
                self.inflight = Some(InFlight {
                    stats: PresentStats {
                        frame: number,
                        slot: i,
                        edge: edge_taken,
                        copy: info.copy,
                        copy_time: info.copy_time,
                        cpu_wait: info.cpu_wait,
                        latency: None,
                        shown: true,
                        early: false,
                        vblank: None,
                    },
                    render_sync,
                    out: out_sync,
                    done_at,
                });
                Ok(())
            }
            Err(e) => {
                let e = match e {
                    FlipError::Fence(f) => self.render_error(number, i, f),
                    FlipError::Kms(k) => self.display_error(k),
                    FlipError::Resv(r) => PresentError::Reserve(r),
                };
                Err(self.drop_frame(i, &info.render, e))
            }
        }
    }
}

/// What can fail inside the scanout step.
enum FlipError {
    Fence(FenceError),
    Kms(KmsError),
    Resv(bufsync::resv::ResvError),
}

impl From<bufsync::resv::ResvError> for FlipError {
    fn from(e: bufsync::resv::ResvError) -> Self {
        FlipError::Resv(e)
    }
}
