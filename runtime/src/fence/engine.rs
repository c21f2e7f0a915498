//! The engine for fences whose producer is outside the process: pollers and
//! stuck-fence reports. It never signals a fence itself.
//!
//! Only a fence's producer signals it (the kernel's `dma_fence` rule): a
//! waiter that runs out of time ends its *wait* (every wait API takes a
//! bound), never the fence. So a foreign fence (a sync_file, a syncobj
//! point, a Vulkan timeline point, a seqno word) stays pending here until
//! its producer signals it, or until the kernel ends it with an error,
//! which the backend kinds mirror. What the engine does:
//!
//! - **polled fences** (kinds whose state lives elsewhere, [`FenceKind::needs_polling`]):
//!   `poll_signaled` is asked with exponential back-off (50 µs doubling to
//!   5 ms) until it says yes;
//! - **watched fences** ([`Engine::watch`]): fences whose signaling is
//!   enabled and whose producer is foreign, so that one still pending past
//!   the stuck threshold ([`Engine::set_stuck_threshold`], default 10 s) is
//!   logged once (`log::warn!`, with its driver and timeline names) and
//!   listed by [`Engine::stuck`] and `bufsync::debug::dump()`. Polled
//!   fences are watched too.
//!
//! Driving: one lazily started thread for the process-wide engine
//! ([`global`]), or the caller's event loop: [`drive_externally`] (before
//! first use) makes the global engine thread-less; the loop calls
//! [`Engine::run_once`] at [`Engine::next_wakeup`] and is told through its
//! waker when that time moves earlier. A private [`Engine::new`] /
//! [`Engine::with_waker`] is always caller-driven.
//!
//! Retention: the engine holds a fence only while it is pending.
//! [`Engine::watch`] adds a fence callback that takes the entry out when
//! the fence signals, so the engine's handle is dropped on the signaling
//! thread at once (no allocation there: the callback was boxed at
//! registration, entries live in a slab with an intrusive free list and an
//! indexed heap, removal is O(log n)). Polled fences are dropped by the
//! poller at the first tick that finds them signaled (at most the poll
//! interval, 5 ms, after the signal). The slab never holds more slots than
//! fences were pending at once.
//!
//! Locking: `state` (a `Mutex`, counted as a fence-internal lock in debug
//! builds) guards the table; it is never held while a kind's hook runs, a
//! fence handle is dropped, a warning is logged or the waker is called:
//! due work and removed handles are moved out first. It is a leaf lock:
//! nothing else is taken under it. The engine uses std primitives (it is
//! not part of the loom models).

use std::fmt::Write as _;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::rules::LockDepth;
use super::Fence;
#[cfg(doc)]
use super::FenceKind;

/// Default time a watched fence may stay pending before it is reported as
/// stuck (logged once, listed by [`Engine::stuck`]).
pub const DEFAULT_STUCK_THRESHOLD: Duration = Duration::from_secs(10);
const FIRST_POLL: Duration = Duration::from_micros(50);
const MAX_POLL: Duration = Duration::from_millis(5);
/// End of the slab's free list; also "not in the heap".
const NIL: usize = usize::MAX;

/// The caller's wake-up hook of an externally driven engine.
type Waker = Box<dyn Fn() + Send + Sync + 'static>;

struct Poll {
    next: Instant,
    interval: Duration,
}

/// One watched fence.
struct Slot {
    /// `None` while the slot is free.
    fence: Option<Fence>,
    /// Registration number: the heap's tie-break, and what a removal callback
    /// checks so that it never takes a reused slot's entry.
    id: u64,
    /// When the entry was registered.
    since: Instant,
    /// When it counts as stuck; `None` once reported.
    warn_at: Option<Instant>,
    poll: Option<Poll>,
    /// Index of this slot in `Table::heap`, `NIL` when it has nothing due.
    heap_pos: usize,
    /// Next free slot while this one is free.
    next_free: usize,
}

impl Slot {
    /// The next time this entry has work: a poll or its stuck report.
    fn due(&self) -> Option<Instant> {
        match (self.poll.as_ref().map(|p| p.next), self.warn_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The watched fences: a slab of slots and a min-heap of the slots that have
/// something due, ordered by `(due, id)`, that knows each slot's position (so
/// any entry can be removed in O(log n)). Removal allocates nothing.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: usize,
    heap: Vec<usize>,
    live: usize,
}

impl Table {
    fn new() -> Table {
        Table {
            free: NIL,
            ..Table::default()
        }
    }

    fn insert(
        &mut self,
        fence: Fence,
        id: u64,
        now: Instant,
        stuck: Duration,
        polled: bool,
    ) -> usize {
        let idx = if self.free != NIL {
            self.free
        } else {
            self.slots.len()
        };
        let slot = Slot {
            fence: Some(fence),
            id,
            since: now,
            warn_at: Some(now + stuck),
            poll: polled.then(|| Poll {
                next: now + FIRST_POLL,
                interval: FIRST_POLL,
            }),
            heap_pos: NIL,
            next_free: NIL,
        };
        if idx == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.free = self.slots[idx].next_free;
            self.slots[idx] = slot;
        }
        self.live += 1;
        self.heap_push(idx);
        idx
    }

    /// Takes the entry out of the heap and frees its slot; returns its fence,
    /// to be dropped by the caller after unlocking.
    fn remove(&mut self, idx: usize) -> Option<Fence> {
        let fence = self.slots[idx].fence.take()?;
        self.heap_remove(idx);
        let slot = &mut self.slots[idx];
        slot.poll = None;
        slot.next_free = self.free;
        self.free = idx;
        self.live -= 1;
        Some(fence)
    }

    /// Removes slot `idx` if it still holds registration `id`.
    fn remove_if(&mut self, idx: usize, id: u64) -> Option<Fence> {
        match self.slots.get(idx) {
            Some(s) if s.fence.is_some() && s.id == id => self.remove(idx),
            _ => None,
        }
    }

    fn signaled(&self, idx: usize) -> bool {
        self.slots[idx]
            .fence
            .as_ref()
            .map_or(true, Fence::test_signaled_flag)
    }

    fn key(&self, heap_pos: usize) -> (Instant, u64) {
        let s = &self.slots[self.heap[heap_pos]];
        (s.due().unwrap_or(s.since), s.id)
    }

    fn heap_push(&mut self, idx: usize) {
        if self.slots[idx].due().is_none() {
            self.slots[idx].heap_pos = NIL;
            return;
        }
        let pos = self.heap.len();
        self.heap.push(idx);
        self.slots[idx].heap_pos = pos;
        self.sift_up(pos);
    }

    fn heap_remove(&mut self, idx: usize) {
        let pos = self.slots[idx].heap_pos;
        if pos == NIL {
            return;
        }
        let last = self.heap.len() - 1;
        self.swap(pos, last);
        self.heap.pop();
        self.slots[idx].heap_pos = NIL;
        if pos < self.heap.len() {
            self.sift_down(pos);
            self.sift_up(pos);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        let (ia, ib) = (self.heap[a], self.heap[b]);
        self.slots[ia].heap_pos = a;
        self.slots[ib].heap_pos = b;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.key(pos) >= self.key(parent) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let (l, r) = (2 * pos + 1, 2 * pos + 2);
            let mut least = pos;
            if l < self.heap.len() && self.key(l) < self.key(least) {
                least = l;
            }
            if r < self.heap.len() && self.key(r) < self.key(least) {
                least = r;
            }
            if least == pos {
                break;
            }
            self.swap(pos, least);
            pos = least;
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.heap.first().and_then(|&i| self.slots[i].due())
    }
}

struct State {
    table: Table,
    next_id: u64,
    stuck_threshold: Duration,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the engine thread (thread mode).
    cond: Condvar,
    /// Tells the caller's event loop that `next_wakeup` moved earlier.
    waker: Option<Waker>,
}

/// The engine lock, counted as a fence-internal lock in debug builds (so a
/// callback run under it would trip the rules check).
struct Locked<'a> {
    guard: std::sync::MutexGuard<'a, State>,
    _depth: LockDepth,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Shared {
    fn lock(&self) -> Locked<'_> {
        let depth = LockDepth::enter();
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Locked {
            guard,
            _depth: depth,
        }
    }

    /// Tells whoever drives the engine that it has earlier work. No lock held.
    fn notify(&self) {
        match &self.waker {
            Some(w) => w(),
            None => self.cond.notify_one(),
        }
    }
}

/// A fence still pending past the engine's stuck threshold.
#[derive(Debug, Clone)]
pub struct StuckFence {
    /// The fence (its kind names the driver and timeline).
    pub fence: Fence,
    /// How long it has been watched.
    pub pending_for: Duration,
}

impl std::fmt::Display for StuckFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fence {}:{} ({}/{}) pending for {:?}",
            self.fence.context(),
            self.fence.seqno(),
            self.fence.driver_name(),
            self.fence.timeline_name(),
            self.pending_for
        )
    }
}

/// A set of pollers and stuck-fence watches for foreign fences.
///
/// ```
/// use bufsync::fence::{alloc_contexts, engine::Engine, Fence};
/// use std::time::{Duration, Instant};
///
/// let engine = Engine::new(); // driven by the caller: no thread
/// engine.set_stuck_threshold(Duration::from_millis(1));
/// let fence = Fence::software(alloc_contexts(1), 1);
/// engine.watch(&fence);
/// engine.run_once(Instant::now() + Duration::from_millis(2));
/// // Reported, never signaled: only its producer does that.
/// assert_eq!(engine.stuck().len(), 1);
/// assert!(!fence.is_signaled());
/// fence.signal().unwrap();
/// assert_eq!(engine.watched(), 0);
/// ```
#[derive(Clone)]
pub struct Engine(Arc<Shared>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Engine")
            .field("watched", &s.table.live)
            .field("due", &s.table.heap.len())
            .field("stuck_threshold", &s.stuck_threshold)
            .finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// An engine driven by the caller (no thread, no waker): call
    /// [`run_once`](Engine::run_once) at [`next_wakeup`](Engine::next_wakeup),
    /// and look again after registering fences.
    pub fn new() -> Engine {
        Engine::build(None)
    }

    /// An engine driven by the caller's event loop: `waker` is called (from
    /// the registering thread, with no lock held) whenever
    /// [`next_wakeup`](Engine::next_wakeup) moves earlier, e.g. to re-arm a
    /// timerfd. It must not block.
    pub fn with_waker(waker: impl Fn() + Send + Sync + 'static) -> Engine {
        Engine::build(Some(Box::new(waker)))
    }

    fn build(waker: Option<Waker>) -> Engine {
        Engine(Arc::new(Shared {
            state: Mutex::new(State {
                table: Table::new(),
                next_id: 0,
                stuck_threshold: DEFAULT_STUCK_THRESHOLD,
            }),
            cond: Condvar::new(),
            waker,
        }))
    }

    fn lock(&self) -> Locked<'_> {
        self.0.lock()
    }

    /// Sets how long a watched fence may stay pending before it is reported
    /// as stuck; applies to fences registered from now on. Lock: the engine
    /// lock.
    pub fn set_stuck_threshold(&self, t: Duration) {
        self.lock().stuck_threshold = t;
    }

    /// How long a watched fence may stay pending before it is reported.
    pub fn stuck_threshold(&self) -> Duration {
        self.lock().stuck_threshold
    }

    fn register(&self, fence: &Fence, polled: bool) -> (usize, u64) {
        let now = Instant::now();
        let (idx, id, earlier) = {
            let mut s = self.lock();
            let id = s.next_id;
            s.next_id += 1;
            let stuck = s.stuck_threshold;
            let before = s.table.next_wakeup();
            let idx = s.table.insert(fence.clone(), id, now, stuck, polled);
            let after = s.table.next_wakeup();
            (
                idx,
                id,
                after.is_some() && (before.is_none() || after < before),
            )
        };
        if earlier {
            self.0.notify();
        }
        (idx, id)
    }

    /// Watches a pending foreign fence: it is reported (logged once, listed
    /// by [`stuck`](Engine::stuck)) if still pending after the stuck
    /// threshold, and is never signaled here. The engine holds the fence
    /// only while it is pending: a fence callback drops the entry when the
    /// fence signals. Adding that callback enables signaling on the fence
    /// (as `dma_fence_add_callback` does); kinds call this from their
    /// `enable_signaling`. Lock: the engine lock, briefly (twice if the
    /// fence signals meanwhile).
    pub fn watch(&self, fence: &Fence) {
        if fence.test_signaled_flag() {
            return;
        }
        let (idx, id) = self.register(fence, false);
        let engine: Weak<Shared> = Arc::downgrade(&self.0);
        // Runs on the signaling thread with no fence lock held; allocates
        // nothing. The removed handle is dropped after the engine lock.
        let on_signal = move |_: &Fence| {
            if let Some(shared) = engine.upgrade() {
                let removed = shared.lock().table.remove_if(idx, id);
                drop(removed);
            }
        };
        if fence.add_callback(on_signal).is_err() {
            // Signaled meanwhile.
            let removed = self.lock().table.remove_if(idx, id);
            drop(removed);
        }
    }

    /// Polls `fence`'s kind (`poll_signaled`) with back-off until it reports
    /// signaled, with no time limit (a waiter bounds its own wait), and
    /// watches it like [`watch`](Engine::watch). The poller drops the fence
    /// at the first tick that finds it signaled (polled or signaled
    /// elsewhere), at most 5 ms after the signal; no callback is added, so
    /// signaling is not enabled here (the runtime calls this from
    /// `Fence::enable_signaling` for kinds that need polling). Lock: the
    /// engine lock, briefly.
    pub fn watch_polled(&self, fence: &Fence) {
        if fence.test_signaled_flag() {
            return;
        }
        self.register(fence, true);
    }

    /// Number of fences the engine holds (watched and polled).
    pub fn watched(&self) -> usize {
        self.lock().table.live
    }

    /// The fences reported as stuck that are still pending, oldest first.
    /// Lock: the engine lock, briefly (handles are cloned under it).
    pub fn stuck(&self) -> Vec<StuckFence> {
        let now = Instant::now();
        let mut out: Vec<StuckFence> = {
            let s = self.lock();
            s.table
                .slots
                .iter()
                .filter(|slot| slot.warn_at.is_none())
                .filter_map(|slot| {
                    slot.fence.as_ref().map(|f| StuckFence {
                        fence: f.clone(),
                        pending_for: now.saturating_duration_since(slot.since),
                    })
                })
                .collect()
        };
        out.retain(|s| !s.fence.test_signaled_flag());
        out.sort_by_key(|s| std::cmp::Reverse(s.pending_for));
        out
    }

    /// When [`run_once`](Engine::run_once) next has work; `None` if idle.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.lock().table.next_wakeup()
    }

    /// Does the work due at `now`: polls due pollers, reports fences that
    /// became stuck, drops signaled entries. Returns the next wake-up time.
    /// Lock: the engine lock, never held while polling, logging or dropping
    /// a fence handle. Never signals a fence except through a kind's
    /// `poll_signaled` saying its producer has.
    pub fn run_once(&self, now: Instant) -> Option<Instant> {
        let mut done: Vec<Fence> = Vec::new();
        let mut to_poll: Vec<(usize, u64, Fence)> = Vec::new();
        let mut reports: Vec<StuckFence> = Vec::new();
        {
            let mut s = self.lock();
            let t = &mut s.table;
            while let Some(&top) = t.heap.first() {
                if t.slots[top].due().is_some_and(|d| d > now) {
                    break;
                }
                if t.signaled(top) {
                    done.extend(t.remove(top));
                    continue;
                }
                t.heap_remove(top);
                let slot = &mut t.slots[top];
                let (id, since) = (slot.id, slot.since);
                let Some(fence) = slot.fence.clone() else {
                    continue;
                };
                if let Some(p) = slot.poll.as_mut() {
                    if p.next <= now {
                        p.interval = (p.interval * 2).min(MAX_POLL);
                        p.next = now + p.interval;
                        to_poll.push((top, id, fence.clone()));
                    }
                }
                if slot.warn_at.is_some_and(|w| w <= now) {
                    slot.warn_at = None;
                    reports.push(StuckFence {
                        fence,
                        pending_for: now.saturating_duration_since(since),
                    });
                }
                t.heap_push(top);
            }
        }
        drop(done);
        for r in &reports {
            log::warn!(
                "{r}: still not signaled by its producer (waits on it time out; it stays pending)"
            );
        }
        drop(reports);
        if to_poll.is_empty() {
            return self.next_wakeup();
        }
        for (_, _, f) in &to_poll {
            // `is_signaled` asks the kind's hook and signals on success.
            f.is_signaled();
        }
        let mut done = Vec::new();
        let next = {
            let mut s = self.lock();
            for (idx, id, f) in &to_poll {
                if f.test_signaled_flag() {
                    done.extend(s.table.remove_if(*idx, *id));
                }
            }
            s.table.next_wakeup()
        };
        drop(done);
        drop(to_poll);
        next
    }

    fn thread_main(self) {
        loop {
            let next = self.run_once(Instant::now());
            let s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
            // Re-check under the lock: a registration may have come in.
            let next = match (next, s.table.next_wakeup()) {
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

    /// Appends one line per stuck fence to `out` (the dump's format).
    fn write_stuck(&self, out: &mut String) {
        let stuck = self.stuck();
        if stuck.is_empty() {
            return;
        }
        let _ = writeln!(out, "stuck fences ({}):", stuck.len());
        for s in stuck {
            let _ = writeln!(out, "  {s}");
        }
    }
}

static GLOBAL: OnceLock<Engine> = OnceLock::new();

/// The process-wide engine. Unless [`drive_externally`] was called first,
/// its thread (`bufsync-fence-engine`) starts on first use.
pub fn global() -> &'static Engine {
    GLOBAL.get_or_init(|| {
        let engine = Engine::new();
        let runner = engine.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("bufsync-fence-engine".into())
            .spawn(move || runner.thread_main())
        {
            log::error!("cannot start the fence engine thread: {e}; polled fences progress only through run_once");
        }
        engine
    })
}

/// The process-wide engine was already in use (its thread started) when
/// [`drive_externally`] was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the global fence engine is already running")]
pub struct AlreadyRunning;

/// Makes the process-wide engine thread-less: the caller's event loop drives
/// it with [`Engine::run_once`] at [`Engine::next_wakeup`], and `waker` is
/// called (from any thread, no lock held, must not block) when that time
/// moves earlier. Must come before anything uses the engine:
/// [`AlreadyRunning`] otherwise.
pub fn drive_externally(
    waker: impl Fn() + Send + Sync + 'static,
) -> Result<&'static Engine, AlreadyRunning> {
    let mut ours = Some(Engine::with_waker(waker));
    let engine = GLOBAL.get_or_init(|| ours.take().unwrap_or_default());
    if ours.is_some() {
        return Err(AlreadyRunning);
    }
    Ok(engine)
}

/// Watches `fence` on the [`global`] engine (see [`Engine::watch`]).
pub fn watch(fence: &Fence) {
    global().watch(fence);
}

/// Hands a polled kind's fence to the [`global`] engine's poller (see
/// [`Engine::watch_polled`]).
pub fn watch_polled(fence: &Fence) {
    global().watch_polled(fence);
}

/// The stuck fences of the global engine (empty if it was never used).
pub fn stuck() -> Vec<StuckFence> {
    GLOBAL.get().map(Engine::stuck).unwrap_or_default()
}

/// Appends the global engine's stuck fences to a dump (nothing if it was
/// never used: the dump does not start the engine).
pub(crate) fn write_stuck(out: &mut String) {
    if let Some(e) = GLOBAL.get() {
        e.write_stuck(out);
    }
}
