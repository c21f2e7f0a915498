//! Where things live: the workspace, the guest kernel, the VM cache.
//!
//! Everything the guest needs from Debian (its kernel, modules and headers,
//! lavapipe) is extracted into the cache, never installed on the host: see
//! `setup`.

use std::path::PathBuf;

/// The guest kernel: Debian bookworm-backports' 6.12 build.
pub const KERNEL_VERSION: &str = "6.12.95+deb12-amd64";
/// The Debian package version of every kernel package [`KERNEL_VERSION`]
/// comes from (pinned: the guest kernel and its sources must match).
pub const KERNEL_PACKAGE_VERSION: &str = "6.12.95-1~bpo12+1";
/// The kernel's kbuild/common ABI name (`linux-kbuild-…`, `linux-headers-…-common`).
pub const KERNEL_ABI: &str = "6.12.95+deb12";

/// The workspace root (xtask lives one level below it).
pub fn workspace() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = dir.parent().expect("xtask has a parent directory");
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace().join(d)
            }
        }
        None => workspace().join("target"),
    }
}

/// The base of the VM cache (`$XDG_CACHE_HOME/bufsync-vm`, else
/// `~/.cache/bufsync-vm`): the private apt state, and one directory per
/// guest kernel. `cargo xtask clean-cache` removes it.
pub fn cache_base() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("bufsync-vm")
}

/// The guest kernel's cache: extracted packages, downloaded .debs, built
/// modules and the initramfs, shared by every checkout on the machine (the
/// guest sees it through the host root). `BUFSYNC_VM_CACHE` overrides it
/// (the setup extraction test uses a temporary one).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("BUFSYNC_VM_CACHE") {
        Some(d) => PathBuf::from(d),
        None => cache_base().join(KERNEL_VERSION),
    }
}

/// The tree the kernel, headers and kbuild packages are extracted into.
pub fn kernel_root() -> PathBuf {
    cache_dir().join("kernel")
}

/// The guest kernel image (extracted, not installed).
pub fn kernel_image() -> PathBuf {
    kernel_root().join(format!("boot/vmlinuz-{KERNEL_VERSION}"))
}

/// The guest kernel's modules (`/lib/modules/<version>` inside the guest).
pub fn kernel_modules() -> PathBuf {
    kernel_root().join(format!("lib/modules/{KERNEL_VERSION}"))
}

/// The kernel headers tree used to build out-of-tree modules.
pub fn kernel_headers() -> PathBuf {
    kernel_root().join(format!("usr/src/linux-headers-{KERNEL_VERSION}"))
}

/// The tree lavapipe and the libraries it needs beyond the host's are
/// extracted into.
pub fn mesa_root() -> PathBuf {
    cache_dir().join("mesa")
}

/// The harness assets checked into the repository.
pub fn harness_dir() -> PathBuf {
    workspace().join("tests").join("harness")
}
