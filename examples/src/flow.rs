//! The frame flow: render on device A, scan out on display B, every edge
//! synchronized through reservations and tickets (see "The frame" in
//! docs/flow.md).
//!
//! Per frame `n` (buffer `i = n % swapchain`):
//! 1. a ticket reserves `(frame i, Write)`; its wait-set holds the fences of
//!    the frame's readers: the out-fence of the flip that took frame `i` off
//!    the screen (committed on it as READ, see 3.);
//! 2. the renderer draws after those (in hardware where it understands
//!    them) and its render-done fence is committed as WRITE;
//! 3. a ticket reserves `(frame i, Read)` and `(previous front, Read)`; the
//!    flip goes to the display: with the render fence as `IN_FENCE_FD` when
//!    it has a pending sync_file form (`hw`), after a software wait (`sw`,
//!    and the fallback of the others), or pushed into the dma-buf with
//!    `IMPORT_SYNC_FILE` for the kernel's implicit sync (`implicit`); the
//!    flip's out-fence is committed as READ on both frames: it signals when
//!    frame `i` is on screen, which is when the previous front is released.
//!
//! In capture mode every flip is captured through writeback and checked to
//! be exactly the frame that flip showed: complete, not torn, not older.

use crate::render::{vgem::VgemRenderer, vulkan::VulkanRenderer, RenderError, Renderer};
use crate::report::{self, PathReport};
use crate::scanout::{PendingCapture, Scanout};
use bufsync::fence::Fence;
use bufsync::resv::{Access, Ticket};
use bufsync_backends::dmabuf::Access as BufAccess;
use bufsync_backends::kms::{Framebuffer, KmsError};
use bufsync_backends::sync_file::{to_sync_file, SyncFileFence};
use bufsync_backends::vulkan::{check_frame, decode_frame_number, ImageLayout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the render → display edge is synchronized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPath {
    /// The display waits for the render fence itself (`IN_FENCE_FD`).
    Hw,
    /// The flow waits for the render fence in software, then flips.
    Sw,
    /// The render fence goes into the dma-buf (`IMPORT_SYNC_FILE`) and the
    /// flip carries no fence: the kernel's implicit sync waits.
    Implicit,
}

impl SyncPath {
    /// Parses `hw`, `sw` or `implicit`.
    pub fn parse(s: &str) -> Option<SyncPath> {
        match s {
            "hw" => Some(SyncPath::Hw),
            "sw" => Some(SyncPath::Sw),
            "implicit" => Some(SyncPath::Implicit),
            _ => None,
        }
    }

    /// The name used in tables and file names.
    pub fn name(self) -> &'static str {
        match self {
            SyncPath::Hw => "hw",
            SyncPath::Sw => "sw",
            SyncPath::Implicit => "implicit",
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
    /// Buffers in the swapchain.
    pub swapchain: usize,
    /// The display: a driver name or a card path.
    pub display: String,
    /// Capture every flip through writeback and check it.
    pub capture: bool,
    /// Where to save captured frames as PNG (every `png_every`-th and every
    /// bad one), if anywhere.
    pub png_dir: Option<PathBuf>,
    /// Save every n-th capture.
    pub png_every: u32,
    /// Set to stop early (Ctrl-C).
    pub stop: Arc<AtomicBool>,
}

/// What stops the flow.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The render device failed.
    #[error("render device: {0}")]
    Render(#[from] RenderError),
    /// The display failed.
    #[error("display: {0}")]
    Display(#[from] KmsError),
    /// A kernel object failed.
    #[error(transparent)]
    Device(#[from] bufsync_backends::Error),
    /// A reservation could not be taken.
    #[error("reservation: {0}")]
    Reserve(#[from] bufsync::resv::ResvError),
    /// A fence did not signal in time or signaled with an error.
    #[error("fence: {0}")]
    Wait(#[from] bufsync::fence::WaitError),
    /// Writing a PNG failed.
    #[error("saving a capture: {0}")]
    Io(#[from] std::io::Error),
}

/// How long any single fence wait of the flow may take.
const WAIT: Duration = Duration::from_secs(5);

struct Shown {
    n: u32,
    render: Fence,
    out: Fence,
    capture: Option<PendingCapture>,
}

/// Runs the flow and reports what happened.
pub fn run(cfg: &FlowConfig) -> Result<PathReport, FlowError> {
    let mut scanout = Scanout::open(&cfg.display, cfg.capture)?;
    let (w, h) = scanout.display().size();
    let (mut renderer, frames): (Box<dyn Renderer>, _) = match cfg.renderer {
        RendererKind::Vgem => {
            let (r, f) = VgemRenderer::new(cfg.swapchain, w, h)?;
            (Box::new(r), f)
        }
        RendererKind::Vulkan => {
            let (r, f) = VulkanRenderer::new(cfg.swapchain, w, h)?;
            (Box::new(r), f)
        }
    };
    let fbs: Vec<Framebuffer> = frames
        .iter()
        .map(|f| scanout.import(f))
        .collect::<Result<_, _>>()?;
    let mut rep = PathReport::new(cfg.path, renderer.name(), scanout.display());
    let capture_layout = scanout.capture_layout();
    let mut pixels = Vec::new();
    let mut ticket = Ticket::reservation();
    let mut shown: Vec<Shown> = Vec::new();
    let start = Instant::now();
    let mut prev: Option<usize> = None;

    for n in 0..cfg.frames {
        if cfg.stop.load(Ordering::Relaxed) {
            log::info!("stopping after {n} frames");
            break;
        }
        let i = n as usize % cfg.swapchain;
        // 1-2: reserve for writing; render after the frame's readers.
        let t = Instant::now();
        let write = [(frames[i].reservation(), Access::Write)];
        let mut reserved = ticket.reserve(&write, 1)?;
        let mut book = t.elapsed();
        let t_render = Instant::now();
        let rendered = renderer.submit(i, n, reserved.wait_set())?;
        rep.render_time += t_render.elapsed().saturating_sub(rendered.wait_time);
        rep.wait_time += rendered.wait_time;
        rep.dep_sw_waits += rendered.software_waits;
        rep.dep_hw_waits += rendered.hardware_waits;
        // Timestamps at signal time (enables software signaling).
        let _ = rendered.fence.add_callback(|_| {});
        let t = Instant::now();
        reserved.commit(&rendered.fence);
        book += t.elapsed();

        // 3: reserve for scanout (this frame and the previous front).
        let t = Instant::now();
        let read_objs: Vec<_> = std::iter::once((frames[i].reservation(), Access::Read))
            .chain(
                prev.filter(|&p| p != i)
                    .map(|p| (frames[p].reservation(), Access::Read)),
            )
            .collect();
        // The reader's wait-set is the render fence; each path below hands
        // it to the display (or waits for it) explicitly.
        let reserved = ticket.reserve(&read_objs, 1)?;
        book += t.elapsed();

        let sync = match to_sync_file(&rendered.fence) {
            Ok(s) => s,
            Err(bufsync_backends::Error::NoSyncFile { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let pending_sync = match &sync {
            Some(s) => !s.is_signaled()?,
            None => false,
        };
        let mut in_fence = None;
        let mut software = false;
        match cfg.path {
            SyncPath::Hw if pending_sync => in_fence = sync.as_ref(),
            SyncPath::Implicit if pending_sync || sync.is_some() => {
                frames[i].push_fence(&rendered.fence, BufAccess::Write)?;
                rep.implicit_pushes += 1;
            }
            _ => software = true,
        }
        if software {
            // The fallback: the display cannot wait for this fence itself.
            // (A Vulkan point is waited with vkWaitSemaphores directly.)
            renderer.flush()?;
            let t = Instant::now();
            bufsync_backends::vulkan::wait_fence(&rendered.fence, WAIT)?;
            rep.wait_time += t.elapsed();
            rep.flip_sw_waits += 1;
        } else if in_fence.is_some() {
            rep.flip_hw_waits += 1;
        }
        let flip = scanout.flip(&fbs[i], in_fence)?;
        let out = SyncFileFence::fence(flip.out_fence)?;
        let _ = out.add_callback(|_| {});
        let t = Instant::now();
        reserved.commit(&out);
        book += t.elapsed();
        rep.bookkeeping.push(book);
        // The CPU renderer draws now: a display that did not wait shows it.
        renderer.flush()?;
        rep.frames_rendered += 1;
        prev = Some(i);

        // Check the capture of the flip before (pipelined by one frame).
        check_last_capture(
            &mut shown,
            &scanout,
            &capture_layout,
            &mut pixels,
            cfg,
            &mut rep,
        )?;
        shown.push(Shown {
            n,
            render: rendered.fence.clone(),
            out,
            capture: flip.capture,
        });
    }
    renderer.flush()?;
    check_last_capture(
        &mut shown,
        &scanout,
        &capture_layout,
        &mut pixels,
        cfg,
        &mut rep,
    )?;
    scanout.settle()?;
    for s in &shown {
        match s.out.wait_timeout(WAIT) {
            Ok(()) => rep.frames_presented += 1,
            Err(e) => log::warn!("frame {}: out-fence: {e}", s.n),
        }
        if let (Some(r), Some(o)) = (s.render.timestamp(), s.out.timestamp()) {
            rep.latency.push(o.saturating_duration_since(r));
        }
    }
    rep.elapsed = start.elapsed();
    Ok(rep)
}

/// Checks the capture of the most recent flip, if it has one not yet checked.
fn check_last_capture(
    shown: &mut [Shown],
    scanout: &Scanout,
    layout: &ImageLayout,
    pixels: &mut Vec<u8>,
    cfg: &FlowConfig,
    rep: &mut PathReport,
) -> Result<(), FlowError> {
    match shown.last_mut() {
        Some(s) => match s.capture.take() {
            Some(cap) => check_capture(scanout, &cap, s.n, layout, pixels, cfg, rep),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

fn check_capture(
    scanout: &Scanout,
    cap: &PendingCapture,
    n: u32,
    layout: &ImageLayout,
    pixels: &mut Vec<u8>,
    cfg: &FlowConfig,
    rep: &mut PathReport,
) -> Result<(), FlowError> {
    scanout.read_capture(cap, pixels)?;
    rep.captured += 1;
    let result = check_frame(pixels, layout, n);
    let bad = result.is_err();
    if let Err(e) = result {
        let seen = decode_frame_number(pixels, layout);
        log::error!("frame {n}: capture is not frame {n} (strip says {seen:?}): {e}");
        rep.bad_frames.push((n, seen, e.to_string()));
    }
    if let Some(dir) = &cfg.png_dir {
        if bad || n % cfg.png_every.max(1) == 1 {
            let path = dir.join(format!("{}-frame{:04}.png", cfg.path.name(), n));
            report::save_png(&path, layout.width, layout.height, pixels)?;
            rep.pngs.push(path);
        }
    }
    Ok(())
}
