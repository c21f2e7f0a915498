//! The mission's flow on real devices: vgem or lavapipe renders, vkms scans
//! out, every flip is captured through writeback and must be exactly the
//! frame it showed (no tearing, no mix, never stale). 120 frames per path.

use bufsync_examples::flow::{self, FlowConfig, RendererKind, SyncPath};
use bufsync_examples::stress;
use bufsync_tests::require;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

/// Takes the display for test `test` (vkms has one CRTC: one flow at a
/// time); `None` (the test skips, loudly) without DRM devices outside the VM.
fn take_display(test: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = bufsync_tests::serial();
    require(
        test,
        "vkms, vgem and a writeback connector",
        Path::new("/dev/dri").exists(),
    )
    .then_some(guard)
}

fn run(name: &str, path: SyncPath, renderer: RendererKind) {
    let Some(_display) = take_display(name) else {
        return;
    };
    let cfg = FlowConfig {
        path,
        renderer,
        frames: 120,
        swapchain: 3,
        display: "vkms".into(),
        capture: true,
        png_dir: None,
        png_every: 1,
        stop: Arc::new(AtomicBool::new(false)),
    };
    let r = flow::run(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    log::info!(
        "{}",
        bufsync_examples::report::table(std::slice::from_ref(&r))
    );
    assert_eq!(r.frames_rendered, 120);
    assert_eq!(r.frames_presented, 120, "every frame presented");
    assert_eq!(r.captured, 119, "every flip after the first captured");
    assert!(
        r.bad_frames.is_empty(),
        "torn, mixed or stale frames: {:?}",
        r.bad_frames
    );
    match path {
        SyncPath::Hw => assert_eq!(
            r.flip_hw_waits, 120,
            "the display waited for every render fence"
        ),
        SyncPath::Sw => assert_eq!(
            r.flip_sw_waits, 120,
            "lavapipe has no pending sync_file: software path"
        ),
        SyncPath::Implicit => assert_eq!(
            r.implicit_pushes, 120,
            "every render fence pushed into the dma-buf"
        ),
    }
}

#[test]
fn flow_hw_vgem_in_fence() {
    run("flow_hw_vgem_in_fence", SyncPath::Hw, RendererKind::Vgem);
}

#[test]
fn flow_sw_lavapipe() {
    run("flow_sw_lavapipe", SyncPath::Sw, RendererKind::Vulkan);
}

#[test]
fn flow_implicit_vgem_import_sync_file() {
    run(
        "flow_implicit_vgem_import_sync_file",
        SyncPath::Implicit,
        RendererKind::Vgem,
    );
}

/// Two render threads and the display contend for the same four frames
/// through tickets (ABBA orders included): no deadlock (every wait is
/// bounded, a stall fails with the reservation dump), no torn frame.
#[test]
fn stress_two_renderers_and_display_contend_through_tickets() {
    let Some(_display) = take_display("stress_two_renderers_and_display_contend_through_tickets")
    else {
        return;
    };
    let cfg = stress::StressConfig {
        flips: 60,
        swapchain: 4,
        renderers: 2,
        display: "vkms".into(),
        hold: Duration::from_millis(2),
    };
    let r = stress::run(&cfg).unwrap_or_else(|e| panic!("stress: {e}"));
    log::info!(
        "stress: {} flips, rendered {:?}, {} back-offs, {} captures, {} repeats, {:.1} s",
        r.flips,
        r.rendered,
        r.backoffs,
        r.captured,
        r.repeats,
        r.elapsed.as_secs_f64()
    );
    assert_eq!(r.flips, 60);
    assert!(
        r.rendered.iter().all(|&n| n > 0),
        "both renderers made progress"
    );
    assert_eq!(r.captured, 59, "every flip after the first captured");
    assert!(r.bad.is_empty(), "torn or mixed frames: {:?}", r.bad);
}

/// The connector routing and CRTC activity in the kernel's atomic state
/// (debugfs `state` of the vkms card): what `restore` must put back.
fn vkms_routing() -> Vec<String> {
    let dri = Path::new("/sys/kernel/debug/dri");
    let dir = std::fs::read_dir(dri)
        .expect("debugfs is mounted in the VM")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p.join("name")).is_ok_and(|n| n.starts_with("vkms")))
        .expect("a vkms entry under /sys/kernel/debug/dri");
    let state = std::fs::read_to_string(dir.join("state")).expect("the atomic state");
    let mut out = Vec::new();
    let mut section = String::new();
    for line in state.lines() {
        if !line.starts_with('\t') {
            section = line.trim_end_matches(':').to_string();
        } else {
            let l = line.trim();
            let keep = (section.starts_with("connector") && l.starts_with("crtc="))
                || (section.starts_with("crtc")
                    && (l.starts_with("enable=") || l.starts_with("active=")));
            if keep {
                out.push(format!("{section}: {l}"));
            }
        }
    }
    out
}

/// Ctrl-C in the demo sets the stop flag: the flow ends after the current
/// frame with every frame it rendered presented and checked, puts the
/// display back as it found it, and leaves no fd behind.
#[test]
fn flow_stopped_early_restores_display_and_leaks_no_fd() {
    let Some(_display) = take_display("flow_stopped_early_restores_display_and_leaks_no_fd") else {
        return;
    };
    // Lazily created for good (the reactor's epoll and eventfd): not leaks.
    bufsync_backends::reactor::global().unwrap();
    // When the card's last fd closes, the kernel's fbdev emulation
    // (lastclose) puts its console on the output: the state to compare with
    // is the one after a plain open and close. (Holding a second fd instead
    // would make that fd the DRM master and the flow's commits fail.)
    drop(bufsync_backends::kms::Display::open_by_driver("vkms").unwrap());
    let routing = vkms_routing();
    assert!(!routing.is_empty(), "no connector or CRTC state parsed");
    let fds = bufsync_tests::open_fds();
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let cfg = FlowConfig {
        path: SyncPath::Hw,
        renderer: RendererKind::Vgem,
        frames: 100_000,
        swapchain: 3,
        display: "vkms".into(),
        capture: true,
        png_dir: None,
        png_every: 1,
        stop,
    };
    let r = flow::run(&cfg).unwrap_or_else(|e| panic!("flow: {e}"));
    stopper.join().unwrap();
    log::info!(
        "stopped after {} frames; routing before: {routing:?}",
        r.frames_rendered
    );
    assert!(r.frames_rendered > 0 && r.frames_rendered < 100_000);
    assert_eq!(r.frames_presented, r.frames_rendered);
    assert!(r.bad_frames.is_empty(), "{:?}", r.bad_frames);
    let reactor = bufsync_backends::reactor::global().unwrap();
    for _ in 0..100 {
        if reactor.pending() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(bufsync_tests::open_fds(), fds, "fds leaked");
    assert_eq!(vkms_routing(), routing, "display not restored");
}
