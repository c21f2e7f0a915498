//! The stall warning: a ticket that waits for one object longer than the
//! threshold logs one warning per wait (the 2012 review's "dump to diagnose
//! a stall", without anyone asking for the dump).
//!
//! Locking rules: the threshold is an atomic; [`check_stall`] takes the
//! waiting ticket's debug record (a leaf mutex) and, once per wait past the
//! threshold, the class's lock registry (to list what the ticket holds from
//! the owner words); never while holding a queue lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::resv::class::WwClass;
use crate::resv::parker::lock;
use crate::resv::ticket::TicketShared;

static STALL_MS: AtomicU64 = AtomicU64::new(5_000);

/// Sets the stall threshold (at least 1 ms). Lock-free.
pub(crate) fn set_threshold(threshold: Duration) {
    STALL_MS.store(threshold.as_millis().max(1) as u64, Ordering::Relaxed);
}

fn threshold() -> Duration {
    Duration::from_millis(STALL_MS.load(Ordering::Relaxed))
}

/// When a waiter that started at `since` should wake next: its deadline, or
/// the stall threshold if that comes first (to log the warning).
pub(crate) fn park_deadline(since: Instant, deadline: Option<Instant>) -> Option<Instant> {
    if cfg!(loom) {
        return deadline;
    }
    let stall = since + threshold();
    Some(deadline.map_or(stall, |d| d.min(stall)))
}

/// Logs a warning once per wait if `ticket` has waited for `object` longer
/// than the threshold, with the objects it holds. Takes the ticket's debug
/// record, then (once per wait) the class's registry; the caller holds no
/// lock.
pub(crate) fn check_stall(class: &WwClass, ticket: &TicketShared, object: u64, since: Instant) {
    let waited = since.elapsed();
    if waited < threshold() {
        return;
    }
    {
        let mut d = lock(&ticket.debug);
        if d.warned {
            return;
        }
        d.warned = true;
    }
    let stamp = ticket.stamp();
    let holds: Vec<u64> = class
        .live_locks()
        .iter()
        .filter(|c| c.owner() == stamp)
        .map(|c| c.id())
        .collect();
    log::warn!(
        "ticket {stamp} of class {} has waited {waited:?} for object {object}; holds {holds:?}",
        class.name()
    );
}
