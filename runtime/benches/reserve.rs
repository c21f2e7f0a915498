//! Reservation benchmarks: tables with each figure's goal and its ratio to a
//! baseline measured in the same run. Run: `cargo bench -p bufsync --bench reserve`.
//!
//! - Uncontended reserve + commit + unreserve of 1, 8 and 64 objects (ns per
//!   object) against lock + unlock of a plain mutex per object in sorted order.
//! - Contended: 16 objects, 4 and 2 threads (`RESERVE_THREADS`), random
//!   subsets of 4 in random order, 1.5 s runs (`RESERVE_RUN_MS`): throughput
//!   against sort-then-lock, back-offs for wait-die vs wound-wait, deadlocks
//!   (a run that does not finish is one). These runs read no clock per op
//!   (as the kernel module `cargo xtask bench-kernel` compares with).
//! - Latency and fairness, from separate runs that time every op and track
//!   the oldest reservation in flight: p99 latency and the longest op (the
//!   baseline's too: with more threads than CPUs, the scheduler's time
//!   slice bounds every locker's longest op); the most back-offs one
//!   reservation needed; the longest op of a reservation that was the
//!   oldest in flight when it started; the longest time any reservation
//!   stayed the oldest in flight (from the end of the last older one), and
//!   how many of those passed 100 us.
//!
//! `RESERVE_BENCH=contended` runs only the contended tables,
//! `RESERVE_BENCH=uncontended` only the uncontended one; either adds
//! `summary` lines for `cargo xtask bench-kernel`.

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
    let mut summary = Vec::new();
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
        summary.push(format!(
            "summary objects={n} sorted_ns={base:.2} same_ns={ours:.2} new_ns={fresh:.2}"
        ));
    }
    print_summary(&summary, "uncontended");
}

/// Prints the `summary` lines `cargo xtask bench-kernel` reads, when the
/// run was asked for with `RESERVE_BENCH=which`.
fn print_summary(summary: &[String], which: &str) {
    if std::env::var("RESERVE_BENCH").as_deref() == Ok(which) {
        println!();
        for s in summary {
            println!("{s}");
        }
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
    /// The longest op, us.
    max_us: f64,
    backoffs: u64,
    max_retries: u64,
    /// Longest op of a reservation that was the oldest in flight when it
    /// started (the figure).
    oldest_at_start_max_us: f64,
    /// Longest time any reservation stayed the oldest in flight: from the
    /// moment every older one had finished (or its start) to its end.
    oldest_max_us: f64,
    /// Of the reservations that were ever the oldest in flight: how many,
    /// and how many of them stayed the oldest longer than 100 us.
    oldest_count: u64,
    oldest_over_100us: u64,
    finished: bool,
}

const OBJECTS: usize = 16;
const SUBSET: usize = 4;

/// The contended runs' parameters: `RESERVE_THREADS` (thread counts, default
/// `4,2`) and `RESERVE_RUN_MS` (length of each run, default 1500).
struct Setup {
    threads: Vec<usize>,
    run: Duration,
}

fn setup() -> Setup {
    let threads = std::env::var("RESERVE_THREADS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|t| t.trim().parse().ok())
                .filter(|&t| t > 0)
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![4, 2]);
    let ms = std::env::var("RESERVE_RUN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    Setup {
        threads,
        run: Duration::from_millis(ms),
    }
}

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

/// What one op reports: back-offs it needed, whether it was the oldest in
/// flight at its start, and how long it stayed the oldest (ns; `None` if it
/// never was).
type OpResult = (u64, bool, Option<u64>);

/// What one worker counted.
#[derive(Default)]
struct WorkerResult {
    ops: u64,
    /// Per-op latencies, ns (timed runs only).
    lat: Vec<u64>,
    /// Back-offs in all, and the most one op needed.
    backoffs: u64,
    max_retries: u64,
    /// Longest op of a reservation that was the oldest at its start.
    at_start: u64,
    /// Longest time a reservation stayed the oldest, ops that ever were,
    /// and of those how many stayed so over 100 us.
    oldest: u64,
    oldest_n: u64,
    oldest_slow: u64,
}

/// Runs `threads` workers for `run`, each calling `op(thread, rng)` in a
/// loop; returns ops, back-offs, p99 latency and the fairness figures. Each
/// worker counts in its own memory (no shared counter per op). With `timed`
/// false no clock is read per op (the throughput runs, like the kernel
/// module's): latencies are then 0.
fn contended(
    threads: usize,
    run: Duration,
    timed: bool,
    make: impl Fn(usize) -> Box<dyn FnMut(&mut u64) -> OpResult + Send>,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|n| {
            let mut op = make(n);
            let (stop, barrier) = (stop.clone(), barrier.clone());
            thread::spawn(move || -> WorkerResult {
                let mut rng =
                    0x9E37_79B9_7F4A_7C15u64 ^ (n as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let mut w = WorkerResult {
                    lat: Vec::with_capacity(if timed { 1 << 20 } else { 0 }),
                    ..WorkerResult::default()
                };
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = timed.then(Instant::now);
                    let (retries, was_oldest, oldest_for) = op(&mut rng);
                    if let Some(t0) = t0 {
                        let ns = t0.elapsed().as_nanos() as u64;
                        w.lat.push(ns);
                        if was_oldest {
                            w.at_start = w.at_start.max(ns);
                        }
                    }
                    w.ops += 1;
                    w.backoffs += retries;
                    w.max_retries = w.max_retries.max(retries);
                    if let Some(o) = oldest_for {
                        w.oldest = w.oldest.max(o);
                        w.oldest_n += 1;
                        w.oldest_slow += u64::from(o > 100_000);
                    }
                }
                w
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    // A deadlock shows as a worker that never returns: give them 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let finished = workers.iter().all(|w| w.is_finished());
    let secs = start.elapsed().as_secs_f64();
    let results: Vec<WorkerResult> = if finished {
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    } else {
        Vec::new()
    };
    let mut lat: Vec<u64> = results.iter().flat_map(|r| r.lat.iter().copied()).collect();
    let us = |ns: u64| ns as f64 / 1000.0;
    Run {
        ops: results.iter().map(|r| r.ops).sum(),
        secs,
        p99_us: p99(&mut lat),
        max_us: us(lat.iter().copied().max().unwrap_or(0)),
        backoffs: results.iter().map(|r| r.backoffs).sum(),
        max_retries: results.iter().map(|r| r.max_retries).max().unwrap_or(0),
        oldest_at_start_max_us: us(results.iter().map(|r| r.at_start).max().unwrap_or(0)),
        oldest_max_us: us(results.iter().map(|r| r.oldest).max().unwrap_or(0)),
        oldest_count: results.iter().map(|r| r.oldest_n).sum(),
        oldest_over_100us: results.iter().map(|r| r.oldest_slow).sum(),
        finished,
    }
}

fn pick(rng: &mut u64) -> [usize; SUBSET] {
    let mut out = [0; SUBSET];
    for o in &mut out {
        *o = (xorshift(rng) % OBJECTS as u64) as usize;
    }
    out
}

fn baseline(threads: usize, run: Duration, timed: bool) -> Run {
    let locks: Arc<Vec<Mutex<u64>>> = Arc::new((0..OBJECTS).map(|_| Mutex::new(0)).collect());
    contended(threads, run, timed, |_| {
        let locks = locks.clone();
        let mut idx: Vec<usize> = Vec::with_capacity(SUBSET);
        Box::new(move |rng| {
            let mut guards: [Option<std::sync::MutexGuard<'_, u64>>; SUBSET] = Default::default();
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
            (0, false, None)
        })
    })
}

/// How many finished reservations per thread the oldest-tracking remembers.
const RING: usize = 64;

/// Who is in flight, for the fairness figures: per thread the stamp of its
/// reservation in flight (`u64::MAX`: none) and a ring of its last finished
/// ones (stamp, end in ns since `epoch`).
struct Inflight {
    epoch: Instant,
    stamps: Vec<AtomicU64>,
    ring: Vec<[(AtomicU64, AtomicU64); RING]>,
    next: Vec<AtomicU64>,
}

impl Inflight {
    fn new(threads: usize) -> Inflight {
        Inflight {
            epoch: Instant::now(),
            stamps: (0..threads).map(|_| AtomicU64::new(u64::MAX)).collect(),
            ring: (0..threads)
                .map(|_| std::array::from_fn(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0))))
                .collect(),
            next: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Thread `n` starts `stamp`: returns whether it is the oldest in flight
    /// and the older ones in flight (thread, stamp).
    fn start(&self, n: usize, stamp: u64, older: &mut Vec<(usize, u64)>) -> bool {
        self.stamps[n].store(stamp, Ordering::SeqCst);
        older.clear();
        for (j, s) in self.stamps.iter().enumerate() {
            let s = s.load(Ordering::SeqCst);
            if j != n && s < stamp {
                older.push((j, s));
            }
        }
        older.is_empty()
    }

    /// Thread `n` ends `stamp`, started at `t0`: how long it was the oldest
    /// in flight (`None` if an older one is still in flight).
    fn end(&self, n: usize, stamp: u64, t0: u64, older: &[(usize, u64)]) -> Option<u64> {
        let now = self.now();
        let still_older = self
            .stamps
            .iter()
            .enumerate()
            .any(|(j, s)| j != n && s.load(Ordering::SeqCst) < stamp);
        let result = if still_older {
            None
        } else {
            // It became the oldest when the last older one ended. One that
            // left the ring ended at some time after `t0`: counting from
            // `t0` overestimates, never underestimates, the time.
            let mut since = t0;
            for &(j, s) in older {
                if let Some((_, end)) = self.ring[j]
                    .iter()
                    .find(|(rs, _)| rs.load(Ordering::SeqCst) == s)
                {
                    since = since.max(end.load(Ordering::SeqCst));
                }
            }
            Some(now.saturating_sub(since))
        };
        let slot = self.next[n].fetch_add(1, Ordering::Relaxed) as usize % RING;
        self.ring[n][slot].1.store(now, Ordering::SeqCst);
        self.ring[n][slot].0.store(stamp, Ordering::SeqCst);
        self.stamps[n].store(u64::MAX, Ordering::SeqCst);
        result
    }
}

/// bufsync's op: reserve a random subset, then commit or back off. With
/// `track`, the op also keeps the in-flight record for the fairness
/// figures and the run reads the clock per op (the fairness runs); without
/// it, the run measures the locking only (the throughput runs).
fn ours(algo: Algorithm, commit: bool, threads: usize, run: Duration, track: bool) -> Run {
    let class = WwClass::new("bench", algo);
    let objs: Arc<Vec<Reservation>> = Arc::new(
        (0..OBJECTS)
            .map(|_| Reservation::with_class(&class))
            .collect(),
    );
    let inflight = Arc::new(Inflight::new(threads));
    contended(threads, run, track, |n| {
        let (objs, class, inflight) = (objs.clone(), class.clone(), inflight.clone());
        let mut t = Ticket::new(&class);
        let fence = FenceContext::new("bench", "contended").create_fence();
        let mut last_backoffs = 0;
        let mut older = Vec::with_capacity(threads);
        Box::new(move |rng| {
            t.restart();
            let stamp = t.stamp();
            let t0 = if track { inflight.now() } else { 0 };
            let oldest = track && inflight.start(n, stamp, &mut older);
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
            let oldest_for = if track {
                inflight.end(n, stamp, t0, &older)
            } else {
                None
            };
            let b = t.backoffs();
            let retries = b - last_backoffs;
            last_backoffs = b;
            (retries, oldest, oldest_for)
        })
    })
}

/// One thread count: the contended table (throughput runs with no clock
/// read per op, as the kernel module's), the latency and fairness table
/// (runs that time every op and track the oldest in flight), and the
/// `summary` lines `cargo xtask bench-kernel` reads.
fn contended_tables(threads: usize, run: Duration) {
    let base = baseline(threads, run, false);
    println!(
        "\n## Contended: {OBJECTS} objects, {threads} threads, random subsets of {SUBSET} in random order ({} s runs, no clock read per op)\n",
        run.as_secs_f64()
    );
    println!("| variant | ops/s | ratio to sort-then-lock (goal >= 0.5x) | back-offs | back-offs/op | deadlocks |");
    println!("|---|---|---|---|---|---|");
    let base_tput = base.ops as f64 / base.secs;
    println!(
        "| sort-then-lock (std Mutex) | {:.0} | 1.00x | - | - | {} |",
        base_tput,
        u8::from(!base.finished)
    );
    let mut summary = vec![format!(
        "summary threads={threads} mode=sorted ops_per_s={base_tput:.0} ratio=1 backoffs_per_op=0"
    )];
    let variants = [
        (Algorithm::WaitDie, false),
        (Algorithm::WaitDie, true),
        (Algorithm::WoundWait, false),
        (Algorithm::WoundWait, true),
    ];
    for (algo, commit) in variants {
        let r = ours(algo, commit, threads, run, false);
        let tput = r.ops as f64 / r.secs;
        let per_op = r.backoffs as f64 / r.ops.max(1) as f64;
        println!(
            "| bufsync {} ({}) | {:.0} | {:.2}x | {} | {:.4} | {} |",
            algo.name(),
            variant_name(commit),
            tput,
            tput / base_tput,
            r.backoffs,
            per_op,
            u8::from(!r.finished)
        );
        if !commit {
            summary.push(format!(
                "summary threads={threads} mode={} ops_per_s={tput:.0} ratio={:.4} backoffs_per_op={per_op:.4}",
                algo.name(),
                tput / base_tput
            ));
        }
    }
    let base = baseline(threads, run, true);
    println!("\n## Latency and fairness ({threads} threads; every op timed, the oldest in flight tracked)\n");
    println!("| variant | p99 latency (us) | longest op (us) | most back-offs of one reservation | longest op of a reservation oldest at its start (us) | longest time a reservation stayed the oldest in flight (us) | reservations that were the oldest | of those, oldest > 100 us |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| sort-then-lock (std Mutex) | {:.1} | {:.1} | - | - | - | - | - |",
        base.p99_us, base.max_us
    );
    for (algo, commit) in variants {
        let r = ours(algo, commit, threads, run, true);
        println!(
            "| bufsync {} ({}) | {:.1} | {:.1} | {} | {:.1} | {:.1} | {} | {} |",
            algo.name(),
            variant_name(commit),
            r.p99_us,
            r.max_us,
            r.max_retries,
            r.oldest_at_start_max_us,
            r.oldest_max_us,
            r.oldest_count,
            r.oldest_over_100us
        );
    }
    print_summary(&summary, "contended");
}

fn variant_name(commit: bool) -> &'static str {
    if commit {
        "reserve + commit"
    } else {
        "reserve + back-off, locks only"
    }
}

fn main() {
    let which = std::env::var("RESERVE_BENCH").unwrap_or_default();
    // `RESERVE_BENCH=contended` skips the uncontended table, `=uncontended`
    // stops after it; either prints `summary` lines.
    if which != "contended" {
        uncontended();
    }
    if which == "uncontended" {
        return;
    }
    let setup = setup();
    for &threads in &setup.threads {
        contended_tables(threads, setup.run);
    }
}
