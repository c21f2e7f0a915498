//! The fence-kind trait (`dma_fence_ops`) and the plain software kind.
//!
//! Locking: the runtime calls every hook with no fence lock held, so a kind may
//! call back into the fence (`signal`, `add_callback` on other fences, ...).

use std::any::Any;
use std::borrow::Cow;

use super::{Fence, FenceError};

/// What a fence is backed by: the analogue of `struct dma_fence_ops`.
///
/// Backends implement it to add kinds (a sync_file, a Vulkan timeline point,
/// a seqno word in memory). The plain software fence ([`SoftwareKind`]) is the
/// default kind: it is signaled only by an explicit [`Fence::signal`].
pub trait FenceKind: Send + Sync + 'static {
    /// Name of the driver that produces these fences (`get_driver_name`), e.g. "sync_file".
    fn driver_name(&self) -> &str;

    /// Name of the timeline the fence belongs to (`get_timeline_name`).
    fn timeline_name(&self) -> &str;

    /// Called at most once per fence, when the first software waiter or
    /// callback appears (`enable_signaling`). The kind must arrange for
    /// `fence.signal()` (or `signal_with_error`) to be called later, e.g. by
    /// registering with a reactor or the [`engine`](super::engine). An error
    /// signals the fence with that error. Called with no lock held.
    fn enable_signaling(&self, fence: &Fence) -> Result<(), FenceError> {
        let _ = fence;
        Ok(())
    }

    /// The `signaled` hook: polls state that lives elsewhere (a seqno word in
    /// memory, a file descriptor). Returning true makes the runtime signal the
    /// fence. Called from `is_signaled` while the fence is pending.
    fn poll_signaled(&self, fence: &Fence) -> bool {
        let _ = fence;
        false
    }

    /// True for kinds that can only learn of completion by polling
    /// [`poll_signaled`](FenceKind::poll_signaled): when signaling is enabled
    /// the runtime registers such fences with the engine's poller (with
    /// back-off and the engine's default deadline).
    fn needs_polling(&self) -> bool {
        false
    }

    /// Native forms: backends downcast to their own kind type through this
    /// (see [`Fence::kind_as`]).
    fn as_any(&self) -> &dyn Any;

    /// Whether seqnos of this kind are 64-bit; 32-bit kinds compare with
    /// wrap-around in [`Fence::is_later`] (`DMA_FENCE_FLAG_SEQNO64_BIT`).
    fn is_64bit(&self) -> bool {
        true
    }
}

/// The plain software fence: signaled only by [`Fence::signal`].
#[derive(Debug, Clone)]
pub struct SoftwareKind {
    driver: Cow<'static, str>,
    timeline: Cow<'static, str>,
}

impl SoftwareKind {
    /// A software kind with the given diagnostic names.
    pub fn new(driver: &str, timeline: &str) -> SoftwareKind {
        SoftwareKind {
            driver: Cow::Owned(driver.to_owned()),
            timeline: Cow::Owned(timeline.to_owned()),
        }
    }

    /// A software kind with static names (usable in a `static`).
    pub const fn new_static(driver: &'static str, timeline: &'static str) -> SoftwareKind {
        SoftwareKind {
            driver: Cow::Borrowed(driver),
            timeline: Cow::Borrowed(timeline),
        }
    }
}

impl FenceKind for SoftwareKind {
    fn driver_name(&self) -> &str {
        &self.driver
    }
    fn timeline_name(&self) -> &str {
        &self.timeline
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
