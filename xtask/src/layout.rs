//! Where things live: the workspace, the guest kernel, the VM cache.

use std::path::PathBuf;

/// The guest kernel: Debian bookworm-backports' 6.12 build.
pub const KERNEL_VERSION: &str = "6.12.95+deb12-amd64";
/// The linux-source package version matching [`KERNEL_VERSION`] (pinned:
/// bookworm-security's newer candidate would not match).
pub const LINUX_SOURCE: &str = "linux-source-6.12=6.12.95-1~bpo12+1";

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

/// The VM cache: guest modules and the initramfs, shared by every checkout
/// on the machine (the guest sees it through the host root).
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("bufsync-vm").join(KERNEL_VERSION)
}

/// The guest kernel image.
pub fn kernel_image() -> PathBuf {
    PathBuf::from(format!("/boot/vmlinuz-{KERNEL_VERSION}"))
}

/// The kernel headers tree used to build out-of-tree modules.
pub fn kernel_headers() -> PathBuf {
    PathBuf::from(format!("/usr/src/linux-headers-{KERNEL_VERSION}"))
}

/// The harness assets checked into the repository.
pub fn harness_dir() -> PathBuf {
    workspace().join("tests").join("harness")
}
