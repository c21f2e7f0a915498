//! End to end on real devices: the presenter's frame rate, latency and CPU
//! time per frame against a raw-ioctl loop doing the same flips with the
//! same fences and no runtime, in the same process, interleaved.
//!
//! Both loops: vkms scans out three vgem buffers; per frame a vgem job
//! fence (`VGEM_FENCE_ATTACH` on a job buffer, its sync_file exported) is
//! the render-done fence, handed to the display as `IN_FENCE_FD`, the flip
//! non-blocking with `OUT_FENCE_PTR` and a page-flip event, the job fence
//! signaled right after the commit (no pixels drawn: the cost measured is
//! the synchronization's), FIFO (each commit after the previous flip's
//! event).
//! - raw: `Display::flip_request` + `commit_request` + `wait_flip`, the
//!   sync_files as plain fds: no reservations, tickets or runtime fences;
//! - presenter: `acquire` / `present(frame, RenderDone::SyncFile)`.
//!
//! Latency: render fence signaled → out-fence signaled (kernel timestamps
//! of both sync_files). Needs the devices: run it in the VM.
//!
//! Run: `cargo bench -p bufsync-examples --bench e2e --no-run`, then
//! `cargo xtask vm -- target/release/deps/e2e-<hash>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync_backends::dmabuf::{Access, DmaBuf};
use bufsync_backends::drm::DrmDevice;
use bufsync_backends::kms::{Display, FlipRequest, Framebuffer};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::testing::VgemBuffer;
use bufsync_present::{DisplayTarget, Presenter, PresenterConfig, RenderDevice, RenderDone};

const FRAMES: usize = 300;
const ROUNDS: usize = 5;
const WAIT: Duration = Duration::from_secs(20);

struct Run {
    rate: f64,
    latency: Duration,
    cpu_per_frame: Duration,
}

fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn signal_ns(s: &SyncFile) -> Option<u64> {
    s.info()
        .ok()?
        .fences
        .iter()
        .map(|f| f.timestamp_ns)
        .max()
        .filter(|&t| t > 0)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The vgem job buffer whose fences stand for render jobs.
struct Jobs {
    buffer: VgemBuffer,
    dmabuf: DmaBuf,
}

impl Jobs {
    fn new(vgem: &Arc<DrmDevice>) -> Jobs {
        let buffer = VgemBuffer::create(vgem, 64, 1).expect("job buffer");
        let dmabuf = buffer.export().expect("job dma-buf");
        Jobs { buffer, dmabuf }
    }

    /// A pending job fence and its sync_file.
    fn job(&self) -> (bufsync_backends::testing::VgemFence, SyncFile) {
        let fence = self.buffer.attach_fence(true).expect("VGEM_FENCE_ATTACH");
        let sync = self
            .dmabuf
            .export_sync_file(Access::Write)
            .expect("sync_file");
        (fence, sync)
    }
}

fn raw(vgem: &Arc<DrmDevice>) -> Run {
    let mut display = Display::open_by_driver("vkms").expect("vkms");
    let (w, h) = display.size();
    let bufs: Vec<VgemBuffer> = (0..3)
        .map(|_| VgemBuffer::create(vgem, w, h).expect("frame"))
        .collect();
    let fbs: Vec<Framebuffer> = bufs
        .iter()
        .map(|b| {
            display
                .import_framebuffer(&b.export().expect("export"))
                .expect("fb")
        })
        .collect();
    let jobs = Jobs::new(vgem);
    let mut lat = Vec::with_capacity(FRAMES);
    let mut pending: Option<(SyncFile, SyncFile)> = None;
    let (t, c) = (Instant::now(), cpu_now());
    for n in 0..FRAMES {
        display.wait_flip(WAIT).expect("flip event");
        if let Some((r, o)) = pending.take() {
            if let (Some(r), Some(o)) = (signal_ns(&r), signal_ns(&o)) {
                lat.push(Duration::from_nanos(o.saturating_sub(r)));
            }
        }
        let (fence, sync) = jobs.job();
        let req = FlipRequest {
            fb: &fbs[n % 3],
            in_fence: Some(&sync),
            want_out_fence: true,
            nonblock: true,
        };
        let (atomic, flags) = display.flip_request(&req).expect("request");
        let mut out = display.commit_request(&atomic, flags).expect("commit");
        drop(atomic);
        let out = out.take(display.output().crtc).expect("out-fence");
        fence.signal().expect("signal");
        pending = Some((sync, out));
    }
    display.wait_flip(WAIT).expect("last flip");
    let (elapsed, cpu) = (t.elapsed(), cpu_now() - c);
    drop(fbs);
    Run {
        rate: FRAMES as f64 / elapsed.as_secs_f64(),
        latency: median(&mut lat),
        cpu_per_frame: cpu / FRAMES as u32,
    }
}

fn presenter(vgem: &Arc<DrmDevice>) -> Run {
    let mut p = Presenter::new(
        RenderDevice::Gem(vgem.clone()),
        DisplayTarget::Driver("vkms".into()),
        PresenterConfig {
            flip_timeout: WAIT,
            render_timeout: WAIT,
            ..Default::default()
        },
    )
    .expect("presenter");
    let jobs = Jobs::new(vgem);
    let mut lat = Vec::with_capacity(FRAMES);
    let (t, c) = (Instant::now(), cpu_now());
    for _ in 0..FRAMES {
        let frame = p.acquire(WAIT).expect("acquire");
        let (fence, sync) = jobs.job();
        p.present(frame, RenderDone::SyncFile(sync))
            .expect("present");
        fence.signal().expect("signal");
        while let Some(s) = p.take_stats() {
            lat.extend(s.latency);
        }
    }
    p.wait_idle(WAIT).expect("idle");
    let (elapsed, cpu) = (t.elapsed(), cpu_now() - c);
    while let Some(s) = p.take_stats() {
        lat.extend(s.latency);
    }
    assert_eq!(
        p.totals().in_fence,
        FRAMES as u64,
        "every flip waited by the display"
    );
    Run {
        rate: FRAMES as f64 / elapsed.as_secs_f64(),
        latency: median(&mut lat),
        cpu_per_frame: cpu / FRAMES as u32,
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let Ok(vgem) = DrmDevice::find("vgem") else {
        println!(
            "SKIPPED: e2e bench: no vgem (run it in the VM: cargo xtask vm -- <bench binary>)"
        );
        return;
    };
    if Display::open_by_driver("vkms").is_err() {
        println!("SKIPPED: e2e bench: no vkms");
        return;
    }
    let vgem = Arc::new(vgem);
    let (mut raws, mut pres) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raws.push(raw(&vgem));
        pres.push(presenter(&vgem));
    }
    println!("end to end, vkms + vgem, IN_FENCE_FD, FIFO, {ROUNDS} interleaved rounds of {FRAMES} frames");
    println!();
    println!("| round | raw fps | presenter fps | ratio | raw latency p50 | presenter latency p50 | raw CPU/frame | presenter CPU/frame |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (i, (r, p)) in raws.iter().zip(&pres).enumerate() {
        let ratio = p.rate / r.rate;
        ratios.push(ratio);
        println!(
            "| {} | {:.1} | {:.1} | {:.3} | {:.2} ms | {:.2} ms | {:.0} µs | {:.0} µs |",
            i + 1,
            r.rate,
            p.rate,
            ratio,
            r.latency.as_secs_f64() * 1e3,
            p.latency.as_secs_f64() * 1e3,
            r.cpu_per_frame.as_secs_f64() * 1e6,
            p.cpu_per_frame.as_secs_f64() * 1e6
        );
    }
    ratios.sort_by(f64::total_cmp);
    let mut cpu: Vec<f64> = raws
        .iter()
        .zip(&pres)
        .map(|(r, p)| p.cpu_per_frame.as_secs_f64() / r.cpu_per_frame.as_secs_f64().max(1e-12))
        .collect();
    cpu.sort_by(f64::total_cmp);
    let total = |v: &[Run]| v.iter().map(|r| r.rate).sum::<f64>();
    println!();
    println!(
        "median rate ratio presenter / raw: {:.3} (goal >= 0.95); mean rates {:.1} / {:.1} fps; \
         median CPU per frame ratio {:.2}",
        ratios[ratios.len() / 2],
        total(&pres) / ROUNDS as f64,
        total(&raws) / ROUNDS as f64,
        cpu[cpu.len() / 2]
    );
}
