//! The [`Presenter`]: a render device and a KMS display output, the
//! buffers negotiated between them, and the per-frame flow
//! (`acquire` / `present`, in `flow`).
//!
//! Locking: a `Presenter` is owned by one thread; everything takes
//! `&mut self`. Inside, the frame queue's ticket takes the buffers'
//! reservations for each step; nothing is held between calls.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::{Fence, FenceContext};
use bufsync_backends::dmabuf::{Access, DmaBuf, Layout};
use bufsync_backends::kms::{Display, Fourcc, KmsError};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::vulkan::{vk_format, Submitter, SyncFileSemaphore};

use crate::alloc::{Env, SlotBuffers};
use crate::config::{DisplayTarget, PresentMode, PresenterConfig, RenderDevice};
use crate::error::PresentError;
use crate::extension::FlipExtension;
use crate::negotiate;
use crate::queue::{FrameQueue, SlotReservations};
use crate::stats::{PresentStats, PresentTotals};
use crate::strategy::{CopyEngine, Negotiation, Strategy};

/// How many finished frames' stats are kept for [`Presenter::take_stats`].
const STATS_KEPT: usize = 256;

/// What a presented frame carries from `present` to its flip.
#[derive(Debug)]
pub(crate) struct ReadyInfo {
    pub frame: u64,
    /// The render fence (quarantine it if the flip cannot wait for it).
    pub render: Fence,
    /// Set when the presenter already waited for it in software.
    pub waited: Option<Instant>,
    pub cpu_wait: Duration,
    pub copy: Option<CopyEngine>,
    pub copy_time: Duration,
}

/// The flip in flight.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub stats: PresentStats,
    /// The render fence's sync_file, for its completion time.
    pub render_sync: Option<SyncFile>,
    /// The flip's out-fence, for the time the frame reached the screen.
    pub out: Option<SyncFile>,
    /// When the render fence was seen signaled, if known otherwise.
    pub done_at: Option<Instant>,
}

/// Renders on one device and scans out on a KMS display. See the crate
/// docs for the flow and an example.
pub struct Presenter {
    pub(crate) id: u64,
    pub(crate) cfg: PresenterConfig,
    pub(crate) render: RenderDevice,
    pub(crate) negotiation: Negotiation,
    pub(crate) queue: FrameQueue<Arc<DmaBuf>>,
    pub(crate) slots: Vec<SlotBuffers>,
    pub(crate) submitter: Option<Submitter>,
    pub(crate) copy_ctx: FenceContext,
    pub(crate) semaphores: Vec<Option<SyncFileSemaphore>>,
    pub(crate) implicit_ok: bool,
    pub(crate) ready: Vec<Option<ReadyInfo>>,
    pub(crate) inflight: Option<InFlight>,
    pub(crate) completed: VecDeque<PresentStats>,
    pub(crate) totals: PresentTotals,
    pub(crate) next_frame: u64,
    pub(crate) extension: Option<Box<dyn FlipExtension>>,
    /// Last: restored (in `Drop`) before the framebuffers above go.
    pub(crate) display: Display,
}

impl std::fmt::Debug for Presenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presenter")
            .field("negotiation", &self.negotiation)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

fn open_display(target: DisplayTarget, cfg: &PresenterConfig) -> Result<Display, PresentError> {
    let dev = match target {
        DisplayTarget::Driver(d) => bufsync_backends::drm::DrmDevice::find_node(
            &d,
            bufsync_backends::drm::NodeKind::Primary,
        )?,
        DisplayTarget::Path(p) => bufsync_backends::drm::DrmDevice::open(p)?,
        DisplayTarget::Device(d) => d,
    };
    Ok(Display::with_device_spec(dev, &cfg.output)?)
}

/// The formats the renderer can produce for scanout.
fn render_formats(render: &RenderDevice) -> Vec<u32> {
    let all = [
        crate::config::XRGB8888,
        crate::config::ARGB8888,
        bufsync_backends::dmabuf::fourcc(b"XB24"),
        bufsync_backends::dmabuf::fourcc(b"AB24"),
    ];
    match render {
        RenderDevice::Vulkan(_) => all
            .into_iter()
            .filter(|f| vk_format(*f).is_some())
            .collect(),
        RenderDevice::Gem(_) => all
            .into_iter()
            .filter(|f| Layout::bytes_per_pixel(*f) == Some(4))
            .collect(),
    }
}

/// `vkms (/dev/dri/card1, Virtual-1, 1024x768@60)`.
fn describe_display(d: &Display) -> String {
    let (w, h) = d.size();
    format!(
        "{} ({}, {}, {w}x{h}@{})",
        d.driver(),
        d.device().path().display(),
        d.output().connector_name,
        d.mode().vrefresh()
    )
}

impl Presenter {
    /// Opens `display`, picks the output `cfg.output` names, chooses a pixel
    /// format both sides support and negotiates the buffer strategy
    /// ([`Negotiation`], logged at info), allocating `cfg.buffers` buffers.
    ///
    /// Errors: [`PresentError::NoCommonFormat`] (naming each side's
    /// formats), [`PresentError::NoStrategy`] (every refusal), and
    /// [`PresentError::NotMaster`] when another process holds the display.
    pub fn new(
        render: RenderDevice,
        display: DisplayTarget,
        cfg: PresenterConfig,
    ) -> Result<Presenter, PresentError> {
        if cfg.buffers < 2 {
            return Err(PresentError::Config(format!(
                "{} buffers: at least 2 are needed",
                cfg.buffers
            )));
        }
        let display = open_display(display, &cfg)?;
        let (width, height) = display.size();
        let render_formats = render_formats(&render);
        let fourcc = cfg
            .formats
            .iter()
            .copied()
            .find(|f| display.formats().has_format(*f) && render_formats.contains(f))
            .ok_or_else(|| PresentError::NoCommonFormat {
                wanted: cfg.formats.iter().map(|&f| Fourcc(f)).collect(),
                display: describe_display(&display),
                display_formats: display
                    .formats()
                    .formats()
                    .iter()
                    .map(|&f| Fourcc(f))
                    .collect(),
                renderer: render.name(),
                render_formats: render_formats.iter().map(|&f| Fourcc(f)).collect(),
            })?;
        let negotiation = Negotiation {
            display: describe_display(&display),
            renderer: render.name(),
            format: Fourcc(fourcc),
            chosen: None,
            modifier: 0,
            refusals: Vec::new(),
        };
        #[cfg(feature = "gbm")]
        let gbm = std::cell::OnceCell::new();
        let mut usage = cfg.image_usage;
        if cfg.strategy != crate::config::StrategyChoice::RenderAlloc {
            // A render image may become a copy source.
            usage |= bufsync_backends::vulkan::ash::vk::ImageUsageFlags::TRANSFER_SRC;
        }
        let env = Env {
            display: &display,
            render: &render,
            fourcc,
            width,
            height,
            usage,
            #[cfg(feature = "gbm")]
            gbm: &gbm,
        };
        let (negotiation, slots) = negotiate::negotiate(&env, &cfg, negotiation)?;
        let strategy = negotiation.chosen.expect("negotiated");
        let submitter = match (&render, strategy.copies()) {
            (RenderDevice::Vulkan(ctx), Some(CopyEngine::Gpu)) => Some(Submitter::new(ctx)?),
            _ => None,
        };
        let implicit_ok = probe_implicit(&slots[0].display);
        let queue = FrameQueue::new(
            slots
                .iter()
                .map(|s| SlotReservations {
                    display: s.display.clone(),
                    render: s.render.clone(),
                })
                .collect(),
            cfg.mode,
            cfg.render_timeout,
        );
        static IDS: AtomicU64 = AtomicU64::new(1);
        let n = slots.len();
        Ok(Presenter {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            render,
            negotiation,
            queue,
            slots,
            submitter,
            copy_ctx: FenceContext::new("bufsync-present", "cpu-copy"),
            semaphores: (0..n).map(|_| None).collect(),
            implicit_ok,
            ready: (0..n).map(|_| None).collect(),
            inflight: None,
            completed: VecDeque::with_capacity(STATS_KEPT),
            totals: PresentTotals::default(),
            next_frame: 0,
            extension: None,
            display,
            cfg,
        })
    }

    /// The negotiation: the strategy chosen and why the earlier ones were
    /// refused.
    pub fn negotiation(&self) -> &Negotiation {
        &self.negotiation
    }

    /// The chosen buffer strategy.
    pub fn strategy(&self) -> Strategy {
        self.negotiation.chosen.expect("a presenter has a strategy")
    }

    /// The display (for its output, mode, formats and properties).
    pub fn display(&self) -> &Display {
        &self.display
    }

    /// The render device.
    pub fn render_device(&self) -> &RenderDevice {
        &self.render
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &PresenterConfig {
        &self.cfg
    }

    /// The frames' size in pixels (the mode's).
    pub fn size(&self) -> (u32, u32) {
        self.display.size()
    }

    /// The pixel format (DRM fourcc).
    pub fn format(&self) -> u32 {
        self.negotiation.format.0
    }

    /// The number of buffers in rotation.
    pub fn buffers(&self) -> usize {
        self.slots.len()
    }

    /// FIFO or mailbox.
    pub fn mode(&self) -> PresentMode {
        self.cfg.mode
    }

    /// Whether the plane takes `IN_FENCE_FD` (the display can wait for a
    /// render fence itself).
    pub fn has_in_fence(&self) -> bool {
        self.display.props().plane.in_fence_fd.is_some()
    }

    /// Whether the implicit edge is available: the kernel takes
    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (probed on a display buffer at
    /// creation) and the display has not been seen flipping a frame before
    /// its imported fence signaled.
    pub fn has_implicit_sync(&self) -> bool {
        self.implicit_ok
    }

    /// Adds `ext` to every flip commit from now on (replacing any earlier).
    pub fn set_extension(&mut self, ext: Option<Box<dyn FlipExtension>>) {
        self.extension = ext;
    }

    /// Totals since creation.
    pub fn totals(&self) -> PresentTotals {
        PresentTotals {
            busy_retries: self.display.busy_retries(),
            ..self.totals
        }
    }

    /// The next finished frame's stats (on screen or dropped), oldest
    /// first; the last 256 are kept.
    pub fn take_stats(&mut self) -> Option<PresentStats> {
        self.completed.pop_front()
    }

    /// The display's fd: readable when a flip completes. An event loop
    /// polls it and calls [`Presenter::dispatch`].
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.display.device().as_fd()
    }

    /// The display's node.
    pub fn node(&self) -> &Path {
        self.display.device().path()
    }

    pub(crate) fn push_stats(&mut self, s: PresentStats) {
        if self.completed.len() == STATS_KEPT {
            self.completed.pop_front();
        }
        self.completed.push_back(s);
    }

    /// Maps a display error: ENODEV (unplugged, unbound) is
    /// [`PresentError::DisplayGone`].
    pub(crate) fn display_error(&self, e: KmsError) -> PresentError {
        if e.errno() == Some(rustix::io::Errno::NODEV.raw_os_error()) {
            PresentError::DisplayGone {
                node: self.node().to_path_buf(),
                source: e,
            }
        } else {
            PresentError::Display(e)
        }
    }
}

/// Whether `IMPORT_SYNC_FILE` works on `buf` (a signaled fence of its own,
/// imported back as a reader: a no-op).
fn probe_implicit(buf: &DmaBuf) -> bool {
    match buf
        .export_sync_file(Access::Read)
        .and_then(|s| buf.import_sync_file(Access::Read, &s))
    {
        Ok(()) => true,
        Err(e) => {
            log::info!("no IMPORT_SYNC_FILE on display buffers ({e}): implicit edge unavailable");
            false
        }
    }
}

impl Drop for Presenter {
    fn drop(&mut self) {
        if self.display.has_pending_flip() {
            if let Err(e) = self.display.wait_flip(self.cfg.flip_timeout) {
                log::warn!("presenter: last flip did not complete: {e}");
            }
        }
        if let Err(e) = self.display.restore() {
            log::warn!("presenter: restoring the display: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_presenter_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<super::Presenter>();
        send::<crate::Frame>();
    }
}
