//! Fence micro-benchmarks: a table with each figure's goal and its ratio to
//! a baseline measured in the same run. Run: `cargo bench -p bufsync --bench fence`.
//! `FENCE_BENCH=summary` prints only the rows `cargo xtask bench-kernel`
//! compares with the kernel's dma_fence, as `summary` lines.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bufsync::fence::{alloc_contexts, unwrap_merge, Fence, FenceSet};

struct Row {
    name: &'static str,
    value: f64,
    unit: &'static str,
    goal: &'static str,
    baseline_name: &'static str,
    baseline: f64,
}

fn ns_per_op(iters: u64, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Best of `rounds` runs of `f` (each returning ns/op): on a shared, loaded
/// host the fastest short run is the one least disturbed by preemption.
fn best(rounds: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..rounds).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn bench_is_signaled() -> Row {
    const N: u64 = 200_000;
    let f = Fence::software(alloc_contexts(1), 1);
    f.signal().unwrap();
    let v = best(100, || {
        ns_per_op(N, || {
            for _ in 0..N {
                black_box(black_box(&f).is_signaled());
            }
        })
    });
    let word = AtomicU64::new(1);
    let b = best(100, || {
        ns_per_op(N, || {
            for _ in 0..N {
                black_box(black_box(&word).load(Ordering::Acquire) & 1 != 0);
            }
        })
    });
    Row {
        name: "is_signaled (signaled)",
        value: v,
        unit: "ns",
        goal: "<= 2 ns",
        baseline_name: "AtomicU64 Acquire load",
        baseline: b,
    }
}

/// ns per signal of fresh, unwaited fences: `signal(fence, at)` for each of
/// a batch, `at` read once per batch. Batches small enough to stay in cache;
/// fence creation is not timed.
fn signal_batch_ns(signal: impl Fn(&Fence, Instant)) -> f64 {
    const BATCH: usize = 2048;
    let ctx = alloc_contexts(1);
    best(200, || {
        let fences: Vec<Fence> = (0..BATCH as u64)
            .map(|i| Fence::software(ctx, i + 1))
            .collect();
        ns_per_op(BATCH as u64, || {
            let at = Instant::now();
            for f in &fences {
                signal(f, at);
            }
        })
    })
}

/// The baseline of the signal rows: an uncontended std Mutex lock+unlock, ns.
fn mutex_baseline() -> f64 {
    const N: usize = 20_000;
    let m = Mutex::new(0u64);
    best(100, || {
        ns_per_op(N as u64, || {
            for _ in 0..N {
                *black_box(&m).lock().unwrap() += 1;
            }
        })
    })
}

fn bench_signal() -> Row {
    Row {
        name: "signal, no waiters",
        value: signal_batch_ns(|f, _| {
            let _ = black_box(f.signal());
        }),
        unit: "ns",
        goal: "<= 30 ns",
        baseline_name: "std Mutex lock+unlock",
        baseline: mutex_baseline(),
    }
}

/// `signal_timestamp` with one clock read shared by the batch (a device's
/// completion time, or an engine's poll round): the signal without its
/// clock read, against the same Mutex baseline.
fn bench_signal_timestamp() -> Row {
    Row {
        name: "signal_timestamp, batch clock",
        value: signal_batch_ns(|f, at| {
            let _ = black_box(f.signal_timestamp(at));
        }),
        unit: "ns",
        goal: "(report)",
        baseline_name: "std Mutex lock+unlock",
        baseline: mutex_baseline(),
    }
}

/// The clock read every signal pays for its timestamp, next to a bare RMW.
fn bench_clock() -> Row {
    const N: u64 = 20_000;
    let v = best(100, || {
        ns_per_op(N, || {
            for _ in 0..N {
                black_box(Instant::now());
            }
        })
    });
    let word = AtomicU64::new(0);
    let b = best(100, || {
        ns_per_op(N, || {
            for _ in 0..N {
                black_box(black_box(&word).fetch_or(1, Ordering::AcqRel));
            }
        })
    });
    Row {
        name: "  of which: clock (Instant::now)",
        value: v,
        unit: "ns",
        goal: "(report)",
        baseline_name: "AtomicU64 fetch_or AcqRel",
        baseline: b,
    }
}

/// A cheaper monotonic clock, measured for the signal timestamp:
/// `CLOCK_MONOTONIC_COARSE` (the last tick's `CLOCK_MONOTONIC`, the clock of
/// `Instant`). Its cost, and (second row) how far it lags a precise read
/// taken just before it: a coarse timestamp can come out earlier than an
/// `Instant` read before the signal, which breaks the contract (a
/// timestamp is comparable with `Instant`), by up to one tick.
fn bench_coarse_clock() -> [Row; 2] {
    use rustix::time::{clock_gettime, ClockId};
    const N: u64 = 20_000;
    let v = best(100, || {
        ns_per_op(N, || {
            for _ in 0..N {
                black_box(clock_gettime(ClockId::MonotonicCoarse));
            }
        })
    });
    let b = best(100, || {
        ns_per_op(N, || {
            for _ in 0..N {
                black_box(Instant::now());
            }
        })
    });
    let ns = |t: rustix::time::Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let mut lag = 0i128;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(50) {
        let precise = ns(clock_gettime(ClockId::Monotonic));
        let coarse = ns(clock_gettime(ClockId::MonotonicCoarse));
        lag = lag.max(precise - coarse);
    }
    [
        Row {
            name: "  cheaper: CLOCK_MONOTONIC_COARSE",
            value: v,
            unit: "ns",
            goal: "(report)",
            baseline_name: "Instant::now",
            baseline: b,
        },
        Row {
            name: "  its lag behind a precise read",
            value: lag as f64 / 1000.0,
            unit: "us",
            goal: "must be 0",
            baseline_name: "(max over 50 ms of reads)",
            baseline: f64::NAN,
        },
    ]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Rounds per block; fence and condvar blocks alternate so host load hits both alike.
const WAKE_ROUNDS: usize = 200;
const WAKE_BLOCKS: usize = 10;

/// One-shot events timed by [`wake_latencies`]: a fence, or the raw
/// `Mutex<bool>` + `Condvar` baseline.
trait Event: Clone + Send + 'static {
    fn new(round: u64) -> Self;
    fn wait(&self);
    fn signal(&self);
}

impl Event for Fence {
    fn new(round: u64) -> Self {
        static CTX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Fence::software(*CTX.get_or_init(|| alloc_contexts(1)), round)
    }
    fn wait(&self) {
        Fence::wait(self).unwrap();
    }
    fn signal(&self) {
        Fence::signal(self).unwrap();
    }
}

impl Event for Arc<(Mutex<bool>, Condvar)> {
    fn new(_: u64) -> Self {
        Arc::new((Mutex::new(false), Condvar::new()))
    }
    fn wait(&self) {
        let mut g = self.0.lock().unwrap();
        while !*g {
            g = self.1.wait(g).unwrap();
        }
    }
    fn signal(&self) {
        *self.0.lock().unwrap() = true;
        self.1.notify_all();
    }
}

/// Latency from `signal` to the return of a blocked `wait`, per round: the
/// waiter takes each round's event, blocks (50 us given), is signaled.
fn wake_latencies<E: Event>() -> Vec<f64> {
    let slot: Arc<Mutex<Option<E>>> = Arc::new(Mutex::new(None));
    let ready = Arc::new(AtomicUsize::new(0));
    let woke = Arc::new(Mutex::new(Vec::with_capacity(WAKE_ROUNDS)));
    let waiter = {
        let (slot, ready, woke) = (slot.clone(), ready.clone(), woke.clone());
        thread::spawn(move || {
            for round in 1..=WAKE_ROUNDS {
                let e = loop {
                    if let Some(e) = slot.lock().unwrap().take() {
                        break e;
                    }
                    std::hint::spin_loop();
                };
                ready.store(round, Ordering::Release);
                e.wait();
                let t = Instant::now();
                woke.lock().unwrap().push(t);
            }
        })
    };
    let mut signaled_at = Vec::with_capacity(WAKE_ROUNDS);
    for round in 1..=WAKE_ROUNDS {
        let e = E::new(round as u64);
        *slot.lock().unwrap() = Some(e.clone());
        while ready.load(Ordering::Acquire) != round {
            std::hint::spin_loop();
        }
        thread::sleep(Duration::from_micros(50)); // let it block
        signaled_at.push(Instant::now());
        e.signal();
        while woke.lock().unwrap().len() < round {
            thread::yield_now();
        }
    }
    waiter.join().unwrap();
    let woke = woke.lock().unwrap();
    woke.iter()
        .zip(&signaled_at)
        .map(|(w, s)| w.saturating_duration_since(*s).as_nanos() as f64)
        .collect()
}

fn bench_wake() -> [Row; 2] {
    let mut f = Vec::new();
    let mut c = Vec::new();
    for _ in 0..WAKE_BLOCKS {
        f.extend(wake_latencies::<Fence>());
        c.extend(wake_latencies::<Arc<(Mutex<bool>, Condvar)>>());
    }
    let (f50, f99) = (percentile(&mut f, 0.5), percentile(&mut f, 0.99));
    let (c50, c99) = (percentile(&mut c, 0.5), percentile(&mut c, 0.99));
    [
        Row {
            name: "signal -> wake, p50",
            value: f50 / 1000.0,
            unit: "us",
            goal: "<= 1.5x condvar",
            baseline_name: "raw Condvar wake, p50",
            baseline: c50 / 1000.0,
        },
        Row {
            name: "signal -> wake, p99",
            value: f99 / 1000.0,
            unit: "us",
            goal: "(report)",
            baseline_name: "raw Condvar wake, p99",
            baseline: c99 / 1000.0,
        },
    ]
}

/// add_callback + a signal (`signal`, or `signal_timestamp` with one clock
/// read for the run), ns per fence.
fn callback_ns(counter: &Arc<AtomicU64>, timestamped: bool) -> f64 {
    const N: usize = 20_000;
    let ctx = alloc_contexts(1);
    best(30, || {
        let fences: Vec<Fence> = (0..N as u64).map(|i| Fence::software(ctx, i + 1)).collect();
        let ns = ns_per_op(N as u64, || {
            let at = Instant::now();
            for f in &fences {
                let c = counter.clone();
                let _ = f.add_callback(move |_| {
                    c.fetch_add(1, Ordering::Relaxed);
                });
                let _ = if timestamped {
                    f.signal_timestamp(at)
                } else {
                    f.signal()
                };
            }
        });
        drop(fences);
        ns
    })
}

fn bench_callback() -> [Row; 2] {
    const N: usize = 20_000;
    let counter = Arc::new(AtomicU64::new(0));
    let v = callback_ns(&counter, false);
    let vt = callback_ns(&counter, true);
    // Baseline: box a closure, push it under a mutex, pop and run it.
    let list: Mutex<Vec<Box<dyn FnOnce() + Send>>> = Mutex::new(Vec::new());
    let b = best(30, || {
        ns_per_op(N as u64, || {
            for _ in 0..N {
                let c = counter.clone();
                list.lock().unwrap().push(Box::new(move || {
                    c.fetch_add(1, Ordering::Relaxed);
                }));
                let cbs = std::mem::take(&mut *list.lock().unwrap());
                for cb in cbs {
                    cb();
                }
            }
        })
    });
    [
        Row {
            name: "add_callback + signal",
            value: 1e3 / v,
            unit: "M/s",
            goal: ">= 1.0x baseline",
            baseline_name: "boxed closure via Mutex<Vec>",
            baseline: 1e3 / b,
        },
        Row {
            name: "add_callback + signal_timestamp",
            value: 1e3 / vt,
            unit: "M/s",
            goal: "(report)",
            baseline_name: "boxed closure via Mutex<Vec>",
            baseline: 1e3 / b,
        },
    ]
}

fn bench_merge() -> Row {
    const N: u64 = 2_000;
    let ctx = alloc_contexts(8);
    let fences: Vec<Fence> = (0..64u64)
        .map(|i| Fence::software(ctx + i % 8, i / 8 + 1))
        .collect();
    let v = best(30, || {
        ns_per_op(N, || {
            for _ in 0..N {
                black_box(unwrap_merge(black_box(&fences)));
            }
        })
    });
    // Baseline: sort + dedup of 64 (context, seqno) pairs.
    let pairs: Vec<(u64, u64)> = fences.iter().map(|f| (f.context(), f.seqno())).collect();
    let b = best(30, || {
        ns_per_op(N, || {
            for _ in 0..N {
                let mut p = black_box(&pairs).clone();
                p.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                p.dedup_by_key(|x| x.0);
                black_box(p);
            }
        })
    });
    Row {
        name: "unwrap_merge 64 fences / 8 ctx",
        value: v / 1000.0,
        unit: "us",
        goal: "(report)",
        baseline_name: "sort+dedup of 64 u64 pairs",
        baseline: b / 1000.0,
    }
}

fn bench_fence_set() -> Row {
    const N: u64 = 20_000;
    let ctx = alloc_contexts(8);
    let fences: Vec<Fence> = (0..8u64).map(|i| Fence::software(ctx + i, 1)).collect();
    let mut set = FenceSet::with_capacity(8);
    let v = best(30, || {
        ns_per_op(N, || {
            for _ in 0..N {
                set.clear();
                for f in &fences {
                    set.add(f);
                }
                black_box(&set);
            }
        })
    });
    let mut v2: Vec<Fence> = Vec::with_capacity(8);
    let b = best(30, || {
        ns_per_op(N, || {
            for _ in 0..N {
                v2.clear();
                v2.extend(fences.iter().cloned());
                black_box(&v2);
            }
        })
    });
    Row {
        name: "FenceSet clear + 8 add",
        value: v,
        unit: "ns",
        goal: "(report; 0 alloc)",
        baseline_name: "Vec clear + 8 clone",
        baseline: b,
    }
}

/// `FENCE_BENCH=summary`: only the rows `cargo xtask bench-kernel` sets
/// beside the kernel's dma_fence, one `summary row=R ns=V baseline_ns=B`
/// line each (ns per fence).
fn summary() {
    let signal = bench_signal();
    let stamped = bench_signal_timestamp();
    let clock = bench_clock();
    let [cb, cb_ts] = bench_callback();
    // The callback rows are rates (M/s): their ns per fence.
    let ns = |r: &Row| 1e3 / r.value;
    let base = |r: &Row| 1e3 / r.baseline;
    let lines = [
        ("signal", signal.value, signal.baseline),
        ("signal_timestamp", stamped.value, stamped.baseline),
        ("clock", clock.value, signal.baseline),
        ("callback", ns(&cb), base(&cb)),
        ("callback_timestamp", ns(&cb_ts), base(&cb_ts)),
    ];
    for (row, v, b) in lines {
        println!("summary row={row} ns={v:.2} baseline_ns={b:.2}");
    }
}

fn main() {
    if std::env::var("FENCE_BENCH").as_deref() == Ok("summary") {
        summary();
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs a quick smoke pass.
    let quick = !std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let mut rows = vec![bench_is_signaled(), bench_signal(), bench_clock()];
    rows.extend(bench_coarse_clock());
    rows.push(bench_signal_timestamp());
    if !quick {
        rows.extend(bench_wake());
    }
    rows.extend(bench_callback());
    rows.push(bench_merge());
    rows.push(bench_fence_set());

    println!();
    println!(
        "{:<32} {:>10} {:<5} {:<18} {:<30} {:>10} {:>7}",
        "bench", "value", "unit", "goal", "baseline", "value", "ratio"
    );
    for r in &rows {
        if r.baseline.is_nan() {
            // A figure without a baseline.
            println!(
                "{:<32} {:>10.3} {:<5} {:<18} {:<30}",
                r.name, r.value, r.unit, r.goal, r.baseline_name
            );
            continue;
        }
        println!(
            "{:<32} {:>10.3} {:<5} {:<18} {:<30} {:>10.3} {:>6.2}x",
            r.name,
            r.value,
            r.unit,
            r.goal,
            r.baseline_name,
            r.baseline,
            r.value / r.baseline
        );
    }
    println!("(total {:.1} s)", started.elapsed().as_secs_f64());
}
