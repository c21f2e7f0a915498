//! One open DRM node (`/dev/dri/card*` or `renderD*`).
//!
//! Locking: a `DrmDevice` is an fd plus immutable facts and the fd's GEM
//! handle table ([`GemTable`], its own leaf lock); it may be shared
//! between threads (`&DrmDevice` is `Sync`). Client capabilities are
//! per-fd kernel state: [`DrmDevice::enable_kms_caps`] changes them for
//! every user of this fd.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::GemTable;
use crate::error::{Error, Result};
use crate::sys;

/// The directory DRM nodes live in.
pub const DRI_DIR: &str = "/dev/dri";

/// Which kind of node a device was opened through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `cardN`: modesetting (KMS) and everything else.
    Primary,
    /// `renderDN`: rendering, PRIME and syncobj only; no KMS, no auth.
    Render,
}

/// An open DRM device node and its driver name.
#[derive(Debug)]
pub struct DrmDevice {
    fd: OwnedFd,
    path: PathBuf,
    kind: NodeKind,
    driver: String,
    gem: GemTable,
}

impl DrmDevice {
    /// Opens the node at `path` read-write, close-on-exec, and asks its
    /// driver name.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(&path)
            .map_err(|source| Error::Open {
                path: path.clone(),
                source,
            })?;
        let fd: OwnedFd = file.into();
        let driver =
            sys::drm::driver_name(fd.as_fd()).map_err(|e| Error::io("DRM_IOCTL_VERSION", e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let kind = if name.starts_with("renderD") {
            NodeKind::Render
        } else {
            NodeKind::Primary
        };
        log::debug!("opened {} ({kind:?}): driver {driver}", path.display());
        Ok(Self {
            fd,
            path,
            kind,
            driver,
            gem: GemTable::default(),
        })
    }

    /// Takes an already open DRM node (e.g. one a C caller handed over, or
    /// one a seat manager opened): asks its driver name; the path is what
    /// `/proc/self/fd` says (for messages and the node kind).
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let driver =
            sys::drm::driver_name(fd.as_fd()).map_err(|e| Error::io("DRM_IOCTL_VERSION", e))?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap_or_else(|_| PathBuf::from(format!("fd:{}", fd.as_raw_fd())));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let kind = if name.starts_with("renderD") {
            NodeKind::Render
        } else {
            NodeKind::Primary
        };
        Ok(Self {
            fd,
            path,
            kind,
            driver,
            gem: GemTable::default(),
        })
    }

    /// Paths of every `card*` and `renderD*` node, sorted (empty when the
    /// machine has no `/dev/dri`).
    pub fn node_paths() -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(DRI_DIR) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("card") || n.starts_with("renderD"))
            })
            .collect();
        paths.sort();
        paths
    }

    /// Opens every DRM node; nodes that fail to open are logged and skipped.
    pub fn enumerate() -> Vec<DrmDevice> {
        Self::node_paths()
            .into_iter()
            .filter_map(|p| match Self::open(&p) {
                Ok(d) => Some(d),
                Err(e) => {
                    log::warn!("skipping {}: {e}", p.display());
                    None
                }
            })
            .collect()
    }

    /// The first node of `kind` whose driver is `driver`.
    pub fn find_node(driver: &str, kind: NodeKind) -> Result<Self> {
        for path in Self::node_paths() {
            let is_render = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("renderD"));
            if is_render != (kind == NodeKind::Render) {
                continue;
            }
            match Self::open(&path) {
                Ok(d) if d.driver == driver => return Ok(d),
                Ok(_) => {}
                Err(e) => log::debug!("skipping {}: {e}", path.display()),
            }
        }
        Err(Error::DeviceNotFound {
            driver: driver.to_owned(),
        })
    }

    /// The primary (`card*`) node of `driver`; falls back to its render
    /// node when it has no primary node.
    pub fn find(driver: &str) -> Result<Self> {
        Self::find_node(driver, NodeKind::Primary)
            .or_else(|_| Self::find_node(driver, NodeKind::Render))
    }

    /// Whether a device with this driver name is present.
    pub fn is_present(driver: &str) -> bool {
        Self::find(driver).is_ok()
    }

    /// The driver name (`DRM_IOCTL_VERSION`), e.g. `vkms`, `vgem`, `virtio_gpu`.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The node's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Primary or render node.
    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// The GEM handle table of this fd: who holds which handle (every
    /// [`GemHandle`](super::GemHandle) made through this device).
    pub fn gem_table(&self) -> &GemTable {
        &self.gem
    }

    /// Turns on the UNIVERSAL_PLANES, ATOMIC and WRITEBACK_CONNECTORS client
    /// capabilities on this fd (primary nodes only; errors are returned for
    /// the first one the driver refuses).
    pub fn enable_kms_caps(&self) -> Result<()> {
        use drm_ffi::{
            DRM_CLIENT_CAP_ATOMIC, DRM_CLIENT_CAP_UNIVERSAL_PLANES,
            DRM_CLIENT_CAP_WRITEBACK_CONNECTORS,
        };
        sys::drm::set_client_cap(self.as_fd(), DRM_CLIENT_CAP_UNIVERSAL_PLANES, true)
            .map_err(|e| Error::io("DRM_IOCTL_SET_CLIENT_CAP(UNIVERSAL_PLANES)", e))?;
        sys::drm::set_client_cap(self.as_fd(), DRM_CLIENT_CAP_ATOMIC, true)
            .map_err(|e| Error::io("DRM_IOCTL_SET_CLIENT_CAP(ATOMIC)", e))?;
        sys::drm::set_client_cap(self.as_fd(), DRM_CLIENT_CAP_WRITEBACK_CONNECTORS, true)
            .map_err(|e| Error::io("DRM_IOCTL_SET_CLIENT_CAP(WRITEBACK_CONNECTORS)", e))
    }
}

impl AsFd for DrmDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl drm::Device for DrmDevice {}
impl drm::control::Device for DrmDevice {}
