//! sw_sync timelines (debugfs): kernel fences that signal exactly when the
//! test advances the timeline. Closing the timeline signals its pending
//! fences with an error.
//!
//! Locking: none; the kernel serializes.

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sync_file::SyncFile;
use crate::sys;

/// The sw_sync control file; each open is a new timeline.
pub const SW_SYNC_PATH: &str = "/sys/kernel/debug/sync/sw_sync";

/// One sw_sync timeline (value starts at 0).
#[derive(Debug)]
pub struct SwSyncTimeline {
    fd: OwnedFd,
}

impl SwSyncTimeline {
    /// Whether sw_sync is available (debugfs mounted, module loaded).
    pub fn is_available() -> bool {
        std::path::Path::new(SW_SYNC_PATH).exists()
    }

    /// Creates a timeline.
    pub fn new() -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(SW_SYNC_PATH)
            .map_err(|source| Error::Open {
                path: SW_SYNC_PATH.into(),
                source,
            })?;
        Ok(Self { fd: file.into() })
    }

    /// `SW_SYNC_IOC_CREATE_FENCE`: a sync_file signaled once the timeline
    /// reaches `value`.
    pub fn create_fence(&self, value: u32, name: &str) -> Result<SyncFile> {
        let fd = sys::sw_sync::create_fence(self.fd.as_fd(), value, name)
            .map_err(|e| Error::io("SW_SYNC_IOC_CREATE_FENCE", e))?;
        Ok(SyncFile::from_fd_unchecked(fd))
    }

    /// `SW_SYNC_IOC_INC`: advances the timeline by `by`, signaling every
    /// fence up to the new value.
    pub fn inc(&self, by: u32) -> Result<()> {
        sys::sw_sync::inc(self.fd.as_fd(), by).map_err(|e| Error::io("SW_SYNC_IOC_INC", e))
    }
}
