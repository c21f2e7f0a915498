//! Backend fence benchmarks (device figures from the test VM are relative
//! only):
//! - `wake/*`: wake latency of a pending sync_file (sw_sync) fence: a
//!   runtime `SyncFileFence` woken through the shared epoll reactor,
//!   against a thread blocked in a raw `poll()` on the fd;
//! - `reactor_fire/N`: signal-to-callback time of one fence while N other
//!   fences are pending in the reactor (1, 100, 10 000);
//! - `cpu_access/*`: `begin_cpu_access` + `end` on an idle udmabuf.
//!
//! Run: `cargo xtask vm -- cargo bench -p bufsync-backends --features testing --bench fences`.
//! Without the devices (sw_sync, udmabuf) the groups are skipped.

use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bufsync_backends::dmabuf::{Access, Udmabuf};
use bufsync_backends::sync_file::SyncFileFence;
use bufsync_backends::testing::SwSyncTimeline;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let want = 30_000;
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.map_or(want, |m| m.max(want));
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: Some(hard),
        },
    );
}

fn wake(c: &mut Criterion) {
    if !SwSyncTimeline::is_available() {
        eprintln!("SKIPPED: wake: sw_sync not available");
        return;
    }
    let mut g = c.benchmark_group("wake");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));

    g.bench_function("raw_poll", |b| {
        // One persistent waiter thread, like the reactor's.
        let tl = SwSyncTimeline::new().unwrap();
        let (file_tx, file_rx) = mpsc::channel::<bufsync_backends::sync_file::SyncFile>();
        let (woke_tx, woke_rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            for file in file_rx {
                let mut fds = [rustix::event::PollFd::new(
                    &file,
                    rustix::event::PollFlags::IN,
                )];
                rustix::event::poll(&mut fds, None).unwrap();
                woke_tx.send(Instant::now()).unwrap();
            }
        });
        let mut value = 0u32;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                value += 1;
                file_tx
                    .send(tl.create_fence(value, "poll").unwrap())
                    .unwrap();
                std::thread::sleep(Duration::from_micros(200));
                let t0 = Instant::now();
                tl.inc(1).unwrap();
                total += woke_rx.recv().unwrap() - t0;
            }
            total
        });
        drop(file_tx);
        waiter.join().unwrap();
    });

    g.bench_function("reactor", |b| {
        let tl = SwSyncTimeline::new().unwrap();
        let mut value = 0u32;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                value += 1;
                let fence =
                    SyncFileFence::fence(tl.create_fence(value, "reactor").unwrap()).unwrap();
                let (tx, rx) = mpsc::channel();
                fence
                    .add_callback(move |_| tx.send(Instant::now()).unwrap())
                    .unwrap();
                std::thread::sleep(Duration::from_micros(200));
                let t0 = Instant::now();
                tl.inc(1).unwrap();
                total += rx.recv().unwrap() - t0;
            }
            total
        });
    });
    g.finish();
}

fn reactor_fire(c: &mut Criterion) {
    if !SwSyncTimeline::is_available() {
        eprintln!("SKIPPED: reactor_fire: sw_sync not available");
        return;
    }
    raise_fd_limit();
    let mut g = c.benchmark_group("reactor_fire");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for pending in [1usize, 100, 10_000] {
        // `pending` fences that never signal during the measurement.
        let parked = SwSyncTimeline::new().unwrap();
        let mut held = Vec::with_capacity(pending);
        for _ in 0..pending {
            match parked
                .create_fence(1, "parked")
                .and_then(SyncFileFence::fence)
            {
                Ok(f) => {
                    f.enable_signaling();
                    held.push(f);
                }
                Err(e) => {
                    eprintln!(
                        "reactor_fire/{pending}: stopped at {} pending fences: {e}",
                        held.len()
                    );
                    break;
                }
            }
        }
        let tl = SwSyncTimeline::new().unwrap();
        let mut value = 0u32;
        g.bench_with_input(
            BenchmarkId::from_parameter(held.len()),
            &held.len(),
            |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        value += 1;
                        let fence =
                            SyncFileFence::fence(tl.create_fence(value, "fire").unwrap()).unwrap();
                        let (tx, rx) = mpsc::channel();
                        let t0 = Instant::now();
                        fence
                            .add_callback(move |_| tx.send(Instant::now()).unwrap())
                            .unwrap();
                        tl.inc(1).unwrap();
                        total += rx.recv().unwrap() - t0;
                    }
                    total
                });
            },
        );
        drop(held);
        drop(parked);
    }
    g.finish();
}

fn cpu_access(c: &mut Criterion) {
    if !Udmabuf::is_available() {
        eprintln!("SKIPPED: cpu_access: udmabuf not available");
        return;
    }
    let buf = Udmabuf::create(1 << 20).unwrap();
    let _map = buf.map(true).unwrap();
    let mut g = c.benchmark_group("cpu_access");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for access in [Access::Read, Access::Write] {
        g.bench_function(format!("{access:?}"), |b| {
            b.iter(|| {
                let guard = buf
                    .begin_cpu_access(access, Duration::from_secs(1))
                    .unwrap();
                guard.end().unwrap();
            })
        });
    }
    g.bench_function("raw_sync_ioctl_pair", |b| {
        use bufsync_backends::sys::dma_buf as raw;
        b.iter(|| {
            raw::sync(buf.as_fd(), raw::SYNC_START | raw::SYNC_RW).unwrap();
            raw::sync(buf.as_fd(), raw::SYNC_END | raw::SYNC_RW).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, wake, reactor_fire, cpu_access);
criterion_main!(benches);
