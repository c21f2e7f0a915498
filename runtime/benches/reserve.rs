//! Reservation benchmarks: tables with each figure's goal and its ratio to a
//! baseline measured in the same run. Run: `cargo bench -p bufsync --bench reserve`.
//!
//! - Uncontended reserve + commit + unreserve of 1, 8 and 64 objects (ns per
//!   object) against lock + unlock of a plain mutex per object in sorted order.
//! - Contended: 16 objects, 4 threads, random subsets of 4 in random order:
//!   throughput and p99 latency against sort-then-lock, back-offs for
//!   wait-die vs wound-wait, deadlocks (a run that does not finish is one).
//! - Fairness: the most back-offs one reservation needed, and the longest
//!   wait of a reservation that was the oldest in flight when it started.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bufsync::fence::FenceContext;
use bufsync::resv::{Access, Algorithm, Reservation, Ticket, WwClass};

/// Rounds of the uncontended table: each round measures the three rows once,
/// one after the other, so host load hits them alike; the best round counts.
/// Rounds are short (20 000 object-frames, about 0.2 - 1 ms) so that some
/// fall between two preemptions of a loaded host.
const UNCONTENDED_ROUNDS: usize = 31;

/// Frames of one round for `n` objects.
fn frames_for(n: usize) -> usize {
    (20_000 / n).max(500)
}

fn uncontended() {
    println!(
        "\n## Uncontended reserve + commit + unreserve (ns per object, best of {UNCONTENDED_ROUNDS} interleaved rounds)\n"
    );
    println!("Committing the same fence every frame (the issue's figure; the fence is");
    println!("already there, so adding it changes nothing), and a new fence every frame");
    println!("(fences made up front; each commit replaces the previous frame's).\n");
    println!("| objects | bufsync | baseline: sorted mutex lock+unlock | ratio | goal | bufsync, new fence per frame | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for n in [1usize, 8, 64] {
        let iters = frames_for(n) as u64;
        let objs: Vec<Reservation> = (0..n).map(|_| Reservation::new()).collect();
        let list: Vec<(&Reservation, Access)> = objs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                (
                    o,
                    if i % 2 == 0 {
                        Access::Write
                    } else {
                        Access::Read
                    },
                )
            })
            .collect();
        let fence = FenceContext::new("bench", "uncontended").create_fence();
        let ctx = FenceContext::new("bench", "frames");
        let mut t = Ticket::reservation();
        let plain: Vec<Mutex<u64>> = (0..n).map(|_| Mutex::new(0)).collect();
        let mut order: Vec<usize> = (0..n).rev().collect();
        let (mut ours, mut fresh, mut base) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        for _ in 0..UNCONTENDED_ROUNDS {
            let start = Instant::now();
            for _ in 0..iters {
                let r = t.reserve(black_box(&list), 1).unwrap();
                r.commit(&fence);
            }
            ours = ours.min(start.elapsed().as_nanos() as f64 / (iters * n as u64) as f64);
            fresh = fresh.min(new_fence_per_frame(&mut t, &list, &ctx));
            let start = Instant::now();
            let mut guards = Vec::with_capacity(n);
            for _ in 0..iters {
                order.sort_unstable();
                for &i in black_box(&order) {
                    guards.push(plain[i].lock().unwrap());
                }
                guards.clear();
            }
            base = base.min(start.elapsed().as_nanos() as f64 / (iters * n as u64) as f64);
        }
        println!(
            "| {n} | {ours:.1} | {base:.1} | {:.2}x | <= 3x | {fresh:.1} | {:.2}x |",
            ours / base,
            fresh / base
        );
    }
}

/// One round of reserve + commit with a new fence each frame (fences made
/// up front), ns per object. Its own function: the main loop's code stays
/// as it was.
#[inline(never)]
fn new_fence_per_frame(t: &mut Ticket, list: &[(&Reservation, Access)], ctx: &FenceContext) -> f64 {
    let n = list.len();
    let frames = frames_for(n);
    let fences: Vec<_> = (0..frames).map(|_| ctx.create_fence()).collect();
    let start = Instant::now();
    for f in &fences {
        let r = t.reserve(black_box(list), 1).unwrap();
        r.commit(f);
    }
    start.elapsed().as_nanos() as f64 / (frames * n) as f64
}

struct Run {
    ops: u64,
    secs: f64,
    p99_us: f64,
    backoffs: u64,
    max_retries: u64,
    oldest_max_wait_us: f64,
    finished: bool,
}

const THREADS: usize = 4;
const OBJECTS: usize = 16;
const SUBSET: usize = 4;
const RUN: Duration = Duration::from_millis(1500);

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn p99(lat: &mut [u64]) -> f64 {
    lat.sort_unstable();
    lat.get(lat.len() * 99 / 100).copied().unwrap_or(0) as f64 / 1000.0
}

/// Runs `THREADS` workers for `RUN`, each calling `op(thread, rng)` in a
/// loop; returns ops, p99 latency and the worker results.
fn contended<R: Send + 'static>(
    make: impl Fn(usize) -> Box<dyn FnMut(&mut u64) -> (u64, bool) + Send>,
    finish: impl Fn(Vec<(u64, Vec<u64>, u64, u64)>) -> R,
) -> (Run, R) {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|n| {
            let mut op = make(n);
            let (stop, barrier) = (stop.clone(), barrier.clone());
            thread::spawn(move || {
                let mut rng =
                    0x9E37_79B9_7F4A_7C15u64 ^ (n as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let mut lat = Vec::with_capacity(1 << 20);
                let (mut ops, mut max_retries, mut oldest_wait) = (0u64, 0u64, 0u64);
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let (retries, was_oldest) = op(&mut rng);
                    let ns = t0.elapsed().as_nanos() as u64;
                    lat.push(ns);
                    max_retries = max_retries.max(retries);
                    if was_oldest {
                        oldest_wait = oldest_wait.max(ns);
                    }
                    ops += 1;
                }
                (ops, lat, max_retries, oldest_wait)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    // A deadlock shows as a worker that never returns: give them 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let finished = workers.iter().all(|w| w.is_finished());
    let secs = start.elapsed().as_secs_f64();
    let results: Vec<_> = if finished {
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    } else {
        Vec::new()
    };
    let ops = results.iter().map(|r| r.0).sum();
    let mut lat: Vec<u64> = results.iter().flat_map(|r| r.1.iter().copied()).collect();
    let max_retries = results.iter().map(|r| r.2).max().unwrap_or(0);
    let oldest = results.iter().map(|r| r.3).max().unwrap_or(0) as f64 / 1000.0;
    let run = Run {
        ops,
        secs,
        p99_us: p99(&mut lat),
        backoffs: 0,
        max_retries,
        oldest_max_wait_us: oldest,
        finished,
    };
    let extra = finish(results);
    (run, extra)
}

fn pick(rng: &mut u64) -> [usize; SUBSET] {
    let mut out = [0; SUBSET];
    for o in &mut out {
        *o = (xorshift(rng) % OBJECTS as u64) as usize;
    }
    out
}

fn baseline() -> Run {
    let locks: Arc<Vec<Mutex<u64>>> = Arc::new((0..OBJECTS).map(|_| Mutex::new(0)).collect());
    contended(
        |_| {
            let locks = locks.clone();
            let mut idx: Vec<usize> = Vec::with_capacity(SUBSET);
            Box::new(move |rng| {
                let mut guards: [Option<std::sync::MutexGuard<'_, u64>>; SUBSET] =
                    Default::default();
                idx.clear();
                idx.extend_from_slice(&pick(rng));
                idx.sort_unstable();
                idx.dedup();
                for (slot, &i) in guards.iter_mut().zip(&idx) {
                    *slot = Some(locks[i].lock().unwrap());
                }
                for g in guards.iter_mut().flatten() {
                    **g += 1;
                }
                drop(guards);
                (0, false)
            })
        },
        |_| (),
    )
    .0
}

fn ours(algo: Algorithm, commit: bool) -> Run {
    let class = WwClass::new("bench", algo);
    let objs: Arc<Vec<Reservation>> = Arc::new(
        (0..OBJECTS)
            .map(|_| Reservation::with_class(&class))
            .collect(),
    );
    // Stamps of in-flight reservations, one slot per thread (u64::MAX: idle).
    let inflight: Arc<Vec<AtomicU64>> =
        Arc::new((0..THREADS).map(|_| AtomicU64::new(u64::MAX)).collect());
    let total_backoffs = Arc::new(AtomicU64::new(0));
    let (mut run, ()) = contended(
        |n| {
            let (objs, class, inflight, total) = (
                objs.clone(),
                class.clone(),
                inflight.clone(),
                total_backoffs.clone(),
            );
            let mut t = Ticket::new(&class);
            let fence = FenceContext::new("bench", "contended").create_fence();
            let mut last_backoffs = 0;
            Box::new(move |rng| {
                t.restart();
                let stamp = t.stamp();
                inflight[n].store(stamp, Ordering::SeqCst);
                let oldest = inflight.iter().all(|s| s.load(Ordering::SeqCst) >= stamp);
                let idx = pick(rng);
                let list: [(&Reservation, Access); SUBSET] = std::array::from_fn(|k| {
                    (
                        &objs[idx[k]],
                        if xorshift(rng) & 1 == 0 {
                            Access::Write
                        } else {
                            Access::Read
                        },
                    )
                });
                let r = t.reserve(&list, 1).unwrap();
                if commit {
                    r.commit(&fence);
                } else {
                    r.backoff();
                }
                inflight[n].store(u64::MAX, Ordering::SeqCst);
                let b = t.backoffs();
                let retries = b - last_backoffs;
                last_backoffs = b;
                total.fetch_add(retries, Ordering::Relaxed);
                (retries, oldest)
            })
        },
        |_| (),
    );
    run.backoffs = total_backoffs.load(Ordering::Relaxed);
    run
}

fn main() {
    uncontended();
    // `RESERVE_BENCH=uncontended` stops here (for profiling).
    if std::env::var("RESERVE_BENCH").as_deref() == Ok("uncontended") {
        return;
    }
    let base = baseline();
    println!(
        "\n## Contended: {OBJECTS} objects, {THREADS} threads, random subsets of {SUBSET} in random order ({} s runs)\n",
        RUN.as_secs_f64()
    );
    println!("| variant | ops/s | ratio to sort-then-lock (goal >= 0.5x) | p99 latency (us) | back-offs | back-offs/op | deadlocks |");
    println!("|---|---|---|---|---|---|---|");
    let base_tput = base.ops as f64 / base.secs;
    println!(
        "| sort-then-lock (std Mutex) | {:.0} | 1.00x | {:.1} | - | - | {} |",
        base_tput,
        base.p99_us,
        u8::from(!base.finished)
    );
    let mut fairness = Vec::new();
    for (algo, commit) in [
        (Algorithm::WaitDie, false),
        (Algorithm::WaitDie, true),
        (Algorithm::WoundWait, false),
        (Algorithm::WoundWait, true),
    ] {
        let r = ours(algo, commit);
        let tput = r.ops as f64 / r.secs;
        println!(
            "| bufsync {} ({}) | {:.0} | {:.2}x | {:.1} | {} | {:.3} | {} |",
            algo.name(),
            if commit {
                "reserve + commit"
            } else {
                "reserve + back-off, locks only"
            },
            tput,
            tput / base_tput,
            r.p99_us,
            r.backoffs,
            r.backoffs as f64 / r.ops.max(1) as f64,
            u8::from(!r.finished)
        );
        if commit {
            fairness.push((algo, r.max_retries, r.oldest_max_wait_us));
        }
    }
    println!("\n## Fairness\n");
    println!("| algorithm | most back-offs of one reservation | longest wait of a reservation oldest at its start (us) |");
    println!("|---|---|---|");
    for (algo, retries, wait) in fairness {
        println!("| {} | {retries} | {wait:.1} |", algo.name());
    }
}
