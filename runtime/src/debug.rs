//! Diagnostics: the registry of outstanding tickets (the 2012 review's
//! debugfs idea). [`dump`] lists, per class, every live ticket: its stamp,
//! what it holds, what it waits for and since when. A ticket that waits longer
//! than [`set_stall_threshold`] logs a warning with its entry.
//!
//! Locking rules: `CLASSES` (a process-wide mutex) guards the list of classes;
//! it is taken alone, then each class's ticket list, then each ticket's debug
//! record (classes -> tickets -> record). The stall threshold is an atomic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::resv::class::WwClass;
use crate::resv::parker::lock;
use crate::resv::ticket::TicketShared;
use crate::sync::Arc;

#[cfg(not(loom))]
static CLASSES: std::sync::Mutex<Vec<std::sync::Weak<WwClass>>> = std::sync::Mutex::new(Vec::new());
static STALL_MS: AtomicU64 = AtomicU64::new(5_000);

/// Lists a class for [`dump`] (not under loom: its `Arc` is loom's).
pub(crate) fn register_class(_class: &Arc<WwClass>) {
    #[cfg(not(loom))]
    {
        let mut classes = CLASSES.lock().unwrap_or_else(|e| e.into_inner());
        classes.retain(|c| c.strong_count() > 0);
        classes.push(Arc::downgrade(_class));
    }
}

/// Sets how long a ticket may wait for one object before a warning is
/// logged (default 5 s). Lock-free.
pub fn set_stall_threshold(threshold: Duration) {
    STALL_MS.store(threshold.as_millis().max(1) as u64, Ordering::Relaxed);
}

fn stall_threshold() -> Duration {
    Duration::from_millis(STALL_MS.load(Ordering::Relaxed))
}

/// When a waiter that started at `since` should wake next: its deadline, or
/// the stall threshold if that comes first (to log the warning).
pub(crate) fn park_deadline(since: Instant, deadline: Option<Instant>) -> Option<Instant> {
    if cfg!(loom) {
        return deadline;
    }
    let stall = since + stall_threshold();
    Some(deadline.map_or(stall, |d| d.min(stall)))
}

/// Logs a warning once per wait if `ticket` has waited for `object` longer
/// than the threshold. Takes the ticket's debug record.
pub(crate) fn check_stall(ticket: &TicketShared, object: u64, since: Instant) {
    let waited = since.elapsed();
    if waited < stall_threshold() {
        return;
    }
    let mut d = lock(&ticket.debug);
    if d.warned {
        return;
    }
    d.warned = true;
    log::warn!(
        "ticket {} has waited {:?} for object {object}; holds {:?}",
        ticket.stamp(),
        waited,
        d.held
    );
}

/// Writes one ticket's registry line.
fn write_ticket(out: &mut String, t: &TicketShared, now: Instant) {
    let d = lock(&t.debug);
    let _ = write!(
        out,
        "  ticket stamp={} age={:?} backoffs={} wounded={} holds={:?}",
        t.stamp(),
        now.duration_since(d.started),
        d.backoffs,
        t.wounded.load(crate::sync::Ordering::Relaxed),
        d.held
    );
    match d.waiting {
        Some((object, since)) => {
            let _ = writeln!(
                out,
                " waits-for={object} since={:?}",
                now.duration_since(since)
            );
        }
        None => out.push('\n'),
    }
}

#[cfg(not(loom))]
fn live_classes() -> Vec<Arc<WwClass>> {
    let list = CLASSES.lock().unwrap_or_else(|e| e.into_inner());
    list.iter().filter_map(std::sync::Weak::upgrade).collect()
}

#[cfg(loom)]
fn live_classes() -> Vec<Arc<WwClass>> {
    Vec::new()
}

/// The registry as text: one block per class, one line per live ticket
/// (stamp, age, back-offs, wounded, held objects, the object waited for and
/// for how long), then the fences the global fence engine reports as stuck
/// (still pending past its threshold, with driver and timeline names).
/// Takes the registry locks one after another, then the engine's.
pub fn dump() -> String {
    let now = Instant::now();
    let mut out = String::new();
    for class in live_classes() {
        let tickets: Vec<Arc<TicketShared>> = lock(&class.tickets).clone();
        let _ = writeln!(
            out,
            "class {} ({}), {} tickets, up {:?}",
            class.name(),
            class.algorithm().name(),
            tickets.len(),
            now.duration_since(class.created())
        );
        for t in &tickets {
            write_ticket(&mut out, t, now);
        }
    }
    crate::fence::engine::write_stuck(&mut out);
    out
}
