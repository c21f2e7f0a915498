//! `render_to_scanout`: render on one device, scan out on another through
//! bufsync's presenter, every edge synchronized with fences, reservations
//! and tickets, and check what the display showed. `--help` for usage.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bufsync_backends::drm::{DrmDevice, NodeKind};
use bufsync_backends::kms::{Display, ModeSpec, OutputSpec};
use bufsync_examples::flow::{self, CheckMode, FlowConfig, RendererKind, SyncPath};
use bufsync_examples::report::{self, PathReport};
use bufsync_present::{PresentMode, StrategyChoice};

const USAGE: &str = "\
usage: render_to_scanout [OPTIONS]

Renders an animated test pattern on one device and scans it out on a KMS
display through bufsync's presenter; checks every flip through writeback
(vkms), or screendumps from outside the guest (virtio_gpu in `cargo xtask
vm`); prints per display the buffer strategy chosen and why the others were
refused, then one row per run.

options:
  --display D[,D...]   displays: driver names, /dev/dri/cardN paths, or `auto`
                       (default: the first KMS device with a connected connector)
  --connector NAME     connector (default: the first connected one), e.g. Virtual-1
  --mode WxH[@HZ]      mode (default: the connector's preferred mode)
  --strategy S         auto | render-alloc | display-alloc | copy (default auto)
  --present M          fifo | mailbox (default fifo)
  --path P             hw | sw | implicit | auto | all: the render->display edge
                       (default all: hw and implicit with vgem, sw with Vulkan)
  --renderer R         vgem | vulkan (default: per path as above; Vulkan where
                       there is no vgem)
  --frames N           frames per run (default 120)
  --buffers N          buffers in rotation (default 3; 4 for mailbox)
  --no-capture         do not check what the display showed
  --out DIR            where checked frames are saved as PNG (default target/demo)
  --png-every N        save every N-th checked frame (default 40)
  --json               print the report as JSON on stdout (messages go to stderr)
  -h, --help           this text
  -V, --version        the version
";

struct Args {
    displays: Vec<String>,
    output: OutputSpec,
    strategy: StrategyChoice,
    mode: PresentMode,
    paths: Vec<SyncPath>,
    renderer: Option<RendererKind>,
    frames: u32,
    buffers: Option<usize>,
    capture: bool,
    out: PathBuf,
    png_every: u32,
    json: bool,
}

enum Parsed {
    Run(Args),
    Exit(&'static str),
}

fn parse() -> Result<Parsed, String> {
    let mut a = Args {
        displays: vec!["auto".into()],
        output: OutputSpec::default(),
        strategy: StrategyChoice::Auto,
        mode: PresentMode::Fifo,
        paths: vec![SyncPath::Hw, SyncPath::Sw, SyncPath::Implicit],
        renderer: None,
        frames: 120,
        buffers: None,
        capture: true,
        out: PathBuf::from("target/demo"),
        png_every: 40,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--display" => {
                a.displays = value("--display")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--connector" => a.output.connector = Some(value("--connector")?),
            "--mode" => {
                let v = value("--mode")?;
                a.output.mode = Some(
                    ModeSpec::parse(&v).ok_or(format!("--mode `{v}`: expected WxH or WxH@HZ"))?,
                );
            }
            "--strategy" => {
                let v = value("--strategy")?;
                a.strategy = StrategyChoice::parse(&v).ok_or(format!("unknown strategy `{v}`"))?;
            }
            "--present" => {
                let v = value("--present")?;
                a.mode =
                    PresentMode::parse(&v).ok_or(format!("unknown presentation mode `{v}`"))?;
            }
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
                a.renderer =
                    Some(RendererKind::parse(&v).ok_or(format!("unknown renderer `{v}`"))?);
            }
            "--frames" => {
                a.frames = value("--frames")?
                    .parse()
                    .map_err(|e| format!("--frames: {e}"))?
            }
            "--buffers" | "--swapchain" => {
                let n: usize = value(&arg)?.parse().map_err(|e| format!("{arg}: {e}"))?;
                if n < 2 {
                    return Err(format!("{arg} must be at least 2"));
                }
                a.buffers = Some(n);
            }
            "--no-capture" => a.capture = false,
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--png-every" => {
                a.png_every = value("--png-every")?
                    .parse()
                    .map_err(|e| format!("--png-every: {e}"))?
            }
            "--json" => a.json = true,
            "-h" | "--help" => return Ok(Parsed::Exit(USAGE)),
            "-V" | "--version" => return Ok(Parsed::Exit(VERSION)),
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if a.displays.is_empty() {
        return Err("--display needs at least one display".into());
    }
    Ok(Parsed::Run(a))
}

const VERSION: &str = concat!("render_to_scanout ", env!("CARGO_PKG_VERSION"), "\n");

/// The first primary node with a connected connector (what a person at
/// the machine looks at).
fn first_display() -> Option<String> {
    DrmDevice::node_paths()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("card"))
        })
        .find(|p| {
            DrmDevice::open(p)
                .map_err(|e| log::debug!("{}: {e}", p.display()))
                .ok()
                .filter(|d| d.kind() == NodeKind::Primary)
                .is_some_and(|d| Display::with_device(d).is_ok())
        })
        .map(|p| p.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse() {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Exit(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("render_to_scanout: {e}");
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
    // Human output goes to stderr with --json (stdout is the JSON).
    let mut human: Box<dyn std::io::Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let has_vgem = DrmDevice::is_present("vgem");
    let mut reports: Vec<PathReport> = Vec::new();
    let mut failures: Vec<(String, String, String, String)> = Vec::new();
    for display in &args.displays {
        let display = if display == "auto" {
            match first_display() {
                Some(d) => d,
                None => {
                    let _ = writeln!(
                        human,
                        "render_to_scanout: no KMS device with a connected connector"
                    );
                    failures.push(("auto".into(), "-".into(), "-".into(), "no display".into()));
                    continue;
                }
            }
        } else {
            display.clone()
        };
        let _ = writeln!(
            human,
            "render_to_scanout: display {display}: {} frames per path, {} presentation, strategy {:?}",
            args.frames,
            args.mode.name(),
            args.strategy
        );
        for &path in &args.paths {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let renderer = args.renderer.unwrap_or(match path {
                SyncPath::Sw => RendererKind::Vulkan,
                _ if has_vgem => RendererKind::Vgem,
                _ => RendererKind::Vulkan,
            });
            let mut cfg = FlowConfig::new(&display, renderer, args.frames);
            cfg.path = path;
            cfg.output = args.output.clone();
            cfg.strategy = args.strategy;
            cfg.mode = args.mode;
            cfg.buffers = args.buffers.unwrap_or(match args.mode {
                PresentMode::Fifo => 3,
                PresentMode::Mailbox => 4,
            });
            cfg.check = if args.capture {
                CheckMode::Auto
            } else {
                CheckMode::Off
            };
            cfg.png_dir = Some(args.out.clone());
            cfg.png_every = args.png_every;
            cfg.stop = stop.clone();
            let driver = display.rsplit('/').next().unwrap_or(&display).to_string();
            let prefix = format!("{driver}-{}-{}-", renderer.name(), path.name());
            if let Err(e) = report::clear_pngs(&args.out, &prefix) {
                log::warn!("removing old captures from {}: {e}", args.out.display());
            }
            let _ = writeln!(
                human,
                "-- {display}: path {} with {} ...",
                path.name(),
                renderer.name()
            );
            match flow::run(&cfg) {
                Ok(r) => {
                    for (n, seen, e) in &r.bad_frames {
                        log::error!(
                            "path {}: frame {n}: display shows {seen:?}: {e}",
                            path.name()
                        );
                    }
                    reports.push(r);
                }
                Err(e) => {
                    log::error!("{display}: path {} failed: {e}", path.name());
                    let _ = writeln!(human, "{display}: path {} failed: {e}", path.name());
                    failures.push((
                        display.clone(),
                        renderer.name().into(),
                        path.name().into(),
                        e.to_string(),
                    ));
                }
            }
        }
    }
    let ok = failures.is_empty() && reports.iter().all(PathReport::ok);
    if args.json {
        print!("{}", report::json(&reports, &failures));
    }
    let _ = writeln!(human);
    let _ = writeln!(
        human,
        "buffer strategy per display and renderer (and why the others were refused):"
    );
    let _ = write!(human, "{}", report::negotiations(&reports));
    let _ = writeln!(human);
    let _ = write!(human, "{}", report::table(&reports));
    let pngs: usize = reports.iter().map(|r| r.pngs.len()).sum();
    if pngs > 0 {
        let _ = writeln!(
            human,
            "{pngs} checked frames saved as PNG under {}",
            args.out.display()
        );
    }
    let checked: u32 = reports.iter().map(|r| r.captured).sum();
    if ok {
        let _ = writeln!(
            human,
            "render_to_scanout: ok: every frame presented, {checked} frames checked, none torn, mixed or stale"
        );
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(human, "render_to_scanout: FAILED");
        ExitCode::from(1)
    }
}
