//! The kernel self-tests' `mock_ops`, shared by the ported fence tests.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;

use bufsync::fence::{Fence, FenceKind};

/// A fence kind with names and nothing else (the kernel's `mock_ops`).
pub struct Mock;

impl FenceKind for Mock {
    fn driver_name(&self) -> &str {
        "mock"
    }
    fn timeline_name(&self) -> &str {
        "mock"
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A pending mock fence on `context` at `seqno`.
pub fn mock_fence_at(context: u64, seqno: u64) -> Fence {
    Fence::new(Arc::new(Mock), context, seqno)
}

/// A pending mock fence on context 0, seqno 0.
pub fn mock_fence() -> Fence {
    mock_fence_at(0, 0)
}
