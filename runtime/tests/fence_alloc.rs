//! The signal path allocates nothing; a steady-state `FenceSet` frame
//! (`clear` + `add`) allocates nothing. Checked with a counting allocator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use bufsync::fence::{alloc_contexts, Fence, FenceSet};

#[global_allocator]
static GLOBAL: bufsync_alloc_count::Counting = bufsync_alloc_count::Counting;

fn allocs_in(f: impl FnOnce()) -> u64 {
    bufsync_alloc_count::allocations_in(f)
}

#[test]
fn signal_without_waiters_allocates_nothing() {
    let f = Fence::software(alloc_contexts(1), 1);
    assert_eq!(allocs_in(|| f.signal().unwrap()), 0);
    assert_eq!(allocs_in(|| assert!(f.signal().is_err())), 0);
}

#[test]
fn signal_with_callbacks_allocates_nothing() {
    let f = Fence::software(alloc_contexts(1), 1);
    let hits = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let h = hits.clone();
        f.add_callback(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    assert_eq!(allocs_in(|| f.signal().unwrap()), 0);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[test]
fn signal_with_waiter_allocates_nothing() {
    let f = Fence::software(alloc_contexts(1), 1);
    let waiter = {
        let f = f.clone();
        thread::spawn(move || f.wait())
    };
    // Whether or not the waiter is asleep yet, the signal itself allocates nothing.
    thread::yield_now();
    assert_eq!(allocs_in(|| f.signal().unwrap()), 0);
    assert_eq!(waiter.join().unwrap(), Ok(()));
}

#[test]
fn fence_set_steady_state_allocates_nothing() {
    let ctx = alloc_contexts(8);
    let frames: Vec<Vec<Fence>> = (0..3u64)
        .map(|frame| {
            (0..8u64)
                .map(|c| Fence::software(ctx + c, frame + 1))
                .collect()
        })
        .collect();
    let mut set = FenceSet::new();
    set.extend(&frames[0]);
    for frame in &frames[1..] {
        let n = allocs_in(|| {
            set.clear();
            set.extend(frame);
            // De-duplication keeps the later fence in place: still no allocation.
            set.extend(frame);
        });
        assert_eq!(n, 0);
        assert_eq!(set.len(), 8);
    }
}

#[test]
fn signal_of_an_engine_watched_fence_allocates_nothing() {
    let e = bufsync::fence::engine::Engine::new();
    let f = Fence::software(alloc_contexts(1), 1);
    e.watch(&f);
    assert_eq!(e.watched(), 1);
    // The engine's callback takes the entry out in the signal path.
    assert_eq!(allocs_in(|| f.signal().unwrap()), 0);
    assert_eq!(e.watched(), 0);
}
