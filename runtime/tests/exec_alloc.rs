//! Budgets: a steady-state reserve / wait_set / commit of the same objects
//! allocates nothing (counting allocator), and a reservation-list entry is at
//! most 16 bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bufsync::fence::FenceContext;
use bufsync::resv::{Access, Reservation, Ticket};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn entry_is_at_most_16_bytes() {
    assert!(std::mem::size_of::<(&Reservation, Access)>() <= 16);
}

#[test]
fn steady_state_allocates_nothing() {
    let objs: Vec<Reservation> = (0..16).map(|_| Reservation::new()).collect();
    let list: Vec<(&Reservation, Access)> = objs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                o,
                if i % 3 == 0 {
                    Access::Write
                } else {
                    Access::Read
                },
            )
        })
        .collect();
    let mut t = Ticket::reservation();
    // Fences are made up front: creating a fence is the producer's cost.
    let ctx = FenceContext::new("alloc", "steady");
    let fences: Vec<_> = (0..100).map(|_| ctx.create_fence()).collect();
    let frame = |t: &mut Ticket, i: usize| {
        let mut r = t.reserve(&list, 1).unwrap();
        let _ = r.wait_set().len();
        r.commit(&fences[i]);
        fences[i].signal().unwrap();
    };
    for i in 0..10 {
        frame(&mut t, i);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 10..100 {
        frame(&mut t, i);
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(
        after - before,
        0,
        "steady-state frames allocated {} times",
        after - before
    );
}
