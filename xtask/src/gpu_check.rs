//! `cargo xtask gpu-check DIR [--run]`: one prepared command for a machine
//! with a real GPU and no VM (the one planned for: an NVIDIA H200, headless,
//! Vulkan, no network, root, maybe no `/dev/dri`).
//!
//! On the build machine it builds `bufsync-info` and the `host_vulkan`
//! tests (release), copies them into `DIR/bin/` and writes
//! `DIR/gpu-check.sh`, a POSIX shell script that needs neither cargo nor
//! the sources. Copied to the GPU machine and run there (`sh
//! DIR/gpu-check.sh`), it runs `bufsync-info devices`, `vulkan`,
//! `paths --verify` and `negotiate` (headless: a display only if one is
//! found) and the Vulkan backend tests that need no display against the
//! loader's own driver (`BUFSYNC_VK_DEVICE=any`), each under `timeout`,
//! and writes `DIR/report.md`: each step passed, failed or not testable,
//! and why (no DRM node, no Vulkan device, no modifier support...), with
//! the outputs. `--run` runs the script right away, on a machine that has
//! both the GPU and the toolchain. Nothing in CI depends on it.

use crate::{layout, process};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The script written into DIR (kept as a file of its own so that it reads
/// as shell).
const SCRIPT: &str = include_str!("gpu_check/gpu-check.sh");

/// The Vulkan test binaries that need no display (`bufsync-tests`' tests).
const TESTS: &[&str] = &["host_vulkan"];

/// Entry point of `cargo xtask gpu-check`.
pub fn run(args: &[String]) -> io::Result<u8> {
    let mut dir: Option<PathBuf> = None;
    let mut run_now = false;
    for a in args {
        match a.as_str() {
            "--run" => run_now = true,
            s if s.starts_with('-') => {
                eprintln!("xtask gpu-check: unknown option `{s}`\nusage: cargo xtask gpu-check DIR [--run]");
                return Ok(2);
            }
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => {
                eprintln!("xtask gpu-check: one DIR only (also got `{s}`)");
                return Ok(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: cargo xtask gpu-check DIR [--run]");
        return Ok(2);
    };
    let bin = dir.join("bin");
    fs::create_dir_all(&bin)?;

    println!("gpu-check: building bufsync-info and the Vulkan tests (release)");
    process::run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "bufsync-info"])
            .current_dir(layout::workspace()),
    )?;
    let info = layout::target_dir().join("release").join("bufsync-info");
    copy_exe(&info, &bin.join("bufsync-info"))?;
    for test in TESTS {
        let json = process::output(
            Command::new(env!("CARGO"))
                .args(["test", "--release", "-p", "bufsync-tests", "--test", test])
                .args(["--no-run", "--message-format=json"])
                .current_dir(layout::workspace()),
        )?;
        let exe = test_executable(&json, test).ok_or_else(|| {
            io::Error::other(format!("cargo named no executable for the `{test}` test"))
        })?;
        copy_exe(Path::new(&exe), &bin.join(test))?;
    }
    bundle_loader(&dir.join("lib"))?;
    fs::write(dir.join("build.txt"), build_line())?;
    let script = dir.join("gpu-check.sh");
    fs::write(&script, SCRIPT)?;
    set_executable(&script)?;
    println!(
        "gpu-check: wrote {}: copy the directory to the GPU machine and run `sh {}` there \
         (root not needed; under 5 minutes); the report lands in {}",
        dir.display(),
        script.display(),
        dir.join("report.md").display()
    );
    if !run_now {
        return Ok(0);
    }
    let status = Command::new("sh").arg(&script).status()?;
    Ok(status.code().unwrap_or(1) as u8)
}

/// The executable cargo's `--message-format=json` output names for the
/// test target `name` (one compiler-artifact line per target).
fn test_executable(json: &str, name: &str) -> Option<String> {
    let target = format!("\"name\":\"{name}\"");
    json.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains(&target))
        .filter(|l| l.contains("\"test\":true"))
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let len = l[start..].find('"')?;
            Some(l[start..start + len].to_string())
        })
}

/// Copies a Vulkan loader (`libvulkan.so.1`: the VM cache's, else this
/// machine's) into `lib`: the script uses it only where the GPU machine
/// has none (a driver installed without the loader, and no network to get
/// it). The loader still finds that machine's own ICD manifests.
fn bundle_loader(lib: &Path) -> io::Result<()> {
    let candidates = [
        layout::mesa_root().join("usr/lib/x86_64-linux-gnu/libvulkan.so.1"),
        PathBuf::from("/usr/lib/x86_64-linux-gnu/libvulkan.so.1"),
        PathBuf::from("/lib64/libvulkan.so.1"),
    ];
    let Some(found) = candidates.iter().find(|p| p.exists()) else {
        println!("gpu-check: no libvulkan.so.1 here to bundle: the GPU machine needs its own");
        return Ok(());
    };
    fs::create_dir_all(lib)?;
    let to = lib.join("libvulkan.so.1");
    let _ = fs::remove_file(&to);
    // `copy` follows the symlink: the file itself lands in lib/.
    fs::copy(found, &to)?;
    println!(
        "gpu-check: bundled {} (used only where the GPU machine has none)",
        found.display()
    );
    Ok(())
}

/// `bufsync <git describe>, built <date> on <host>`.
fn build_line() -> String {
    let rev = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(layout::workspace())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown revision".into());
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("bufsync {rev}, built on {} (release)\n", host.trim())
}

fn copy_exe(from: &Path, to: &Path) -> io::Result<()> {
    // Remove first: the old copy may be running or read-only.
    let _ = fs::remove_file(to);
    fs::copy(from, to).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("copy {} to {}: {e}", from.display(), to.display()),
        )
    })?;
    set_executable(to)
}

fn set_executable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_test_executable_in_cargo_json() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"bufsync_tests","test":true},"profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["test"],"name":"host_vulkan","test":true},"profile":{"test":true},"executable":"/t/release/deps/host_vulkan-0123"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            test_executable(json, "host_vulkan").as_deref(),
            Some("/t/release/deps/host_vulkan-0123")
        );
        assert_eq!(test_executable(json, "vm_kms"), None);
    }

    /// The script's step logic, run with stand-ins for the binaries: a
    /// passing, a failing, a hanging and a missing step each get their row.
    #[test]
    fn script_reports_each_step() {
        let dir = std::env::temp_dir().join(format!("xtask-gpu-check-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("gpu-check.sh"), SCRIPT).unwrap();
        // bufsync-info: no device anywhere; `paths` fails, `negotiate` hangs.
        let info = r#"#!/bin/sh
case "$1 $2" in
"vulkan --json") printf '{\n  "devices": [],\n  "untested": []\n}\n' ;;
"negotiate --json") sleep 5 ;;
"paths --verify") echo "cell failed" ; exit 1 ;;
*) echo "$1 ok" ;;
esac
"#;
        fs::write(dir.join("bin/bufsync-info"), info).unwrap();
        set_executable(&dir.join("bin/bufsync-info")).unwrap();
        let out = Command::new("sh")
            .arg(dir.join("gpu-check.sh"))
            .env("GPU_CHECK_MAX_STEP", "1")
            .env_remove("VK_ICD_FILENAMES")
            .output()
            .unwrap();
        let report = fs::read_to_string(dir.join("report.md")).unwrap();
        let _ = fs::remove_dir_all(&dir);
        assert!(!out.status.success(), "a failed step fails the script");
        let row = |step: &str| {
            report
                .lines()
                .find(|l| l.starts_with(&format!("| {step} |")))
                .unwrap_or_else(|| panic!("no row for {step} in\n{report}"))
                .to_string()
        };
        assert!(row("vulkan --json").contains("not testable | "), "{report}");
        assert!(
            row("vulkan --json").contains("no Vulkan device"),
            "{report}"
        );
        assert!(row("paths --verify").contains("| failed |"), "{report}");
        assert!(row("paths --verify").contains("exit 1"), "{report}");
        assert!(
            row("negotiate --json").contains("timed out after 1 s"),
            "{report}"
        );
        assert!(row("host_vulkan tests").contains("bin/host_vulkan missing"));
        assert!(report.contains("## Not testable here"), "{report}");
        assert!(
            report.contains("cell failed"),
            "the output is in the report"
        );
    }
}
