//! The copy strategy's CPU copy per frame against a plain memcpy of the
//! same 4·W·H bytes, measured in the same run: a presenter on vkms with a
//! vgem renderer, the copy strategy forced with the CPU engine (its copy:
//! the bounded waits, `DMA_BUF_IOCTL_SYNC` START on both buffers, mmaps,
//! the row copy, SYNC END, the copy fence), 120 frames, the presenter's own
//! `PresentStats::copy_time` per frame; after each frame, one memcpy
//! between two heap buffers of the frame's size as the baseline. Needs the
//! devices: run it in the VM.
//!
//! Run: `cargo bench -p bufsync-examples --bench copy --no-run`, then
//! `cargo xtask vm -- target/release/deps/copy-<hash>`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync_backends::drm::{DrmDevice, DumbBuffer, NodeKind};
use bufsync_present::{
    CopyEngine, DisplayTarget, Presenter, PresenterConfig, RenderDevice, RenderDone, Strategy,
    StrategyChoice,
};

const FRAMES: usize = 120;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let Ok(vgem) = DrmDevice::find("vgem") else {
        println!(
            "SKIPPED: copy bench: no vgem (run it in the VM: cargo xtask vm -- <bench binary>)"
        );
        return;
    };
    let cfg = PresenterConfig {
        strategy: StrategyChoice::Copy,
        ..Default::default()
    };
    let mut p = match Presenter::new(
        RenderDevice::Gem(Arc::new(vgem)),
        DisplayTarget::Driver("vkms".into()),
        cfg,
    ) {
        Ok(p) => p,
        Err(e) => {
            println!("SKIPPED: copy bench: {e}");
            return;
        }
    };
    assert!(matches!(p.strategy(), Strategy::Copy(CopyEngine::Cpu, _)));
    let (w, h) = p.size();
    let bytes = w as usize * h as usize * 4;
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0u8; bytes];
    let mut copies = Vec::with_capacity(FRAMES);
    let mut memcpys = Vec::with_capacity(FRAMES);
    let (mut reads, mut writes) = (Vec::with_capacity(FRAMES), Vec::with_capacity(FRAMES));
    // Where the time goes: reading a render buffer's mapping, writing a
    // display-device buffer's mapping (a dumb buffer of the same device
    // the display buffers live on), each into / from the heap.
    let display_dev = Arc::new(DrmDevice::find_node("vkms", NodeKind::Primary).expect("vkms"));
    let dumb = DumbBuffer::create(&display_dev, w, h, 32).expect("dumb buffer");
    let dumb_buf = dumb.export(bufsync_present::XRGB8888).expect("export");
    let mut dumb_map = dumb_buf.map_copies(true).expect("mmap");
    let mut render_map = None;
    let wait = Duration::from_secs(20);
    for _ in 0..FRAMES {
        let f = p.acquire(wait).expect("a free buffer");
        f.wait_fences().wait_all(Some(wait)).expect("released");
        if render_map.is_none() {
            render_map = Some(
                f.target()
                    .cpu()
                    .expect("CPU target")
                    .dmabuf()
                    .map_copies(false)
                    .expect("mmap"),
            );
        }
        let t = Instant::now();
        render_map
            .as_ref()
            .expect("mapped")
            .read_at(0, &mut dst)
            .expect("read");
        reads.push(t.elapsed());
        let t = Instant::now();
        dumb_map.write_at(0, &src).expect("write");
        writes.push(t.elapsed());
        p.present(f, RenderDone::Signaled).expect("presented");
        while let Some(s) = p.take_stats() {
            copies.push(s.copy_time);
        }
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        memcpys.push(t.elapsed());
    }
    p.wait_idle(wait).expect("idle");
    while let Some(s) = p.take_stats() {
        copies.push(s.copy_time);
    }
    let (c, m) = (median(&mut copies), median(&mut memcpys));
    let (r, wr) = (median(&mut reads), median(&mut writes));
    println!(
        "CPU copy per frame, {w}x{h} XR24 ({bytes} bytes), {FRAMES} frames, {}",
        p.strategy()
    );
    println!();
    println!("| what | median per frame | throughput |");
    println!("|---|---|---|");
    let gbs = |d: Duration| bytes as f64 / d.as_secs_f64().max(1e-9) / 1e9;
    println!(
        "| presenter copy step (waits, SYNC START x2, the copy, SYNC END x2, the copy fence; mappings made once per buffer) | {:.3} ms | {:.2} GB/s |",
        c.as_secs_f64() * 1e3,
        gbs(c)
    );
    println!(
        "| baseline: memcpy of 4·W·H bytes between heap buffers | {:.3} ms | {:.2} GB/s |",
        m.as_secs_f64() * 1e3,
        gbs(m)
    );
    println!(
        "| memcpy from a render buffer's mapping (vgem) to the heap | {:.3} ms | {:.2} GB/s |",
        r.as_secs_f64() * 1e3,
        gbs(r)
    );
    println!(
        "| memcpy from the heap into a display-device buffer's mapping (vkms dumb) | {:.3} ms | {:.2} GB/s |",
        wr.as_secs_f64() * 1e3,
        gbs(wr)
    );
    println!();
    println!(
        "ratio copy / memcpy: {:.2}x; copies counted: {}",
        c.as_secs_f64() / m.as_secs_f64().max(1e-12),
        p.totals().copies
    );
}
