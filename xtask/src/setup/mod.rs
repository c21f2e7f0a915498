//! `cargo xtask setup`: what the test VM needs, cached, with the host left
//! as it was.
//!
//! - On the host, apt installs only what runs there ([`host::HOST_PACKAGES`]:
//!   qemu, busybox, the module build tools, glslc, libgbm-dev) from the
//!   release's archive, after printing the plan and, on a terminal, asking.
//! - The guest's kernel, modules and headers, the vkms/sw_sync sources and
//!   lavapipe are extracted from their .debs into the cache
//!   ([`crate::layout::cache_dir`], see [`guest`]), never installed.
//! - vkms.ko, sw_sync.ko and the initramfs are built there ([`build`]).
//!
//! apt uses its own lists in the cache ([`apt`]): `/etc/apt` is not touched.
//! Each step prints a line when it starts and its time when it ends; the
//! output of apt, dpkg and make goes to `setup.log` in the cache. A run with
//! nothing to do only reads stamps and asks dpkg-query (well under 2 s).

pub mod apt;
pub mod build;
pub mod guest;
pub mod host;
pub mod progress;

use std::fs;
use std::io;
use std::time::Instant;

use crate::layout;
use apt::Apt;
use progress::Progress;

pub use build::{initramfs, module};

/// How setup may proceed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Install host packages without asking (also when `CI` is set).
    pub yes: bool,
}

/// Entry point of `cargo xtask setup [--yes]`.
pub fn run(args: &[String]) -> io::Result<u8> {
    let mut opts = Options::default();
    for a in args {
        match a.as_str() {
            "--yes" | "-y" => opts.yes = true,
            other => {
                eprintln!("xtask setup: unexpected argument `{other}`");
                return Ok(2);
            }
        }
    }
    let t = Instant::now();
    ensure(&opts)?;
    println!(
        "setup: ready in {:.2} s (cache {})",
        t.elapsed().as_secs_f64(),
        layout::cache_dir().display()
    );
    Ok(0)
}

fn cache_ready() -> bool {
    guest::kernel_ready()
        && guest::sources_ready()
        && guest::lavapipe_ready()
        && build::modules_ready()
        && build::initramfs_ready()
}

/// Makes sure the host packages and every cached piece are in place, then
/// points this process's environment (and so every child and guest) at the
/// cached lavapipe ([`guest::env`]).
pub fn ensure(opts: &Options) -> io::Result<()> {
    let missing = host::missing();
    if missing.is_empty() && cache_ready() {
        export_env();
        return Ok(());
    }
    if !host::is_debian_12() || which("apt-get").is_none() || which("dpkg-deb").is_none() {
        eprintln!(
            "setup: the test VM's pieces come from Debian 12 (bookworm) packages, and this \
             machine is not Debian 12 with apt.\nsetup: on Debian 12 it installs: {}",
            host::HOST_PACKAGES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Err(io::Error::other("not Debian 12"));
    }
    fs::create_dir_all(layout::cache_dir())?;
    host::snapshot_once()?;
    let mut p = Progress::new(layout::cache_base().join("setup.log"));
    let apt = Apt::new(layout::cache_base().join("apt"))?;
    p.step(
        "package lists of bookworm, -updates, -security and -backports (private to the cache)",
        |p| apt.update(p),
    )?;

    let qemu_utils = host::installed_versions(&["qemu-utils"]).remove(0);
    let reqs = host::requests(&missing, qemu_utils.as_deref());
    let host_plan = host::plan(&apt, &reqs)?;
    let lavapipe = if guest::lavapipe_ready() {
        Vec::new()
    } else {
        guest::lavapipe_plan(&apt)?
    };
    println!("setup: the plan");
    if host_plan.is_empty() {
        println!("  on this machine: nothing to install");
    } else {
        println!("  on this machine, with apt:");
        print!("{}", indent(&host::describe_plan(&host_plan)));
    }
    let cached = guest::describe(&lavapipe);
    if !cached.is_empty() {
        println!(
            "  into the cache {} (not installed; `cargo xtask clean-cache` removes it):",
            layout::cache_dir().display()
        );
        print!("{}", indent(&cached));
    }

    if !missing.is_empty() {
        if !rustix::process::geteuid().is_root() {
            eprintln!(
                "setup: installing host packages needs root; run as root:\n\n{}\n\
                 then run this command again.",
                host::commands_for_root(&apt, &reqs)
            );
            return Err(io::Error::other("host packages missing"));
        }
        if !host::confirm(opts.yes, "setup: install these packages on this machine?") {
            return Err(io::Error::other(
                "not confirmed (`--yes` or CI=1 answer yes without asking)",
            ));
        }
        p.step(
            &format!("install {} host package(s) with apt", host_plan.len()),
            |p| host::install(&apt, &reqs, &host_plan, p),
        )?;
        let still = host::missing();
        if !still.is_empty() {
            return Err(io::Error::other(format!(
                "still missing after install: {}",
                still.join(" ")
            )));
        }
    }
    guest::ensure_kernel(&apt, &mut p)?;
    guest::ensure_sources(&apt, &mut p)?;
    guest::ensure_lavapipe(&apt, &lavapipe, &mut p)?;
    build::ensure_modules(&mut p)?;
    build::ensure_initramfs(&mut p)?;
    export_env();
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// Sets [`guest::env`] in this process (before any thread starts), so cargo,
/// the tests and the guest's command find the cached lavapipe.
pub fn export_env() {
    for (k, v) in guest::env() {
        std::env::set_var(k, v);
    }
}

/// Entry point of `cargo xtask env`: the exports of [`guest::env`].
pub fn print_env(args: &[String]) -> io::Result<u8> {
    if let Some(a) = args.first() {
        eprintln!("xtask env: unexpected argument `{a}`");
        return Ok(2);
    }
    if !guest::lavapipe_ready() {
        eprintln!("xtask env: lavapipe is not in the cache yet: run `cargo xtask setup`");
        return Ok(1);
    }
    for (k, v) in guest::env() {
        if k == "LD_LIBRARY_PATH" {
            // Cargo's own additions to this process's path stay out.
            if let Some(lib) = guest::mesa_lib_dir() {
                println!(
                    "export LD_LIBRARY_PATH={}\"${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\"",
                    crate::vm::quote(&lib.to_string_lossy())
                );
            }
            continue;
        }
        println!("export {k}={}", crate::vm::quote(&v));
    }
    Ok(0)
}

fn which(prog: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| p.is_file())
}

/// Entry point of `cargo xtask clean-cache`: removes the whole VM cache.
pub fn clean_cache(args: &[String]) -> io::Result<u8> {
    if let Some(a) = args.first() {
        eprintln!("xtask clean-cache: unexpected argument `{a}`");
        return Ok(2);
    }
    let base = layout::cache_base();
    if !base.exists() {
        println!("clean-cache: {} does not exist", base.display());
        return Ok(0);
    }
    let bytes = dir_size(&base);
    fs::remove_dir_all(&base)?;
    println!(
        "clean-cache: removed {} ({})",
        base.display(),
        progress::mb(bytes)
    );
    Ok(0)
}

/// Bytes under `dir` (files only, links not followed).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
