//! `cargo xtask test`: the README's test command.
//!
//! Phases, each a cargo invocation whose libtest output is counted (the
//! setup checks of [`setup_check`] first):
//! 1. host: every crate's unit, integration and doc tests, and the device
//!    test binaries named `host_*` (lavapipe);
//! 2. C API: libbufsync's C tests under ASan+LSan, the C++17 header test,
//!    the header's staleness test, and `xtask capi` installing into a
//!    scratch prefix that pkg-config then resolves (see [`capi_phase`]);
//! 3. loom: the `loom_*` models of the runtime, built with `--cfg loom`;
//! 4. VM: every device test binary named `vm_*` (`tests/vm/`, and
//!    `capi/tests/vm_*.rs`: the C tests on kernel objects and the C
//!    example), each in a fresh guest (the cargo runner is `xtask vm`).
//!
//! A test that finds no device outside the VM records itself in the file
//! named by `BUFSYNC_SKIP_LOG`; those count as skipped, not passed. A cargo
//! invocation that fails without any failed test (a build error, a guest that
//! died) counts as one failure. The last line is `summary: N passed, N failed, N skipped`.

use crate::results::{self, Tally};
use crate::{layout, setup, setup_check};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Entry point of `cargo xtask test`.
pub fn run(args: &[String]) -> io::Result<u8> {
    let mut vm = true;
    let mut loom = true;
    for a in args {
        match a.as_str() {
            "--no-vm" => vm = false,
            "--no-loom" => loom = false,
            other => return Err(io::Error::other(format!("unknown option `{other}`"))),
        }
    }
    let t0 = Instant::now();
    let ws = layout::workspace();
    let skip_log = layout::target_dir().join("xtask").join("skipped.log");
    fs::create_dir_all(skip_log.parent().expect("has a parent"))?;
    let _ = fs::remove_file(&skip_log);

    // The VM is part of the test command: when it cannot be set up, say how
    // to fix it and fail (only `--no-vm` runs device tests on the host, where
    // they skip loudly and the summary counts them).
    if vm {
        if let Err(e) = setup::ensure(&setup::Options::default()) {
            eprintln!("xtask test: the test VM cannot be set up: {e}\nxtask test: fix that, or run `cargo xtask test --no-vm` (device tests then skip)");
            return Ok(1);
        }
    }
    let vm_ready = vm;

    let mut total = Tally::default();
    let mut notes: Vec<String> = Vec::new();

    if vm {
        banner("setup checks (the host as it was; the extraction boots)");
        total.add(setup_check::run(&mut notes)?);
    }

    println!("test: building every crate's tests (debug; the first build takes a few minutes)");
    banner("host tests");
    let mut host = cargo(&ws);
    host.args([
        "test",
        "--workspace",
        "--exclude",
        "bufsync-tests",
        "--exclude",
        "bufsync-capi",
        "--no-fail-fast",
    ]);
    total.add(phase("host", host, &skip_log, &mut notes)?);

    let capi_vm = capi_vm_targets(&ws);
    total.add(capi_phase(&ws, &capi_vm, vm_ready, &skip_log, &mut notes)?);

    let host_bins = test_targets(&ws, "host");
    let vm_bins = test_targets(&ws, "vm");
    let mut dev = cargo(&ws);
    dev.args(["test", "-p", "bufsync-tests", "--no-fail-fast", "--lib"]);
    for b in &host_bins {
        dev.args(["--test", b]);
    }
    if !vm_ready {
        for b in &vm_bins {
            dev.args(["--test", b]);
        }
    }
    banner("device tests on the host");
    total.add(phase("host devices", dev, &skip_log, &mut notes)?);

    if loom {
        let models = loom_targets(&ws);
        if !models.is_empty() {
            banner("loom models");
            let mut l = cargo(&ws);
            l.env("RUSTFLAGS", "--cfg loom")
                .env("CARGO_TARGET_DIR", layout::target_dir().join("loom"))
                .env(
                    "LOOM_MAX_PREEMPTIONS",
                    std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or("3".into()),
                )
                .args(["test", "-p", "bufsync", "--release", "--no-fail-fast"]);
            for m in &models {
                l.args(["--test", m]);
            }
            total.add(phase("loom", l, &skip_log, &mut notes)?);
        }
    }

    if vm_ready {
        let me = std::env::current_exe()?;
        let guest = "in a fresh guest: vkms, vgem, virtio-gpu, udmabuf, sw_sync";
        let runs = vm_bins
            .iter()
            .map(|b| ("bufsync-tests", b, format!("VM: {b} ({guest})")))
            .chain(capi_vm.iter().map(|b| {
                (
                    "bufsync-capi",
                    b,
                    format!("VM: capi {b} (libbufsync from C, {guest})"),
                )
            }));
        for (package, b, title) in runs {
            banner(&title);
            let mut v = cargo(&ws);
            v.env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
                format!("{} vm --timeout 1200 --", me.display()),
            )
            .args(["test", "-p", package, "--no-fail-fast", "--test", b]);
            let name = match package {
                "bufsync-capi" => format!("vm capi {b}"),
                _ => format!("vm {b}"),
            };
            total.add(phase(&name, v, &skip_log, &mut notes)?);
        }
    }

    let skipped = read_skips(&skip_log);
    // Skipped tests returned early and libtest counted them as passed.
    total.passed = total.passed.saturating_sub(skipped.len() as u64);
    total.skipped += skipped.len() as u64;
    println!();
    for s in &skipped {
        println!("skipped: {s}");
    }
    for n in &notes {
        println!("failed: {n}");
    }
    println!("xtask test: done in {:.0} s", t0.elapsed().as_secs_f64());
    println!(
        "summary: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    Ok(if total.failed == 0 { 0 } else { 1 })
}

/// The C API phase: `capi/tests/c.rs` (every case of `capi/tests/c/api.c`
/// built with -Wall -Wextra -Werror and run under AddressSanitizer +
/// LeakSanitizer, the C++17 header test, linking through bufsync.pc),
/// `capi/tests/header.rs` (the checked-in header is cbindgen's output) and
/// the crate's unit tests; without the VM, its `vm_*` tests too (they
/// skip). Then `xtask capi` installs into a scratch prefix and
/// `pkg-config --libs bufsync` must resolve there: counted as one test.
fn capi_phase(
    ws: &Path,
    capi_vm: &[String],
    vm_ready: bool,
    skip_log: &Path,
    notes: &mut Vec<String>,
) -> io::Result<Tally> {
    banner("C API: C tests under ASan+LSan (capi/tests/c/api.c), C++17 header, header staleness");
    let mut c = cargo(ws);
    c.args(["test", "-p", "bufsync-capi", "--no-fail-fast", "--lib"]);
    for t in capi_targets(ws) {
        if vm_ready && capi_vm.contains(&t) {
            continue;
        }
        c.args(["--test", &t]);
    }
    let mut tally = phase("C API", c, skip_log, notes)?;

    banner("C API: cargo xtask capi --prefix <scratch>, then pkg-config --libs bufsync");
    let prefix = layout::target_dir().join("xtask").join("capi-prefix");
    let _ = fs::remove_dir_all(&prefix);
    let me = std::env::current_exe()?;
    let installed = Command::new(&me)
        .arg("capi")
        .arg("--prefix")
        .arg(&prefix)
        .status()
        .is_ok_and(|s| s.success());
    let pc = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .args(["--libs", "bufsync"])
        .output();
    match pc {
        Ok(o) if installed && o.status.success() => {
            println!(
                "capi install: ok: pkg-config --libs bufsync = {}",
                String::from_utf8_lossy(&o.stdout).trim()
            );
            tally.passed += 1;
        }
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => format!("pkg-config: {e}"),
            };
            println!("capi install: FAILED (installed: {installed}; {why})");
            tally.failed += 1;
            notes.push(format!("capi install into {}: {why}", prefix.display()));
        }
    }
    Ok(tally)
}

/// `capi/tests/*.rs` as test target names.
fn capi_targets(ws: &Path) -> Vec<String> {
    names(&ws.join("capi").join("tests"), |stem| {
        Some(stem.to_string())
    })
}

/// `capi/tests/vm_*.rs`: run in the guest.
fn capi_vm_targets(ws: &Path) -> Vec<String> {
    names(&ws.join("capi").join("tests"), |stem| {
        stem.starts_with("vm_").then(|| stem.to_string())
    })
}

fn banner(s: &str) {
    println!("\n==== {s} ====");
}

fn cargo(ws: &Path) -> Command {
    let mut c = Command::new(env!("CARGO"));
    c.current_dir(ws);
    c
}

/// Runs one cargo invocation, echoing its output, and counts its results.
fn phase(
    name: &str,
    mut cmd: Command,
    skip_log: &Path,
    notes: &mut Vec<String>,
) -> io::Result<Tally> {
    cmd.env("BUFSYNC_SKIP_LOG", skip_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || tee(err, io::stderr()));
    let stdout = tee(out, io::stdout());
    let stderr = err_thread.join().unwrap_or_default();
    let status = child.wait()?;
    let mut t = results::parse(&stdout);
    t.add(results::parse(&stderr));
    if !status.success() && t.failed == 0 {
        t.failed += 1;
        notes.push(format!(
            "{name}: cargo exited with {status} without a failed test (build error or dead guest)"
        ));
    } else if t.failed > 0 {
        notes.push(format!("{name}: {} test(s) failed", t.failed));
    }
    Ok(t)
}

fn tee(mut from: impl Read, mut to: impl Write) -> String {
    let mut all = String::new();
    let mut reader = BufReader::new(&mut from);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        let _ = to.write_all(&line);
        let _ = to.flush();
        all.push_str(&String::from_utf8_lossy(&line));
        line.clear();
    }
    all
}

/// `tests/<dir>/*.rs` as test target names `<dir>_<stem>`.
fn test_targets(ws: &Path, dir: &str) -> Vec<String> {
    names(&ws.join("tests").join(dir), |stem| {
        Some(format!("{dir}_{stem}"))
    })
}

/// `runtime/tests/loom_*.rs`.
fn loom_targets(ws: &Path) -> Vec<String> {
    names(&ws.join("runtime").join("tests"), |stem| {
        stem.starts_with("loom_").then(|| stem.to_string())
    })
}

fn names(dir: &Path, f: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .filter_map(|p| p.file_stem().and_then(|s| f(&s.to_string_lossy())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn read_skips(path: &PathBuf) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.replace('\t', ": "))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_test_file_is_a_declared_target() {
        let ws = layout::workspace();
        let manifest = fs::read_to_string(ws.join("tests/Cargo.toml")).expect("tests/Cargo.toml");
        for dir in ["host", "vm"] {
            for name in test_targets(&ws, dir) {
                let stem = name.strip_prefix(&format!("{dir}_")).expect("prefixed");
                assert!(
                    manifest.contains(&format!("name = \"{name}\"")) && manifest.contains(&format!("path = \"{dir}/{stem}.rs\"")),
                    "tests/{dir}/{stem}.rs must be declared as [[test]] name = \"{name}\" path = \"{dir}/{stem}.rs\""
                );
            }
        }
    }
}
