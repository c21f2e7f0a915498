//! The runtime's CPU cost per frame of the render → scanout flow, without
//! driver work: the same reservation steps as `flow::run` (reserve the frame
//! for writing, its wait-set, commit the render fence; reserve the frame and
//! the previous front for reading, commit the out-fence), with software
//! fences standing in for the device's, signaled in the loop (their signal
//! and callbacks are runtime work too). Prints a table with the goal and a
//! baseline measured in the same run: the same steps on a plain
//! `Mutex<Vec<Fence>>` per buffer, without tickets, usages or de-duplication.
//!
//! Run: `cargo bench -p bufsync-examples --bench frame`.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use bufsync::fence::{Fence, FenceContext, FenceSet};
use bufsync::resv::{Access, Reservation, Ticket};
use bufsync_alloc_count::thread_allocations;

#[global_allocator]
static GLOBAL: bufsync_alloc_count::Counting = bufsync_alloc_count::Counting;

const SWAPCHAIN: usize = 3;
const FRAMES: usize = 20_000;
const ROUNDS: usize = 15;

/// Per frame: (ns, allocations).
fn bufsync_flow() -> (f64, f64) {
    let frames: Vec<Reservation> = (0..SWAPCHAIN).map(|_| Reservation::new()).collect();
    let render = FenceContext::new("bench", "render");
    let display = FenceContext::new("bench", "display");
    let mut ticket = Ticket::reservation();
    let mut prev: Option<usize> = None;
    let a0 = thread_allocations();
    let t = Instant::now();
    for n in 0..FRAMES {
        let i = n % SWAPCHAIN;
        // 1-2: reserve for writing; the renderer waits for the wait-set.
        let write = [(&frames[i], Access::Write)];
        let mut reserved = ticket.reserve(&write, 1).expect("uncontended");
        black_box(reserved.wait_set().is_signaled());
        let rendered = render.create_fence();
        let _ = rendered.add_callback(|_| {});
        reserved.commit(&rendered);
        // 3: reserve this frame and the previous front for reading.
        let read = [
            (&frames[i], Access::Read),
            (
                &frames[prev.unwrap_or((i + SWAPCHAIN - 1) % SWAPCHAIN)],
                Access::Read,
            ),
        ];
        let reserved = ticket.reserve(&read, 1).expect("uncontended");
        let out = display.create_fence();
        let _ = out.add_callback(|_| {});
        reserved.commit(&out);
        // The devices finish.
        rendered.signal().expect("once");
        out.signal().expect("once");
        prev = Some(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / FRAMES as f64;
    let allocs = (thread_allocations() - a0) as f64 / FRAMES as f64;
    (ns, allocs)
}

/// The same steps on a mutex-protected fence list per buffer.
fn mutex_flow() -> (f64, f64) {
    let frames: Vec<Mutex<Vec<Fence>>> = (0..SWAPCHAIN).map(|_| Mutex::new(Vec::new())).collect();
    let render = FenceContext::new("bench", "render");
    let display = FenceContext::new("bench", "display");
    let mut wait = FenceSet::with_capacity(8);
    let a0 = thread_allocations();
    let t = Instant::now();
    for n in 0..FRAMES {
        let i = n % SWAPCHAIN;
        let p = (i + SWAPCHAIN - 1) % SWAPCHAIN;
        {
            let mut g = frames[i].lock().expect("not poisoned");
            g.retain(|f| !f.is_signaled());
            wait.clear();
            wait.extend(g.iter());
            black_box(wait.is_signaled());
            let rendered = render.create_fence();
            let _ = rendered.add_callback(|_| {});
            g.push(rendered.clone());
            drop(g);
            let out = display.create_fence();
            let _ = out.add_callback(|_| {});
            for j in [i, p] {
                let mut g = frames[j].lock().expect("not poisoned");
                g.retain(|f| !f.is_signaled());
                g.push(out.clone());
            }
            rendered.signal().expect("once");
            out.signal().expect("once");
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / FRAMES as f64;
    let allocs = (thread_allocations() - a0) as f64 / FRAMES as f64;
    (ns, allocs)
}

fn best(mut f: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    (0..ROUNDS)
        .map(|_| f())
        .fold((f64::INFINITY, 0.0), |b, r| if r.0 < b.0 { r } else { b })
}

fn main() {
    // Warm up (lazily created registries, the first context ids).
    bufsync_flow();
    mutex_flow();
    let (b_ns, b_alloc) = best(bufsync_flow);
    let (m_ns, m_alloc) = best(mutex_flow);
    println!("frame bookkeeping, {SWAPCHAIN} buffers, best of {ROUNDS} runs of {FRAMES} frames");
    println!();
    println!("| what | per frame | allocations/frame | goal |");
    println!("|---|---|---|---|");
    println!(
        "| bufsync: 2 ticket reservations, wait-set, 2 commits, 2 fences signaled | {:.2} µs | {:.1} | <= 50 µs |",
        b_ns / 1000.0,
        b_alloc
    );
    println!(
        "| baseline: the same steps on Mutex<Vec<Fence>> per buffer | {:.2} µs | {:.1} | |",
        m_ns / 1000.0,
        m_alloc
    );
    println!();
    println!(
        "ratio bufsync / baseline: {:.2}x; bufsync is {:.0}x under the 50 µs budget",
        b_ns / m_ns,
        50_000.0 / b_ns
    );
}
