//! How each wait is done: one decision for every pair of (fence kind,
//! waiter), shared by the runtime's waits and by `bufsync-info paths`.
//!
//! - [`decide`]`(form, &waiter)` -> [`Decision`] ([`Route`] + why): a pure
//!   function of the fence's [`FenceForm`] (software, sync_file, syncobj
//!   point, Vulkan timeline point with or without a pending sync_file,
//!   seqno word) and the [`Waiter`]'s probed capabilities (the CPU, a
//!   Vulkan device's SYNC_FD import, a KMS plane's `IN_FENCE_FD` and
//!   implicit sync, the kernel's `IMPORT_SYNC_FILE`).
//! - [`FenceForm::of`] a live fence, [`FenceForm::render_point`] of a
//!   Vulkan context, [`Waiter::vulkan`]: the inputs from live objects.
//! - [`wait_fence`] (the CPU route) and [`to_sync_file`] (the sync_file
//!   form of any fence), also re-exported from `vulkan`.
//!
//! Who decides with it: `vulkan::Submitter::classify` (and so every
//! submission's waits), `vulkan::wait_fence`, `kms::Display::commit_fenced`,
//! `DmaBuf::push_fence`, and the presenter's render → display edge
//! (`IN_FENCE_FD`, `IMPORT_SYNC_FILE` or a software wait). See
//! `docs/wait-paths.md` for the table and its kernel counterparts.

mod decide;
mod fences;

pub use decide::{decide, Decision, FenceForm, Route, WaitClass, Waiter};
pub use fences::{to_sync_file, wait_fence};
