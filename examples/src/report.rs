//! What a run of the flow measured, as a table, and captured frames as PNG.

use crate::flow::SyncPath;
use bufsync_backends::kms::Display;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The figures of one path.
#[derive(Debug, Clone)]
pub struct PathReport {
    /// The path.
    pub path: SyncPath,
    /// The render device.
    pub renderer: String,
    /// The display's driver.
    pub display: String,
    /// The display's refresh rate (Hz).
    pub refresh_hz: f64,
    /// Frames submitted for rendering and flipped.
    pub frames_rendered: u32,
    /// Frames whose out-fence signaled without error.
    pub frames_presented: u32,
    /// Time in the renderer, minus its dependency waits.
    pub render_time: Duration,
    /// Time spent waiting for fences on the CPU.
    pub wait_time: Duration,
    /// Dependencies (previous scanouts) the renderer waited in software.
    pub dep_sw_waits: u32,
    /// Dependencies the render device waited itself.
    pub dep_hw_waits: u32,
    /// Flips where the display waited for the render fence (IN_FENCE_FD).
    pub flip_hw_waits: u32,
    /// Flips after a software wait for the render fence.
    pub flip_sw_waits: u32,
    /// Render fences pushed into the dma-buf (IMPORT_SYNC_FILE).
    pub implicit_pushes: u32,
    /// Runtime bookkeeping per frame (reserve, wait-set, commit ×2).
    pub bookkeeping: Vec<Duration>,
    /// Render-done → on-screen per frame.
    pub latency: Vec<Duration>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Flips captured through writeback and checked.
    pub captured: u32,
    /// Captures that were not exactly their frame: (frame, frame number the
    /// capture's strip shows, first mismatch).
    pub bad_frames: Vec<(u32, Option<u32>, String)>,
    /// PNGs written.
    pub pngs: Vec<PathBuf>,
}

impl PathReport {
    /// An empty report for `path`.
    pub fn new(path: SyncPath, renderer: String, display: &Display) -> Self {
        let ft = display.frame_time().as_secs_f64();
        PathReport {
            path,
            renderer,
            display: display.driver().to_string(),
            refresh_hz: if ft > 0.0 { 1.0 / ft } else { 0.0 },
            frames_rendered: 0,
            frames_presented: 0,
            render_time: Duration::ZERO,
            wait_time: Duration::ZERO,
            dep_sw_waits: 0,
            dep_hw_waits: 0,
            flip_hw_waits: 0,
            flip_sw_waits: 0,
            implicit_pushes: 0,
            bookkeeping: Vec::new(),
            latency: Vec::new(),
            elapsed: Duration::ZERO,
            captured: 0,
            bad_frames: Vec::new(),
            pngs: Vec::new(),
        }
    }

    /// Frames per second achieved.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            f64::from(self.frames_rendered) / s
        } else {
            0.0
        }
    }

    /// Whether every captured frame was exactly its frame and every frame
    /// was presented.
    pub fn ok(&self) -> bool {
        self.bad_frames.is_empty() && self.frames_presented == self.frames_rendered
    }
}

/// The p-th percentile (0..=100) of `v`.
pub fn percentile(v: &[Duration], p: u32) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) * p as usize) / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// The summary table, one row per path.
pub fn table(reports: &[PathReport]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<9} {:<28} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9}",
        "path",
        "renderer",
        "frames",
        "presented",
        "render",
        "cpu-wait",
        "latency",
        "latency",
        "runtime",
        "rate",
        "captured",
        "bad"
    );
    let _ = writeln!(
        t,
        "{:<9} {:<28} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9}",
        "",
        "",
        "",
        "",
        "ms/frame",
        "ms/frame",
        "p50 ms",
        "p99 ms",
        "µs/frame",
        "fps/refresh",
        "",
        "frames"
    );
    for r in reports {
        let n = r.frames_rendered.max(1);
        let book_p50 = percentile(&r.bookkeeping, 50);
        let _ = writeln!(
            t,
            "{:<9} {:<28} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9.1} {:>10} {:>8} {:>9}",
            r.path.name(),
            truncate(&r.renderer, 28),
            r.frames_rendered,
            r.frames_presented,
            ms(r.render_time / n),
            ms(r.wait_time / n),
            ms(percentile(&r.latency, 50)),
            ms(percentile(&r.latency, 99)),
            book_p50.as_secs_f64() * 1e6,
            format!("{:.1}/{:.1}", r.rate(), r.refresh_hz),
            r.captured,
            r.bad_frames.len()
        );
    }
    let _ = writeln!(t);
    for r in reports {
        let _ = writeln!(
            t,
            "{:<9} render→display edge: {} flips waited by the display (IN_FENCE_FD), {} after a software wait, {} fences pushed into the dma-buf; \
             previous-scanout deps: {} waited by the render device, {} in software; CPU copies of frame data: 0",
            r.path.name(), r.flip_hw_waits, r.flip_sw_waits, r.implicit_pushes, r.dep_hw_waits, r.dep_sw_waits
        );
    }
    t
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Removes the PNGs an earlier run of `path` left in `dir` (`<path>-frame*.png`),
/// so the directory shows this run only. A missing directory is fine.
pub fn clear_pngs(dir: &Path, path: &str) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let prefix = format!("{path}-frame");
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".png") {
            std::fs::remove_file(dir.join(&*name))?;
        }
    }
    Ok(())
}

/// Writes an XRGB8888 (B, G, R, X in memory) image as an RGB PNG.
pub fn save_png(path: &Path, width: u32, height: u32, xrgb: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(io::Error::other)?;
    let rgb: Vec<u8> = xrgb
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0]])
        .collect();
    w.write_image_data(&rgb).map_err(io::Error::other)?;
    w.finish().map_err(io::Error::other)
}
