//! Debug-build checks of the fence module's rules.
//!
//! - No user callback runs while a fence-internal lock is held: every internal
//!   lock is taken through [`LockDepth`], and [`assert_no_internal_lock`] is
//!   checked before a callback runs.
//! - The signal path takes no reservation lock: [`in_signal_path`] is true
//!   while a thread is inside `Fence::signal*`, fence callbacks included (as
//!   in the kernel, where callbacks run in the signaling context), and the
//!   reservation code asserts it is false before it locks.
//!
//! The checks compile to nothing in release builds and under loom (whose
//! model threads share one OS thread, so thread-locals would mislead).

#[cfg(all(debug_assertions, not(loom)))]
mod imp {
    use std::cell::Cell;

    thread_local! {
        static LOCK_DEPTH: Cell<u32> = const { Cell::new(0) };
        static SIGNAL_DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    pub(crate) fn lock_enter() {
        LOCK_DEPTH.with(|d| d.set(d.get() + 1));
    }
    pub(crate) fn lock_exit() {
        LOCK_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
    pub(crate) fn assert_no_internal_lock() {
        let depth = LOCK_DEPTH.with(|d| d.get());
        assert!(
            depth == 0,
            "bufsync rule broken: a fence callback would run under an internal lock"
        );
    }
    pub(crate) fn signal_enter() -> u32 {
        SIGNAL_DEPTH.with(|d| {
            let old = d.get();
            d.set(old + 1);
            old
        })
    }
    pub(crate) fn signal_restore(old: u32) {
        SIGNAL_DEPTH.with(|d| d.set(old));
    }
    pub(crate) fn in_signal_path() -> bool {
        SIGNAL_DEPTH.with(|d| d.get() > 0)
    }
}

#[cfg(not(all(debug_assertions, not(loom))))]
mod imp {
    #[inline(always)]
    pub(crate) fn lock_enter() {}
    #[inline(always)]
    pub(crate) fn lock_exit() {}
    #[inline(always)]
    pub(crate) fn assert_no_internal_lock() {}
    #[inline(always)]
    pub(crate) fn signal_enter() -> u32 {
        0
    }
    #[inline(always)]
    pub(crate) fn signal_restore(_old: u32) {}
    #[inline(always)]
    pub(crate) fn in_signal_path() -> bool {
        false
    }
}

pub(crate) use imp::{assert_no_internal_lock, signal_enter, signal_restore};

/// True while the calling thread is inside a fence's signal path (debug builds
/// only; always false in release builds). Code that takes a reservation lock
/// should `debug_assert!(!in_signal_path())`: the kernel forbids taking a
/// reservation lock on the way to signaling a fence.
pub fn in_signal_path() -> bool {
    imp::in_signal_path()
}

/// Marks one fence-internal lock as held for as long as it lives (debug builds).
pub(crate) struct LockDepth(());

impl LockDepth {
    pub(crate) fn enter() -> LockDepth {
        imp::lock_enter();
        LockDepth(())
    }
}

impl Drop for LockDepth {
    fn drop(&mut self) {
        imp::lock_exit();
    }
}
