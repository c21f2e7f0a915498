//! Test helpers: pending kernel fences on demand.
//!
//! - [`VgemBuffer`] / [`VgemFence`]: a vgem GEM buffer and fences attached
//!   to it (`VGEM_FENCE_ATTACH`), signaled by `VGEM_FENCE_SIGNAL` (or by
//!   the kernel after 10 s).
//! - [`SwSyncTimeline`]: a sw_sync timeline whose sync_files stay pending
//!   until the timeline is advanced (no auto-signal).

mod sw_sync;
mod vgem;

pub use sw_sync::{SwSyncTimeline, SW_SYNC_PATH};
pub use vgem::{VgemBuffer, VgemFence};
