//! bufsync backends: the runtime's model bound to real kernel and GPU objects.
//!
//! - [`drm`]: DRM nodes found by driver name, capabilities, KMS summary,
//!   PRIME, dumb buffers;
//! - [`dmabuf`]: dma-bufs, their layout, CPU access and implicit fences;
//! - [`sync_file`]: sync_file fds and the `SyncFileFence` kind;
//! - `drm::Syncobj` / `drm::SyncobjPoint`: drm_syncobj timelines and their kind;
//! - [`seqno`]: the `SeqnoFence` kind over a word in mapped memory;
//! - [`reactor`]: the shared epoll reactor behind fd-based fences;
//! - [`event_loop`]: the reactor and the fence engine driven by the
//!   application's own event loop (no bufsync thread), calloop included
//!   with feature `calloop`;
//! - [`clock`]: CLOCK_MONOTONIC conversions for kernel deadlines;
//! - [`sys`]: the raw ioctl layer;
//! - `testing` (feature `testing`): vgem fences and sw_sync timelines.
//!
//! See `docs/backends.md` for the kernel counterpart of each API.
#![warn(missing_docs)]

pub mod clock;
pub mod dmabuf;
pub mod drm;
mod error;
pub mod event_loop;
pub mod kms;
pub mod reactor;
pub mod seqno;
pub mod sync_file;
#[allow(missing_docs, non_camel_case_types)]
pub mod sys;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod vulkan;

pub use error::{Error, Result};
