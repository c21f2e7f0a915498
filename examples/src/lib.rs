//! The pieces of bufsync's `render_to_scanout` demo, as a library so the VM
//! tests drive the very same flow.
//!
//! - [`flow`]: the per-frame ticket flow (render on device A, scan out on
//!   display B) for the three paths: `hw` (IN_FENCE_FD), `sw` (software wait,
//!   the fallback) and `implicit` (IMPORT_SYNC_FILE into the dma-buf);
//! - [`render`]: the render devices: a CPU renderer on vgem with real kernel
//!   fences, and Vulkan (lavapipe or a real GPU);
//! - [`scanout`]: the display side: flips with out-fences and, where the
//!   display has a writeback connector, a capture of every frame;
//! - [`report`]: the summary table and the PNGs;
//! - [`stress`]: render threads and the display contending for the same
//!   frames through tickets.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod flow;
pub mod render;
pub mod report;
pub mod scanout;
pub mod stress;
