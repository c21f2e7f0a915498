//! bufsync: the user-space model of Linux dma-buf synchronization.
//!
//! This crate knows nothing about file descriptors or GPUs. It holds the
//! model the kernel grew out of the 2012 dma-buf-mgr review:
//!
//! - [`fence`]: one-shot completion events with the `dma_fence` contract,
//!   chains, merges, wait-sets and a software-signaling engine;
//! - [`resv`]: reservation objects (`dma_resv`), wound/wait tickets
//!   (`ww_mutex` + `ww_acquire_ctx`) and the reservation flow (`drm_exec`);
//! - [`debug`]: who holds what and who waits for whom (tickets and locks),
//!   as data ([`debug::snapshot`]) or text ([`debug::dump`]).
//!
//! Backends (crate `bufsync-backends`) give the model real kernel objects.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod debug;
pub mod fence;
pub mod resv;
pub(crate) mod sync;
