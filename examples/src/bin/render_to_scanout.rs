//! `render_to_scanout`: render on one device, scan out on another, every
//! edge synchronized with bufsync's fences, reservations and tickets.
//!
//! ```text
//! render_to_scanout [--path hw|sw|implicit|all] [--renderer vgem|vulkan]
//!                   [--frames N] [--swapchain N] [--display DRIVER|/dev/dri/cardN]
//!                   [--no-capture] [--out DIR] [--png-every N]
//! ```
//!
//! Defaults: all three paths, 120 frames each, 3 buffers, display `vkms`,
//! every flip captured through writeback and checked, PNGs under
//! `target/demo/`. `hw` and `implicit` render with vgem (real pending kernel
//! fences), `sw` with Vulkan, unless `--renderer` says otherwise. Prints a
//! table; exits non-zero when a frame was not presented or a capture was
//! not exactly its frame. Ctrl-C stops after the current frame, restoring
//! the display.
#![forbid(unsafe_code)]

use bufsync_examples::flow::{self, FlowConfig, RendererKind, SyncPath};
use bufsync_examples::report;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Args {
    paths: Vec<SyncPath>,
    renderer: Option<RendererKind>,
    frames: u32,
    swapchain: usize,
    display: String,
    capture: bool,
    out: PathBuf,
    png_every: u32,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        paths: vec![SyncPath::Hw, SyncPath::Sw, SyncPath::Implicit],
        renderer: None,
        frames: 120,
        swapchain: 3,
        display: "vkms".into(),
        capture: true,
        out: PathBuf::from("target/demo"),
        png_every: 40,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--path" => {
                let v = value("--path")?;
                a.paths = if v == "all" {
                    vec![SyncPath::Hw, SyncPath::Sw, SyncPath::Implicit]
                } else {
                    vec![SyncPath::parse(&v).ok_or(format!("unknown path `{v}`"))?]
                };
            }
            "--renderer" => {
                let v = value("--renderer")?;
                a.renderer = Some(RendererKind::parse(&v).ok_or(format!("unknown renderer `{v}`"))?);
            }
            "--frames" => a.frames = value("--frames")?.parse().map_err(|e| format!("--frames: {e}"))?,
            "--swapchain" => {
                a.swapchain = value("--swapchain")?.parse().map_err(|e| format!("--swapchain: {e}"))?;
                if a.swapchain < 2 {
                    return Err("--swapchain must be at least 2".into());
                }
            }
            "--display" => a.display = value("--display")?,
            "--no-capture" => a.capture = false,
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--png-every" => a.png_every = value("--png-every")?.parse().map_err(|e| format!("--png-every: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: render_to_scanout [--path hw|sw|implicit|all] [--renderer vgem|vulkan] \
                     [--frames N] [--swapchain N] [--display DRIVER|PATH] [--no-capture] [--out DIR] [--png-every N]"
                    .into())
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)) {
            log::warn!("no Ctrl-C handler: {e}");
        }
    }
    println!(
        "render_to_scanout: {} frames per path, {} buffers, display {}, writeback check {}",
        args.frames,
        args.swapchain,
        args.display,
        if args.capture { "on" } else { "off" }
    );
    let mut reports = Vec::new();
    let mut failed = false;
    for &path in &args.paths {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let renderer = args.renderer.unwrap_or(match path {
            SyncPath::Sw => RendererKind::Vulkan,
            SyncPath::Hw | SyncPath::Implicit => RendererKind::Vgem,
        });
        let cfg = FlowConfig {
            path,
            renderer,
            frames: args.frames,
            swapchain: args.swapchain,
            display: args.display.clone(),
            capture: args.capture,
            png_dir: Some(args.out.clone()),
            png_every: args.png_every,
            stop: stop.clone(),
        };
        if let Err(e) = report::clear_pngs(&args.out, path.name()) {
            log::warn!("removing old captures from {}: {e}", args.out.display());
        }
        println!("-- path {}: rendering with {renderer:?} ...", path.name());
        match flow::run(&cfg) {
            Ok(r) => {
                failed |= !r.ok();
                for (n, seen, e) in &r.bad_frames {
                    log::error!(
                        "path {}: frame {n}: capture shows {seen:?}: {e}",
                        path.name()
                    );
                }
                reports.push(r);
            }
            Err(e) => {
                log::error!("path {} failed: {e}", path.name());
                failed = true;
            }
        }
    }
    println!();
    print!("{}", report::table(&reports));
    let pngs: usize = reports.iter().map(|r| r.pngs.len()).sum();
    if pngs > 0 {
        println!(
            "{pngs} captured frames saved as PNG under {}",
            args.out.display()
        );
    }
    let checked: u32 = reports.iter().map(|r| r.captured).sum();
    if failed {
        println!("render_to_scanout: FAILED");
        ExitCode::from(1)
    } else {
        println!("render_to_scanout: ok: every frame presented, {checked} captures checked, none torn, mixed or stale");
        ExitCode::SUCCESS
    }
}
