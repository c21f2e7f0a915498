//! Fence errors and status values (`dma_fence` error codes and `dma_fence_get_status`).
//!
//! Locking: none; these are plain `Copy` values. [`FenceError`] packs into a
//! 64-bit word so a fence can keep it in its atomic state.

use thiserror::Error;

/// Why a fence completed without its work being done (the kernel's `fence->error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum FenceError {
    /// The producer ended the fence with `-ETIMEDOUT` (e.g. a kernel fence
    /// whose job timed out). A waiter's own timeout is [`WaitError::TimedOut`]
    /// and leaves the fence pending.
    #[error("fence timed out")]
    TimedOut,
    /// The work was cancelled (`-ECANCELED`).
    #[error("fence cancelled")]
    Cancelled,
    /// The buffer was evicted under the work (`-EAGAIN` in the eviction path).
    #[error("buffer evicted")]
    Evicted,
    /// The device was lost or reset (`-ENODEV` / `VK_ERROR_DEVICE_LOST`).
    #[error("device lost")]
    DeviceLost,
    /// Any other error, as a positive errno value.
    #[error("fence error: errno {0}")]
    Errno(i32),
}

const TAG_TIMEDOUT: u64 = 1;
const TAG_CANCELLED: u64 = 2;
const TAG_EVICTED: u64 = 3;
const TAG_DEVICE_LOST: u64 = 4;
const TAG_ERRNO: u64 = 5;

/// Bit position of the error tag inside a fence state word.
pub(crate) const ERR_TAG_SHIFT: u32 = 8;
/// Mask of the error tag (after shifting).
pub(crate) const ERR_TAG_MASK: u64 = 0xff;
/// Bit position of the errno payload inside a fence state word.
pub(crate) const ERR_PAYLOAD_SHIFT: u32 = 32;

impl FenceError {
    /// The negative errno the kernel would report for this error
    /// (`dma_fence_get_status`, `sync_file_info.status`).
    pub fn to_errno(self) -> i32 {
        match self {
            FenceError::TimedOut => -110,  // ETIMEDOUT
            FenceError::Cancelled => -125, // ECANCELED
            FenceError::Evicted => -11,    // EAGAIN
            FenceError::DeviceLost => -19, // ENODEV
            FenceError::Errno(e) => -e.abs(),
        }
    }

    /// Maps a kernel status (negative errno) back to an error; `None` for >= 0.
    pub fn from_errno(status: i32) -> Option<FenceError> {
        match status {
            s if s >= 0 => None,
            -110 => Some(FenceError::TimedOut),
            -125 => Some(FenceError::Cancelled),
            -11 => Some(FenceError::Evicted),
            -19 => Some(FenceError::DeviceLost),
            s => Some(FenceError::Errno(s.saturating_neg())),
        }
    }

    /// Packs the error into the error bits of a fence state word (never 0).
    pub(crate) fn encode(self) -> u64 {
        let (tag, payload) = match self {
            FenceError::TimedOut => (TAG_TIMEDOUT, 0u32),
            FenceError::Cancelled => (TAG_CANCELLED, 0),
            FenceError::Evicted => (TAG_EVICTED, 0),
            FenceError::DeviceLost => (TAG_DEVICE_LOST, 0),
            FenceError::Errno(e) => (TAG_ERRNO, e as u32),
        };
        (tag << ERR_TAG_SHIFT) | ((payload as u64) << ERR_PAYLOAD_SHIFT)
    }

    /// Unpacks the error bits of a fence state word.
    pub(crate) fn decode(word: u64) -> Option<FenceError> {
        match (word >> ERR_TAG_SHIFT) & ERR_TAG_MASK {
            0 => None,
            TAG_TIMEDOUT => Some(FenceError::TimedOut),
            TAG_CANCELLED => Some(FenceError::Cancelled),
            TAG_EVICTED => Some(FenceError::Evicted),
            TAG_DEVICE_LOST => Some(FenceError::DeviceLost),
            _ => Some(FenceError::Errno((word >> ERR_PAYLOAD_SHIFT) as u32 as i32)),
        }
    }
}

/// Mask of every error bit in a fence state word.
pub(crate) const ERR_BITS: u64 =
    (ERR_TAG_MASK << ERR_TAG_SHIFT) | (0xffff_ffff << ERR_PAYLOAD_SHIFT);

/// The state of a fence (`dma_fence_get_status`: 0, 1 or a negative errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceStatus {
    /// Not signaled yet.
    Pending,
    /// Signaled without error.
    Signaled,
    /// Signaled with an error.
    Error(FenceError),
}

impl FenceStatus {
    /// The kernel's integer form: 0 pending, 1 signaled, negative errno on error.
    pub fn to_kernel(self) -> i32 {
        match self {
            FenceStatus::Pending => 0,
            FenceStatus::Signaled => 1,
            FenceStatus::Error(e) => e.to_errno(),
        }
    }

    /// True once signaled, with or without an error.
    pub fn is_signaled(self) -> bool {
        !matches!(self, FenceStatus::Pending)
    }
}

/// A fence was signaled twice (`dma_fence_signal` returning `-EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum SignalError {
    /// The fence had already been signaled; the second signal changed nothing.
    #[error("fence {context}:{seqno} already signaled")]
    AlreadySignaled {
        /// Context of the fence.
        context: u64,
        /// Sequence number of the fence.
        seqno: u64,
    },
}

/// `add_callback` on a fence that is already signaled (`-ENOENT`); the callback was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("fence already signaled; callback not added")]
pub struct AlreadySignaled;

/// Why a bounded or cancellable wait returned without the fence signaling cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum WaitError {
    /// The timeout elapsed first; the fence is still pending.
    #[error("wait timed out")]
    TimedOut,
    /// The wait's cancel token fired first.
    #[error("wait cancelled")]
    Cancelled,
    /// The fence signaled with an error.
    #[error(transparent)]
    Fence(#[from] FenceError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_roundtrip() {
        for e in [
            FenceError::TimedOut,
            FenceError::Cancelled,
            FenceError::Evicted,
            FenceError::DeviceLost,
            FenceError::Errno(5),
            FenceError::Errno(-7),
            FenceError::Errno(i32::MAX),
        ] {
            assert_ne!(e.encode(), 0);
            assert_eq!(e.encode() & !ERR_BITS, 0);
            assert_eq!(FenceError::decode(e.encode()), Some(e));
        }
        assert_eq!(FenceError::decode(0), None);
    }

    #[test]
    fn errno_roundtrip() {
        assert_eq!(FenceError::from_errno(-5), Some(FenceError::Errno(5)));
        assert_eq!(FenceError::from_errno(1), None);
        assert_eq!(FenceStatus::Error(FenceError::Errno(5)).to_kernel(), -5);
    }
}
