//! Contention on one swapchain: several render threads and the display take
//! the same frames through tickets, in whatever order they meet them.
//!
//! - Render thread `k` loops: pick two frames at random, reserve
//!   `(a, Write)` and `(b, Read)` in that (random) order with its ticket —
//!   two threads doing this form ABBA cycles that only the wound/wait
//!   back-off resolves — wait for the wait-set (a writer waits for the
//!   frame's readers and writers: the display's release fence included),
//!   commit a fresh render fence (WRITE on `a`, READ on `b`), draw frame
//!   number `n` into `a` through vgem's mapping, then signal the fence.
//! - The display loops (mailbox presentation): reserve `(frame, Read)` of
//!   the newest frame whose writers have all signaled, other than the one on
//!   screen; flip to it with a writeback capture, and commit a *release*
//!   fence as READ: it signals when the next flip's out-fence does (the
//!   frame has left the screen), so no writer draws into a frame while it
//!   is on screen. The display never waits for a pending writer: that job
//!   may itself wait for the frame on screen to be released.
//! - Every capture must be exactly the frame number the display saw in the
//!   frame under its reservation: complete, not torn, not mixed.
//!
//! Every wait is bounded; a stall shows up as an error carrying
//! [`bufsync::debug::dump`] (who holds what), never as a hang.

use crate::check::{check_frame, decode_frame_number};
use crate::flow::FlowError;
use crate::render::vgem::{draw_pattern, XRGB8888};
use crate::scanout::Scanout;
use bufsync::fence::{Fence, FenceContext};
use bufsync::resv::{Access, Ticket};
use bufsync_backends::dmabuf::DmaBuf;
use bufsync_backends::kms::Framebuffer;
use bufsync_backends::testing::VgemBuffer;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on every fence wait and every reservation.
const WAIT: Duration = Duration::from_secs(10);

/// A stress run.
#[derive(Debug, Clone)]
pub struct StressConfig {
    /// Flips the display makes.
    pub flips: u32,
    /// Frames in the shared swapchain (at least 3).
    pub swapchain: usize,
    /// Render threads.
    pub renderers: usize,
    /// The display: a driver name or a card path (needs writeback).
    pub display: String,
    /// How long a render thread holds its reservations before committing
    /// (recording the job, as a driver builds a command buffer): the wider,
    /// the more the tickets collide.
    pub hold: Duration,
}

/// What a stress run saw.
#[derive(Debug, Default, Clone)]
pub struct StressReport {
    /// Flips made.
    pub flips: u32,
    /// Frames rendered, per render thread.
    pub rendered: Vec<u32>,
    /// Back-offs (wound/wait `Deadlock` results resolved by the ticket).
    pub backoffs: u64,
    /// Captures checked.
    pub captured: u32,
    /// Captures that were not exactly their frame: (expected, seen, why).
    pub bad: Vec<(u32, Option<u32>, String)>,
    /// Flips whose frame was not newer than the one shown before (the
    /// renderers were slower than the display).
    pub repeats: u32,
    /// Wall time.
    pub elapsed: Duration,
}

/// What stops a stress run.
#[derive(Debug, thiserror::Error)]
pub enum StressError {
    /// Setting up or driving a device failed.
    #[error("{0}")]
    Flow(#[from] FlowError),
    /// A thread stalled or failed; carries the ticket dump.
    #[error("{what}\n-- reservations --\n{dump}")]
    Stalled {
        /// What failed.
        what: String,
        /// [`bufsync::debug::dump`] at the time.
        dump: String,
    },
}

fn stalled(what: impl std::fmt::Display) -> StressError {
    StressError::Stalled {
        what: what.to_string(),
        dump: bufsync::debug::dump(),
    }
}

/// One frame of the swapchain.
struct Frame {
    vgem: VgemBuffer,
    buf: DmaBuf,
    /// The number drawn into the frame, as its last writer committed it
    /// (changed only under the frame's reservation).
    number: AtomicU32,
}

struct Shared {
    frames: Vec<Frame>,
    width: u32,
    height: u32,
    /// Set by a render thread that failed: the display stops.
    failed: AtomicBool,
    next_number: AtomicU32,
    backoffs: AtomicU64,
    stop: AtomicBool,
}

/// Opens the display (with captures) and allocates the frames on vgem,
/// imported into the display.
fn open(cfg: &StressConfig) -> Result<(Scanout, Vec<Frame>, Vec<Framebuffer>), FlowError> {
    let scanout = Scanout::open(&cfg.display)?;
    let (width, height) = scanout.display().size();
    let vgem = VgemBuffer::device()?;
    let mut frames = Vec::with_capacity(cfg.swapchain.max(3));
    for _ in 0..cfg.swapchain.max(3) {
        let v = VgemBuffer::create(&vgem, width, height)?;
        let buf = v.dumb().export(XRGB8888)?;
        frames.push(Frame {
            vgem: v,
            buf,
            number: AtomicU32::new(u32::MAX),
        });
    }
    let fbs = frames
        .iter()
        .map(|f| scanout.import(&f.buf))
        .collect::<Result<_, _>>()?;
    Ok((scanout, frames, fbs))
}

/// Runs the stress and reports what happened.
pub fn run(cfg: &StressConfig) -> Result<StressReport, StressError> {
    let (mut scanout, frames, fbs) = open(cfg)?;
    let (width, height) = scanout.display().size();
    let shared = Arc::new(Shared {
        frames,
        width,
        height,
        failed: AtomicBool::new(false),
        next_number: AtomicU32::new(0),
        backoffs: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let start = Instant::now();
    let handles = (0..cfg.renderers)
        .map(|k| {
            let s = Arc::clone(&shared);
            let hold = cfg.hold;
            std::thread::Builder::new()
                .name(format!("render-{k}"))
                .spawn(move || {
                    let r = render_loop(&s, k as u64, hold);
                    if r.is_err() {
                        s.failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .map_err(|e| FlowError::Io(e).into())
        })
        .collect::<Result<Vec<_>, StressError>>();
    let handles = match handles {
        Ok(h) => h,
        Err(e) => {
            // Threads already started stop at their next frame.
            shared.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    let shown = display_loop(&shared, &mut scanout, &fbs, cfg.flips);
    shared.stop.store(true, Ordering::Relaxed);
    let mut rep = StressReport::default();
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => rep.rendered.push(n),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(stalled("a render thread panicked")),
        }
    }
    let shown = shown?;
    rep.flips = shown.flips;
    rep.captured = shown.captured;
    rep.bad = shown.bad;
    rep.repeats = shown.repeats;
    rep.backoffs = shared.backoffs.load(Ordering::Relaxed);
    rep.elapsed = start.elapsed();
    Ok(rep)
}

/// A small xorshift generator: deterministic per thread, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn render_loop(s: &Shared, k: u64, hold: Duration) -> Result<u32, StressError> {
    let ctx = FenceContext::new("stress", &format!("render-{k}"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (k + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut ticket = Ticket::reservation();
    ticket.set_timeout(Some(WAIT));
    let mut row = vec![0u8; s.width as usize * 4];
    let mut rendered = 0;
    let count = s.frames.len();
    while !s.stop.load(Ordering::Relaxed) {
        let a = rng.below(count);
        let b = (a + 1 + rng.below(count - 1)) % count;
        let objs = if rng.below(2) == 0 {
            [
                (s.frames[a].buf.reservation(), Access::Write),
                (s.frames[b].buf.reservation(), Access::Read),
            ]
        } else {
            [
                (s.frames[b].buf.reservation(), Access::Read),
                (s.frames[a].buf.reservation(), Access::Write),
            ]
        };
        let before = ticket.backoffs();
        let mut reserved = ticket
            .reserve(&objs, 1)
            .map_err(|e| stalled(format!("render-{k}: reserve: {e}")))?;
        // What the job must wait for: frame `a`'s readers (the display's
        // release fence while it is on screen) and writers, `b`'s writers.
        // Like a GPU job, it waits after the submit, outside the locks: a
        // fence must never wait for a lock its signaler needs.
        let deps = reserved.wait_set().clone();
        if !hold.is_zero() {
            std::thread::sleep(hold);
        }
        let n = s.next_number.fetch_add(1, Ordering::Relaxed);
        let fence: Fence = ctx.create_fence();
        s.frames[a].number.store(n, Ordering::Relaxed);
        reserved.commit(&fence);
        s.backoffs
            .fetch_add(ticket.backoffs() - before, Ordering::Relaxed);
        let drawn = deps
            .wait_all(Some(WAIT))
            .map_err(|e| format!("waiting for frame {a}'s users: {e}"))
            .and_then(|()| {
                draw_pattern(&s.frames[a].vgem, s.width, s.height, n, &mut row)
                    .map_err(|e| format!("drawing: {e}"))
            });
        // Signal even on failure: a fence must complete.
        if let Err(e) = &drawn {
            log::error!("render-{k}: {e}");
            fence.set_error(bufsync::fence::FenceError::Errno(5));
        }
        fence
            .signal()
            .map_err(|e| stalled(format!("render-{k}: {e}")))?;
        drawn.map_err(|e| stalled(format!("render-{k}: {e}")))?;
        rendered += 1;
    }
    Ok(rendered)
}

struct Shown {
    flips: u32,
    captured: u32,
    bad: Vec<(u32, Option<u32>, String)>,
    repeats: u32,
}

fn display_loop(
    s: &Shared,
    scanout: &mut Scanout,
    fbs: &[Framebuffer],
    flips: u32,
) -> Result<Shown, StressError> {
    let ctx = FenceContext::new("stress", "display");
    let mut ticket = Ticket::reservation();
    ticket.set_timeout(Some(WAIT));
    let layout = scanout.capture_layout();
    let mut pixels = Vec::new();
    let mut shown = Shown {
        flips: 0,
        captured: 0,
        bad: Vec::new(),
        repeats: 0,
    };
    // The release fence of the frame on screen: signaled by the next flip's
    // out-fence.
    let mut on_screen: Option<Fence> = None;
    let mut on_screen_index = None;
    let mut last_number = None;
    let mut last_flip = Instant::now();
    while shown.flips < flips {
        if s.failed.load(Ordering::Relaxed) {
            return Err(stalled("display: a render thread failed"));
        }
        if last_flip.elapsed() > WAIT {
            return Err(stalled("display: no frame became ready"));
        }
        // Mailbox presentation: the newest frame that is ready, other than
        // the one on screen. Waiting for a pending writer instead could
        // deadlock: its job may wait (through other jobs) for the release
        // of the frame on screen, which only the next flip signals.
        let mut order: Vec<usize> = (0..s.frames.len())
            .filter(|&i| Some(i) != on_screen_index)
            .filter(|&i| s.frames[i].number.load(Ordering::Relaxed) != u32::MAX)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(s.frames[i].number.load(Ordering::Relaxed)));
        let mut chosen = None;
        for index in order {
            let objs = [(s.frames[index].buf.reservation(), Access::Read)];
            let mut reserved = ticket
                .reserve(&objs, 1)
                .map_err(|e| stalled(format!("display: reserve: {e}")))?;
            if !reserved.wait_set().is_signaled() {
                reserved.backoff();
                continue;
            }
            if let Some(e) = reserved.wait_set().first_error() {
                return Err(stalled(format!("display: frame {index}: {e}")));
            }
            // Stable while reserved: a writer changes it only under the lock.
            let n = s.frames[index].number.load(Ordering::Relaxed);
            let flip = scanout
                .flip(&fbs[index], None)
                .map_err(|e| stalled(format!("display: flip: {e}")))?;
            let release = ctx.create_fence();
            reserved.commit(&release);
            chosen = Some((index, n, flip, release));
            break;
        }
        let Some((index, n, flip, release)) = chosen else {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        };
        if last_number.is_some_and(|l| n <= l) {
            shown.repeats += 1;
        }
        last_number = Some(n);
        let out = bufsync_backends::sync_file::SyncFileFence::fence(flip.out_fence)
            .map_err(|e| stalled(format!("display: out-fence: {e}")))?;
        if let Some(prev) = on_screen.replace(release) {
            // The previous frame leaves the screen when this one is shown.
            let later = prev.clone();
            if out
                .add_callback(move |_| {
                    let _ = later.signal();
                })
                .is_err()
            {
                let _ = prev.signal();
            }
        }
        shown.flips += 1;
        on_screen_index = Some(index);
        last_flip = Instant::now();
        if let Some(cap) = flip.capture {
            scanout
                .read_capture(&cap, &mut pixels)
                .map_err(|e| stalled(format!("display: capture: {e}")))?;
            shown.captured += 1;
            if let Err(e) = check_frame(&pixels, &layout, n) {
                let seen = decode_frame_number(&pixels, &layout);
                log::error!(
                    "flip {}: capture is not frame {n} (saw {seen:?}): {e}",
                    shown.flips
                );
                shown.bad.push((n, seen, e.to_string()));
            }
        }
    }
    scanout
        .settle()
        .map_err(|e| stalled(format!("display: last flip: {e}")))?;
    if let Some(last) = on_screen {
        let _ = last.signal();
    }
    Ok(shown)
}
