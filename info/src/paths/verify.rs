//! `paths --verify`: for every cell the matrix claims possible, one fresh
//! pending fence of the row's kind is made, the column's waiter starts
//! waiting for it by the decided route (on a worker thread), the fence is
//! held `hold` (the waiter must still be waiting then), then its producer
//! signals it and the time until the waiter is done is the cell's latency.
//!
//! Producers: a runtime fence (`signal`); a sync_file from sw_sync, else a
//! vgem fence exported from its dma-buf, else a Vulkan device whose SYNC_FD
//! export hands out pending fences; a drm_syncobj timeline point holding
//! such a sync_file; each Vulkan device's render-done point (a submission
//! held back on a host-signaled timeline gate: what `Submitter` gives the
//! presenter); a seqno word written without waking anyone (as a device
//! writes it).
//!
//! Waiters, each by the decided route: the CPU (`wait_fence`); a Vulkan
//! submission on the device (`Submitter::submit`, whose report must show
//! the decided path) then its completion; a KMS flip (see `kms`) until its
//! out-fence signals; the dma-buf (`push_fence`, then `poll` for the
//! buffer's writers, what every implicit-sync reader does), or a software
//! wait before the hand-off.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::{Fence, FenceContext};
use bufsync_backends::dmabuf::Access;
use bufsync_backends::drm::{DrmDevice, Syncobj};
use bufsync_backends::seqno::{SeqnoMemory, SeqnoWidth, SeqnoWord};
use bufsync_backends::sync_file::{SyncFile, SyncFileFence};
use bufsync_backends::testing::{SwSyncTimeline, VgemBuffer};
use bufsync_backends::vulkan::{Submitter, TimelineSemaphore, Wait};
use bufsync_backends::wait_path::{wait_fence, Route};

use super::kms::Output;
use super::{Cell, ColDef, Env, RowDef, Target, Verified};

/// How `--verify` runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long each fence is held pending while its waiter waits (at
    /// least three frames for KMS planes).
    pub hold: Duration,
    /// Bound on every wait.
    pub bound: Duration,
    /// Trials per cell (a fresh fence each); the latency is their median.
    pub repeat: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hold: Duration::from_millis(20),
            bound: Duration::from_secs(5),
            repeat: 3,
        }
    }
}

type Signal = Box<dyn FnOnce() -> Result<(), String>>;

/// A pending fence, its producer's signal, and what must live until then.
struct Pending {
    fence: Fence,
    signal: Signal,
    _keep: Box<dyn Any>,
}

enum SyncSource {
    SwSync(Arc<SwSyncTimeline>, u32),
    Vgem(Arc<DrmDevice>),
    Vulkan(Submitter),
    None(String),
}

struct Producers {
    sw: FenceContext,
    sync: SyncSource,
    syncobj: Option<(Arc<Syncobj>, u64)>,
    vk: HashMap<usize, Submitter>,
    word: Result<Arc<SeqnoWord>, String>,
    seqno: u64,
    bound: Duration,
}

fn s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A Vulkan render-done point held back on a host gate: (point, gate).
fn held_point(
    sub: &Submitter,
    bound: Duration,
) -> Result<(bufsync_backends::vulkan::Submitted, Arc<TimelineSemaphore>), String> {
    let gate = TimelineSemaphore::new(sub.vulkan(), 0).map_err(s)?;
    let done = sub
        .submit(&[Wait::Fence(&gate.point(1))], bound, |_, _| Ok(()))
        .map_err(s)?;
    Ok((done, gate))
}

impl Producers {
    fn new(env: &Env, bound: Duration) -> Producers {
        let sync = if SwSyncTimeline::is_available() {
            match SwSyncTimeline::new() {
                Ok(t) => SyncSource::SwSync(Arc::new(t), 0),
                Err(e) => SyncSource::None(format!("sw_sync: {e}")),
            }
        } else if let Ok(vgem) = VgemBuffer::device() {
            SyncSource::Vgem(vgem)
        } else {
            let pending = env.vk_usable().into_iter().find_map(|(_, d)| {
                let ctx = d.ctx.as_ref().ok()?;
                if ctx.sync_file_out() {
                    Submitter::new(ctx).ok()
                } else {
                    None
                }
            });
            match pending {
                Some(sub) => SyncSource::Vulkan(sub),
                None => SyncSource::None(
                    "no producer of pending sync_files here (no sw_sync, no vgem, no Vulkan \
                     device whose SYNC_FD export is pending)"
                        .into(),
                ),
            }
        };
        let syncobj = env
            .syncobj
            .as_ref()
            .and_then(|d| Syncobj::create(d, false).ok())
            .map(|o| (Arc::new(o), 0));
        let mut vk = HashMap::new();
        for (i, d) in env.vk_usable() {
            if let Ok(ctx) = &d.ctx {
                if let Ok(sub) = Submitter::new(ctx) {
                    vk.insert(i, sub);
                }
            }
        }
        let word = SeqnoMemory::anonymous(64)
            .and_then(|m| m.word(0, SeqnoWidth::U64))
            .map_err(|e| format!("a seqno word in anonymous memory: {e}"));
        Producers {
            sw: FenceContext::new("bufsync-info", "verify"),
            sync,
            syncobj,
            vk,
            word,
            seqno: 0,
            bound,
        }
    }

    /// A pending sync_file and its signal.
    fn sync_file(&mut self) -> Result<(SyncFile, Signal, Box<dyn Any>), String> {
        match &mut self.sync {
            SyncSource::SwSync(tl, next) => {
                *next += 1;
                let f = tl.create_fence(*next, "bufsync-info").map_err(s)?;
                let tl = Arc::clone(tl);
                Ok((f, Box::new(move || tl.inc(1).map_err(s)), Box::new(())))
            }
            SyncSource::Vgem(vgem) => {
                let bo = VgemBuffer::create(vgem, 16, 16).map_err(s)?;
                let fence = bo.attach_fence(true).map_err(s)?;
                let buf = bo.export().map_err(s)?;
                let f = buf.export_sync_file(Access::Read).map_err(s)?;
                Ok((
                    f,
                    Box::new(move || fence.signal().map_err(s)),
                    Box::new((bo, buf)),
                ))
            }
            SyncSource::Vulkan(sub) => {
                let (done, gate) = held_point(sub, self.bound)?;
                let f = done
                    .sync_file
                    .as_ref()
                    .ok_or("the submission gave no sync_file")?
                    .try_clone()
                    .map_err(s)?;
                Ok((
                    f,
                    Box::new(move || gate.signal(1).map_err(s)),
                    Box::new(done.fence),
                ))
            }
            SyncSource::None(why) => Err(why.clone()),
        }
    }

    /// A fresh pending fence of `row`'s kind.
    fn make(&mut self, row: &RowDef) -> Result<Pending, String> {
        match (row.report.id.as_str(), row.vk) {
            ("software", _) => {
                let fence = self.sw.create_fence();
                let f = fence.clone();
                Ok(Pending {
                    fence,
                    signal: Box::new(move || f.signal().map_err(|e| format!("{e:?}"))),
                    _keep: Box::new(()),
                })
            }
            ("sync_file", _) => {
                let (file, signal, keep) = self.sync_file()?;
                Ok(Pending {
                    fence: SyncFileFence::fence(file).map_err(s)?,
                    signal,
                    _keep: keep,
                })
            }
            ("syncobj", _) => {
                let (file, signal, keep) = self.sync_file()?;
                let (obj, point) = self
                    .syncobj
                    .as_mut()
                    .ok_or("no drm_syncobj could be created")?;
                *point += 1;
                obj.import_sync_file(*point, &file).map_err(s)?;
                Ok(Pending {
                    fence: obj.point_fence(*point),
                    signal,
                    _keep: Box::new((keep, file)),
                })
            }
            ("seqno", _) => {
                let word = Arc::clone(self.word.as_ref().map_err(Clone::clone)?);
                self.seqno += 1;
                let n = self.seqno;
                Ok(Pending {
                    fence: word.fence(n),
                    // A device's write: nobody is woken, pollers find it.
                    signal: Box::new(move || {
                        word.store(n);
                        Ok(())
                    }),
                    _keep: Box::new(()),
                })
            }
            (_, Some(i)) => {
                let sub = self.vk.get(&i).ok_or("no submitter on the device")?;
                let (done, gate) = held_point(sub, self.bound)?;
                Ok(Pending {
                    fence: done.fence.clone(),
                    signal: Box::new(move || gate.signal(1).map_err(s)),
                    _keep: Box::new(done),
                })
            }
            (id, None) => Err(format!("no producer for `{id}`")),
        }
    }
}

/// Holds `p` pending while `work` waits on a worker thread, then signals
/// it; `work` returns when it is done (and what it did).
fn trial<W>(p: Pending, hold: Duration, work: W) -> Verified
where
    W: FnOnce(&Fence) -> Result<(Instant, String), String> + Send,
{
    let fence = p.fence.clone();
    let started = std::sync::atomic::AtomicBool::new(false);
    let (early, signaled_at, sig, result) = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            started.store(true, std::sync::atomic::Ordering::Release);
            work(&fence)
        });
        // The hold counts from the worker running (a thread can take
        // longer than the hold to start on a loaded or emulated CPU, and
        // would then find the fence signaled), bounded.
        let t0 = Instant::now();
        while !started.load(std::sync::atomic::Ordering::Acquire)
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(hold);
        let early = h.is_finished();
        let at = Instant::now();
        let sig = (p.signal)();
        let result = h
            .join()
            .unwrap_or_else(|_| Err("the waiter panicked".into()));
        (early, at, sig, result)
    });
    drop(p._keep);
    let fail = |detail: String| Verified {
        result: "fail",
        latency_us: None,
        latency_min_us: None,
        latency_max_us: None,
        samples: 0,
        detail,
    };
    match (sig, result) {
        (Err(e), _) => fail(format!("the producer's signal failed: {e}")),
        (_, Err(e)) => fail(e),
        (Ok(()), Ok((done, what))) => {
            if early || done < signaled_at {
                fail(format!("{what}: done before the fence was signaled"))
            } else {
                let us = (done - signaled_at).as_secs_f64() * 1e6;
                Verified {
                    result: "pass",
                    latency_us: Some(us),
                    latency_min_us: Some(us),
                    latency_max_us: Some(us),
                    samples: 1,
                    detail: what,
                }
            }
        }
    }
}

fn skipped(detail: String) -> Verified {
    Verified {
        result: "skipped",
        latency_us: None,
        latency_min_us: None,
        latency_max_us: None,
        samples: 0,
        detail,
    }
}

/// Runs every possible cell of the matrix, filling in `verify`.
pub(super) fn run(
    env: &mut Env,
    rows: &[RowDef],
    cols: &[ColDef],
    cells: &mut [Cell],
    opts: Options,
) {
    let mut producers = Producers::new(env, opts.bound);
    let mut waiters: HashMap<usize, Submitter> = HashMap::new();
    let mut outputs: HashMap<usize, Result<Output, String>> = HashMap::new();
    let bound = opts.bound;
    // One untimed trial first: the first worker thread and the first
    // wake-up of the process cost more than any later one, and would land
    // in the first cell.
    let warm = producers.sw.create_fence();
    let f = warm.clone();
    let _ = trial(
        Pending {
            fence: warm,
            signal: Box::new(move || f.signal().map_err(|e| format!("{e:?}"))),
            _keep: Box::new(()),
        },
        opts.hold,
        |f| {
            wait_fence(f, bound).map_err(|e| e.to_string())?;
            Ok((Instant::now(), String::new()))
        },
    );
    for (ri, row) in rows.iter().enumerate() {
        for (ci, col) in cols.iter().enumerate() {
            let cell = &mut cells[ri * cols.len() + ci];
            let Some(route) = cell.route.and_then(Route::from_name) else {
                continue;
            };
            // The waiter's side first: a skipped column makes no fence.
            let mut hold = opts.hold;
            match col.target {
                Target::Vulkan(i) if !waiters.contains_key(&i) => {
                    let sub = env.vk.as_ref().ok().and_then(|l| l[i].ctx.as_ref().ok());
                    match sub.map(Submitter::new) {
                        Some(Ok(s)) => {
                            waiters.insert(i, s);
                        }
                        Some(Err(e)) => {
                            cell.verify = Some(skipped(format!("no submitter: {e}")));
                            continue;
                        }
                        None => continue,
                    }
                }
                Target::Plane(n, p) => {
                    let out = outputs
                        .entry(n)
                        .or_insert_with(|| Output::open(&mut env.kms[n]));
                    let plane = env.kms[n].planes[p].id;
                    match out {
                        Ok(o) => {
                            if let Err(e) = o.usable(plane) {
                                cell.verify = Some(skipped(e));
                                continue;
                            }
                            hold = hold.max(o.frame_time() * 3);
                        }
                        Err(e) => {
                            cell.verify = Some(skipped(format!("{}: {e}", env.kms[n].name)));
                            continue;
                        }
                    }
                }
                Target::DmaBuf if env.dmabuf.is_err() => continue,
                _ => {}
            }
            let mut runs = Vec::new();
            for _ in 0..opts.repeat.max(1) {
                let pending = match producers.make(row) {
                    Ok(p) => p,
                    Err(e) => {
                        runs.push(skipped(e));
                        break;
                    }
                };
                let v = match col.target {
                    Target::Cpu => trial(pending, hold, |f| {
                        wait_fence(f, bound).map_err(|e| format!("wait_fence: {e}"))?;
                        Ok((Instant::now(), format!("wait_fence ({route})")))
                    }),
                    Target::Vulkan(i) => {
                        let sub = &waiters[&i];
                        trial(pending, hold, |f| vulkan_wait(sub, f, route, bound))
                    }
                    Target::Plane(n, p) => {
                        let plane = env.kms[n].planes[p].id;
                        match outputs.get_mut(&n) {
                            Some(Ok(out)) => {
                                trial(pending, hold, |f| out.flip(plane, route, f, bound))
                            }
                            _ => skipped("the output is gone".into()),
                        }
                    }
                    Target::DmaBuf => match &env.dmabuf {
                        Ok(probe) => {
                            let buf = &probe.buf;
                            trial(pending, hold, |f| dmabuf_wait(buf, f, route, bound))
                        }
                        Err(e) => skipped(e.clone()),
                    },
                };
                let stop = v.result != "pass";
                runs.push(v);
                if stop {
                    break;
                }
            }
            let v = combine(runs, opts.repeat.max(1));
            log::info!(
                "verify {} by {}: {} {:?} {}",
                cell.fence,
                cell.waiter,
                v.result,
                v.latency_us,
                v.detail
            );
            cell.verify = Some(v);
        }
    }
    for (_, out) in outputs {
        if let Ok(o) = out {
            o.finish();
        }
    }
}

/// The dma-buf's implicit sync waits for `f` by `route`: pushed into the
/// buffer as a writer and `poll(POLLIN)` on it, or a software wait before
/// the hand-off.
fn dmabuf_wait(
    buf: &bufsync_backends::dmabuf::DmaBuf,
    f: &Fence,
    route: Route,
    bound: Duration,
) -> Result<(Instant, String), String> {
    if route == Route::ImportSyncFile {
        let pushed = buf.push_fence(f, Access::Write).map_err(s)?;
        buf.wait_idle(Access::Read, bound).map_err(s)?;
        Ok((
            Instant::now(),
            format!("IMPORT_SYNC_FILE ({pushed}), poll(POLLIN) on the dma-buf"),
        ))
    } else {
        wait_fence(f, bound).map_err(|e| format!("wait_fence: {e}"))?;
        Ok((Instant::now(), "software wait before the hand-off".into()))
    }
}

/// One cell's result from its trials: the first that did not pass, else
/// a pass with the median, lowest and highest latency.
fn combine(mut runs: Vec<Verified>, wanted: u32) -> Verified {
    let n = runs.len();
    if let Some(i) = runs.iter().position(|v| v.result != "pass") {
        let mut v = runs.swap_remove(i);
        if wanted > 1 && v.result == "fail" {
            v.detail = format!("trial {} of {wanted}: {}", i + 1, v.detail);
        }
        v.samples = i as u32;
        return v;
    }
    let mut lat: Vec<f64> = runs.iter().filter_map(|v| v.latency_us).collect();
    lat.sort_by(f64::total_cmp);
    let mut v = runs.swap_remove(0);
    v.samples = n as u32;
    v.latency_us = lat.get(lat.len() / 2).copied();
    v.latency_min_us = lat.first().copied();
    v.latency_max_us = lat.last().copied();
    v
}

/// A submission on `sub`'s device that waits for `f`, then its completion;
/// the submission's own report must show the decided path.
fn vulkan_wait(
    sub: &Submitter,
    f: &Fence,
    route: Route,
    bound: Duration,
) -> Result<(Instant, String), String> {
    let done = sub
        .submit(&[Wait::Fence(f)], bound, |_, _| Ok(()))
        .map_err(|e| format!("submit: {e}"))?;
    let r = done.report;
    let taken = if r.timeline_hw == 1 {
        Route::GpuTimeline
    } else if r.sync_file_hw == 1 {
        Route::GpuSyncFile
    } else if r.software == 1 {
        Route::CpuBeforeSubmit
    } else {
        return Err(format!("the submission's report shows no wait: {r:?}"));
    };
    if taken != route {
        return Err(format!("decided {route} but the submission took {taken}"));
    }
    wait_fence(&done.fence, bound).map_err(|e| format!("completion: {e}"))?;
    Ok((Instant::now(), format!("submission: {taken}")))
}
