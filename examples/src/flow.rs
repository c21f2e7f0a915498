//! The demo's flow: render the test pattern on device A and present it on
//! display B through a [`Presenter`] (its public API only), checking what
//! the display showed: every flip through writeback where the display has
//! a writeback connector (vkms), or screendumps taken by qemu from outside
//! the guest (virtio_gpu, inside `cargo xtask vm`).
//!
//! Per frame: `acquire` (a free buffer and its release fences), render
//! frame number `n` into it, `present` with the render-done fence. The vgem
//! renderer presents *before* it draws (its fence is pending: the display,
//! or the presenter, must wait), except for the copy strategy, whose copy
//! needs the pixels first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync_backends::kms::{KmsError, OutputSpec};
use bufsync_backends::vulkan::{ImageLayout, VulkanContext};
use bufsync_present::{
    DisplayTarget, EdgeChoice, PresentError, PresentMode, Presenter, PresenterConfig, RenderDevice,
    StrategyChoice, WritebackCapture,
};

use crate::check::{check_frame, decode_frame_number};
use crate::render::vgem::{VgemRenderer, XRGB8888};
use crate::render::vulkan::VulkanRenderer;
use crate::render::RenderError;
use crate::report::{self, PathReport};
use crate::screendump;

/// How the render → display edge is synchronized (`--path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPath {
    /// The display waits for the render fence itself (`IN_FENCE_FD`).
    Hw,
    /// The presenter waits for the render fence in software, then flips.
    Sw,
    /// The render fence goes into the dma-buf (`IMPORT_SYNC_FILE`) and the
    /// flip carries no fence: the kernel's implicit sync waits.
    Implicit,
    /// Whatever the presenter probes as best, per frame.
    Auto,
}

impl SyncPath {
    /// Parses `hw`, `sw`, `implicit` or `auto`.
    pub fn parse(s: &str) -> Option<SyncPath> {
        match s {
            "hw" => Some(SyncPath::Hw),
            "sw" => Some(SyncPath::Sw),
            "implicit" => Some(SyncPath::Implicit),
            "auto" => Some(SyncPath::Auto),
            _ => None,
        }
    }

    /// The name used in tables and file names.
    pub fn name(self) -> &'static str {
        match self {
            SyncPath::Hw => "hw",
            SyncPath::Sw => "sw",
            SyncPath::Implicit => "implicit",
            SyncPath::Auto => "auto",
        }
    }

    /// The presenter's edge preference for this path.
    pub fn edge(self) -> EdgeChoice {
        match self {
            SyncPath::Hw => EdgeChoice::InFence,
            SyncPath::Sw => EdgeChoice::Software,
            SyncPath::Implicit => EdgeChoice::Implicit,
            SyncPath::Auto => EdgeChoice::Auto,
        }
    }
}

/// Which device renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RendererKind {
    /// The CPU renderer on vgem, with real pending kernel fences.
    Vgem,
    /// Vulkan (lavapipe in the VM, the GPU elsewhere).
    Vulkan,
}

impl RendererKind {
    /// Parses `vgem` or `vulkan`.
    pub fn parse(s: &str) -> Option<RendererKind> {
        match s {
            "vgem" => Some(RendererKind::Vgem),
            "vulkan" => Some(RendererKind::Vulkan),
            _ => None,
        }
    }

    /// `vgem` or `vulkan`.
    pub fn name(self) -> &'static str {
        match self {
            RendererKind::Vgem => "vgem",
            RendererKind::Vulkan => "vulkan",
        }
    }
}

/// How the demo checks what the display showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Writeback where the display has it, screendumps inside the VM on a
    /// display without it, nothing otherwise.
    Auto,
    /// No check.
    Off,
}

/// One run of the flow.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// The synchronization path.
    pub path: SyncPath,
    /// The render device.
    pub renderer: RendererKind,
    /// Frames to present.
    pub frames: u32,
    /// Buffers in rotation.
    pub buffers: usize,
    /// The display: a driver name or a card path.
    pub display: String,
    /// Connector and mode.
    pub output: OutputSpec,
    /// The buffer strategy.
    pub strategy: StrategyChoice,
    /// FIFO or mailbox.
    pub mode: PresentMode,
    /// Whether to check what the display showed.
    pub check: CheckMode,
    /// With screendumps: check every n-th frame (they are slow).
    pub screendump_every: u32,
    /// Where to save checked frames as PNG (every `png_every`-th and every
    /// bad one), if anywhere.
    pub png_dir: Option<PathBuf>,
    /// Save every n-th capture.
    pub png_every: u32,
    /// Set to stop early (Ctrl-C).
    pub stop: Arc<AtomicBool>,
}

impl FlowConfig {
    /// A run of `frames` frames on `display` with `renderer` and defaults
    /// for everything else (auto path, strategy and check; FIFO; 3
    /// buffers; no PNGs).
    pub fn new(display: &str, renderer: RendererKind, frames: u32) -> Self {
        FlowConfig {
            path: SyncPath::Auto,
            renderer,
            frames,
            buffers: 3,
            display: display.into(),
            output: OutputSpec::default(),
            strategy: StrategyChoice::Auto,
            mode: PresentMode::Fifo,
            check: CheckMode::Auto,
            screendump_every: 10,
            png_dir: None,
            png_every: 40,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What stops the flow.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The render device failed.
    #[error("render device: {0}")]
    Render(#[from] RenderError),
    /// The presenter failed.
    #[error("presenter: {0}")]
    Present(#[from] PresentError),
    /// The display failed.
    #[error("display: {0}")]
    Display(#[from] KmsError),
    /// A kernel object failed.
    #[error(transparent)]
    Device(#[from] bufsync_backends::Error),
    /// Vulkan failed.
    #[error(transparent)]
    Vulkan(#[from] bufsync_backends::vulkan::VulkanError),
    /// Writing a PNG or taking a screendump failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long any single wait of the flow may take: generous, since the VM's
/// emulated CPUs share the host's with whatever else runs (a parallel build
/// makes lavapipe's frames take seconds).
const WAIT: Duration = Duration::from_secs(20);

enum Renderer {
    Vgem(VgemRenderer),
    Vulkan(VulkanRenderer),
}

/// Builds the presenter the flow uses (the demo prints its negotiation).
pub fn presenter(cfg: &FlowConfig) -> Result<(Presenter, RendererHandle), FlowError> {
    let (device, renderer) = match cfg.renderer {
        RendererKind::Vgem => {
            let r = VgemRenderer::new()?;
            (RenderDevice::Gem(r.device().clone()), Renderer::Vgem(r))
        }
        RendererKind::Vulkan => {
            let ctx = VulkanContext::new()?;
            let r = VulkanRenderer::new(&ctx)?;
            (RenderDevice::Vulkan(ctx), Renderer::Vulkan(r))
        }
    };
    let pcfg = PresenterConfig {
        output: cfg.output.clone(),
        buffers: cfg.buffers,
        mode: cfg.mode,
        strategy: cfg.strategy,
        edge: cfg.path.edge(),
        flip_timeout: WAIT,
        render_timeout: WAIT,
        ..PresenterConfig::default()
    };
    let p = Presenter::new(device, DisplayTarget::parse(&cfg.display), pcfg)?;
    Ok((p, RendererHandle(renderer)))
}

/// The renderer that goes with a presenter from [`presenter`].
pub struct RendererHandle(Renderer);

enum Check {
    None,
    Writeback(WritebackCapture, ImageLayout),
    Screendump(ImageLayout),
}

/// Runs the flow and reports what happened.
pub fn run(cfg: &FlowConfig) -> Result<PathReport, FlowError> {
    let (presenter, renderer) = presenter(cfg)?;
    run_with(cfg, presenter, renderer)
}

/// Runs the flow on a presenter made by [`presenter`].
pub fn run_with(
    cfg: &FlowConfig,
    mut presenter: Presenter,
    RendererHandle(mut renderer): RendererHandle,
) -> Result<PathReport, FlowError> {
    let name = match &renderer {
        Renderer::Vgem(r) => r.name(),
        Renderer::Vulkan(r) => r.name(),
    };
    let mut rep = PathReport::new(cfg, name, &presenter);
    let (w, h) = presenter.size();
    let row = u64::from(w) * 4;
    let layout = ImageLayout::linear(w, h, XRGB8888, 0, row, row * u64::from(h));
    let mut check = Check::None;
    if cfg.check == CheckMode::Auto {
        if presenter.display().output().writeback.is_some() {
            let cap = WritebackCapture::new(presenter.display(), WAIT)?;
            presenter.set_extension(Some(cap.extension()));
            check = Check::Writeback(cap, layout.clone());
        } else if screendump::available().is_some() && cfg.mode == PresentMode::Fifo {
            check = Check::Screendump(layout.clone());
        }
    }
    // The vgem renderer draws after present (its fence pending), unless the
    // presenter must have the pixels first: a copy, or a software wait.
    let draw_first = presenter.strategy().copies().is_some() || cfg.path == SyncPath::Sw;
    let start = Instant::now();
    for _ in 0..cfg.frames {
        if cfg.stop.load(Ordering::Relaxed) {
            log::info!("stopping after {} frames", rep.frames_rendered);
            break;
        }
        let frame = presenter.acquire(WAIT)?;
        let n = frame.number() as u32;
        let t = Instant::now();
        let t_present;
        match &mut renderer {
            Renderer::Vgem(r) => {
                let (done, stats) = r.begin(&frame, n)?;
                rep.add_render(t.elapsed(), &stats);
                if draw_first {
                    r.finish()?;
                }
                t_present = Instant::now();
                presenter.present(frame, done)?;
                rep.present_time += t_present.elapsed();
                // The CPU renderer draws now: a display that did not wait
                // would show a stale or half-drawn frame.
                r.finish()?;
            }
            Renderer::Vulkan(r) => {
                let (done, stats) = r.render(&frame, n)?;
                rep.add_render(t.elapsed(), &stats);
                t_present = Instant::now();
                presenter.present(frame, done)?;
                rep.present_time += t_present.elapsed();
            }
        }
        rep.frames_rendered += 1;
        drain_stats(&mut presenter, &mut rep);
        match &check {
            Check::Writeback(cap, layout) => {
                while let Some(c) = cap.next(false)? {
                    rep.check(cfg, c.frame as u32, &c.pixels, layout)?;
                    cap.recycle(c);
                }
            }
            Check::Screendump(layout) if n.is_multiple_of(cfg.screendump_every.max(1)) => {
                presenter.wait_idle(WAIT)?;
                drain_stats(&mut presenter, &mut rep);
                let dump = screendump::take(WAIT * 2)?;
                if (dump.width, dump.height) != (w, h) {
                    rep.bad_frames.push((
                        n,
                        None,
                        format!("screendump is {}x{}", dump.width, dump.height),
                    ));
                } else {
                    rep.check(cfg, n, &dump.to_xrgb(), layout)?;
                }
            }
            _ => {}
        }
    }
    presenter.wait_idle(WAIT)?;
    drain_stats(&mut presenter, &mut rep);
    if let Check::Writeback(cap, layout) = &check {
        while let Some(c) = cap.next(true)? {
            rep.check(cfg, c.frame as u32, &c.pixels, layout)?;
            cap.recycle(c);
        }
    }
    rep.elapsed = start.elapsed();
    rep.totals = presenter.totals();
    Ok(rep)
}

fn drain_stats(presenter: &mut Presenter, rep: &mut PathReport) {
    while let Some(s) = presenter.take_stats() {
        rep.add_stats(&s);
    }
}

impl PathReport {
    /// Checks one frame the display showed against the pattern of `n`.
    fn check(
        &mut self,
        cfg: &FlowConfig,
        n: u32,
        pixels: &[u8],
        layout: &ImageLayout,
    ) -> Result<(), FlowError> {
        self.captured += 1;
        if self.last_checked.is_some_and(|last| n <= last) {
            self.out_of_order += 1;
        }
        self.last_checked = Some(n);
        let result = check_frame(pixels, layout, n);
        let bad = result.is_err();
        if let Err(e) = result {
            let seen = decode_frame_number(pixels, layout);
            if self.early.contains(&n) {
                // The presenter saw it: shown before its render fence, the
                // display ignoring implicit fences (then it fell back).
                log::warn!(
                    "frame {n}: shown before its render fence (implicit sync not honored; \
                     strip says {seen:?}): {e}"
                );
                self.early_checked += 1;
            } else {
                log::error!("frame {n}: capture is not frame {n} (strip says {seen:?}): {e}");
                self.bad_frames.push((n, seen, e.to_string()));
            }
        }
        if let Some(dir) = &cfg.png_dir {
            if bad || n % cfg.png_every.max(1) == 1 {
                let path = dir.join(format!(
                    "{}-{}-{}-frame{:04}.png",
                    self.display,
                    cfg.renderer.name(),
                    cfg.path.name(),
                    n
                ));
                report::save_png(&path, layout.width, layout.height, pixels)?;
                self.pngs.push(path);
            }
        }
        Ok(())
    }
}
