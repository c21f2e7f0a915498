//! sync_file: the kernel's fence-as-an-fd (`drivers/dma-buf/sync_file.c`).
//!
//! [`SyncFile`] is the checked fd with the uapi operations (poll, merge,
//! info, deadline); [`SyncFileInfo`] is what `SYNC_IOC_FILE_INFO` reports;
//! [`SyncFileFence`] is the runtime fence kind over one.

mod fence;
mod file;
mod info;

pub use fence::{merge_to_sync_file, to_sync_file, SyncFileFence};
pub use file::SyncFile;
pub use info::{FenceInfo, SyncFileInfo};
