//! The demo's flow through the presenter, on both VM displays: vkms (every
//! flip captured through writeback, checked pixel for pixel against the
//! frame it should show) and virtio_gpu (checked by qemu's `screendump`
//! from outside the guest), with lavapipe and vgem rendering, every buffer
//! strategy, FIFO and mailbox.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bufsync_backends::kms::{Display, KmsError};
use bufsync_examples::check::check_frame;
use bufsync_examples::flow::{self, FlowConfig, RendererKind, SyncPath};
use bufsync_examples::render::vgem::{draw_target, VgemRenderer};
use bufsync_examples::report::{self, PathReport};
use bufsync_present::{
    DisplayTarget, PresentMode, Presenter, PresenterConfig, RenderDevice, RenderDone, Strategy,
    StrategyChoice, WritebackCapture,
};
use bufsync_tests::take_displays;

const ENODEV: i32 = 19;

fn run(cfg: &FlowConfig) -> PathReport {
    let r = flow::run(cfg).unwrap_or_else(|e| panic!("{} {:?}: {e}", cfg.display, cfg.renderer));
    log::info!("{}", report::negotiations(std::slice::from_ref(&r)));
    log::info!("{}", report::table(std::slice::from_ref(&r)));
    r
}

/// Every frame shown and checked exactly: `checks` of them (writeback:
/// every flip after the first; screendumps: every n-th frame).
fn assert_exact(r: &PathReport, frames: u32, checks: u32) {
    assert_eq!(r.frames_rendered, frames);
    assert_eq!(r.totals.shown, u64::from(frames), "every frame presented");
    assert_eq!(r.captured, checks, "frames checked");
    assert!(
        r.bad_frames.is_empty(),
        "torn, mixed or stale frames: {:?}",
        r.bad_frames
    );
    assert_eq!(r.out_of_order, 0, "frames shown out of order");
}

/// vkms and lavapipe: render-alloc (zero copy: lavapipe exports, vkms
/// imports), 120 frames, every flip captured through writeback and checked;
/// lavapipe has no pending sync_file, so each flip waits in software.
#[test]
fn vkms_lavapipe_render_alloc_every_flip_checked() {
    let Some(_d) = take_displays("vkms_lavapipe_render_alloc_every_flip_checked") else {
        return;
    };
    let r = run(&FlowConfig::new("vkms", RendererKind::Vulkan, 120));
    assert_eq!(r.negotiation.chosen, Some(Strategy::RenderAlloc));
    assert!(r.negotiation.refusals.is_empty());
    assert_exact(&r, 120, 119);
    assert_eq!(r.totals.copies, 0, "zero copy");
    assert_eq!(r.totals.software, 120, "lavapipe: the software edge");
}

/// virtio_gpu and lavapipe: virtio_gpu refuses the foreign dma-buf
/// (ENODEV), so render-alloc is refused and display-alloc chosen on its
/// own; what the virtual monitor shows is checked by screendumps qemu
/// takes from outside the guest.
#[test]
fn virtio_gpu_lavapipe_refuses_render_alloc_checked_by_screendump() {
    let Some(_d) = take_displays("virtio_gpu_lavapipe_refuses_render_alloc_checked_by_screendump")
    else {
        return;
    };
    assert!(
        bufsync_examples::screendump::available().is_some(),
        "cargo xtask vm provides the screendump channel"
    );
    let mut cfg = FlowConfig::new("virtio_gpu", RendererKind::Vulkan, 30);
    cfg.screendump_every = 5;
    let r = run(&cfg);
    let refused = r
        .negotiation
        .refusal("render-alloc")
        .expect("render-alloc refused");
    assert_eq!(refused.errno, Some(ENODEV), "{refused}");
    assert!(
        matches!(
            r.negotiation.chosen,
            Some(Strategy::DisplayAlloc(_) | Strategy::Copy(..))
        ),
        "{}",
        r.negotiation
    );
    assert_exact(&r, 30, 6);
}

/// The copy strategy forced on vkms: lavapipe copies on the GPU into the
/// display buffers it imports, vgem on the CPU; every frame still exact,
/// and each copy counted.
#[test]
fn vkms_copy_forced_frames_exact_and_counted() {
    let Some(_d) = take_displays("vkms_copy_forced_frames_exact_and_counted") else {
        return;
    };
    for renderer in [RendererKind::Vulkan, RendererKind::Vgem] {
        let mut cfg = FlowConfig::new("vkms", renderer, 40);
        cfg.strategy = StrategyChoice::Copy;
        let r = run(&cfg);
        assert_eq!(r.negotiation.chosen.map(Strategy::kind), Some("copy"));
        assert_exact(&r, 40, 39);
        assert_eq!(r.totals.copies, 40, "every frame copied");
        if renderer == RendererKind::Vgem {
            assert_eq!(r.totals.copy_bytes, 40 * 1024 * 768 * 4, "CPU copies");
        }
    }
}

/// vgem on vkms: its pending kernel fences go to the display as
/// `IN_FENCE_FD` (auto), or into the buffer (`IMPORT_SYNC_FILE`, the
/// implicit path); the renderer draws only after the flip was committed,
/// so a display that did not wait would show a stale frame.
#[test]
fn vgem_on_vkms_in_fence_and_implicit() {
    let Some(_d) = take_displays("vgem_on_vkms_in_fence_and_implicit") else {
        return;
    };
    let r = run(&FlowConfig::new("vkms", RendererKind::Vgem, 120));
    assert_eq!(r.negotiation.chosen, Some(Strategy::RenderAlloc));
    assert_exact(&r, 120, 119);
    assert_eq!(
        r.totals.in_fence, 120,
        "the display waited for every render fence"
    );
    let mut cfg = FlowConfig::new("vkms", RendererKind::Vgem, 60);
    cfg.path = SyncPath::Implicit;
    let r = run(&cfg);
    assert_exact(&r, 60, 59);
    assert_eq!(
        r.totals.implicit, 60,
        "every render fence pushed into the buffer"
    );
}

/// vgem on virtio_gpu: render-alloc refused (ENODEV), display-alloc chosen
/// (vgem imports virtio_gpu's buffers), the display waits for the pending
/// vgem fences; checked by screendump.
#[test]
fn vgem_on_virtio_gpu_checked_by_screendump() {
    let Some(_d) = take_displays("vgem_on_virtio_gpu_checked_by_screendump") else {
        return;
    };
    let mut cfg = FlowConfig::new("virtio_gpu", RendererKind::Vgem, 30);
    cfg.screendump_every = 5;
    let r = run(&cfg);
    assert_eq!(
        r.negotiation.refusal("render-alloc").and_then(|x| x.errno),
        Some(ENODEV)
    );
    assert!(matches!(
        r.negotiation.chosen,
        Some(Strategy::DisplayAlloc(_))
    ));
    assert_exact(&r, 30, 6);
    assert_eq!(r.totals.in_fence, 30);
}

/// Every strategy, forced, on both displays, with both renderers: chosen
/// when it works (GBM among them), refused with its errno when not, and
/// the frames exact either way.
#[test]
fn every_strategy_on_both_displays() {
    let Some(_d) = take_displays("every_strategy_on_both_displays") else {
        return;
    };
    let mut table = Vec::new();
    for display in ["vkms", "virtio_gpu"] {
        for renderer in [RendererKind::Vulkan, RendererKind::Vgem] {
            for strategy in [
                StrategyChoice::RenderAlloc,
                StrategyChoice::DisplayAlloc,
                StrategyChoice::Copy,
            ] {
                let mut cfg = FlowConfig::new(display, renderer, 10);
                cfg.strategy = strategy;
                cfg.screendump_every = 3;
                let virtio = display == "virtio_gpu";
                match flow::run(&cfg) {
                    Ok(r) => {
                        let checks = if virtio { 4 } else { 9 };
                        assert_exact(&r, 10, checks);
                        table.push(format!(
                            "{display} {renderer:?} {strategy:?}: {}",
                            r.negotiation
                        ));
                        if strategy == StrategyChoice::DisplayAlloc {
                            assert_eq!(
                                r.negotiation.chosen,
                                Some(Strategy::DisplayAlloc(bufsync_present::Allocator::Gbm)),
                                "GBM first where it works"
                            );
                        }
                    }
                    Err(flow::FlowError::Present(bufsync_present::PresentError::NoStrategy(n))) => {
                        assert!(
                            virtio && strategy == StrategyChoice::RenderAlloc,
                            "only virtio_gpu refuses a strategy: {n}"
                        );
                        assert_eq!(n.refusals[0].errno, Some(ENODEV), "{n}");
                        table.push(format!("{display} {renderer:?} {strategy:?}: {n}"));
                    }
                    Err(e) => panic!("{display} {renderer:?} {strategy:?}: {e}"),
                }
            }
        }
    }
    log::info!("strategy table:\n{}", table.join(""));
}

/// FIFO: every presented frame reaches the screen, in order, one per
/// flip (each flip captured: frames 1..N, none missing, none repeated).
#[test]
fn fifo_shows_every_frame_in_order() {
    let Some(_d) = take_displays("fifo_shows_every_frame_in_order") else {
        return;
    };
    let r = run(&FlowConfig::new("vkms", RendererKind::Vgem, 30));
    assert_exact(&r, 30, 29);
    assert_eq!(r.last_checked, Some(29));
    assert_eq!(r.totals.dropped, 0);
}

/// Mailbox: frames presented while a flip is in flight replace each other
/// (the older ones are dropped), and the display never shows an older frame
/// after a newer one. Deterministic: each cycle's first frame is presented
/// with a pending vgem fence, so its flip stays in flight (the display
/// waits for the fence) while three more frames are drawn and presented;
/// only the last of those is shown, after it.
#[test]
fn mailbox_drops_frames_and_never_goes_back() {
    let Some(_d) = take_displays("mailbox_drops_frames_and_never_goes_back") else {
        return;
    };
    let mut vgem = VgemRenderer::new().unwrap();
    let cfg = PresenterConfig {
        mode: PresentMode::Mailbox,
        buffers: 4,
        ..Default::default()
    };
    let mut p = Presenter::new(
        RenderDevice::Gem(vgem.device().clone()),
        DisplayTarget::Driver("vkms".into()),
        cfg,
    )
    .unwrap();
    let cap = WritebackCapture::new(p.display(), Duration::from_secs(5)).unwrap();
    p.set_extension(Some(cap.extension()));
    let layout = cap.layout();
    let mut row = Vec::new();
    let wait = Duration::from_secs(5);
    let mut expected_shown = Vec::new();
    for cycle in 0..6 {
        // Held: its flip waits for the vgem fence.
        let f = p.acquire(wait).unwrap();
        let n = f.number();
        let (done, _) = vgem.begin(&f, n as u32).unwrap();
        p.present(f, done).unwrap();
        expected_shown.push(n);
        let mut last = n;
        for _ in 0..3 {
            let f = p.acquire(wait).unwrap();
            f.wait_fences().wait_all(Some(wait)).unwrap();
            last = f.number();
            draw_target(f.target().cpu().unwrap(), last as u32, &mut row).unwrap();
            p.present(f, RenderDone::Signaled).unwrap();
        }
        assert_eq!(p.totals().dropped, 2 * (cycle + 1), "two of three replaced");
        expected_shown.push(last);
        vgem.finish().unwrap();
        p.wait_idle(wait).unwrap();
    }
    let t = p.totals();
    assert_eq!(t.shown, 12);
    assert_eq!(t.shown + t.dropped, t.presented);
    let mut seen = Vec::new();
    while let Some(c) = cap.next(true).unwrap() {
        let n = c.frame;
        check_frame(&c.pixels, &layout, n as u32).unwrap_or_else(|e| panic!("frame {n}: {e}"));
        seen.push(n);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "went back: {seen:?}");
    assert_eq!(
        seen,
        expected_shown[1..],
        "every flip after the first captured"
    );
}

/// The presenter's writeback capture left unread keeps the newest
/// `WritebackCapture::KEPT` captures, oldest first, each exactly its
/// frame (the older ones dropped, not mixed up); the first flip, the
/// modeset, is not captured; a display without writeback is refused.
#[test]
fn writeback_capture_keeps_the_newest_unread_in_order() {
    let Some(_d) = take_displays("writeback_capture_keeps_the_newest_unread_in_order") else {
        return;
    };
    let wait = Duration::from_secs(5);
    let virtio = Display::open_by_driver("virtio_gpu").unwrap();
    let refused = WritebackCapture::new(&virtio, wait);
    assert!(
        matches!(refused, Err(KmsError::NoOutput { .. })),
        "virtio_gpu has no writeback connector: {refused:?}"
    );
    drop(virtio);

    let vgem = VgemRenderer::new().unwrap();
    let mut p = Presenter::new(
        RenderDevice::Gem(vgem.device().clone()),
        DisplayTarget::Driver("vkms".into()),
        PresenterConfig::default(),
    )
    .unwrap();
    let cap = WritebackCapture::new(p.display(), wait).unwrap();
    p.set_extension(Some(cap.extension()));
    let layout = cap.layout();
    let kept = WritebackCapture::KEPT as u64;
    let frames = kept + 4;
    let mut row = Vec::new();
    for _ in 0..frames {
        let f = p.acquire(wait).unwrap();
        f.wait_fences().wait_all(Some(wait)).unwrap();
        draw_target(f.target().cpu().unwrap(), f.number() as u32, &mut row).unwrap();
        p.present(f, RenderDone::Signaled).unwrap();
    }
    p.wait_idle(wait).unwrap();
    let mut seen = Vec::new();
    while let Some(c) = cap.next(true).unwrap() {
        let n = c.frame;
        check_frame(&c.pixels, &layout, n as u32).unwrap_or_else(|e| panic!("frame {n}: {e}"));
        seen.push(n);
        cap.recycle(c);
    }
    assert_eq!(p.totals().shown, frames);
    // Flips 1..frames captured (not 0, the modeset); the newest `kept`
    // finished ones kept. The last capture's fence may signal just after
    // the flip event `wait_idle` saw: then it finishes once the reader has
    // made room, and one more older capture is still there.
    let newest: Vec<u64> = (frames - kept..frames).collect();
    let one_more: Vec<u64> = (frames - kept - 1..frames).collect();
    assert!(
        seen == newest || seen == one_more,
        "captures read: {seen:?}"
    );
    assert!(cap.next(false).unwrap().is_none());
}

/// Ctrl-C in the demo sets the stop flag: the flow ends after the current
/// frame with every frame it rendered presented and checked, puts the
/// display back as it found it, and leaves no fd behind.
#[test]
fn flow_stopped_early_restores_display_and_leaks_no_fd() {
    let Some(_d) = take_displays("flow_stopped_early_restores_display_and_leaks_no_fd") else {
        return;
    };
    bufsync_backends::reactor::global().unwrap();
    let routing = bufsync_tests::routing_at_rest("vkms");
    assert!(!routing.is_empty(), "no connector or CRTC state parsed");
    let fds = bufsync_tests::settled_fds();
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let mut cfg = FlowConfig::new("vkms", RendererKind::Vgem, 100_000);
    cfg.stop = stop;
    let r = run(&cfg);
    stopper.join().unwrap();
    assert!(r.frames_rendered > 0 && r.frames_rendered < 100_000);
    assert_exact(&r, r.frames_rendered, r.frames_rendered - 1);
    assert_eq!(bufsync_tests::settled_fds(), fds, "fds leaked");
    assert_eq!(
        bufsync_tests::display_routing("vkms"),
        routing,
        "display not restored"
    );
}
