//! Reservations and tickets: `dma_resv`, `ww_mutex` and `drm_exec` in user space.
//!
//! - [`WwClass`] / [`Algorithm`]: a lock class, wait-die or wound-wait;
//! - [`WwMutex`]: the lock, with a stamp-ordered waiter queue ([`LockState`]:
//!   a read-only view of who holds it and who waits);
//! - [`Ticket`]: the acquire context (`ww_acquire_ctx`);
//! - [`Reservation`]: the per-buffer lock + fence slots (`dma_resv`);
//! - [`Ticket::reserve`] / [`Reserved`]: the reservation flow (`drm_exec`);
//! - [`Exported`] / [`Attachment`]: the integration modes of importers.
//!
//! The locking rules are at the top of each file and in `docs/reservations.md`.

mod attachment;
pub(crate) mod class;
mod exec;
pub(crate) mod parker;
mod reservation;
pub(crate) mod stall;
mod state;
pub(crate) mod ticket;
pub(crate) mod ww_mutex;

pub use attachment::{AttachError, AttachMode, Attachment, Exported};
#[cfg(not(loom))]
pub use class::reservation_class;
pub use class::{Algorithm, WwClass};
pub use exec::{Access, AsReservation, Reserved};
pub use reservation::{Reservation, ResvError, ResvFences, ResvGuard, ResvWaitError, Usage};
pub use state::{Holder, LockState, QueuedWaiter};
pub use ticket::{CancelHandle, Misuse, Ticket, WwError, WwGuard};
pub use ww_mutex::{WwMutex, WwMutexGuard};
