//! sync_file: the kernel's fence-as-an-fd (`drivers/dma-buf/sync_file.c`).
//!
//! [`SyncFile`] is the checked fd with the uapi operations (poll, merge,
//! info, deadline); [`SyncFileInfo`] is what `SYNC_IOC_FILE_INFO` reports.

mod file;
mod info;

pub use file::SyncFile;
pub use info::{FenceInfo, SyncFileInfo};
