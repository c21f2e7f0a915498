//! What a run of the flow measured: a table, the negotiation per display,
//! JSON, and checked frames as PNG.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bufsync_present::{Negotiation, PresentStats, PresentTotals, Presenter};

use crate::flow::{FlowConfig, SyncPath};
use crate::render::Rendered;

/// The figures of one run (one display, renderer and path).
#[derive(Debug, Clone)]
pub struct PathReport {
    /// The path asked for.
    pub path: SyncPath,
    /// The render device.
    pub renderer: String,
    /// The display's driver.
    pub display: String,
    /// The negotiation: strategy chosen, refusals.
    pub negotiation: Negotiation,
    /// `fifo` or `mailbox`.
    pub mode: &'static str,
    /// The display's refresh rate (Hz).
    pub refresh_hz: f64,
    /// Frames rendered and presented.
    pub frames_rendered: u32,
    /// Time in the renderer (submission or drawing), minus its dependency
    /// waits.
    pub render_time: Duration,
    /// Time the renderer waited for dependencies on the CPU.
    pub wait_time: Duration,
    /// Dependencies (release fences) the renderer waited in software.
    pub dep_sw_waits: u32,
    /// Dependencies the render device waited itself.
    pub dep_hw_waits: u32,
    /// Time inside `Presenter::present` (waits for the previous flip, the
    /// render fence and copies included).
    pub present_time: Duration,
    /// The presenter's own CPU wait for render fences.
    pub cpu_wait: Duration,
    /// Render-done → on-screen per frame shown.
    pub latency: Vec<Duration>,
    /// The presenter's totals at the end.
    pub totals: PresentTotals,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Frames checked (writeback captures or screendumps).
    pub captured: u32,
    /// Checks that were not exactly their frame: (frame, frame number the
    /// strip shows, first mismatch).
    pub bad_frames: Vec<(u32, Option<u32>, String)>,
    /// Checked frames not newer than the one checked before.
    pub out_of_order: u32,
    /// The last frame checked.
    pub last_checked: Option<u32>,
    /// Frames the presenter reports shown before their render fence (the
    /// display ignored the implicit fences).
    pub early: Vec<u32>,
    /// Of those, the ones whose check saw it.
    pub early_checked: u32,
    /// PNGs written.
    pub pngs: Vec<PathBuf>,
}

impl PathReport {
    /// An empty report for a run of `cfg` on `presenter`.
    pub fn new(cfg: &FlowConfig, renderer: String, presenter: &Presenter) -> Self {
        let ft = presenter.display().frame_time().as_secs_f64();
        PathReport {
            path: cfg.path,
            renderer,
            display: presenter.display().driver().to_string(),
            negotiation: presenter.negotiation().clone(),
            mode: presenter.mode().name(),
            refresh_hz: if ft > 0.0 { 1.0 / ft } else { 0.0 },
            frames_rendered: 0,
            render_time: Duration::ZERO,
            wait_time: Duration::ZERO,
            dep_sw_waits: 0,
            dep_hw_waits: 0,
            present_time: Duration::ZERO,
            cpu_wait: Duration::ZERO,
            latency: Vec::new(),
            totals: PresentTotals::default(),
            elapsed: Duration::ZERO,
            captured: 0,
            bad_frames: Vec::new(),
            out_of_order: 0,
            last_checked: None,
            early: Vec::new(),
            early_checked: 0,
            pngs: Vec::new(),
        }
    }

    /// Adds one frame's rendering.
    pub fn add_render(&mut self, spent: Duration, r: &Rendered) {
        self.render_time += spent.saturating_sub(r.wait_time);
        self.wait_time += r.wait_time;
        self.dep_sw_waits += r.software_waits;
        self.dep_hw_waits += r.hardware_waits;
    }

    /// Adds one finished frame's presenter stats.
    pub fn add_stats(&mut self, s: &PresentStats) {
        self.cpu_wait += s.cpu_wait;
        if let Some(l) = s.latency {
            self.latency.push(l);
        }
        if s.early {
            self.early.push(s.frame as u32);
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

    /// Whether every frame was shown (FIFO) and every check was exactly its
    /// frame, in order.
    pub fn ok(&self) -> bool {
        let all_shown = self.mode != "fifo" || self.totals.shown == u64::from(self.frames_rendered);
        self.bad_frames.is_empty() && self.out_of_order == 0 && all_shown
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

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The summary table, one row per run, then how each run's frames reached
/// the screen.
pub fn table(reports: &[PathReport]) -> String {
    let mut t = String::new();
    let _ =
        writeln!(
        t,
        "{:<11} {:<5} {:<24} {:<17} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>7} {:>4}",
        "display", "path", "renderer", "strategy", "frames", "shown", "render", "cpu-wait",
        "present", "lat p50", "lat p99", "rate", "checked", "bad"
    );
    let _ = writeln!(
        t,
        "{:<11} {:<5} {:<24} {:<17} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>7} {:>4}",
        "",
        "",
        "",
        "",
        "",
        "",
        "ms/frame",
        "ms/frame",
        "ms/frame",
        "ms",
        "ms",
        "fps/refresh",
        "",
        ""
    );
    for r in reports {
        let n = r.frames_rendered.max(1);
        let strategy = r
            .negotiation
            .chosen
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            t,
            "{:<11} {:<5} {:<24} {:<17} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>7} {:>4}",
            truncate(&r.display, 11),
            r.path.name(),
            truncate(&r.renderer, 24),
            truncate(&strategy, 17),
            r.frames_rendered,
            r.totals.shown,
            ms(r.render_time / n),
            ms((r.wait_time + r.cpu_wait) / n),
            ms(r.present_time / n),
            ms(percentile(&r.latency, 50)),
            ms(percentile(&r.latency, 99)),
            format!("{:.1}/{:.0}", r.rate(), r.refresh_hz),
            r.captured,
            r.bad_frames.len() as u32 + r.out_of_order
        );
    }
    let _ = writeln!(t);
    for r in reports {
        let x = &r.totals;
        let _ = writeln!(
            t,
            "{} {} {}: render→display edge: {} by the display (IN_FENCE_FD), {} pushed into the buffer \
             (IMPORT_SYNC_FILE), {} after a software wait, {} already done; release fences waited by the \
             renderer: {} on the device, {} on the CPU; copies: {} ({} bytes on the CPU); EBUSY retries: {}; \
             dropped: {}",
            r.display, r.renderer, r.path.name(), x.in_fence, x.implicit, x.software, x.signaled,
            r.dep_hw_waits, r.dep_sw_waits, x.copies, x.copy_bytes, x.busy_retries, x.dropped
        );
        if x.implicit_unhonored > 0 {
            let _ = writeln!(
                t,
                "{} {} {}: {} ignores implicit fences: {} frame(s) flipped before their render fence \
                 (detected by the presenter, {} of them seen by the check); it fell back to IN_FENCE_FD",
                r.display, r.renderer, r.path.name(), r.display, x.implicit_unhonored, r.early_checked
            );
        }
    }
    t
}

/// Per display: the strategy chosen and why each earlier one was refused.
pub fn negotiations(reports: &[PathReport]) -> String {
    let mut seen: Vec<&Negotiation> = Vec::new();
    let mut t = String::new();
    for r in reports {
        if seen.iter().any(|n| **n == r.negotiation) {
            continue;
        }
        seen.push(&r.negotiation);
        let _ = write!(t, "{}", r.negotiation);
    }
    t
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn negotiation_json(n: &Negotiation) -> String {
    let refusals: Vec<String> = n
        .refusals
        .iter()
        .map(|r| {
            format!(
                "{{\"strategy\":{},\"step\":{},\"errno\":{},\"errno_name\":{},\"reason\":{}}}",
                js(&r.strategy.to_string()),
                js(&r.step),
                r.errno.map_or("null".into(), |e| e.to_string()),
                r.errno
                    .map_or("null".into(), |e| js(bufsync_present::errno_name(e))),
                js(&r.reason)
            )
        })
        .collect();
    format!(
        "{{\"display\":{},\"renderer\":{},\"format\":{},\"strategy\":{},\"modifier\":{},\"refusals\":[{}]}}",
        js(&n.display),
        js(&n.renderer),
        js(&n.format.to_string()),
        n.chosen.map_or("null".into(), |s| js(&s.to_string())),
        n.modifier,
        refusals.join(",")
    )
}

/// The reports (and any runs that failed: display, renderer, path, error)
/// as one JSON document.
pub fn json(reports: &[PathReport], failures: &[(String, String, String, String)]) -> String {
    let runs: Vec<String> = reports
        .iter()
        .map(|r| {
            let x = &r.totals;
            format!(
                "{{\"display\":{},\"renderer\":{},\"path\":{},\"mode\":{},\"negotiation\":{},\
                 \"frames\":{},\"shown\":{},\"dropped\":{},\"edges\":{{\"in_fence\":{},\"implicit\":{},\
                 \"software\":{},\"signaled\":{}}},\"copies\":{},\"copy_bytes\":{},\"busy_retries\":{},\
                 \"render_ms_per_frame\":{:.3},\"present_ms_per_frame\":{:.3},\"latency_ms_p50\":{:.3},\
                 \"latency_ms_p99\":{:.3},\"rate_fps\":{:.2},\"refresh_hz\":{:.2},\"checked\":{},\
                 \"bad\":{},\"out_of_order\":{},\"implicit_unhonored\":{},\"ok\":{}}}",
                js(&r.display),
                js(&r.renderer),
                js(r.path.name()),
                js(r.mode),
                negotiation_json(&r.negotiation),
                r.frames_rendered,
                x.shown,
                x.dropped,
                x.in_fence,
                x.implicit,
                x.software,
                x.signaled,
                x.copies,
                x.copy_bytes,
                x.busy_retries,
                (r.render_time / r.frames_rendered.max(1)).as_secs_f64() * 1e3,
                (r.present_time / r.frames_rendered.max(1)).as_secs_f64() * 1e3,
                percentile(&r.latency, 50).as_secs_f64() * 1e3,
                percentile(&r.latency, 99).as_secs_f64() * 1e3,
                r.rate(),
                r.refresh_hz,
                r.captured,
                r.bad_frames.len(),
                r.out_of_order,
                x.implicit_unhonored,
                r.ok()
            )
        })
        .collect();
    let failed: Vec<String> = failures
        .iter()
        .map(|(d, r, p, e)| {
            format!(
                "{{\"display\":{},\"renderer\":{},\"path\":{},\"error\":{}}}",
                js(d),
                js(r),
                js(p),
                js(e)
            )
        })
        .collect();
    format!(
        "{{\"runs\":[{}],\"failed\":[{}],\"ok\":{}}}\n",
        runs.join(","),
        failed.join(","),
        failures.is_empty() && reports.iter().all(PathReport::ok)
    )
}

/// Removes the PNGs an earlier run left in `dir` whose names start with
/// `prefix`, so the directory shows this run only. A missing directory is
/// fine.
pub fn clear_pngs(dir: &Path, prefix: &str) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(".png") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(js("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(js("\u{1}"), "\"\\u0001\"");
    }
}
