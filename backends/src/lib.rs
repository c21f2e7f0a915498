//! bufsync backends: the runtime's model bound to real kernel and GPU objects.
#![warn(missing_docs)]
pub mod vulkan;
