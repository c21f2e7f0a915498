//! bufsync's demo and its checks, as a library so the VM tests drive the
//! very same flow. Everything goes through the presenter's public API
//! (`bufsync-present`).
//!
//! - [`flow`]: the demo's flow: render the test pattern, present it, check
//!   what the display showed;
//! - [`render`]: the render devices: a CPU renderer on vgem with real kernel
//!   fences, and Vulkan (the compute-shader pattern);
//! - [`check`]: the test pattern on the CPU and the frame check (what the
//!   display showed comes through the presenter's writeback capture,
//!   `bufsync_present::WritebackCapture`, or [`screendump`]);
//! - [`screendump`]: what the virtual monitor showed, through qemu's QMP
//!   `screendump` from outside the guest;
//! - [`report`]: the summary table, the negotiations, JSON, PNGs;
//! - [`stress`] (with [`scanout`]): render threads and the display
//!   contending for the same frames through tickets.
#![warn(missing_docs)]
// Unsafe only in `render::pattern` (Vulkan calls of the test pattern).
#![deny(unsafe_code)]

pub mod check;
pub mod flow;
pub mod render;
pub mod report;
pub mod scanout;
pub mod screendump;
pub mod stress;
