//! `bufsync-info`: what this machine's devices can share and how each wait
//! would be done.
//!
//! - `devices`: every DRM node (driver, kind, PRIME import/export, dumb
//!   buffers, syncobj, timelines, atomic) and the KMS outputs: connectors
//!   with their state and modes, CRTCs, planes with their type, `IN_FORMATS`
//!   as `FOURCC:MODIFIER`, `IN_FENCE_FD`, `OUT_FENCE_PTR`, writeback
//!   ([`devices`]);
//! - `vulkan`: each Vulkan physical device: the extensions bufsync uses,
//!   external memory and semaphore handle types, the DRM modifiers it
//!   imports and exports per format, the SYNC_FD export probe, timeline
//!   semaphores ([`vulkan`]);
//! - `paths [--verify]`: the wait-path matrix (fence kinds x waiters), each
//!   cell computed by the runtime's own rule
//!   ([`bufsync_backends::wait_path::decide`]) from the probes; `--verify`
//!   waits a real fence through every possible cell ([`paths`]);
//! - `buffer PID FD [--wait S]`: a dma-buf another process holds, its
//!   exporter and pending implicit fences ([`buffer`]);
//! - `negotiate`: the presenter's buffer negotiation for each (Vulkan
//!   device, display) pair, headless when no display is found
//!   ([`negotiate`]);
//! - `schema COMMAND`: the JSON Schema of a report ([`schema`]).
//!
//! Every subcommand takes `--json` (documented in `docs/info.md`, schemas
//! in `docs/info/`, each report with a `schema` name and a `version`). The
//! binary is a thin wrapper of [`run`], which tests call in-process:
//!
//! ```no_run
//! let mut out = Vec::new();
//! let mut err = Vec::new();
//! let code = bufsync_info::run(&["devices".into(), "--json".into()], &mut out, &mut err);
//! let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
//! assert_eq!(report["schema"], "bufsync-info.devices");
//! # let _ = code;
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod buffer;
pub mod bufinfo;
pub mod devices;
pub mod names;
pub mod negotiate;
pub mod paths;
pub mod schema;
pub mod text;
pub mod vulkan;

use std::io::Write;
use std::time::Duration;

/// The usage text (`bufsync-info --help`).
pub const USAGE: &str = "usage: bufsync-info [--json] <command> [options]

commands:
  devices                   every DRM node: driver, kind, caps; KMS connectors, CRTCs, planes
  vulkan                    each Vulkan device: extensions, handle types, DRM modifiers,
                            the SYNC_FD export probe, timeline semaphores
  paths [--verify]          the wait-path matrix: for each fence kind and waiter, hardware,
                            software or impossible, and why (bufsync's own decision)
        --verify            wait a real fence through every possible cell, with latencies
        --hold MS           hold each fence this long before its signal (default 20)
        --timeout S         bound on every wait (default 5)
        --repeat N          trials per cell, the latency their median (default 3)
  buffer PID FD [--wait S]  the dma-buf fd FD of process PID (pidfd_getfd): exporter, size,
                            inode, pending read and write fences; --wait: how they end
  negotiate                 the presenter's buffer negotiation per (Vulkan device, display);
                            headless when no display is found
  schema COMMAND            the JSON Schema of COMMAND's --json report (docs/info/)
  help                      this text

options:
  --json                    the report as JSON (docs/info.md, schemas: docs/info/)

Exit status: 0 done, 1 an error or a failed --verify cell, 2 bad usage.
";

struct Args {
    json: bool,
    rest: Vec<String>,
}

fn parse_secs(v: Option<&String>, what: &str) -> Result<Duration, String> {
    let v = v.ok_or_else(|| format!("{what} needs a value"))?;
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("bad {what} `{v}`"))
}

fn emit<T: serde::Serialize>(
    json: bool,
    report: &T,
    text: impl FnOnce(&T) -> String,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report).map_err(std::io::Error::other)?;
        writeln!(out)
    } else {
        write!(out, "{}", text(report))
    }
}

/// Runs `bufsync-info` with `args` (without the program name), writing the
/// report to `out` and errors to `err`; returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut a = Args {
        json: false,
        rest: Vec::new(),
    };
    for x in args {
        match x.as_str() {
            "--json" => a.json = true,
            _ => a.rest.push(x.clone()),
        }
    }
    match command(&a, out) {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            let _ = writeln!(err, "bufsync-info: {e}\n\n{USAGE}");
            2
        }
        Err(Failure::Error(e)) => {
            let _ = write!(err, "{}", text::para("bufsync-info: ", &e));
            1
        }
    }
}

enum Failure {
    Usage(String),
    Error(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Error(format!("writing the report: {e}"))
    }
}

fn command(a: &Args, out: &mut dyn Write) -> Result<i32, Failure> {
    let Some((cmd, rest)) = a.rest.split_first() else {
        return Err(Failure::Usage("no command".into()));
    };
    let no_more = |rest: &[String]| match rest.first() {
        Some(x) => Err(Failure::Usage(format!("unexpected `{x}`"))),
        None => Ok(()),
    };
    match cmd.as_str() {
        "help" | "-h" | "--help" => {
            write!(out, "{USAGE}")?;
            Ok(0)
        }
        "devices" => {
            no_more(rest)?;
            emit(a.json, &devices::collect(), devices::render, out)?;
            Ok(0)
        }
        "vulkan" => {
            no_more(rest)?;
            let vk = vulkan::open_all();
            emit(a.json, &vulkan::collect(&vk), vulkan::render, out)?;
            Ok(0)
        }
        "paths" => {
            let mut verify = None;
            let mut opts = paths::VerifyOptions::default();
            let mut it = rest.iter();
            while let Some(x) = it.next() {
                match x.as_str() {
                    "--verify" => verify = Some(()),
                    "--hold" => {
                        opts.hold = parse_secs(it.next(), "--hold")
                            .map(|d| d / 1000)
                            .map_err(Failure::Usage)?
                    }
                    "--timeout" => {
                        opts.bound = parse_secs(it.next(), "--timeout").map_err(Failure::Usage)?
                    }
                    "--repeat" => {
                        let v = it
                            .next()
                            .ok_or(Failure::Usage("--repeat needs a count".into()))?;
                        opts.repeat = v
                            .parse()
                            .ok()
                            .filter(|n| (1..=1000).contains(n))
                            .ok_or_else(|| Failure::Usage(format!("bad --repeat `{v}`")))?;
                    }
                    other => return Err(Failure::Usage(format!("unexpected `{other}`"))),
                }
            }
            let mut env = paths::Env::probe(vulkan::open_all());
            let report = paths::collect(&mut env, verify.map(|()| opts));
            emit(a.json, &report, paths::render, out)?;
            Ok(if paths::all_passed(&report) { 0 } else { 1 })
        }
        "buffer" => {
            let mut pos = Vec::new();
            let mut wait = None;
            let mut it = rest.iter();
            while let Some(x) = it.next() {
                match x.as_str() {
                    "--wait" => {
                        wait = Some(parse_secs(it.next(), "--wait").map_err(Failure::Usage)?)
                    }
                    _ => pos.push(x),
                }
            }
            let [pid, fd] = pos.as_slice() else {
                return Err(Failure::Usage("buffer needs PID and FD".into()));
            };
            let pid: i32 = pid
                .parse()
                .map_err(|_| Failure::Usage(format!("bad PID `{pid}`")))?;
            let fd: i32 = fd
                .parse()
                .map_err(|_| Failure::Usage(format!("bad FD `{fd}`")))?;
            let report = buffer::collect(pid, fd, wait).map_err(Failure::Error)?;
            emit(a.json, &report, buffer::render, out)?;
            Ok(0)
        }
        "negotiate" => {
            no_more(rest)?;
            let devs = devices::collect();
            let vk = vulkan::open_all();
            emit(
                a.json,
                &negotiate::collect(&devs, &vk),
                negotiate::render,
                out,
            )?;
            Ok(0)
        }
        "schema" => {
            let [name] = rest else {
                return Err(Failure::Usage(format!(
                    "schema needs one of: {}",
                    schema::COMMANDS.join(", ")
                )));
            };
            let s = schema::schema(name)
                .ok_or_else(|| Failure::Usage(format!("no report named `{name}`")))?;
            serde_json::to_writer_pretty(&mut *out, &s).map_err(std::io::Error::other)?;
            writeln!(out)?;
            Ok(0)
        }
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    }
}
