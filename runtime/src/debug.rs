//! Diagnostics: who holds what and who waits for whom (the 2012 review's
//! debugfs idea). [`snapshot`] returns, per class, every live ticket (stamp,
//! age, back-offs, wounded, the objects it holds, the object it waits for and
//! since when, a place it keeps) and every lock that is held or waited for
//! (its holder and its queue, in order); [`dump`] is the same as text. A
//! ticket that waits longer than [`set_stall_threshold`] logs a warning.
//!
//! The truth is read from the locks themselves: each lock's owner word and
//! queue, copied under its queue lock, so a lock held by a ticket in the
//! middle of a reservation (holding A, waiting for B) shows as held by it,
//! and ticket-less holders and waiters show too. Each lock's entry is
//! consistent at the instant it was read; entries are read one after
//! another, so two entries may be a few instructions apart.
//!
//! This module only reads [`crate::resv`]'s registries; nothing in `resv`
//! depends on it.
//!
//! Locking rules: takes, one at a time and never nested, the process-wide
//! class list, each class's ticket list (copied), each ticket's debug record,
//! each class's lock registry (copied) and each registered lock's queue lock.
//! The stall threshold is an atomic.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::resv::class::{live_classes, Algorithm};
use crate::resv::parker::lock;
use crate::resv::{Holder, LockState};

/// Sets how long a ticket may wait for one object before a warning is
/// logged (default 5 s, at least 1 ms). Lock-free.
pub fn set_stall_threshold(threshold: Duration) {
    crate::resv::stall::set_threshold(threshold);
}

/// One live ticket, as [`snapshot`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketReport {
    /// The ticket's current stamp.
    pub stamp: u64,
    /// Time since the ticket was made.
    pub age: Duration,
    /// How many times it has backed off (`Deadlock`), in total.
    pub backoffs: u64,
    /// Whether an older ticket has wounded it (wound-wait).
    pub wounded: bool,
    /// The objects it holds (locks whose owner is this stamp), in the
    /// class's registry order.
    pub holds: Vec<u64>,
    /// The object whose queue it waits in, if any.
    pub waits_for: Option<u64>,
    /// How long it has waited for `waits_for`, when its own record says so.
    pub waiting_for: Option<Duration>,
    /// A place it keeps after a back-off (it will `lock_slow` that object).
    pub kept_place: Option<u64>,
}

/// One class, as [`snapshot`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassReport {
    /// The class's name.
    pub name: &'static str,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Time since the class was made.
    pub age: Duration,
    /// Every live ticket of the class.
    pub tickets: Vec<TicketReport>,
    /// Every lock of the class that is held or has waiters, with its holder
    /// and its queue in order.
    pub locks: Vec<LockState>,
}

/// Every live class with its tickets and busy locks. Takes the registry
/// locks one after another (see the module's rules); never waits for a ww
/// lock, so it may be called from anywhere, a fence callback included.
///
/// ```
/// use bufsync::resv::{Algorithm, Holder, Ticket, WwClass, WwMutex};
///
/// let class = WwClass::new("doc-snapshot", Algorithm::WaitDie);
/// let m = WwMutex::new(&class);
/// let t = Ticket::new(&class);
/// let _g = t.lock(&m).unwrap();
/// let report = bufsync::debug::snapshot();
/// let c = report.iter().find(|c| c.name == "doc-snapshot").unwrap();
/// assert_eq!(c.tickets[0].holds, vec![m.id()]);
/// assert_eq!(c.locks[0].holder, Some(Holder::Ticket { stamp: t.stamp() }));
/// ```
pub fn snapshot() -> Vec<ClassReport> {
    let now = Instant::now();
    live_classes()
        .iter()
        .map(|class| {
            let tickets = class.live_tickets();
            let locks: Vec<LockState> = class
                .live_locks()
                .iter()
                .map(|core| core.state())
                .filter(LockState::is_busy)
                .collect();
            let tickets = tickets
                .iter()
                .map(|t| {
                    let stamp = t.stamp();
                    let (started, waiting, backoffs) = {
                        let d = lock(&t.debug);
                        (d.started, d.waiting, d.backoffs)
                    };
                    let holds = locks
                        .iter()
                        .filter(|l| l.holder == Some(Holder::Ticket { stamp }))
                        .map(|l| l.object)
                        .collect();
                    let entry = |kept: bool| {
                        locks
                            .iter()
                            .find(|l| {
                                l.waiters
                                    .iter()
                                    .any(|w| w.stamp == Some(stamp) && w.kept == kept)
                            })
                            .map(|l| l.object)
                    };
                    let waits_for = entry(false).or(waiting.map(|(o, _)| o));
                    let waiting_for = waiting
                        .filter(|(o, _)| Some(*o) == waits_for)
                        .map(|(_, since)| now.saturating_duration_since(since));
                    TicketReport {
                        stamp,
                        age: now.saturating_duration_since(started),
                        backoffs,
                        wounded: t.wounded.load(crate::sync::Ordering::Relaxed),
                        holds,
                        waits_for,
                        waiting_for,
                        kept_place: entry(true),
                    }
                })
                .collect();
            ClassReport {
                name: class.name(),
                algorithm: class.algorithm(),
                age: now.saturating_duration_since(class.created()),
                tickets,
                locks,
            }
        })
        .collect()
}

/// The registry as text: one block per class; one line per live ticket
/// (stamp, age, back-offs, wounded, held objects, the object waited for and
/// for how long, a kept place) and one per busy lock (holder, queue in order:
/// stamps, `kept` for kept places, `holds` for waiters holding other locks,
/// `ticketless`); then the fences the global fence engine reports as stuck
/// (still pending past its threshold, with driver and timeline names).
/// Takes the locks [`snapshot`] takes, then the engine's.
pub fn dump() -> String {
    let mut out = String::new();
    for c in snapshot() {
        let _ = writeln!(
            out,
            "class {} ({}), {} tickets, {} busy locks, up {:?}",
            c.name,
            c.algorithm.name(),
            c.tickets.len(),
            c.locks.len(),
            c.age
        );
        for t in &c.tickets {
            let _ = write!(
                out,
                "  ticket stamp={} age={:?} backoffs={} wounded={} holds={:?}",
                t.stamp, t.age, t.backoffs, t.wounded, t.holds
            );
            if let Some(object) = t.waits_for {
                let _ = write!(out, " waits-for={object}");
                if let Some(d) = t.waiting_for {
                    let _ = write!(out, " since={d:?}");
                }
            }
            if let Some(object) = t.kept_place {
                let _ = write!(out, " kept-place={object}");
            }
            out.push('\n');
        }
        for l in &c.locks {
            let holder = match l.holder {
                None => "free".to_string(),
                Some(Holder::Ticketless) => "ticketless".to_string(),
                Some(Holder::Ticket { stamp }) => format!("ticket {stamp}"),
            };
            let queue: Vec<String> = l
                .waiters
                .iter()
                .map(|w| {
                    let mut s = w.stamp.map_or("ticketless".to_string(), |s| s.to_string());
                    if w.kept {
                        s += " kept";
                    }
                    if w.holds_others {
                        s += " holds";
                    }
                    s
                })
                .collect();
            let _ = writeln!(
                out,
                "  lock {} holder={holder} queue=[{}]",
                l.object,
                queue.join(", ")
            );
        }
    }
    crate::fence::engine::write_stuck(&mut out);
    out
}
