//! Fences: the `dma_fence` contract in user space.
//!
//! A [`Fence`] is a one-shot completion event on a context (timeline) with a
//! 64-bit seqno. It is signaled once, optionally with an error; it can be
//! waited on, polled and given callbacks. A [`FenceKind`] (the analogue of
//! `dma_fence_ops`) lets backends add kinds (sync_file, Vulkan timeline
//! points, seqno words); the plain software fence is the default.
//! See `docs/fences.md` for the kernel counterpart of each API.
//!
//! # Rules (checked in debug builds, see [`in_signal_path`])
//!
//! 1. No user callback and no `FenceKind` hook runs under a fence-internal
//!    lock. Callbacks run on the signaling thread after the fence is marked
//!    signaled and after its list lock is released, in the order added.
//! 2. The signal path allocates nothing and takes no reservation lock; fence
//!    callbacks are part of it and must not take one either. With no waiter
//!    and no callback, signaling is one atomic RMW plus one store.
//! 3. Each fence has one internal lock (its callback/waiter list); it is
//!    never held while another fence's lock is taken.
//! 4. `is_signaled` on a signaled fence is one Acquire load.
//! 5. Only a fence's producer signals it: a timeout ends a *wait*, never the
//!    fence. A foreign fence stays pending until its producer (or the
//!    kernel, whose error a backend mirrors) ends it; the [`engine`] polls
//!    the kinds that need it and reports fences stuck past a threshold.
//!
//! Per-file locking notes are at the top of each submodule.

mod array;
mod cancel;
mod chain;
mod context;
mod error;
mod failure;
mod handle;
mod kind;
mod rules;
mod set;
mod unwrap;
mod wait;

pub mod engine;

pub use array::FenceArray;
pub use cancel::CancelToken;
pub use chain::{ChainError, ChainIter, FenceChain, FenceTimeline};
pub use context::{alloc_contexts, FenceContext};
pub use error::{AlreadySignaled, FenceError, FenceStatus, SignalError, WaitError};
pub use handle::{CallbackId, Fence};
pub use kind::{FenceKind, SoftwareKind};
pub use rules::in_signal_path;
pub use set::FenceSet;
pub use unwrap::{unwrap, unwrap_into, unwrap_merge, unwrap_merge_into};

pub(crate) use failure::first_of;
pub(crate) use set::wait_every;
