//! The mission's flow on real devices: vgem or lavapipe renders, vkms scans
//! out, every flip is captured through writeback and must be exactly the
//! frame it showed (no tearing, no mix, never stale). 120 frames per path.

use bufsync_examples::flow::{self, FlowConfig, RendererKind, SyncPath};
use bufsync_examples::stress;
use bufsync_tests::require;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// vkms has one CRTC: one flow at a time.
static DISPLAY: Mutex<()> = Mutex::new(());

fn run(name: &str, path: SyncPath, renderer: RendererKind) {
    let _g = DISPLAY.lock().unwrap_or_else(|e| e.into_inner());
    if !require(
        name,
        "vkms, vgem and a writeback connector",
        Path::new("/dev/dri").exists(),
    ) {
        return;
    }
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
    println!(
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
    let _g = DISPLAY.lock().unwrap_or_else(|e| e.into_inner());
    if !require(
        "stress_two_renderers_and_display_contend_through_tickets",
        "vkms, vgem and a writeback connector",
        Path::new("/dev/dri").exists(),
    ) {
        return;
    }
    let cfg = stress::StressConfig {
        flips: 60,
        swapchain: 4,
        renderers: 2,
        display: "vkms".into(),
        hold: Duration::from_millis(2),
    };
    let r = stress::run(&cfg).unwrap_or_else(|e| panic!("stress: {e}"));
    println!(
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
