//! The fence handle: one atomic state word, a callback/waiter list and a condvar.
//!
//! Locking rules for this file:
//! - `state` (one `AtomicU64`) holds SIGNALED, ENABLED, LISTED and the error;
//!   `is_signaled` is one Acquire load of it on the fast path.
//! - `list` (a `Mutex`) guards the callbacks and the sleeper count. It is
//!   taken by `add_callback`, `remove_callback` and the waits; `signal` takes
//!   it only when LISTED was set, i.e. someone may be on the list.
//!   LISTED is set only with `list` held; it is cleared only with `list` held
//!   and the list empty, so a signaler that saw it clear owes nobody a wake-up.
//! - The first callback lives inline in the list (no vector, so the usual
//!   single callback costs one allocation: its box).
//! - `running` (an atomic: RUNNING, WAITER) says the signal path took the
//!   callbacks and runs them. RUNNING is set with `list` held and cleared by
//!   the signaler without it (one swap, which clears WAITER too);
//!   `wait_callbacks` sets WAITER with `list` held before it sleeps, and a
//!   signaler whose clear saw WAITER takes `list` once to wake it.
//! - No user callback and no `FenceKind` hook runs with `list` held.
//! - `signal` with LISTED clear is one atomic RMW and one store: no lock, no
//!   allocation. With LISTED set it takes `list` once, moves the callbacks out
//!   (no allocation), notifies sleepers and runs the callbacks unlocked.
//! - Callback ids are unique in the process (per-thread blocks of a global
//!   counter), so an id can only ever match the callback it was made for.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::error::ERR_BITS;
use super::kind::{FenceKind, SoftwareKind};
use super::rules::{self, LockDepth};
use super::{engine, AlreadySignaled, FenceError, FenceStatus, SignalError};
use crate::sync::{Arc, AtomicU32, AtomicU64, Condvar, Mutex, MutexGuard, Ordering};

/// The fence has been signaled (the kernel's `DMA_FENCE_FLAG_SIGNALED_BIT`).
const SIGNALED: u64 = 1;
/// `enable_signaling` has been called (`DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT`).
const ENABLED: u64 = 2;
/// Someone may be on the callback/waiter list: `signal` must lock it.
pub(super) const LISTED: u64 = 4;

/// `Inner::running`: the signal path took the callbacks and runs them.
pub(super) const RUNNING: u32 = 1;
/// `Inner::running`: a `wait_callbacks` caller may sleep until RUNNING clears.
pub(super) const WAITER: u32 = 2;

/// Identifies one callback added with [`Fence::add_callback`].
///
/// Ids are unique in the process: an id only ever matches the callback it
/// was returned for, so [`Fence::remove_callback`] with an id of another
/// fence (or of a fence long gone) removes nothing and returns false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

impl CallbackId {
    /// The id as a plain number (never 0), for bindings that hand it out
    /// (the C API).
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// An id from [`to_raw`](CallbackId::to_raw). An id that no callback of
    /// the fence has is harmless: [`Fence::remove_callback`] returns false.
    pub fn from_raw(raw: u64) -> CallbackId {
        CallbackId(raw)
    }
}

/// A process-wide unique callback id. No lock; one RMW on a global counter
/// per 65536 ids of a thread (each thread takes a block).
fn next_callback_id() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
    const BLOCK: u64 = 1 << 16;
    // Ids start at BLOCK: no id is 0.
    static NEXT_BLOCK: StdAtomicU64 = StdAtomicU64::new(BLOCK);
    thread_local! {
        static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    RANGE.with(|r| {
        let (next, end) = r.get();
        let (id, end) = if next < end {
            (next, end)
        } else {
            let base = NEXT_BLOCK.fetch_add(BLOCK, StdOrdering::Relaxed);
            (base, base + BLOCK)
        };
        r.set((id + 1, end));
        id
    })
}

type BoxedCallback = Box<dyn FnOnce(&Fence) + Send + 'static>;

pub(super) struct Callback {
    id: u64,
    f: BoxedCallback,
}

/// The callbacks of a fence, in the order added, and its sleeper count.
#[derive(Default)]
pub(super) struct List {
    /// The oldest callback, inline; `None` when `rest` holds the oldest (the
    /// first was removed) or there is none.
    first: Option<Callback>,
    /// Callbacks added after `first`, in order.
    rest: Vec<Callback>,
    pub(super) sleepers: usize,
}

impl List {
    /// True if no callback waits to be taken.
    pub(super) fn no_callbacks(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    #[inline]
    fn push(&mut self, cb: Callback) {
        if self.no_callbacks() {
            self.first = Some(cb);
        } else {
            self.rest.push(cb);
        }
    }

    fn remove(&mut self, id: u64) -> Option<Callback> {
        if self.first.as_ref().is_some_and(|c| c.id == id) {
            return self.first.take();
        }
        let i = self.rest.iter().position(|c| c.id == id)?;
        Some(self.rest.remove(i))
    }
}

pub(crate) struct Inner {
    pub(super) state: AtomicU64,
    /// Nanoseconds since [`epoch`] plus one; 0 until the signaler stores it.
    timestamp: AtomicU64,
    context: u64,
    seqno: u64,
    /// Not the plain software kind: `is_signaled` consults `poll_signaled`.
    polls: bool,
    /// The kind's `is_64bit`, read once (`is_later` is on hot paths).
    seqno64: bool,
    /// `None`: the default software kind (no shared refcount to bump).
    kind: Option<std::sync::Arc<dyn FenceKind>>,
    list: Mutex<List>,
    /// RUNNING and WAITER (see the file's locking rules).
    pub(super) running: AtomicU32,
    pub(super) cond: Condvar,
}

/// A cheap, cloneable handle to a one-shot completion event (`struct dma_fence`).
///
/// A fence belongs to a context (a timeline) and carries a 64-bit seqno;
/// fences of one context signal in seqno order. It is signaled exactly once,
/// optionally with an error set before (or with) the signal.
#[derive(Clone)]
pub struct Fence(pub(super) Arc<Inner>);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_stamp() -> u64 {
    stamp_of(Instant::now())
}

/// `at` as stored in `Inner::timestamp`: nanoseconds since [`epoch`] plus one.
/// In `u64` arithmetic (`as_nanos` is a `u128` multiply); saturates after
/// 584 years.
#[inline]
pub(super) fn stamp_of(at: Instant) -> u64 {
    let d = at.saturating_duration_since(epoch());
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
        .saturating_add(1)
}

/// The instant a stamp (see [`stamp_of`]) stands for.
pub(super) fn instant_of(stamp: u64) -> Instant {
    epoch() + Duration::from_nanos(stamp.saturating_sub(1))
}

/// The kind of fences made by [`Fence::software`].
static DEFAULT_KIND: SoftwareKind = SoftwareKind::new_static("bufsync", "software");

pub(super) struct ListGuard<'a> {
    pub(super) guard: MutexGuard<'a, List>,
    _depth: LockDepth,
}

impl Fence {
    /// A pending fence of `kind` on `context` with `seqno` (`dma_fence_init`).
    pub fn new(kind: std::sync::Arc<dyn FenceKind>, context: u64, seqno: u64) -> Fence {
        let polls = !kind.as_any().is::<SoftwareKind>();
        Fence::with_kind(Some(kind), polls, context, seqno)
    }

    fn with_kind(
        kind: Option<std::sync::Arc<dyn FenceKind>>,
        polls: bool,
        context: u64,
        seqno: u64,
    ) -> Fence {
        let seqno64 = kind.as_ref().map_or(true, |k| k.is_64bit());
        Fence(Arc::new(Inner {
            state: AtomicU64::new(0),
            timestamp: AtomicU64::new(0),
            context,
            seqno,
            polls,
            seqno64,
            kind,
            list: Mutex::new(List {
                first: None,
                rest: Vec::new(),
                sleepers: 0,
            }),
            running: AtomicU32::new(0),
            cond: Condvar::new(),
        }))
    }

    /// A pending plain software fence (signaled only by [`signal`](Fence::signal)).
    pub fn software(context: u64, seqno: u64) -> Fence {
        Fence::with_kind(None, false, context, seqno)
    }

    /// A fence that is already signaled (no error), timestamped now.
    pub fn signaled(context: u64, seqno: u64) -> Fence {
        let f = Fence::software(context, seqno);
        f.0.state.store(SIGNALED | ENABLED, Ordering::Release);
        f.0.timestamp.store(now_stamp(), Ordering::Release);
        f
    }

    /// An already-signaled fence on context 0 (`dma_fence_get_stub`).
    pub fn stub() -> Fence {
        Fence::signaled(0, 0)
    }

    /// The fence's context (`fence->context`).
    pub fn context(&self) -> u64 {
        self.0.context
    }

    /// The fence's sequence number within its context (`fence->seqno`).
    pub fn seqno(&self) -> u64 {
        self.0.seqno
    }

    /// The kind's driver name (`get_driver_name`), for diagnostics.
    pub fn driver_name(&self) -> &str {
        self.kind_ref().driver_name()
    }

    /// The kind's timeline name (`get_timeline_name`), for diagnostics.
    pub fn timeline_name(&self) -> &str {
        self.kind_ref().timeline_name()
    }

    /// The fence's kind.
    pub fn kind(&self) -> &dyn FenceKind {
        self.kind_ref()
    }

    #[inline]
    fn kind_ref(&self) -> &dyn FenceKind {
        match &self.0.kind {
            Some(k) => &**k,
            None => &DEFAULT_KIND,
        }
    }

    /// Downcasts the kind to a backend's own type, for native forms
    /// (a sync_file fd, a Vulkan timeline point).
    pub fn kind_as<K: FenceKind>(&self) -> Option<&K> {
        self.kind_ref().as_any().downcast_ref::<K>()
    }

    /// Number of handles to this fence.
    pub(crate) fn strong_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// True if both handles are the same fence.
    pub fn ptr_eq(&self, other: &Fence) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The fence's address: equal for two live handles exactly when
    /// [`Fence::ptr_eq`] is; aligned to 8, so the low 3 bits are free.
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// True once signaled (`dma_fence_is_signaled`): one Acquire load when
    /// signaled; on a pending fence of a polled kind, asks the kind's
    /// `poll_signaled` hook and signals the fence if it says so. No lock.
    #[inline]
    pub fn is_signaled(&self) -> bool {
        if self.0.state.load(Ordering::Acquire) & SIGNALED != 0 {
            return true;
        }
        self.poll_slow()
    }

    /// True if the signaled bit is set, without polling the kind
    /// (`dma_fence_test_signaled_flag`). No lock.
    #[inline]
    pub fn test_signaled_flag(&self) -> bool {
        self.0.state.load(Ordering::Acquire) & SIGNALED != 0
    }

    #[cold]
    fn poll_slow(&self) -> bool {
        if !self.0.polls {
            return false;
        }
        if self.kind_ref().poll_signaled(self) {
            // The kind may have signaled (with an error) itself: ignore a double signal.
            let _ = self.signal();
            return true;
        }
        false
    }

    /// The fence's status (`dma_fence_get_status`); polls like
    /// [`is_signaled`](Fence::is_signaled). No lock.
    pub fn status(&self) -> FenceStatus {
        if !self.is_signaled() {
            return FenceStatus::Pending;
        }
        match FenceError::decode(self.0.state.load(Ordering::Acquire)) {
            None => FenceStatus::Signaled,
            Some(e) => FenceStatus::Error(e),
        }
    }

    /// The error set on the fence, signaled or not. No lock.
    pub fn error(&self) -> Option<FenceError> {
        FenceError::decode(self.0.state.load(Ordering::Acquire))
    }

    /// When the fence was signaled (`fence->timestamp`); `None` while pending.
    /// No lock (may spin for the few instructions between a concurrent
    /// signaler's state change and its timestamp store).
    pub fn timestamp(&self) -> Option<Instant> {
        self.stamp().map(instant_of)
    }

    /// The raw timestamp (see [`stamp_of`]): `None` while pending. Same
    /// waiting rule as [`timestamp`](Fence::timestamp).
    pub(super) fn stamp(&self) -> Option<u64> {
        if !self.test_signaled_flag() {
            return None;
        }
        loop {
            let ts = self.0.timestamp.load(Ordering::Acquire);
            if ts != 0 {
                return Some(ts);
            }
            std::hint::spin_loop();
            crate::sync::thread::yield_now();
        }
    }

    /// Sets the error the fence will signal with (`dma_fence_set_error`).
    /// Must come before the signal: on a signaled fence it is ignored (and
    /// logged), as the kernel warns. No lock.
    pub fn set_error(&self, e: FenceError) {
        let bits = e.encode();
        let mut cur = self.0.state.load(Ordering::Relaxed);
        loop {
            if cur & SIGNALED != 0 {
                log::warn!(
                    "set_error({e}) on signaled fence {}:{} ignored",
                    self.context(),
                    self.seqno()
                );
                return;
            }
            let new = (cur & !ERR_BITS) | bits;
            match self
                .0
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Signals the fence (`dma_fence_signal`), with the error set earlier if
    /// any. A second signal is an error and changes nothing.
    ///
    /// Lock: none with no waiter and no callback (one atomic RMW, one store,
    /// no allocation); otherwise takes the fence's list lock once, and runs
    /// the callbacks after releasing it, in the order they were added.
    #[inline]
    pub fn signal(&self) -> Result<(), SignalError> {
        let prev = self.0.state.fetch_or(SIGNALED, Ordering::AcqRel);
        self.after_signal(prev, now_stamp)
    }

    /// Signals the fence with a timestamp the caller already has
    /// (`dma_fence_signal_timestamp`): the completion time a device reported,
    /// or one clock read shared by a batch of fences, sparing the clock read
    /// that dominates [`signal`](Fence::signal). A time before the first
    /// timestamp the runtime took is clamped to it (timestamps count from
    /// there). Same locking and errors as `signal`.
    #[inline]
    pub fn signal_timestamp(&self, at: Instant) -> Result<(), SignalError> {
        let prev = self.0.state.fetch_or(SIGNALED, Ordering::AcqRel);
        self.after_signal(prev, || stamp_of(at))
    }

    /// Signals the fence with error `e` (`dma_fence_set_error` + `dma_fence_signal`
    /// in one step). Same locking as [`signal`](Fence::signal).
    pub fn signal_with_error(&self, e: FenceError) -> Result<(), SignalError> {
        let bits = e.encode();
        let mut cur = self.0.state.load(Ordering::Relaxed);
        let prev = loop {
            if cur & SIGNALED != 0 {
                break cur;
            }
            let new = (cur & !ERR_BITS) | bits | SIGNALED;
            match self
                .0
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(prev) => break prev,
                Err(actual) => cur = actual,
            }
        };
        self.after_signal(prev, now_stamp)
    }

    /// The rest of a signal whose state RMW returned `prev`: the double-signal
    /// check, the timestamp (read from `stamp` only for a first signal), the
    /// waiters and callbacks.
    #[inline]
    fn after_signal(&self, prev: u64, stamp: impl FnOnce() -> u64) -> Result<(), SignalError> {
        if prev & SIGNALED != 0 {
            return Err(SignalError::AlreadySignaled {
                context: self.0.context,
                seqno: self.0.seqno,
            });
        }
        let depth = rules::signal_enter();
        self.0.timestamp.store(stamp(), Ordering::Release);
        if prev & LISTED != 0 {
            self.signal_slow();
        }
        rules::signal_restore(depth);
        Ok(())
    }

    #[cold]
    fn signal_slow(&self) {
        let (first, rest, wake) = {
            let mut g = self.lock();
            let list = &mut g.guard;
            let first = list.first.take();
            let rest = std::mem::take(&mut list.rest);
            if first.is_some() || !rest.is_empty() {
                // Only this thread clears RUNNING, and WAITER is set under
                // `list`: a plain store keeps WAITER.
                let r = self.0.running.load(Ordering::Relaxed);
                self.0.running.store(r | RUNNING, Ordering::Relaxed);
            }
            (first, rest, list.sleepers > 0)
        };
        if wake {
            self.0.cond.notify_all();
        }
        if first.is_none() && rest.is_empty() {
            return;
        }
        // Callbacks are part of the signal path: they too must not take
        // a reservation lock (`in_signal_path()` stays true here).
        rules::assert_no_internal_lock();
        if let Some(cb) = first {
            (cb.f)(self);
        }
        for cb in rest {
            (cb.f)(self);
        }
        // One swap clears both bits (a `fetch_and` whose result is used is a
        // CAS loop): a waiter that sets WAITER after it sees RUNNING clear.
        if self.0.running.swap(0, Ordering::AcqRel) & WAITER != 0 {
            // A `wait_callbacks` caller set WAITER under `list` and sleeps
            // (or is about to): taking `list` orders this wake-up after it.
            drop(self.lock());
            self.0.cond.notify_all();
        }
    }

    #[inline]
    pub(super) fn lock(&self) -> ListGuard<'_> {
        let depth = LockDepth::enter();
        let guard = self.0.list.lock().unwrap_or_else(|e| e.into_inner());
        ListGuard {
            guard,
            _depth: depth,
        }
    }

    /// Tells the kind a software waiter exists (`dma_fence_enable_signaling`).
    /// The kind's hook runs at most once and with no lock held; an error from
    /// it signals the fence with that error. Kinds that need polling are
    /// handed to the engine's poller.
    pub fn enable_signaling(&self) {
        let prev = self.0.state.fetch_or(ENABLED, Ordering::AcqRel);
        if prev & (ENABLED | SIGNALED) != 0 {
            return;
        }
        if let Err(e) = self.kind_ref().enable_signaling(self) {
            let _ = self.signal_with_error(e);
            return;
        }
        if self.kind_ref().needs_polling() && !self.is_signaled() {
            engine::watch_polled(self);
        }
    }

    /// Adds a callback run once when the fence signals (`dma_fence_add_callback`).
    /// Enables signaling. On a signaled fence returns [`AlreadySignaled`] and
    /// does not run `f`. Lock: the fence's list lock, briefly; `f` later runs
    /// on the signaling thread with no fence lock held. Allocates `f`'s box
    /// (and, from the second pending callback on, room in a vector).
    #[inline]
    pub fn add_callback(
        &self,
        f: impl FnOnce(&Fence) + Send + 'static,
    ) -> Result<CallbackId, AlreadySignaled> {
        // `is_signaled`, with the poll's call left out for kinds that are
        // never polled (the plain software kind).
        if self.test_signaled_flag() || (self.0.polls && self.poll_slow()) {
            return Err(AlreadySignaled);
        }
        // The plain software kind has no hook and is never polled: its
        // ENABLED bit goes in with LISTED, in one RMW.
        let enable = if self.0.kind.is_none() {
            ENABLED
        } else {
            self.enable_signaling();
            0
        };
        let id = next_callback_id();
        let cb = Callback { id, f: Box::new(f) };
        let mut g = self.lock();
        if self.0.state.fetch_or(LISTED | enable, Ordering::AcqRel) & SIGNALED != 0 {
            drop(g);
            // `cb` (and what `f` owns) is dropped unlocked.
            return Err(AlreadySignaled);
        }
        g.guard.push(cb);
        Ok(CallbackId(id))
    }

    /// Removes a callback that has not run (`dma_fence_remove_callback`).
    /// Returns false once the signal path has taken it (it has run or is
    /// running on the signaling thread), and for an id that another fence
    /// gave out (nothing is removed then). Lock: the fence's list lock.
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        let removed = {
            let mut g = self.lock();
            let cb = g.guard.remove(id.0);
            if cb.is_some() {
                self.maybe_unlist(&g.guard);
            }
            cb
        };
        // The closure (and whatever it owns) is dropped unlocked.
        removed.is_some()
    }

    pub(super) fn maybe_unlist(&self, list: &List) {
        if list.no_callbacks() && list.sleepers == 0 {
            self.0.state.fetch_and(!LISTED, Ordering::AcqRel);
        }
    }

    /// Whether `self` is later than `other` on the same context
    /// (`dma_fence_is_later`). Fences on different contexts are not ordered:
    /// false. 32-bit kinds compare the low 32 bits with wrap-around.
    pub fn is_later(&self, other: &Fence) -> bool {
        if self.0.context != other.0.context {
            return false;
        }
        seqno_is_later(self.0.seqno, other.0.seqno, self.0.seqno64)
    }

    /// The later of two fences on one context (`dma_fence_later`); `None` if
    /// their contexts differ.
    pub fn later<'a>(&'a self, other: &'a Fence) -> Option<&'a Fence> {
        if self.0.context != other.0.context {
            return None;
        }
        Some(if self.is_later(other) { self } else { other })
    }
}

/// `__dma_fence_is_later`: seqno `a` is later than `b`.
pub(crate) fn seqno_is_later(a: u64, b: u64, is_64bit: bool) -> bool {
    if is_64bit {
        a > b
    } else {
        (a as u32).wrapping_sub(b as u32) as i32 > 0
    }
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.state.load(Ordering::Acquire);
        let status = if state & SIGNALED == 0 {
            FenceStatus::Pending
        } else {
            FenceError::decode(state).map_or(FenceStatus::Signaled, FenceStatus::Error)
        };
        f.debug_struct("Fence")
            .field("driver", &self.driver_name())
            .field("timeline", &self.timeline_name())
            .field("context", &self.0.context)
            .field("seqno", &self.0.seqno)
            .field("status", &status)
            .finish()
    }
}

/// Identity: two handles are equal when they are the same fence.
impl PartialEq for Fence {
    fn eq(&self, other: &Fence) -> bool {
        self.ptr_eq(other)
    }
}

impl Eq for Fence {}

impl std::hash::Hash for Fence {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state);
    }
}
