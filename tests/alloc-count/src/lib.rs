//! A counting global allocator for allocation budgets in tests and benches.
//!
//! [`Counting`] forwards every call to the system allocator and counts, per
//! thread, the calls that hand out memory (`alloc`, `alloc_zeroed`,
//! `realloc`). Per thread, so tests running in parallel in one binary do not
//! count each other's allocations. Install it in the test or bench binary:
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: bufsync_alloc_count::Counting = bufsync_alloc_count::Counting;
//!
//! fn main() {
//!     let mut v: Vec<u32> = Vec::with_capacity(4);
//!     assert_eq!(bufsync_alloc_count::allocations_in(|| v.push(1)), 0);
//!     assert_eq!(bufsync_alloc_count::allocations_in(|| v.extend([2, 3, 4, 5])), 1);
//! }
//! ```
//!
//! This is test support, kept out of the runtime (which has no `unsafe`):
//! a global allocator is an `unsafe` trait.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator; install it with `#[global_allocator]`.
pub struct Counting;

thread_local! {
    /// No destructor, so reaching it from the allocator cannot allocate or
    /// recurse.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down still allocates.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged, with the
// caller's arguments; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from `System`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// How many allocations this thread has made so far (0 unless [`Counting`]
/// is the global allocator).
pub fn thread_allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

/// How many allocations `f` makes on this thread.
pub fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = thread_allocations();
    f();
    thread_allocations() - before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    #[test]
    fn counts_this_threads_allocations_only() {
        assert_eq!(allocations_in(|| drop(Box::new(1u64))), 1);
        assert_eq!(allocations_in(|| ()), 0);
        let other = allocations_in(|| {
            std::thread::scope(|s| {
                s.spawn(|| drop(std::hint::black_box(vec![0u8; 64])));
            })
        });
        // Spawning allocates here; the vector is the other thread's.
        let mut v = Vec::with_capacity(1);
        let grown = allocations_in(|| v.extend([1u8, 2, 3]));
        assert_eq!(grown, 1);
        assert!(other >= 1);
    }
}
