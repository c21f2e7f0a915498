//! KMS: a display driven through atomic commits, with explicit fences.
//!
//! - [`Display`]: one output of a KMS device (found by driver name or
//!   path): connector, CRTC, primary plane and mode chosen at open
//!   ([`OutputSpec`]: by connector name and `WxH@HZ`, or the first
//!   connected connector and its preferred mode), the state at open put
//!   back on drop ([`Display::restore`]).
//! - [`FormatSet`]: the plane's `IN_FORMATS` (formats x modifiers).
//! - [`Framebuffer`]: a dma-buf from any device imported through PRIME and
//!   `ADDFB2` (with modifiers); unsupported format, modifier, stride or
//!   size is a typed [`KmsError`].
//! - [`FlipRequest`] / [`Display::commit`]: a flip with `IN_FENCE_FD`
//!   (a borrowed sync_file), `OUT_FENCE_PTR` (an owned [`SyncFile`]),
//!   non-blocking commits with page-flip events ([`Display::wait_flip`]),
//!   EBUSY handled by waiting for the previous flip, TEST_ONLY validation
//!   ([`Display::test_commit`]).
//! - [`FencedFlip`] / [`Display::commit_fenced`]: the same with runtime
//!   fences: IN_FENCE_FD when the fence has a sync_file form, a software
//!   wait otherwise ([`InFencePath`] says which); the out-fence comes back
//!   as a runtime fence.
//! - [`AtomicRequest`]: the raw builder underneath, for requests the
//!   flip helper does not make.
//! - [`Display::capture_writeback`]: the composed frame read back through
//!   the writeback connector, for verification; [`Display::add_writeback`]
//!   and [`Display::writeback_buffer`] for a writeback in any commit.
//!
//! Locking: every type here is owned by one user. A [`Display`] needs
//! `&mut` for anything that commits or reads events; see each file.
//!
//! [`SyncFile`]: crate::sync_file::SyncFile

mod commit;
mod device;
mod error;
mod events;
mod fenced;
mod flip;
mod formats;
mod framebuffer;
mod writeback;

pub use commit::{AtomicRequest, CommitFlags, CommitOutcome};
pub use device::{
    CrtcProps, Display, ModeSpec, Output, OutputSpec, PlaneProps, PropIds, WritebackProps,
};
pub use error::{Fourcc, KmsError};
pub use events::FlipEvent;
pub use fenced::{FencedFlip, FencedOutcome, InFencePath};
pub use flip::FlipRequest;
pub use formats::FormatSet;
pub use framebuffer::{check_layout, Framebuffer};
pub use writeback::{Capture, WRITEBACK_FORMAT};
