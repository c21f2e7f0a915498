//! `cargo xtask setup`: everything the test VM needs, installed and built once.
//!
//! 1. Debian packages (qemu, busybox-static, the bookworm-backports 6.12
//!    kernel image + headers, lavapipe, glslc ...), added only when missing.
//! 2. `vkms.ko` and `sw_sync.ko` built out of tree from the pinned
//!    linux-source package for the guest kernel.
//! 3. The initramfs: busybox as /init plus the 9p and overlay modules.
//!
//! Everything lands in [`layout::cache_dir`]; a second run with nothing to do
//! only checks stamps and `dpkg-query` (well under 2 s).

use crate::layout::{self, KERNEL_VERSION, LINUX_SOURCE};
use crate::process::{self, output, run as run_cmd};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Packages from the release itself.
const PACKAGES: &[&str] = &[
    "busybox-static",
    "kmod",
    "xz-utils",
    "cpio",
    "gzip",
    "make",
    "patch",
    "gcc",
    "glslc",
    "spirv-tools",
];

/// Packages taken from bookworm-backports (with the minimum version the
/// project needs where the release's own is too old).
fn backports() -> Vec<(String, Option<&'static str>)> {
    vec![
        (format!("linux-image-{KERNEL_VERSION}"), None),
        (format!("linux-headers-{KERNEL_VERSION}"), None),
        // lavapipe with VK_EXT_external_memory_dma_buf.
        ("mesa-vulkan-drivers".into(), Some("25")),
        ("libvulkan1".into(), None),
        // The image's qemu-utils comes from backports and breaks release qemu.
        ("qemu-system-x86".into(), None),
        // modetest, matching backports' libdrm2 (pulled in by Mesa).
        ("libdrm-tests".into(), None),
    ]
}

/// Bumped whenever the way modules or the initramfs are built changes.
const BUILD_STAMP: &str = "bufsync-vm-build 1";

/// Entry point of `cargo xtask setup`.
pub fn run(args: &[String]) -> io::Result<u8> {
    if let Some(a) = args.first() {
        eprintln!("xtask setup: unexpected argument `{a}`");
        return Ok(2);
    }
    let t = Instant::now();
    ensure()?;
    println!(
        "setup: ready in {:.2} s (cache {})",
        t.elapsed().as_secs_f64(),
        layout::cache_dir().display()
    );
    Ok(0)
}

/// Makes sure packages, modules and initramfs are in place.
pub fn ensure() -> io::Result<()> {
    ensure_packages()?;
    let cache = layout::cache_dir();
    fs::create_dir_all(&cache)?;
    ensure_modules(&cache)?;
    ensure_initramfs(&cache)?;
    Ok(())
}

/// The initramfs built by [`ensure`].
pub fn initramfs() -> PathBuf {
    layout::cache_dir().join("initramfs.cpio.gz")
}

/// The out-of-tree module `name` built by [`ensure`].
pub fn module(name: &str) -> PathBuf {
    layout::cache_dir().join(format!("{name}.ko"))
}

// ---------------------------------------------------------------- packages

fn installed_versions(pkgs: &[String]) -> io::Result<Vec<Option<String>>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev} ${Version}\n"])
        .args(pkgs)
        .output();
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => String::new(),
    };
    Ok(pkgs
        .iter()
        .map(|p| {
            text.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next()?.split(':').next()?;
                let status = it.next()?;
                let version = it.next()?;
                (name == p && status.starts_with("ii")).then(|| version.to_string())
            })
        })
        .collect())
}

fn missing_packages() -> io::Result<(Vec<String>, Vec<String>)> {
    let main: Vec<String> = PACKAGES.iter().map(|s| s.to_string()).collect();
    let bpo = backports();
    let bpo_names: Vec<String> = bpo.iter().map(|(n, _)| n.clone()).collect();
    let have_main = installed_versions(&main)?;
    let have_bpo = installed_versions(&bpo_names)?;
    let miss_main = main
        .into_iter()
        .zip(have_main)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| n)
        .collect();
    let miss_bpo = bpo
        .into_iter()
        .zip(have_bpo)
        .filter(|((_, min), v)| match (v, min) {
            (None, _) => true,
            (Some(v), Some(min)) => major(v) < major(min),
            (Some(_), None) => false,
        })
        .map(|((n, _), _)| n)
        .collect();
    Ok((miss_main, miss_bpo))
}

fn major(version: &str) -> u32 {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    v.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

fn is_bookworm() -> bool {
    fs::read_to_string("/etc/os-release")
        .map(|s| s.lines().any(|l| l.trim() == "VERSION_CODENAME=bookworm"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The mirror the machine already uses for bookworm (so no host name is
/// hard-coded here), read from apt's deb822 `.sources` or one-line `.list`
/// files. Returns (uri, backports already configured).
fn apt_mirror() -> (Option<String>, bool) {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut mirror = None;
    let mut has_bpo = false;
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        let name = f.to_string_lossy();
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |key: &str| {
                    stanza
                        .lines()
                        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
                };
                let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
                    continue;
                };
                if stanza
                    .lines()
                    .any(|l| l.trim_start().starts_with("Enabled: no"))
                {
                    continue;
                }
                let suites: Vec<&str> = suites.split_whitespace().collect();
                if suites.contains(&"bookworm-backports") {
                    has_bpo = true;
                }
                if suites.contains(&"bookworm") && mirror.is_none() {
                    mirror = uris.split_whitespace().next().map(str::to_string);
                }
            }
        } else if name.ends_with(".list") || name.ends_with("sources.list") {
            for l in text.lines() {
                let l = l.trim();
                if !l.starts_with("deb ") {
                    continue;
                }
                let words: Vec<&str> = l
                    .split_whitespace()
                    .skip(1)
                    .filter(|w| !w.starts_with('['))
                    .collect();
                match words.as_slice() {
                    [_, "bookworm-backports", ..] => has_bpo = true,
                    [uri, "bookworm", ..] if mirror.is_none() => mirror = Some(uri.to_string()),
                    _ => {}
                }
            }
        }
    }
    (mirror, has_bpo)
}

const BPO_SOURCES: &str = "/etc/apt/sources.list.d/bufsync-backports.sources";

fn install_script(main: &[String], bpo: &[String], mirror: &str, add_bpo: bool) -> String {
    let mut s = String::new();
    if add_bpo {
        s += &format!(
            "printf 'Types: deb\\nURIs: {mirror}\\nSuites: bookworm-backports\\nComponents: main\\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' > {BPO_SOURCES}\n"
        );
    }
    s += "apt-get update -q\n";
    if !main.is_empty() {
        s += &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {}\n",
            main.join(" ")
        );
    }
    if !bpo.is_empty() {
        s += &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
             -t bookworm-backports {}\n",
            bpo.join(" ")
        );
    }
    s
}

fn ensure_packages() -> io::Result<()> {
    let (main, bpo) = missing_packages()?;
    if main.is_empty() && bpo.is_empty() {
        return Ok(());
    }
    let (mirror, has_bpo) = apt_mirror();
    let mirror = mirror.unwrap_or_else(|| "<your Debian mirror>".into());
    let script = install_script(&main, &bpo, &mirror, !has_bpo);
    if !is_root() || !is_bookworm() {
        eprintln!(
            "setup: missing packages: {}\n\
             setup: this needs Debian 12 (bookworm) and root; as root, run:\n\n{script}\n\
             then run `cargo xtask setup` again.",
            main.iter()
                .chain(&bpo)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Err(io::Error::other("packages missing"));
    }
    println!(
        "setup: installing {}",
        main.iter()
            .chain(&bpo)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    process::sh(Path::new("/"), &script)?;
    let (main, bpo) = missing_packages()?;
    if !main.is_empty() || !bpo.is_empty() {
        return Err(io::Error::other(format!(
            "still missing after install: {}",
            main.iter()
                .chain(&bpo)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- modules

fn stamp_ok(path: &Path, content: &str) -> bool {
    fs::read_to_string(path)
        .map(|s| s == content)
        .unwrap_or(false)
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

fn ensure_modules(cache: &Path) -> io::Result<()> {
    let stamp = cache.join("modules.stamp");
    let want = modules_stamp();
    if stamp_ok(&stamp, &want) && module("vkms").exists() && module("sw_sync").exists() {
        return Ok(());
    }
    let t = Instant::now();
    let src = extract_sources(cache)?;
    let kmod = layout::harness_dir().join("kmod");
    let build = cache.join("build");
    let _ = fs::remove_dir_all(&build);

    // vkms: the driver's sources with the writeback composer fix.
    let vkms = build.join("vkms");
    fs::create_dir_all(&vkms)?;
    copy_matching(&src.join("drivers/gpu/drm/vkms"), &vkms, &[".c", ".h"])?;
    fs::copy(kmod.join("vkms.Kbuild"), vkms.join("Kbuild"))?;
    run_cmd(
        Command::new("patch")
            .args(["-s", "-p5", "-d"])
            .arg(&vkms)
            .arg("-i")
            .arg(kmod.join("vkms-composer-users.patch")),
    )?;

    // sw_sync: renamed main object, local trace include path, private name helper.
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

    let headers = layout::kernel_headers();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    for (dir, config) in [(&vkms, "CONFIG_DRM_VKMS=m"), (&sws, "CONFIG_SW_SYNC=m")] {
        run_cmd(
            Command::new("make")
                .arg("-s")
                .arg(format!("-j{jobs}"))
                .arg("-C")
                .arg(&headers)
                .arg(format!("M={}", dir.display()))
                .arg(config)
                .arg("modules"),
        )?;
    }
    fs::copy(vkms.join("vkms.ko"), module("vkms"))?;
    fs::copy(sws.join("sw_sync.ko"), module("sw_sync"))?;
    fs::write(&stamp, want)?;
    println!(
        "setup: built vkms.ko and sw_sync.ko in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Extracts `drivers/gpu/drm/vkms` and `drivers/dma-buf` from the pinned
/// linux-source package (downloaded once into the cache).
fn extract_sources(cache: &Path) -> io::Result<PathBuf> {
    let src = cache.join("src/linux-source-6.12");
    if src.join("drivers/dma-buf/sw_sync.c").exists()
        && src.join("drivers/gpu/drm/vkms/vkms_drv.c").exists()
    {
        return Ok(src);
    }
    let dl = cache.join("download");
    fs::create_dir_all(&dl)?;
    let have_deb = |dl: &Path| -> io::Result<Option<PathBuf>> {
        Ok(fs::read_dir(dl)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("linux-source-6.12_"))
            }))
    };
    let deb = match have_deb(&dl)? {
        Some(d) => d,
        None => {
            println!("setup: downloading {LINUX_SOURCE} (~150 MB)");
            run_cmd(
                Command::new("apt-get")
                    .args(["download", "-q", LINUX_SOURCE])
                    .current_dir(&dl),
            )?;
            have_deb(&dl)?.ok_or_else(|| io::Error::other("apt-get download gave no .deb"))?
        }
    };
    let out = cache.join("src");
    fs::create_dir_all(&out)?;
    process::sh(
        &out,
        &format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -xO ./usr/src/linux-source-6.12.tar.xz \
             | tar -xJ --wildcards 'linux-source-6.12/drivers/gpu/drm/vkms/*' \
               'linux-source-6.12/drivers/dma-buf/*'",
            deb.display()
        ),
    )?;
    Ok(src)
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

// ---------------------------------------------------------------- initramfs

/// Modules the initramfs loads before it can mount the host root, in order.
const INITRAMFS_MODULES: &[&str] = &["netfs", "9pnet", "9pnet_virtio", "9p", "overlay"];

fn ensure_initramfs(cache: &Path) -> io::Result<()> {
    let init = fs::read_to_string(layout::harness_dir().join("init"))?;
    let stamp = cache.join("initramfs.stamp");
    let want = format!("{BUILD_STAMP}\n{init}");
    if stamp_ok(&stamp, &want) && initramfs().exists() {
        return Ok(());
    }
    let root = cache.join("initramfs");
    let _ = fs::remove_dir_all(&root);
    for d in ["bin", "dev", "proc", "sys", "lib/modules"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    fs::write(root.join("init"), &init)?;
    set_exec(&root.join("init"))?;
    for m in INITRAMFS_MODULES {
        let path = output(Command::new("modinfo").args(["-k", KERNEL_VERSION, "-n", m]))?;
        let path = path.trim();
        let dest = root.join(format!("lib/modules/{m}.ko"));
        if path.ends_with(".xz") {
            let data = output_bytes(Command::new("xz").args(["-dc", path]))?;
            fs::write(&dest, data)?;
        } else {
            fs::copy(path, &dest)?;
        }
    }
    let archive = initramfs();
    process::sh(
        &root,
        &format!(
            "find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > '{}'",
            archive.display()
        ),
    )?;
    fs::write(&stamp, want)?;
    println!("setup: built {}", archive.display());
    Ok(())
}

fn output_bytes(cmd: &mut Command) -> io::Result<Vec<u8>> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{}` failed",
            process::describe(cmd)
        )));
    }
    Ok(out.stdout)
}

fn set_exec(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(major("25.0.7-2~bpo12+1"), 25);
        assert_eq!(major("1:7.2+dfsg-7"), 7);
        assert_eq!(major("22.3.6-1+deb12u1"), 22);
    }

    #[test]
    fn install_script_adds_backports_only_when_asked() {
        let s = install_script(
            &["cpio".into()],
            &["x".into()],
            "http://mirror/debian",
            true,
        );
        assert!(s.contains("bookworm-backports"));
        assert!(s.contains("-t bookworm-backports x"));
        let s = install_script(&[], &["x".into()], "m", false);
        assert!(!s.contains(BPO_SOURCES));
    }
}
