//! Attachments: how an importer integrates with a shared buffer (the 2012
//! review's three modes).
//!
//! - `Synchronous`: every map and CPU access first waits in software for the
//!   fences it must respect (a reader for writers, a writer for everyone),
//!   then runs the caller's cache-maintenance hook.
//! - `Async`: the importer gets the fences and orders its work with tickets.
//! - `Evictable`: like `Async`, and the exporter may evict the buffer once all
//!   its fences have signaled and every attachment allows it; the importer's
//!   map then returns `Evicted` and it backs off as on `Deadlock`.
//!
//! Locking rules: `state` (a leaf mutex) guards the attachment list and the
//! evicted flag. [`Exported::try_evict`] holds the reservation's ww lock
//! (taken without a ticket) while it checks fences and sets the flag, so an
//! importer that maps while holding the reservation never races an eviction.
//! Waits never hold any lock.

use std::time::Duration;

use crate::fence::WaitError;
use crate::resv::exec::{Access, AsReservation};
use crate::resv::parker::lock;
use crate::resv::reservation::{Reservation, ResvFences, Usage};
use crate::resv::WwClass;
use crate::sync::Mutex;

/// How an importer uses an exported buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// Waits in software before every map / CPU access.
    Synchronous,
    /// Gets the fences; orders its work with tickets.
    Async,
    /// Like `Async`; lets the exporter evict the buffer when idle.
    Evictable,
}

/// Errors of attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The buffer was evicted: back off (as on `Deadlock`) and retry later.
    #[error("object {object} was evicted")]
    Evicted {
        /// The object.
        object: u64,
    },
    /// Eviction refused: the reservation is locked.
    #[error("object {object} is reserved")]
    Busy {
        /// The object.
        object: u64,
    },
    /// Eviction refused: a fence has not signaled.
    #[error("object {object} has unsignaled fences")]
    Pending {
        /// The object.
        object: u64,
    },
    /// Eviction refused: an attachment pins the buffer.
    #[error("object {object} is pinned by attachment {attachment}")]
    Pinned {
        /// The object.
        object: u64,
        /// The pinning attachment.
        attachment: u64,
    },
    /// A synchronous wait failed.
    #[error(transparent)]
    Wait(#[from] WaitError),
}

struct AttachInfo {
    id: u64,
    allows_evict: bool,
}

#[derive(Default)]
struct ExportState {
    evicted: bool,
    next_id: u64,
    attachments: Vec<AttachInfo>,
}

/// An exported buffer: a reservation plus its attachments and eviction state.
pub struct Exported {
    resv: Reservation,
    state: Mutex<ExportState>,
}

impl std::fmt::Debug for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exported")
            .field("object", &self.resv.id())
            .field("evicted", &self.is_evicted())
            .finish()
    }
}

impl AsReservation for Exported {
    fn as_reservation(&self) -> &Reservation {
        &self.resv
    }
}

#[cfg(not(loom))]
impl Default for Exported {
    fn default() -> Self {
        Exported::new()
    }
}

impl Exported {
    /// An exported buffer with a reservation of the reservation class.
    #[cfg(not(loom))]
    pub fn new() -> Exported {
        Exported::with_reservation(Reservation::new())
    }

    /// An exported buffer whose reservation's lock is of `class`.
    pub fn with_class(class: &WwClass) -> Exported {
        Exported::with_reservation(Reservation::with_class(class))
    }

    fn with_reservation(resv: Reservation) -> Exported {
        Exported {
            resv,
            state: Mutex::new(ExportState::default()),
        }
    }

    /// The buffer's reservation.
    pub fn reservation(&self) -> &Reservation {
        &self.resv
    }

    /// Attaches an importer. `Evictable` attachments allow eviction, the
    /// others pin the buffer. Takes `state`.
    pub fn attach(&self, mode: AttachMode) -> Attachment<'_> {
        let mut s = lock(&self.state);
        s.next_id += 1;
        let id = s.next_id;
        s.attachments.push(AttachInfo {
            id,
            allows_evict: mode == AttachMode::Evictable,
        });
        Attachment {
            exported: self,
            id,
            mode,
        }
    }

    /// Whether the buffer is evicted. Takes `state`.
    pub fn is_evicted(&self) -> bool {
        lock(&self.state).evicted
    }

    /// Evicts the buffer if nobody holds its reservation, all its fences have
    /// signaled and every attachment allows it. Takes the ww lock (no
    /// ticket, no wait), then `state`.
    pub fn try_evict(&self) -> Result<(), AttachError> {
        let object = self.resv.id();
        let _locked = self
            .resv
            .ww_mutex()
            .try_lock()
            .ok_or(AttachError::Busy { object })?;
        if !self.resv.test_signaled(Usage::Bookkeep) {
            return Err(AttachError::Pending { object });
        }
        let mut s = lock(&self.state);
        if let Some(a) = s.attachments.iter().find(|a| !a.allows_evict) {
            return Err(AttachError::Pinned {
                object,
                attachment: a.id,
            });
        }
        s.evicted = true;
        log::debug!("object {object} evicted");
        Ok(())
    }

    /// Brings an evicted buffer back (the exporter re-validated it). Takes
    /// `state`.
    pub fn restore(&self) {
        lock(&self.state).evicted = false;
    }
}

/// One importer's attachment; detaches on drop.
pub struct Attachment<'e> {
    exported: &'e Exported,
    id: u64,
    mode: AttachMode,
}

impl std::fmt::Debug for Attachment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Attachment<'_> {
    /// The attachment's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The attachment's mode.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Lets the exporter evict the buffer (or pins it). Takes `state`.
    pub fn set_allow_evict(&self, allow: bool) {
        let mut s = lock(&self.exported.state);
        if let Some(a) = s.attachments.iter_mut().find(|a| a.id == self.id) {
            a.allows_evict = allow;
        }
    }

    /// Maps the buffer for `access` (`dma_buf_map_attachment`).
    /// `Synchronous`: waits (at most `timeout`) for the fences `access` must
    /// respect, then runs `cache_hook`. `Async` / `Evictable`: runs
    /// `cache_hook` at once; the importer orders its work after the returned
    /// fences. `Evictable` returns `Evicted` if the buffer is out; map while
    /// holding the reservation so no eviction races. Holds no lock while
    /// waiting.
    pub fn map(
        &self,
        access: Access,
        timeout: Option<Duration>,
        cache_hook: impl FnOnce(),
    ) -> Result<ResvFences, AttachError> {
        let resv = &self.exported.resv;
        let usage = Usage::for_access(access == Access::Write);
        match self.mode {
            AttachMode::Synchronous => resv.wait(usage, timeout).map_err(WaitError::from)?,
            AttachMode::Evictable if self.exported.is_evicted() => {
                return Err(AttachError::Evicted { object: resv.id() })
            }
            AttachMode::Async | AttachMode::Evictable => {}
        }
        cache_hook();
        Ok(resv.fences(usage))
    }

    /// Brackets CPU access (`DMA_BUF_IOCTL_SYNC` start): in every mode the CPU
    /// waits in software (at most `timeout`) for the fences `access` must
    /// respect, then `cache_hook` runs. `Evicted` if the buffer is out.
    pub fn begin_cpu_access(
        &self,
        access: Access,
        timeout: Option<Duration>,
        cache_hook: impl FnOnce(),
    ) -> Result<(), AttachError> {
        let resv = &self.exported.resv;
        if self.exported.is_evicted() {
            return Err(AttachError::Evicted { object: resv.id() });
        }
        resv.wait(Usage::for_access(access == Access::Write), timeout)
            .map_err(WaitError::from)?;
        cache_hook();
        Ok(())
    }
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        lock(&self.exported.state)
            .attachments
            .retain(|a| a.id != self.id);
    }
}
