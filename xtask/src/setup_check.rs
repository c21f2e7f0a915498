//! The checks `cargo xtask test` makes of setup itself:
//!
//! - `setup::host_unchanged`: setup put no kernel on the host (`/boot` and
//!   the installed kernels are as its first run found them, and no package
//!   it installed is a kernel);
//! - `setup::extraction_boots`: the extraction, run again on the real
//!   .debs into a temporary cache, gives a guest that boots its cached
//!   kernel and loads vkms, vgem and sw_sync;
//! - `bench_kernel::module_builds::*`: each module `cargo xtask
//!   bench-kernel` loads still builds against the guest kernel's headers
//!   (cached until its source or the kernel changes).
//!
//! Each prints a libtest-style `test … ok` line and counts in the tally.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use crate::layout::{self, KERNEL_VERSION};
use crate::results::Tally;
use crate::setup::{guest, host};

/// Runs the checks; failures are added to `notes`.
pub fn run(notes: &mut Vec<String>) -> io::Result<Tally> {
    let mut t = Tally::default();
    let mut record = |name: &str, r: Result<String, String>| match r {
        Ok(detail) => {
            println!("test {name} ... ok ({detail})");
            t.passed += 1;
        }
        Err(why) => {
            println!("test {name} ... FAILED\n  {why}");
            t.failed += 1;
            notes.push(format!("{name}: {why}"));
        }
    };
    record("setup::host_unchanged", host::check_unchanged());
    record("setup::extraction_boots", extraction_boots());
    for name in crate::bench_kernel::MODULES {
        record(
            &format!("bench_kernel::module_builds::{name}"),
            crate::bench_kernel::module_builds(name),
        );
    }
    Ok(t)
}

fn extraction_boots() -> Result<String, String> {
    let tmp = layout::target_dir().join("xtask").join("setup-check-cache");
    let _ = fs::remove_dir_all(&tmp);
    seed_debs(&guest::debs_dir(), &tmp.join("debs"))
        .map_err(|e| format!("seeding the .debs: {e}"))?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let setup = Command::new(&me)
        .args(["setup", "--yes"])
        .env("BUFSYNC_VM_CACHE", &tmp)
        .output()
        .map_err(|e| e.to_string())?;
    let log = String::from_utf8_lossy(&setup.stdout).into_owned();
    if !setup.status.success() {
        return Err(format!(
            "setup into {} failed:\n{log}{}",
            tmp.display(),
            String::from_utf8_lossy(&setup.stderr)
        ));
    }
    if log.contains("downloading") {
        return Err(format!(
            "setup downloaded again instead of reusing the .debs:\n{log}"
        ));
    }
    let script = "for m in vkms vgem sw_sync; do grep -q \"^$m \" /proc/modules || { echo \"missing module $m\"; exit 1; }; done; \
                  echo \"kernel $(uname -r)\"";
    let vm = Command::new(&me)
        .args(["vm", "--timeout", "300", "--", "sh", "-c", script])
        .env("BUFSYNC_VM_CACHE", &tmp)
        .output()
        .map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&vm.stdout).into_owned();
    if !vm.status.success() || !out.contains(&format!("kernel {KERNEL_VERSION}")) {
        return Err(format!(
            "the guest from {} did not load vkms, vgem and sw_sync:\n{out}{}",
            tmp.display(),
            String::from_utf8_lossy(&vm.stderr)
        ));
    }
    let steps = log.lines().filter(|l| l.contains(": done in")).count();
    let _ = fs::remove_dir_all(&tmp);
    Ok(format!(
        "{steps} steps from the cached .debs, guest booted {KERNEL_VERSION} with vkms, vgem and sw_sync"
    ))
}

/// Links (or copies) every .deb of `from` into `to`.
fn seed_debs(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            let dest = to.join(p.file_name().expect("a file"));
            if fs::hard_link(&p, &dest).is_err() {
                fs::copy(&p, &dest)?;
            }
        }
    }
    Ok(())
}
