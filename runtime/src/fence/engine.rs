//! The software-signaling engine for fences whose producer is outside the
//! process: deadlines and pollers.
//!
//! An [`Engine`] holds two lists: deadlines (a fence still pending at its
//! deadline is signaled with [`FenceError::TimedOut`], so no foreign fence is
//! waited on forever) and polled fences (kinds whose state lives elsewhere:
//! `poll_signaled` is asked with exponential back-off until it says yes or
//! the fence's deadline passes). It is driven either by one lazily started
//! thread ([`global`]) or by the caller's event loop ([`Engine::run_once`] +
//! [`Engine::next_wakeup`]).
//!
//! Locking: `state` (a `Mutex`) guards both lists; it is never held while a
//! fence is signaled or a kind's hook runs: due work is moved out first.
//! The engine uses std primitives (it is not part of the loom models).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Fence, FenceError};

/// Default bound on how long a foreign (polled) fence may stay pending.
pub const DEFAULT_FOREIGN_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_POLL: Duration = Duration::from_micros(50);
const MAX_POLL: Duration = Duration::from_millis(5);

struct Deadline {
    at: Instant,
    id: u64,
    fence: Fence,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(other.at, other.id))
    }
}

struct Polled {
    fence: Fence,
    next_poll: Instant,
    interval: Duration,
}

struct State {
    deadlines: BinaryHeap<Reverse<Deadline>>,
    polled: Vec<Polled>,
    next_id: u64,
    default_timeout: Duration,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

/// A set of deadlines and pollers for foreign fences.
#[derive(Clone)]
pub struct Engine(Arc<Shared>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Engine")
            .field("deadlines", &s.deadlines.len())
            .field("polled", &s.polled.len())
            .field("default_timeout", &s.default_timeout)
            .finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// An engine driven by the caller's event loop (no thread): call
    /// [`run_once`](Engine::run_once) at [`next_wakeup`](Engine::next_wakeup).
    pub fn new() -> Engine {
        Engine(Arc::new(Shared {
            state: Mutex::new(State {
                deadlines: BinaryHeap::new(),
                polled: Vec::new(),
                next_id: 0,
                default_timeout: DEFAULT_FOREIGN_TIMEOUT,
            }),
            cond: Condvar::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the deadline given to polled fences registered without one.
    /// Lock: the engine lock.
    pub fn set_default_timeout(&self, t: Duration) {
        self.lock().default_timeout = t;
    }

    /// The deadline given to polled fences registered without one.
    pub fn default_timeout(&self) -> Duration {
        self.lock().default_timeout
    }

    /// Signals `fence` with [`FenceError::TimedOut`] if it is still pending
    /// at `at`. Lock: the engine lock, briefly.
    pub fn watch_deadline(&self, fence: &Fence, at: Instant) {
        if fence.test_signaled_flag() {
            return;
        }
        {
            let mut s = self.lock();
            let id = s.next_id;
            s.next_id += 1;
            s.deadlines.push(Reverse(Deadline {
                at,
                id,
                fence: fence.clone(),
            }));
        }
        self.0.cond.notify_one();
    }

    /// Polls `fence`'s kind (`poll_signaled`) with back-off until it reports
    /// signaled, and bounds it with `deadline` (or the default timeout).
    /// Lock: the engine lock, briefly.
    pub fn watch_polled(&self, fence: &Fence, deadline: Option<Instant>) {
        if fence.test_signaled_flag() {
            return;
        }
        let now = Instant::now();
        {
            let mut s = self.lock();
            let at = deadline.unwrap_or(now + s.default_timeout);
            let id = s.next_id;
            s.next_id += 1;
            s.deadlines.push(Reverse(Deadline {
                at,
                id,
                fence: fence.clone(),
            }));
            s.polled.push(Polled {
                fence: fence.clone(),
                next_poll: now + FIRST_POLL,
                interval: FIRST_POLL,
            });
        }
        self.0.cond.notify_one();
    }

    /// Number of fences the engine still watches (deadlines + pollers).
    pub fn watched(&self) -> usize {
        let s = self.lock();
        s.deadlines.len() + s.polled.len()
    }

    /// When [`run_once`](Engine::run_once) next has work; `None` if idle.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let s = self.lock();
        Self::next_of(&s)
    }

    fn next_of(s: &State) -> Option<Instant> {
        let d = s.deadlines.peek().map(|Reverse(d)| d.at);
        let p = s.polled.iter().map(|p| p.next_poll).min();
        match (d, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does the work due at `now`: polls due pollers, times out expired
    /// fences, drops signaled entries. Returns the next wake-up time.
    /// Lock: the engine lock, never held while polling or signaling.
    pub fn run_once(&self, now: Instant) -> Option<Instant> {
        let mut expired = Vec::new();
        let mut to_poll = Vec::new();
        {
            let mut s = self.lock();
            while let Some(Reverse(d)) = s.deadlines.peek() {
                if d.at > now && !d.fence.test_signaled_flag() {
                    break;
                }
                if let Some(Reverse(d)) = s.deadlines.pop() {
                    if !d.fence.test_signaled_flag() {
                        expired.push(d.fence);
                    }
                }
            }
            s.polled.retain(|p| !p.fence.test_signaled_flag());
            for p in s.polled.iter_mut() {
                if p.next_poll <= now {
                    to_poll.push(p.fence.clone());
                    p.interval = (p.interval * 2).min(MAX_POLL);
                    p.next_poll = now + p.interval;
                }
            }
        }
        for f in &to_poll {
            // `is_signaled` asks the kind's hook and signals on success.
            f.is_signaled();
        }
        for f in &expired {
            if f.signal_with_error(FenceError::TimedOut).is_ok() {
                log::warn!(
                    "fence {}:{} ({}/{}) passed its deadline: signaled with a timeout error",
                    f.context(),
                    f.seqno(),
                    f.driver_name(),
                    f.timeline_name()
                );
            }
        }
        if !to_poll.is_empty() || !expired.is_empty() {
            let mut s = self.lock();
            s.polled.retain(|p| !p.fence.test_signaled_flag());
            return Self::next_of(&s);
        }
        self.next_wakeup()
    }

    fn thread_main(self) {
        loop {
            let next = self.run_once(Instant::now());
            let s = self.lock();
            // Re-check under the lock: a registration may have come in.
            let next = match (next, Self::next_of(&s)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                None => drop(self.0.cond.wait(s).unwrap_or_else(|e| e.into_inner())),
                Some(at) => {
                    let now = Instant::now();
                    if at > now {
                        drop(
                            self.0
                                .cond
                                .wait_timeout(s, at - now)
                                .unwrap_or_else(|e| e.into_inner()),
                        );
                    }
                }
            }
        }
    }
}

/// The process-wide engine, driven by one thread started on first use.
pub fn global() -> &'static Engine {
    static GLOBAL: OnceLock<Engine> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let engine = Engine::new();
        let runner = engine.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("bufsync-fence-engine".into())
            .spawn(move || runner.thread_main())
        {
            log::error!(
                "cannot start the fence engine thread: {e}; deadlines only fire from run_once"
            );
        }
        engine
    })
}

/// Signals `fence` with [`FenceError::TimedOut`] if still pending at `at`
/// (on the [`global`] engine).
pub fn watch_deadline(fence: &Fence, at: Instant) {
    global().watch_deadline(fence, at);
}

/// Hands a polled kind's fence to the [`global`] engine's poller, bounded by
/// the engine's default timeout.
pub fn watch_polled(fence: &Fence) {
    global().watch_polled(fence, None);
}
