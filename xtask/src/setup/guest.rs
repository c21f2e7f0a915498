//! The guest's pieces, extracted from their Debian packages into the cache
//! (`apt-get download` + `dpkg-deb -x`), never installed on the host:
//!
//! - the kernel image and modules (`linux-image-…`), indexed with
//!   `depmod -b`; the guest bind-mounts them at `/lib/modules/<version>`;
//! - its headers and kbuild, for the out-of-tree vkms and sw_sync builds;
//! - the kernel sources of vkms and dma-buf (`linux-source-6.12`);
//! - lavapipe (`mesa-vulkan-drivers` from bookworm-backports) and the
//!   libraries it needs beyond the host's, found with
//!   `VK_ICD_FILENAMES` and `LD_LIBRARY_PATH` (see [`env()`]);
//! - the Vulkan loader's development files (`libvulkan-dev`: headers,
//!   `libvulkan.so`, `vulkan.pc` pointed into the cache), found with
//!   `PKG_CONFIG_PATH`, for the C example of libbufsync.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::apt::{Apt, Inst};
use super::progress::Progress;
use crate::layout::{self, KERNEL_ABI, KERNEL_PACKAGE_VERSION, KERNEL_VERSION};

/// Bumped when the way pieces are extracted changes.
const EXTRACT_STAMP: &str = "bufsync-vm-extract 1";

/// The kernel packages (image, headers, their common part, kbuild).
pub fn kernel_specs() -> Vec<String> {
    [
        format!("linux-image-{KERNEL_VERSION}"),
        format!("linux-headers-{KERNEL_VERSION}"),
        format!("linux-headers-{KERNEL_ABI}-common"),
        format!("linux-kbuild-{KERNEL_ABI}"),
    ]
    .into_iter()
    .map(|p| format!("{p}={KERNEL_PACKAGE_VERSION}"))
    .collect()
}

/// The kernel source package (only vkms and dma-buf are extracted).
pub fn source_spec() -> String {
    format!("linux-source-6.12={KERNEL_PACKAGE_VERSION}")
}

/// What the apt simulation gives for lavapipe: Mesa's Vulkan drivers from
/// backports (with VK_EXT_external_memory_dma_buf) and what they need that
/// the host lacks, plus the loader's headers and pkg-config file (C
/// programs against libbufsync: `pkg-config --cflags --libs vulkan`), and
/// the DRI drivers of the release's own Mesa, whose `kms_swrast` the
/// guest's GBM (the host's libgbm1, the same Mesa release) loads for vkms
/// and virtio_gpu (`GBM_DRIVERS_PATH`, see [`env()`]).
pub const LAVAPIPE_REQUEST: &[&str] = &[
    "mesa-vulkan-drivers/bookworm-backports",
    "libvulkan1",
    "libvulkan-dev",
    "libgl1-mesa-dri",
];

/// The first line of the lavapipe stamp: a cache extracted for another
/// request is extracted again.
const LAVAPIPE_STAMP: &str = "bufsync-vm-lavapipe 2 (lavapipe, vulkan headers, DRI drivers)";

/// Where the downloaded .debs are kept (the setup extraction test reuses them).
pub fn debs_dir() -> PathBuf {
    layout::cache_dir().join("debs")
}

fn kernel_stamp() -> String {
    format!("{EXTRACT_STAMP}\n{}\n", kernel_specs().join("\n"))
}

fn stamp_ok(path: &Path, want: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s == want)
}

/// Whether the kernel, modules and headers are in the cache.
pub fn kernel_ready() -> bool {
    stamp_ok(&layout::cache_dir().join("kernel.stamp"), &kernel_stamp())
        && layout::kernel_image().exists()
        && layout::kernel_headers().join("Makefile").exists()
}

/// Extracts the kernel, its modules and headers into the cache.
pub fn ensure_kernel(apt: &Apt, p: &mut Progress) -> io::Result<()> {
    if kernel_ready() {
        return Ok(());
    }
    p.step(
        &format!("guest kernel {KERNEL_VERSION}: image, modules, headers (into the cache)"),
        |p| {
            apt.update(p)?;
            let debs = apt.download(&kernel_specs(), &debs_dir(), p)?;
            let root = layout::kernel_root();
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root)?;
            for d in &debs {
                p.run(Command::new("dpkg-deb").arg("-x").arg(d).arg(&root))?;
            }
            point_headers_at(&root)?;
            p.run(
                Command::new("depmod")
                    .arg("-b")
                    .arg(&root)
                    .arg(KERNEL_VERSION),
            )?;
            fs::write(layout::cache_dir().join("kernel.stamp"), kernel_stamp())
        },
    )
}

/// The headers' Makefile includes the common part by its installed path:
/// point it into the extracted tree instead.
fn point_headers_at(root: &Path) -> io::Result<()> {
    let mk = layout::kernel_headers().join("Makefile");
    let text = fs::read_to_string(&mk)?;
    let fixed = text.replace(
        "include /usr/src/",
        &format!("include {}/usr/src/", root.display()),
    );
    if fixed == text {
        return Err(io::Error::other(format!(
            "{}: no `include /usr/src/` line to point into the cache",
            mk.display()
        )));
    }
    fs::write(mk, fixed)
}

/// The extracted kernel sources (vkms and dma-buf only).
pub fn sources_dir() -> PathBuf {
    layout::cache_dir().join("src/linux-source-6.12")
}

/// Whether the vkms and dma-buf sources are in the cache.
pub fn sources_ready() -> bool {
    let src = sources_dir();
    src.join("drivers/dma-buf/sw_sync.c").exists()
        && src.join("drivers/gpu/drm/vkms/vkms_drv.c").exists()
}

/// Extracts `drivers/gpu/drm/vkms` and `drivers/dma-buf` from the pinned
/// linux-source package.
pub fn ensure_sources(apt: &Apt, p: &mut Progress) -> io::Result<()> {
    if sources_ready() {
        return Ok(());
    }
    p.step("kernel sources of vkms and sw_sync (into the cache)", |p| {
        apt.update(p)?;
        let debs = apt.download(&[source_spec()], &debs_dir(), p)?;
        let out = layout::cache_dir().join("src");
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out)?;
        p.run(Command::new("sh").current_dir(&out).arg("-ec").arg(format!(
            "dpkg-deb --fsys-tarfile {} | tar -xO ./usr/src/linux-source-6.12.tar.xz \
             | tar -xJ --wildcards 'linux-source-6.12/drivers/gpu/drm/vkms/*' \
               'linux-source-6.12/drivers/dma-buf/*'",
            crate::vm::quote(&debs[0].to_string_lossy())
        )))
    })
}

// ---------------------------------------------------------------- lavapipe

fn lavapipe_stamp_path() -> PathBuf {
    layout::cache_dir().join("lavapipe.stamp")
}

/// Whether lavapipe's manifest is in place (from the cache or the host),
/// with the Vulkan headers and `vulkan.pc`.
pub fn lavapipe_ready() -> bool {
    fs::read_to_string(lavapipe_stamp_path()).is_ok_and(|s| s.starts_with(LAVAPIPE_STAMP))
        && icd_path().exists()
        && (vulkan_pc_dir().is_some() || Path::new(HOST_VULKAN_PC).exists())
}

/// Where the host keeps `vulkan.pc` when libvulkan-dev is installed there.
const HOST_VULKAN_PC: &str = "/usr/lib/x86_64-linux-gnu/pkgconfig/vulkan.pc";

/// The cache's pkg-config directory, when it holds `vulkan.pc`.
pub fn vulkan_pc_dir() -> Option<PathBuf> {
    let dir = layout::mesa_root().join("usr/lib/x86_64-linux-gnu/pkgconfig");
    dir.join("vulkan.pc").exists().then_some(dir)
}

/// The extracted `vulkan.pc` names `prefix=/usr`: point it into the cache.
fn point_vulkan_pc_at(root: &Path) -> io::Result<()> {
    let pc = root.join("usr/lib/x86_64-linux-gnu/pkgconfig/vulkan.pc");
    let Ok(text) = fs::read_to_string(&pc) else {
        return Ok(()); // the host has the development files
    };
    let fixed: String = text
        .lines()
        .map(|l| match l.strip_prefix("prefix=") {
            Some(p) if p.starts_with('/') => format!("prefix={}{p}\n", root.display()),
            _ => format!("{l}\n"),
        })
        .collect();
    fs::write(pc, fixed)
}

/// The lavapipe ICD manifest the tests and the guest use.
pub fn icd_path() -> PathBuf {
    layout::cache_dir().join("lvp_icd.json")
}

/// The packages lavapipe needs into the cache (empty when the host
/// already has a lavapipe with dma-buf export: Mesa 25 or later).
pub fn lavapipe_plan(apt: &Apt) -> io::Result<Vec<Inst>> {
    apt.simulate(
        &LAVAPIPE_REQUEST
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    )
}

/// Extracts `plan` into the cache's Mesa tree and writes the manifest.
pub fn ensure_lavapipe(apt: &Apt, plan: &[Inst], p: &mut Progress) -> io::Result<()> {
    if lavapipe_ready() {
        return Ok(());
    }
    p.step("lavapipe, Mesa's software Vulkan (into the cache)", |p| {
        let root = layout::mesa_root();
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root)?;
        let specs: Vec<String> = plan.iter().map(Inst::spec).collect();
        if !specs.is_empty() {
            for d in apt.download(&specs, &debs_dir(), p)? {
                p.run(Command::new("dpkg-deb").arg("-x").arg(&d).arg(&root))?;
            }
        }
        let cached = root.join("usr/lib/x86_64-linux-gnu/libvulkan_lvp.so");
        // Without one in the cache, the host's own Mesa is new enough.
        let lib = if cached.exists() {
            cached
        } else {
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so")
        };
        if !lib.exists() {
            return Err(io::Error::other(format!(
                "no lavapipe at {}",
                lib.display()
            )));
        }
        point_vulkan_pc_at(&root)?;
        fs::write(icd_path(), icd_manifest(&lib))?;
        let list: String = plan.iter().map(|i| format!("{}\n", i.spec())).collect();
        fs::write(lavapipe_stamp_path(), format!("{LAVAPIPE_STAMP}\n{list}"))
    })
}

fn icd_manifest(lib: &Path) -> String {
    format!(
        "{{\n    \"ICD\": {{\n        \"api_version\": \"1.3.0\",\n        \"library_path\": \"{}\"\n    }},\n    \"file_format_version\": \"1.0.0\"\n}}\n",
        lib.display()
    )
}

/// The environment that points Vulkan at the cached lavapipe, for the
/// tests on the host and in the guest: `BUFSYNC_LVP_ICD` (read by
/// `bufsync_tests::lavapipe`), `VK_ICD_FILENAMES` unless the caller chose
/// drivers, `LD_LIBRARY_PATH` for the libraries Mesa needs beyond the
/// host's, `PKG_CONFIG_PATH` for `vulkan.pc`, and `GBM_DRIVERS_PATH` when
/// the DRI drivers came into the cache (a host without libgl1-mesa-dri).
pub fn env() -> Vec<(String, String)> {
    let mut v = Vec::new();
    let icd = icd_path();
    if !icd.exists() {
        return v;
    }
    let icd = icd.to_string_lossy().into_owned();
    v.push(("BUFSYNC_LVP_ICD".to_string(), icd.clone()));
    if std::env::var_os("VK_ICD_FILENAMES").is_none()
        && std::env::var_os("VK_DRIVER_FILES").is_none()
    {
        v.push(("VK_ICD_FILENAMES".to_string(), icd));
    }
    for (var, dir) in [
        ("LD_LIBRARY_PATH", mesa_lib_dir()),
        ("PKG_CONFIG_PATH", vulkan_pc_dir()),
        ("GBM_DRIVERS_PATH", dri_dir()),
    ] {
        if let Some(dir) = dir {
            v.push((var.to_string(), prepended(var, &dir)));
        }
    }
    v
}

/// The search path `var` with `dir` in front (once).
fn prepended(var: &str, dir: &Path) -> String {
    let dir = dir.to_string_lossy().into_owned();
    match std::env::var(var) {
        Ok(old) if old.split(':').any(|p| p == dir) => old,
        Ok(old) if !old.is_empty() => format!("{dir}:{old}"),
        _ => dir,
    }
}

/// The cached DRI drivers' directory, when they came into the cache.
pub fn dri_dir() -> Option<PathBuf> {
    let dri = layout::mesa_root().join("usr/lib/x86_64-linux-gnu/dri");
    dri.join("kms_swrast_dri.so").exists().then_some(dri)
}

/// The cached libraries' directory, when lavapipe came into the cache.
pub fn mesa_lib_dir() -> Option<PathBuf> {
    let lib = layout::mesa_root().join("usr/lib/x86_64-linux-gnu");
    lib.is_dir().then_some(lib)
}

/// One line per cached piece and where it comes from, for the plan.
pub fn describe(lavapipe: &[Inst]) -> String {
    let mut s = String::new();
    if !kernel_ready() {
        s += &format!(
            "  guest kernel: {} (bookworm-backports {KERNEL_PACKAGE_VERSION}), extracted\n",
            kernel_specs()
                .iter()
                .map(|k| k.split('=').next().unwrap_or(k))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !sources_ready() {
        s += &format!(
            "  vkms and sw_sync sources: linux-source-6.12 (bookworm-backports {KERNEL_PACKAGE_VERSION}), two directories extracted\n"
        );
    }
    if !lavapipe_ready() {
        if lavapipe.is_empty() {
            s += "  lavapipe: the host's own Mesa (new enough), only a manifest written\n";
        } else {
            s += "  lavapipe:\n";
            for i in lavapipe {
                s += &format!("    {} {} ({}), extracted\n", i.name, i.version, i.origin);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_packages_are_pinned() {
        let specs = kernel_specs();
        assert_eq!(specs.len(), 4);
        for s in &specs {
            assert!(s.ends_with(&format!("={KERNEL_PACKAGE_VERSION}")), "{s}");
        }
        assert!(specs[0].starts_with(&format!("linux-image-{KERNEL_VERSION}=")));
        assert!(source_spec().starts_with("linux-source-6.12="));
    }

    #[test]
    fn vulkan_pc_is_pointed_into_the_cache() {
        let root = std::env::temp_dir().join(format!("bufsync-vulkan-pc-{}", std::process::id()));
        let dir = root.join("usr/lib/x86_64-linux-gnu/pkgconfig");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("vulkan.pc"),
            "prefix=/usr\nlibdir=${prefix}/lib/x86_64-linux-gnu\nName: Vulkan-Loader\n",
        )
        .unwrap();
        point_vulkan_pc_at(&root).unwrap();
        let pc = fs::read_to_string(dir.join("vulkan.pc")).unwrap();
        assert!(
            pc.starts_with(&format!("prefix={}/usr\n", root.display())),
            "{pc}"
        );
        assert!(pc.contains("libdir=${prefix}/lib/x86_64-linux-gnu\n"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn manifest_names_the_library_by_path() {
        let m = icd_manifest(Path::new(
            "/c/mesa/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so",
        ));
        assert!(
            m.contains("\"library_path\": \"/c/mesa/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so\"")
        );
    }
}
