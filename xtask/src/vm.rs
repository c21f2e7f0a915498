//! `cargo xtask vm`: run a command in a fresh guest with real DRM devices.
//!
//! The guest boots Debian's 6.12 kernel under qemu TCG with the host's root
//! over 9p (read-only, tmpfs overlay) and the workspace shared writable at its
//! host path, so host binaries, Mesa and the build tree work unchanged. Before
//! the command runs, `vgem`, `virtio-gpu`, `vkms` (overlays + writeback) and
//! `sw_sync` are loaded; udmabuf and the system DMA heap are built in.
//!
//! The command's output comes back on a virtio console (our stdout); its exit
//! status through a file in the run directory.
//!
//! What the guest's virtio-gpu monitor shows can be asked from inside: qemu
//! runs with a QMP socket in the run directory, and the guest (which sees
//! the run directory at the same path, `BUFSYNC_VM_RUN`) drops a request
//! `screendump/N.req` holding an output path; this process polls for
//! requests while the guest runs, sends QMP `screendump` and answers with
//! `screendump/N.done` (`ok` or the error). See `qmp`. A guest that gives no status or
//! outlives its timeout is killed and reported with the tail of its console
//! log. qemu gets SIGKILL if xtask dies (PR_SET_PDEATHSIG), so none outlives
//! the command, also on Ctrl-C.

use crate::layout::{self};
use crate::qmp::Qmp;
use crate::setup;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How to run a guest.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Kill the guest after this long.
    pub timeout: Duration,
    /// Print boot timings.
    pub timings: bool,
    /// Add `-device virtio-gpu-pci` (a KMS driver with drm_syncobj timelines).
    pub virtio_gpu: bool,
    /// Extra environment for the guest command (on top of ours).
    pub env: Vec<(String, String)>,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            timeout: Duration::from_secs(900),
            timings: false,
            virtio_gpu: true,
            env: Vec::new(),
        }
    }
}

/// Entry point of `cargo xtask vm`.
pub fn main(args: &[String]) -> io::Result<u8> {
    let mut opts = VmOptions::default();
    let mut it = args.iter();
    let mut cmd: Vec<String> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--timeout" => {
                let v = it
                    .next()
                    .ok_or_else(|| io::Error::other("--timeout needs seconds"))?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| io::Error::other(format!("bad --timeout `{v}`")))?;
                opts.timeout = Duration::from_secs_f64(s);
            }
            "--timings" => opts.timings = true,
            "--no-virtio-gpu" => opts.virtio_gpu = false,
            "--" => {
                cmd.extend(it.by_ref().cloned());
            }
            other if !other.starts_with('-') => {
                // A cargo runner passes the binary without `--`.
                cmd.push(other.to_string());
                cmd.extend(it.by_ref().cloned());
            }
            other => return Err(io::Error::other(format!("unknown option `{other}`"))),
        }
    }
    if cmd.is_empty() {
        if opts.timings {
            cmd.push("true".into());
        } else {
            return Err(io::Error::other(
                "usage: cargo xtask vm [--timeout S] [--timings] -- CMD ...",
            ));
        }
    }
    setup::ensure(&setup::Options::default())?;
    let code = run(&opts, &cmd)?;
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Runs `cmd` in a fresh guest; returns its exit status (124 on timeout, 125
/// when the guest gave no status).
pub fn run(opts: &VmOptions, cmd: &[String]) -> io::Result<i32> {
    let ws = layout::workspace();
    let run_dir = new_run_dir()?;
    let cwd = std::env::current_dir()?;
    fs::write(
        run_dir.join("guest.sh"),
        guest_script(opts, &run_dir, &cwd, cmd),
    )?;

    let console = run_dir.join("console.log");
    let screendumps = run_dir.join("screendump");
    fs::create_dir_all(&screendumps)?;
    let qmp_socket = run_dir.join("qmp.sock");
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "2G",
    ])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(layout::kernel_image())
    .arg("-initrd")
    .arg(setup::initramfs())
    .arg("-append")
    .arg(format!(
        "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off tsc=reliable \
             bufsync_run={} bufsync_work={}",
        run_dir.display(),
        ws.display()
    ))
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .args([
        "-device",
        "virtio-serial-pci",
        "-chardev",
        "stdio,id=out,signal=off",
    ])
    .args(["-device", "virtconsole,chardev=out"])
    .arg("-virtfs")
    .arg("local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap")
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=work,security_model=none,multidevs=remap",
        ws.display()
    ));
    if opts.virtio_gpu {
        qemu.args(["-device", "virtio-gpu-pci"]);
    }
    qemu.arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()));
    qemu.stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the async-signal-safe prctl(PR_SET_PDEATHSIG) system call.
    unsafe {
        qemu.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(io::Error::from)
        });
    }

    let start = Instant::now();
    let mut child = qemu
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot start qemu: {e}")))?;
    let started = run_dir.join("started");
    let mut first_cmd_at = None;
    let mut qmp: Option<Qmp> = None;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        serve_screendumps(&screendumps, &qmp_socket, &mut qmp);
        if first_cmd_at.is_none() && started.exists() {
            first_cmd_at = Some(start.elapsed());
        }
        if start.elapsed() > opts.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let total = start.elapsed();

    let code = match status {
        None => {
            eprintln!(
                "xtask vm: the guest outlived its timeout of {:.0} s and was killed",
                opts.timeout.as_secs_f64()
            );
            report_console(&run_dir);
            124
        }
        Some(qs) => match fs::read_to_string(run_dir.join("status"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(code) => code,
            None => {
                eprintln!("xtask vm: the guest gave no exit status (qemu: {qs})");
                report_console(&run_dir);
                125
            }
        },
    };
    if opts.timings {
        print_timings(&run_dir, first_cmd_at, total);
    }
    // A command that failed has its output above; keep the run directory
    // only when the guest itself misbehaved.
    if code < 124 {
        let _ = fs::remove_dir_all(&run_dir);
    } else {
        eprintln!("xtask vm: run directory kept: {}", run_dir.display());
    }
    Ok(code)
}

/// Answers the guest's screendump requests (`N.req` holding the output
/// path) with `N.done`: `ok`, or what went wrong.
fn serve_screendumps(dir: &Path, socket: &Path, qmp: &mut Option<Qmp>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for req in rd.filter_map(|e| e.ok().map(|e| e.path())) {
        if req.extension().is_none_or(|x| x != "req") {
            continue;
        }
        let Ok(target) = fs::read_to_string(&req) else {
            continue;
        };
        let _ = fs::remove_file(&req);
        let answer = match qmp_screendump(socket, qmp, Path::new(target.trim())) {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                *qmp = None;
                e.to_string()
            }
        };
        let _ = fs::write(req.with_extension("done"), answer);
    }
}

fn qmp_screendump(socket: &Path, qmp: &mut Option<Qmp>, out: &Path) -> io::Result<()> {
    if qmp.is_none() {
        *qmp = Some(Qmp::connect(socket)?);
    }
    qmp.as_mut().expect("connected").screendump(out)
}

fn new_run_dir() -> io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = layout::target_dir().join("vm").join("runs");
    fs::create_dir_all(&base)?;
    let dir = base.join(format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    dir.canonicalize()
}

/// POSIX shell single-quoting.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn valid_env_name(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(ch) if ch == '_' || ch.is_ascii_alphabetic())
        && c.all(|ch| ch == '_' || ch.is_ascii_alphanumeric())
}

/// The script the guest runs in its chroot: load the DRM modules, restore
/// the caller's environment and cwd, run the command, record its status.
fn guest_script(opts: &VmOptions, run_dir: &Path, cwd: &Path, cmd: &[String]) -> String {
    let r = quote(&run_dir.to_string_lossy());
    let mut s = String::from("#!/bin/sh\n# generated by cargo xtask vm\n");
    let _ = writeln!(s, "R={r}");
    s += "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n";
    s += "stty -F /dev/hvc0 -onlcr 2>/dev/null\n";
    s += "cut -d' ' -f1 /proc/uptime > \"$R/boot\"\n";
    // The guest kernel's modules live in the cache, not on the host root.
    let _ = writeln!(
        s,
        "mkdir -p /lib/modules/{v} && mount --bind {m} /lib/modules/{v} \
         || echo 'guest: cannot mount the cached kernel modules'",
        v = layout::KERNEL_VERSION,
        m = quote(&layout::kernel_modules().to_string_lossy())
    );
    s += "modprobe vgem || echo 'guest: modprobe vgem failed'\n";
    if opts.virtio_gpu {
        s += "modprobe virtio-gpu || echo 'guest: modprobe virtio-gpu failed'\n";
    }
    let _ = writeln!(
        s,
        "insmod {} enable_overlay=1 enable_writeback=1 || echo 'guest: insmod vkms failed'",
        quote(&setup::module("vkms").to_string_lossy())
    );
    let _ = writeln!(
        s,
        "insmod {} || echo 'guest: insmod sw_sync failed'",
        quote(&setup::module("sw_sync").to_string_lossy())
    );
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| valid_env_name(k))
        .filter(|(k, _)| !matches!(k.as_str(), "PWD" | "OLDPWD" | "SHLVL" | "_"))
        .collect();
    // lavapipe only (other ICDs would probe the guest's DRM nodes), from
    // the cache: `setup::ensure` exported it, this makes sure of it.
    for (k, v) in setup::guest::env() {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    }
    env.push(("BUFSYNC_IN_VM".into(), "1".into()));
    env.retain(|(k, _)| k != "BUFSYNC_VM_RUN");
    env.push((
        "BUFSYNC_VM_RUN".into(),
        run_dir.to_string_lossy().into_owned(),
    ));
    env.extend(opts.env.iter().cloned());
    for (k, v) in env {
        let _ = writeln!(s, "export {k}={}", quote(&v));
    }
    s += "cut -d' ' -f1 /proc/uptime > \"$R/started\"\n";
    let _ = writeln!(
        s,
        "cd {} || {{ echo 125 > \"$R/status\"; exit; }}",
        quote(&cwd.to_string_lossy())
    );
    let args: Vec<String> = cmd.iter().map(|a| quote(a)).collect();
    let _ = writeln!(s, "{}", args.join(" "));
    s += "rc=$?\ncut -d' ' -f1 /proc/uptime > \"$R/done\"\necho $rc > \"$R/status\"\n";
    s
}

/// Tells how far the guest got (its stage marks, guest clock) and prints the
/// tail of its console, which a quiet boot leaves empty unless the kernel
/// warned or panicked.
fn report_console(run_dir: &Path) {
    let stage = |f: &str| {
        fs::read_to_string(run_dir.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let reached = match (stage("boot"), stage("started")) {
        (None, _) => "the guest never reached its init script".to_string(),
        (Some(b), None) => {
            format!("the guest reached init at {b} s but never started the command")
        }
        (Some(b), Some(s)) => {
            format!("the guest reached init at {b} s and started the command at {s} s")
        }
    };
    eprintln!("xtask vm: {reached} (guest clock)");
    let console = run_dir.join("console.log");
    let text = fs::read_to_string(&console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        eprintln!(
            "xtask vm: the guest console ({}) is empty: no kernel warning or panic",
            console.display()
        );
        return;
    }
    let tail = &lines[lines.len().saturating_sub(40)..];
    eprintln!(
        "xtask vm: last {} lines of the guest console ({}):",
        tail.len(),
        console.display()
    );
    for l in tail {
        eprintln!("  | {l}");
    }
}

fn print_timings(run_dir: &Path, first_cmd: Option<Duration>, total: Duration) {
    let up = |f: &str| {
        fs::read_to_string(run_dir.join(f))
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
    };
    let (boot, started, done) = (up("boot"), up("started"), up("done"));
    println!("vm timings (host wall clock unless noted):");
    if let Some(t) = first_cmd {
        println!(
            "  qemu start -> first command (DRM modules loaded): {:>6.2} s",
            t.as_secs_f64()
        );
    }
    if let (Some(b), Some(s)) = (boot, started) {
        println!("  guest kernel boot -> init chroot (guest clock):   {b:>6.2} s");
        println!(
            "  DRM module loading (guest clock):                 {:>6.2} s",
            s - b
        );
    }
    if let (Some(s), Some(d)) = (started, done) {
        println!(
            "  command (guest clock):                            {:>6.2} s",
            d - s
        );
    }
    println!(
        "  total:                                            {:>6.2} s",
        total.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn env_names() {
        assert!(valid_env_name("CARGO_PKG_NAME"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("A-B"));
    }
}
