//! What `SYNC_IOC_FILE_INFO` says about a sync_file.

use crate::sys::sync_file::{name_of, sync_fence_info, sync_file_info};

/// One fence inside a sync_file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceInfo {
    /// The driver's name (e.g. `vgem`, `sw_sync`).
    pub driver_name: String,
    /// The timeline's name.
    pub timeline_name: String,
    /// 1 signaled, 0 pending, negative errno: signaled with that error.
    pub status: i32,
    /// CLOCK_MONOTONIC ns of the signal (0 while pending).
    pub timestamp_ns: u64,
}

/// A sync_file's summary and fences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFileInfo {
    /// The sync_file's name.
    pub name: String,
    /// Combined status: 1 signaled, 0 pending, negative errno on error.
    pub status: i32,
    /// Each fence (a merged sync_file has several).
    pub fences: Vec<FenceInfo>,
}

impl SyncFileInfo {
    pub(crate) fn from_raw(file: &sync_file_info, fences: &[sync_fence_info]) -> Self {
        Self {
            name: name_of(&file.name),
            status: file.status,
            fences: fences
                .iter()
                .map(|f| FenceInfo {
                    driver_name: name_of(&f.driver_name),
                    timeline_name: name_of(&f.obj_name),
                    status: f.status,
                    timestamp_ns: f.timestamp_ns,
                })
                .collect(),
        }
    }

    /// True once every fence signaled (successfully or not).
    pub fn is_signaled(&self) -> bool {
        self.status != 0
    }

    /// The errno of the first failed fence, if any.
    pub fn error(&self) -> Option<i32> {
        (self.status < 0).then_some(-self.status)
    }
}
