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
//! Retention: the engine holds a watched fence only while it is pending.
//! [`Engine::watch_deadline`] adds a fence callback that takes the entry out
//! when the fence signals, so the engine's handle is dropped on the
//! signaling thread at once (no allocation there: the callback was boxed at
//! registration, entries live in a slab with an intrusive free list and an
//! indexed heap, removal is O(log n)). Polled fences are dropped by the
//! poller at the first tick that finds them signaled (at most the poll
//! interval, 5 ms, after the signal), deadline entry included.
//!
//! Locking: `state` (a `Mutex`, counted as a fence-internal lock in debug
//! builds) guards both lists; it is never held while a fence is signaled, a
//! kind's hook runs or a fence handle is dropped: due work and removed
//! handles are moved out first. It is a leaf lock: nothing else is taken
//! under it. The engine uses std primitives (it is not part of the loom
//! models).

use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::rules::LockDepth;
use super::{Fence, FenceError};

/// Default bound on how long a foreign (polled) fence may stay pending.
pub const DEFAULT_FOREIGN_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_POLL: Duration = Duration::from_micros(50);
const MAX_POLL: Duration = Duration::from_millis(5);
/// End of the slab's free list.
const NIL: usize = usize::MAX;

struct Poll {
    next: Instant,
    interval: Duration,
    /// Index of this slot in `Table::polled`.
    pos: usize,
}

/// One watched fence: a deadline, and a poller for polled kinds.
struct Slot {
    /// `None` while the slot is free.
    fence: Option<Fence>,
    /// Registration number: the heap's tie-break, and what a removal callback
    /// checks so that it never takes a reused slot's entry.
    id: u64,
    at: Instant,
    /// Index of this slot in `Table::heap`.
    heap_pos: usize,
    poll: Option<Poll>,
    /// Next free slot while this one is free.
    next_free: usize,
}

/// The watched fences: a slab of slots, a min-heap of slot indices ordered by
/// `(at, id)` that knows each slot's position (so any entry can be removed in
/// O(log n)), and the list of polled slots. Removal allocates nothing.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: usize,
    heap: Vec<usize>,
    polled: Vec<usize>,
}

impl Table {
    fn new() -> Table {
        Table {
            free: NIL,
            ..Table::default()
        }
    }

    fn insert(&mut self, fence: Fence, id: u64, at: Instant, poll: Option<Instant>) -> usize {
        let heap_pos = self.heap.len();
        let idx = if self.free != NIL {
            self.free
        } else {
            self.slots.len()
        };
        let poll = poll.map(|next| Poll {
            next,
            interval: FIRST_POLL,
            pos: self.polled.len(),
        });
        let slot = Slot {
            fence: Some(fence),
            id,
            at,
            heap_pos,
            poll,
            next_free: NIL,
        };
        if idx == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.free = self.slots[idx].next_free;
            self.slots[idx] = slot;
        }
        if self.slots[idx].poll.is_some() {
            self.polled.push(idx);
        }
        self.heap.push(idx);
        self.sift_up(heap_pos);
        idx
    }

    /// Takes the entry out of the heap and the poll list and frees its slot;
    /// returns its fence, to be dropped by the caller after unlocking.
    fn remove(&mut self, idx: usize) -> Option<Fence> {
        let slot = &mut self.slots[idx];
        let fence = slot.fence.take()?;
        let (heap_pos, poll) = (slot.heap_pos, slot.poll.take());
        slot.next_free = self.free;
        self.free = idx;
        if let Some(p) = poll {
            self.polled.swap_remove(p.pos);
            if let Some(&moved) = self.polled.get(p.pos) {
                if let Some(mp) = self.slots[moved].poll.as_mut() {
                    mp.pos = p.pos;
                }
            }
        }
        let last = self.heap.len() - 1;
        self.swap(heap_pos, last);
        self.heap.pop();
        if heap_pos < self.heap.len() {
            self.sift_down(heap_pos);
            self.sift_up(heap_pos);
        }
        Some(fence)
    }

    /// Removes slot `idx` if it still holds registration `id`.
    fn remove_if(&mut self, idx: usize, id: u64) -> Option<Fence> {
        match self.slots.get(idx) {
            Some(s) if s.fence.is_some() && s.id == id => self.remove(idx),
            _ => None,
        }
    }

    fn fence_signaled(&self, idx: usize) -> bool {
        match &self.slots[idx].fence {
            Some(f) => f.test_signaled_flag(),
            None => true,
        }
    }

    fn key(&self, heap_pos: usize) -> (Instant, u64) {
        let s = &self.slots[self.heap[heap_pos]];
        (s.at, s.id)
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
        let d = self.heap.first().map(|&i| self.slots[i].at);
        let p = self
            .polled
            .iter()
            .filter_map(|&i| self.slots[i].poll.as_ref().map(|p| p.next))
            .min();
        match (d, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the polled entries whose fence has signaled into `done`.
    fn prune_polled(&mut self, done: &mut Vec<Fence>) {
        let mut i = 0;
        while i < self.polled.len() {
            let idx = self.polled[i];
            if self.fence_signaled(idx) {
                // `remove` swaps the last polled entry into place `i`.
                done.extend(self.remove(idx));
            } else {
                i += 1;
            }
        }
    }
}

struct State {
    table: Table,
    next_id: u64,
    default_timeout: Duration,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
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
}

/// A set of deadlines and pollers for foreign fences.
#[derive(Clone)]
pub struct Engine(Arc<Shared>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Engine")
            .field("deadlines", &s.table.heap.len())
            .field("polled", &s.table.polled.len())
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
                table: Table::new(),
                next_id: 0,
                default_timeout: DEFAULT_FOREIGN_TIMEOUT,
            }),
            cond: Condvar::new(),
        }))
    }

    fn lock(&self) -> Locked<'_> {
        self.0.lock()
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
    /// at `at`. The engine holds the fence only while it is pending: a fence
    /// callback drops the entry when the fence signals. Adding that callback
    /// enables signaling on the fence (as `dma_fence_add_callback` does).
    /// Lock: the engine lock, briefly (twice if the fence signals meanwhile).
    pub fn watch_deadline(&self, fence: &Fence, at: Instant) {
        if fence.test_signaled_flag() {
            return;
        }
        let (idx, id) = {
            let mut s = self.lock();
            let id = s.next_id;
            s.next_id += 1;
            (s.table.insert(fence.clone(), id, at, None), id)
        };
        self.0.cond.notify_one();
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
            // Signaled meanwhile (or enabling failed and signaled it).
            let removed = self.lock().table.remove_if(idx, id);
            drop(removed);
        }
    }

    /// Polls `fence`'s kind (`poll_signaled`) with back-off until it reports
    /// signaled, and bounds it with `deadline` (or the default timeout). The
    /// poller drops the fence at the first tick that finds it signaled
    /// (polled or signaled elsewhere), at most 5 ms after the signal; no
    /// callback is added, so signaling is not enabled here (kinds call this
    /// from their `enable_signaling`). Lock: the engine lock, briefly.
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
            s.table
                .insert(fence.clone(), id, at, Some(now + FIRST_POLL));
        }
        self.0.cond.notify_one();
    }

    /// Number of entries the engine still holds: deadlines plus pollers (a
    /// polled fence counts twice, it has both).
    pub fn watched(&self) -> usize {
        let s = self.lock();
        s.table.heap.len() + s.table.polled.len()
    }

    /// When [`run_once`](Engine::run_once) next has work; `None` if idle.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.lock().table.next_wakeup()
    }

    /// Does the work due at `now`: polls due pollers, times out expired
    /// fences, drops signaled entries. Returns the next wake-up time.
    /// Lock: the engine lock, never held while polling, signaling or
    /// dropping a fence handle.
    pub fn run_once(&self, now: Instant) -> Option<Instant> {
        let mut expired = Vec::new();
        let mut to_poll = Vec::new();
        let mut done = Vec::new();
        let next = {
            let mut s = self.lock();
            let t = &mut s.table;
            while let Some(&top) = t.heap.first() {
                let signaled = t.fence_signaled(top);
                if t.slots[top].at > now && !signaled {
                    break;
                }
                let fence = t.remove(top);
                if signaled {
                    done.extend(fence);
                } else {
                    expired.extend(fence);
                }
            }
            t.prune_polled(&mut done);
            for &idx in &t.polled {
                let slot = &mut t.slots[idx];
                if let (Some(f), Some(p)) = (&slot.fence, slot.poll.as_mut()) {
                    if p.next <= now {
                        to_poll.push(f.clone());
                        p.interval = (p.interval * 2).min(MAX_POLL);
                        p.next = now + p.interval;
                    }
                }
            }
            t.next_wakeup()
        };
        drop(done);
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
        if to_poll.is_empty() && expired.is_empty() {
            return next;
        }
        drop(to_poll);
        drop(expired);
        let mut done = Vec::new();
        let next = {
            let mut s = self.lock();
            s.table.prune_polled(&mut done);
            s.table.next_wakeup()
        };
        drop(done);
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
/// (on the [`global`] engine), holding it only while it is pending.
pub fn watch_deadline(fence: &Fence, at: Instant) {
    global().watch_deadline(fence, at);
}

/// Hands a polled kind's fence to the [`global`] engine's poller, bounded by
/// the engine's default timeout.
pub fn watch_polled(fence: &Fence) {
    global().watch_polled(fence, None);
}
