//! DRM master: only the master of a primary node may commit (the atomic
//! ioctl answers EACCES otherwise). A compositor or display server that
//! runs on the device holds it; the first opener of a node with no master
//! gets it.
//!
//! Locking: none.

use std::path::Path;

use bufsync_backends::drm::DrmDevice;

use crate::error::PresentError;

/// `DRM_IOCTL_SET_MASTER`: succeeds when no other file holds master.
pub(crate) fn try_become_master(dev: &DrmDevice) -> bool {
    match drm::Device::acquire_master_lock(dev) {
        Ok(()) => {
            log::info!("became DRM master of {}", dev.path().display());
            true
        }
        Err(e) => {
            log::debug!("SET_MASTER on {}: {e}", dev.path().display());
            false
        }
    }
}

/// The processes other than this one with `node` open (those this user
/// may inspect), as `pid (comm)`.
pub fn holders(node: &Path) -> Vec<String> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        if fds
            .filter_map(Result::ok)
            .any(|f| std::fs::read_link(f.path()).is_ok_and(|t| t == node))
        {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            out.push(format!("{pid} ({})", comm.trim()));
        }
    }
    out.sort();
    out
}

/// The error for a node this process is not master of.
pub(crate) fn not_master(node: &Path) -> PresentError {
    let h = holders(node);
    PresentError::NotMaster {
        node: node.to_path_buf(),
        holders: if h.is_empty() {
            String::new()
        } else {
            format!(" (the node is open in {})", h.join(", "))
        },
    }
}
