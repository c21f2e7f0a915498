//! The Vulkan backend's error type.
//!
//! Locking: none (plain data).

use ash::vk;

/// An error from the Vulkan backend, with the call or the check that failed.
#[derive(Debug, thiserror::Error)]
pub enum VulkanError {
    /// The Vulkan loader (libvulkan.so.1) could not be loaded.
    #[error("cannot load the Vulkan loader: {0}")]
    Load(String),
    /// A Vulkan call returned an error.
    #[error("{call} failed: {result}")]
    Vk {
        /// The Vulkan entry point.
        call: &'static str,
        /// The result code it returned.
        result: vk::Result,
    },
    /// No physical device fits (Vulkan 1.2 with a compute queue).
    #[error("no usable Vulkan device: {0}")]
    NoDevice(String),
    /// An extension or feature this operation needs is not enabled.
    #[error("missing Vulkan capability: {0}")]
    Missing(&'static str),
    /// The device cannot do this with these parameters.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Bad arguments (sizes, offsets, strides) for this operation.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// No memory type satisfies both the resource and the imported fd.
    #[error("no memory type fits (resource bits {resource:#x}, fd bits {fd:#x})")]
    NoMemoryType {
        /// memoryTypeBits of the buffer or image.
        resource: u32,
        /// memoryTypeBits the fd may be imported as.
        fd: u32,
    },
    /// A system call failed.
    #[error("{call} failed: errno {errno}")]
    Os {
        /// The system call.
        call: &'static str,
        /// Its errno.
        errno: i32,
    },
    /// A dma-buf or sync_file operation of the other backends failed.
    #[error(transparent)]
    Backend(#[from] crate::Error),
    /// A fence this operation depends on signaled with an error.
    #[error("fence error: {0:?}")]
    Fence(bufsync::fence::FenceError),
    /// A dependency waited on the CPU before a submission was still pending
    /// at the submission's bound: nothing was submitted.
    #[error("dependency fence {}:{} ({}/{}) still pending after {waited:?}: nothing submitted", .fence.context(), .fence.seqno(), .fence.driver_name(), .fence.timeline_name())]
    DependencyPending {
        /// The pending dependency.
        fence: bufsync::fence::Fence,
        /// How long the submission waited.
        waited: std::time::Duration,
    },
    /// A bounded wait passed its bound.
    #[error("timed out after {waited:?} waiting for {what}")]
    TimedOut {
        /// What was waited for.
        what: &'static str,
        /// The bound.
        waited: std::time::Duration,
    },
}

impl VulkanError {
    /// Wraps a Vulkan result for `call`.
    pub(crate) fn vk(call: &'static str) -> impl FnOnce(vk::Result) -> Self {
        move |result| VulkanError::Vk { call, result }
    }

    /// Wraps an errno for `call`.
    pub(crate) fn os(call: &'static str) -> impl FnOnce(rustix::io::Errno) -> Self {
        move |e| VulkanError::Os {
            call,
            errno: e.raw_os_error(),
        }
    }
}

/// Result alias of the Vulkan backend.
pub type Result<T, E = VulkanError> = std::result::Result<T, E>;
