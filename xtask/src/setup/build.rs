//! What setup builds from the cached pieces: `vkms.ko` and `sw_sync.ko`
//! (out of tree, against the cached headers) and the initramfs (busybox as
//! /init plus the 9p and overlay modules of the cached kernel).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::guest;
use super::progress::Progress;
use crate::layout::{self, KERNEL_VERSION};
use crate::process::output;

/// Bumped whenever the way modules or the initramfs are built changes.
const BUILD_STAMP: &str = "bufsync-vm-build 2";

/// The initramfs.
pub fn initramfs() -> PathBuf {
    layout::cache_dir().join("initramfs.cpio.gz")
}

/// The out-of-tree module `name`.
pub fn module(name: &str) -> PathBuf {
    layout::cache_dir().join(format!("{name}.ko"))
}

fn stamp_ok(path: &Path, content: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s == content)
}

fn modules_stamp() -> String {
    let h = layout::harness_dir().join("kmod");
    let mut s = format!("{BUILD_STAMP}\n{KERNEL_VERSION}\n");
    for f in [
        "vkms.Kbuild",
        "vkms-composer-users.patch",
        "sw_sync.Kbuild",
        "bufsync_compat.c",
    ] {
        s += &fs::read_to_string(h.join(f)).unwrap_or_default();
    }
    s
}

/// Whether both modules are built from the current harness files.
pub fn modules_ready() -> bool {
    stamp_ok(&layout::cache_dir().join("modules.stamp"), &modules_stamp())
        && module("vkms").exists()
        && module("sw_sync").exists()
}

/// Builds the out-of-tree module in `dir` (a Kbuild file and its sources)
/// against the cached guest headers; `vars` are extra make variables.
/// Output goes to the setup log. BTF for modules is off: it needs pahole,
/// and a module loads without it.
pub fn build_module(p: &mut Progress, dir: &Path, vars: &[&str]) -> io::Result<()> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    p.run(
        Command::new("make")
            .arg("-s")
            .arg(format!("-j{jobs}"))
            .arg("-C")
            .arg(layout::kernel_headers())
            .arg(format!("M={}", dir.display()))
            .arg("CONFIG_DEBUG_INFO_BTF_MODULES=")
            .args(vars)
            .arg("modules"),
    )
}

/// Builds vkms (with the writeback composer fix) and sw_sync.
pub fn ensure_modules(p: &mut Progress) -> io::Result<()> {
    if modules_ready() {
        return Ok(());
    }
    p.step("build vkms.ko and sw_sync.ko", |p| {
        let src = guest::sources_dir();
        let cache = layout::cache_dir();
        let kmod = layout::harness_dir().join("kmod");
        let build = cache.join("build");
        let _ = fs::remove_dir_all(&build);

        let vkms = build.join("vkms");
        fs::create_dir_all(&vkms)?;
        copy_matching(&src.join("drivers/gpu/drm/vkms"), &vkms, &[".c", ".h"])?;
        fs::copy(kmod.join("vkms.Kbuild"), vkms.join("Kbuild"))?;
        p.run(
            Command::new("patch")
                .args(["-s", "-p5", "-d"])
                .arg(&vkms)
                .arg("-i")
                .arg(kmod.join("vkms-composer-users.patch")),
        )?;

        // sw_sync: renamed main object, local trace include path, private
        // name helper (see tests/harness/kmod/sw_sync.Kbuild).
        let sws = build.join("sw_sync");
        fs::create_dir_all(&sws)?;
        let dmabuf = src.join("drivers/dma-buf");
        fs::copy(dmabuf.join("sw_sync.c"), sws.join("sw_sync_main.c"))?;
        for f in ["sync_debug.c", "sync_debug.h"] {
            fs::copy(dmabuf.join(f), sws.join(f))?;
        }
        let trace = fs::read_to_string(dmabuf.join("sync_trace.h"))?;
        let trace: String = trace
            .lines()
            .map(|l| {
                if l.starts_with("#define TRACE_INCLUDE_PATH") {
                    "#define TRACE_INCLUDE_PATH .".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        fs::write(sws.join("sync_trace.h"), trace + "\n")?;
        fs::copy(kmod.join("bufsync_compat.c"), sws.join("bufsync_compat.c"))?;
        fs::copy(kmod.join("sw_sync.Kbuild"), sws.join("Kbuild"))?;

        build_module(p, &vkms, &["CONFIG_DRM_VKMS=m"])?;
        build_module(p, &sws, &["CONFIG_SW_SYNC=m"])?;
        fs::copy(vkms.join("vkms.ko"), module("vkms"))?;
        fs::copy(sws.join("sw_sync.ko"), module("sw_sync"))?;
        fs::write(cache.join("modules.stamp"), modules_stamp())
    })
}

fn copy_matching(from: &Path, to: &Path, exts: &[&str]) -> io::Result<()> {
    for e in fs::read_dir(from)? {
        let p = e?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if exts.iter().any(|x| name.ends_with(x)) {
            fs::copy(&p, to.join(&name))?;
        }
    }
    Ok(())
}

/// Modules the initramfs loads before it can mount the host root, in order.
const INITRAMFS_MODULES: &[&str] = &["netfs", "9pnet", "9pnet_virtio", "9p", "overlay"];

fn initramfs_stamp() -> io::Result<String> {
    let init = fs::read_to_string(layout::harness_dir().join("init"))?;
    Ok(format!("{BUILD_STAMP}\n{KERNEL_VERSION}\n{init}"))
}

/// Whether the initramfs is built from the current init script.
pub fn initramfs_ready() -> bool {
    initramfs_stamp().is_ok_and(|want| {
        stamp_ok(&layout::cache_dir().join("initramfs.stamp"), &want) && initramfs().exists()
    })
}

/// Packs busybox, the init script and the early modules.
pub fn ensure_initramfs(p: &mut Progress) -> io::Result<()> {
    if initramfs_ready() {
        return Ok(());
    }
    p.step("build the initramfs", |p| {
        let cache = layout::cache_dir();
        let root = cache.join("initramfs");
        let _ = fs::remove_dir_all(&root);
        for d in ["bin", "dev", "proc", "sys", "lib/modules"] {
            fs::create_dir_all(root.join(d))?;
        }
        fs::copy("/bin/busybox", root.join("bin/busybox"))?;
        let init = fs::read_to_string(layout::harness_dir().join("init"))?;
        fs::write(root.join("init"), &init)?;
        set_exec(&root.join("init"))?;
        for m in INITRAMFS_MODULES {
            let path = output(
                Command::new("modinfo")
                    .arg("-b")
                    .arg(layout::kernel_root())
                    .args(["-k", KERNEL_VERSION, "-n", m]),
            )?;
            let path = PathBuf::from(path.trim());
            let dest = root.join(format!("lib/modules/{m}.ko"));
            if path.extension().is_some_and(|e| e == "xz") {
                let out = Command::new("xz").arg("-dc").arg(&path).output()?;
                if !out.status.success() {
                    return Err(io::Error::other(format!(
                        "xz -dc {} failed",
                        path.display()
                    )));
                }
                fs::write(&dest, out.stdout)?;
            } else {
                fs::copy(&path, &dest)?;
            }
        }
        p.run(
            Command::new("sh")
                .current_dir(&root)
                .arg("-ec")
                .arg(format!(
                    "find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > {}",
                    crate::vm::quote(&initramfs().to_string_lossy())
                )),
        )?;
        fs::write(cache.join("initramfs.stamp"), initramfs_stamp()?)
    })
}

fn set_exec(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
}
