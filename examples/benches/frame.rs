//! The presenter's bookkeeping per frame, without driver work: the
//! [`FrameQueue`] steps a `Presenter::present` takes (acquire with its wait
//! snapshot, the render fence committed as writer, the frame queued, the
//! scanout reservation of the frame and the old front with the out-fence
//! committed, the flip completed), with software fences standing in for the
//! devices' and signaled in the loop.
//!
//! Rows, all measured in the same run (ratios are what count on these
//! noisy machines):
//! - the presenter's bookkeeping alone (the devices' fences made before the
//!   timed loop: what the presenter itself costs and allocates);
//! - the same with the two fences made in the loop, as devices make them;
//! - the inline ticket flow the demo used before the presenter (two
//!   reservations, wait-set, two commits, two fences and two callbacks):
//!   0.34 µs and 4 allocations per frame when it was measured last;
//! - a baseline: the same steps on a plain `Mutex<Vec<Fence>>` per buffer.
//!
//! Run: `cargo bench -p bufsync-examples --bench frame`.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bufsync::fence::{Fence, FenceContext, FenceSet};
use bufsync::resv::{Access, Reservation, ResvError, Ticket};
use bufsync_alloc_count::thread_allocations;
use bufsync_present::{FrameQueue, PresentMode, SlotReservations};

#[global_allocator]
static GLOBAL: bufsync_alloc_count::Counting = bufsync_alloc_count::Counting;

const BUFFERS: usize = 3;
const FRAMES: usize = 20_000;
const ROUNDS: usize = 15;

fn queue() -> FrameQueue<Reservation> {
    let slots = (0..BUFFERS)
        .map(|_| SlotReservations {
            display: Reservation::new(),
            render: None,
        })
        .collect();
    FrameQueue::new(slots, PresentMode::Fifo, Duration::from_secs(1))
}

/// One presenter frame on `q` with the given render and out-fences.
#[inline(always)]
fn presenter_frame(q: &mut FrameQueue<Reservation>, render: &Fence, out: &Fence) {
    let i = q.acquire().expect("a free buffer");
    black_box(q.waits(i).is_signaled());
    q.commit_render(i, render).expect("uncontended");
    q.present(i);
    let i = q.next_ready().expect("queued");
    q.scanout(i, |wait| {
        black_box(wait.is_signaled());
        Ok::<_, ResvError>(out.clone())
    })
    .expect("uncontended");
    render.signal().expect("once");
    out.signal().expect("once");
    q.flip_done();
}

/// Per frame: (ns, allocations), the fences made before the loop.
fn presenter_bookkeeping() -> (f64, f64) {
    let mut q = queue();
    let render = FenceContext::new("bench", "render");
    let display = FenceContext::new("bench", "display");
    let fences: Vec<(Fence, Fence)> = (0..FRAMES)
        .map(|_| (render.create_fence(), display.create_fence()))
        .collect();
    let a0 = thread_allocations();
    let t = Instant::now();
    for (r, o) in &fences {
        presenter_frame(&mut q, r, o);
    }
    let ns = t.elapsed().as_nanos() as f64 / FRAMES as f64;
    let allocs = (thread_allocations() - a0) as f64 / FRAMES as f64;
    (ns, allocs)
}

/// Per frame: (ns, allocations), the fences made in the loop.
fn presenter_with_fences() -> (f64, f64) {
    let mut q = queue();
    let render = FenceContext::new("bench", "render");
    let display = FenceContext::new("bench", "display");
    let a0 = thread_allocations();
    let t = Instant::now();
    for _ in 0..FRAMES {
        let (r, o) = (render.create_fence(), display.create_fence());
        presenter_frame(&mut q, &r, &o);
    }
    let ns = t.elapsed().as_nanos() as f64 / FRAMES as f64;
    let allocs = (thread_allocations() - a0) as f64 / FRAMES as f64;
    (ns, allocs)
}

/// The demo's inline flow before the presenter (the old frame bench).
fn inline_flow() -> (f64, f64) {
    let frames: Vec<Reservation> = (0..BUFFERS).map(|_| Reservation::new()).collect();
    let render = FenceContext::new("bench", "render");
    let display = FenceContext::new("bench", "display");
    let mut ticket = Ticket::reservation();
    let mut prev: Option<usize> = None;
    let a0 = thread_allocations();
    let t = Instant::now();
    for n in 0..FRAMES {
        let i = n % BUFFERS;
        let write = [(&frames[i], Access::Write)];
        let mut reserved = ticket.reserve(&write, 1).expect("uncontended");
        black_box(reserved.wait_set().is_signaled());
        let rendered = render.create_fence();
        let _ = rendered.add_callback(|_| {});
        reserved.commit(&rendered);
        let read = [
            (&frames[i], Access::Read),
            (
                &frames[prev.unwrap_or((i + BUFFERS - 1) % BUFFERS)],
                Access::Read,
            ),
        ];
        let reserved = ticket.reserve(&read, 1).expect("uncontended");
        let out = display.create_fence();
        let _ = out.add_callback(|_| {});
        reserved.commit(&out);
        rendered.signal().expect("once");
        out.signal().expect("once");
        prev = Some(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / FRAMES as f64;
    let allocs = (thread_allocations() - a0) as f64 / FRAMES as f64;
    (ns, allocs)
}

/// The same steps as the inline flow on a mutex-protected fence list per
/// buffer (the old bench's baseline, callbacks included).
fn mutex_flow() -> (f64, f64) {
    let frames: Vec<Mutex<Vec<Fence>>> = (0..BUFFERS).map(|_| Mutex::new(Vec::new())).collect();
    let render = FenceContext::new("bench", "render");
    let display = FenceContext::new("bench", "display");
    let mut wait = FenceSet::with_capacity(8);
    let a0 = thread_allocations();
    let t = Instant::now();
    for n in 0..FRAMES {
        let i = n % BUFFERS;
        let p = (i + BUFFERS - 1) % BUFFERS;
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
    presenter_bookkeeping();
    inline_flow();
    mutex_flow();
    let mut rows = Vec::new();
    // Interleaved rounds, best of each.
    let (mut p, mut pf, mut i, mut m) = (
        (f64::INFINITY, 0.0),
        (f64::INFINITY, 0.0),
        (f64::INFINITY, 0.0),
        (f64::INFINITY, 0.0),
    );
    for _ in 0..3 {
        let take = |best: &mut (f64, f64), r: (f64, f64)| {
            if r.0 < best.0 {
                *best = r;
            }
        };
        take(&mut p, best(presenter_bookkeeping));
        take(&mut pf, best(presenter_with_fences));
        take(&mut i, best(inline_flow));
        take(&mut m, best(mutex_flow));
    }
    rows.push((
        "presenter bookkeeping (FrameQueue: acquire, commit render, queue, scanout, flip done; fences made before)",
        p,
    ));
    rows.push(("the same, the two device fences made in the loop", pf));
    rows.push((
        "inline ticket flow of the demo before the presenter (2 fences, 2 callbacks)",
        i,
    ));
    rows.push((
        "baseline: the same steps on Mutex<Vec<Fence>> per buffer",
        m,
    ));
    println!("frame bookkeeping, {BUFFERS} buffers, best of 3x{ROUNDS} runs of {FRAMES} frames");
    println!();
    println!("| what | per frame | allocations/frame |");
    println!("|---|---|---|");
    for (what, (ns, a)) in &rows {
        println!("| {what} | {:.3} µs | {a:.1} |", ns / 1000.0);
    }
    println!();
    println!(
        "ratios: presenter bookkeeping / inline flow {:.2}x; with fences / inline flow {:.2}x; \
         presenter / mutex baseline {:.2}x",
        p.0 / i.0,
        pf.0 / i.0,
        p.0 / m.0
    );
}
