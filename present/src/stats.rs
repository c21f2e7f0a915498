//! What each frame went through ([`PresentStats`]) and running totals
//! ([`PresentTotals`]).
//!
//! Locking: none (plain data).

use std::time::Duration;

use crate::strategy::CopyEngine;

/// How a frame's render → display edge was synchronized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edge {
    /// Nothing to wait for: the frame was complete before its flip.
    Signaled,
    /// The display waited for the render fence (`IN_FENCE_FD`).
    InFence,
    /// The render fence went into the buffer (`IMPORT_SYNC_FILE`); the
    /// flip relied on the kernel's implicit sync.
    Implicit,
    /// The presenter waited for the render fence on the CPU (bounded).
    Software,
}

impl Edge {
    /// `signaled`, `in-fence`, `implicit`, `software`.
    pub fn name(self) -> &'static str {
        match self {
            Edge::Signaled => "signaled",
            Edge::InFence => "in-fence",
            Edge::Implicit => "implicit",
            Edge::Software => "software",
        }
    }
}

/// One frame, once its fate is known (on screen, or dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentStats {
    /// The frame number.
    pub frame: u64,
    /// Its buffer slot.
    pub slot: usize,
    /// The render → display edge.
    pub edge: Edge,
    /// The copy, for the copy strategy.
    pub copy: Option<CopyEngine>,
    /// CPU time spent copying (CPU copy) or submitting the copy (GPU).
    pub copy_time: Duration,
    /// CPU time spent waiting for the render fence.
    pub cpu_wait: Duration,
    /// Render done → on screen (the flip's vblank), when known.
    pub latency: Option<Duration>,
    /// Whether it reached the screen (false: dropped by mailbox).
    pub shown: bool,
    /// Shown before its render fence signaled: the display did not wait
    /// for the buffer's implicit fences (the implicit edge is then turned
    /// off for the following frames).
    pub early: bool,
    /// The vblank sequence number of its flip.
    pub vblank: Option<u32>,
}

/// Totals since the presenter was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresentTotals {
    /// Frames handed to `present`.
    pub presented: u64,
    /// Frames that reached the screen.
    pub shown: u64,
    /// Frames dropped by mailbox (a newer one replaced them).
    pub dropped: u64,
    /// Flips whose render fence the display waited for (`IN_FENCE_FD`).
    pub in_fence: u64,
    /// Flips after pushing the render fence into the buffer.
    pub implicit: u64,
    /// Flips after a software wait.
    pub software: u64,
    /// Flips whose frame was complete already.
    pub signaled: u64,
    /// Frames copied (copy strategy).
    pub copies: u64,
    /// Bytes copied by the CPU.
    pub copy_bytes: u64,
    /// Flips that met EBUSY and went again at the next vblank.
    pub busy_retries: u64,
    /// Frames dropped because their render fence did not signal in time.
    pub render_timeouts: u64,
    /// Frames dropped because their render fence failed.
    pub render_failures: u64,
    /// Implicit-edge frames the display flipped before their render fence
    /// signaled (it ignores implicit fences).
    pub implicit_unhonored: u64,
}

impl PresentTotals {
    pub(crate) fn count_edge(&mut self, e: Edge) {
        match e {
            Edge::Signaled => self.signaled += 1,
            Edge::InFence => self.in_fence += 1,
            Edge::Implicit => self.implicit += 1,
            Edge::Software => self.software += 1,
        }
    }
}
