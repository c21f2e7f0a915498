//! libbufsync: bufsync's fences, reservations, tickets and dma-bufs behind
//! a stable C ABI, for C and C++ programs.
//!
//! The C interface is `include/bufsync.h`, generated from this crate by
//! cbindgen (`capi/cbindgen.toml`; the `header` test fails when the
//! checked-in file is stale). Its preamble states the ABI rules every
//! function here follows: opaque handles with explicit create and destroy;
//! for every fd whether the call takes, borrows or returns it; negative
//! errno codes plus a thread-local message; no panic crossing the
//! boundary; the thread-safety of each function; versioning. `cargo xtask
//! capi` builds and installs libbufsync.so, libbufsync.a, the header and
//! bufsync.pc; docs/capi.md walks through it.
//!
//! Modules, one per part of the API: [`error`] (codes, the last error, the
//! panic boundary), [`handle`] (what C hands in), [`version`], [`fence`],
//! [`sync_file`], [`reservation`], [`ticket`], [`dmabuf`], [`log`],
//! [`vk`] (the application's Vulkan handles) and [`presenter`] (its
//! frames and its writeback capture in submodules).
//!
//! `unsafe` lives only here, at the boundary, each block with its
//! `// SAFETY:` reason; the pointer contract it relies on is the header's.
#![deny(unsafe_op_in_unsafe_fn)]
// C names for C types: `bufsync_fence`, not `BufsyncFence`.
#![allow(non_camel_case_types)]
// The pointer contract of every `unsafe extern "C" fn` is stated once, in
// the header's ABI rules, and per function in its doc (NULL or a live
// handle, the array lengths, the fds).
#![allow(clippy::missing_safety_doc)]

pub mod dmabuf;
pub mod error;
pub mod fence;
pub mod handle;
pub mod log;
pub mod presenter;
pub mod reservation;
pub mod sync_file;
pub mod ticket;
pub mod version;
pub mod vk;
