//! Two render threads and the display contend for the same four frames
//! through tickets (ABBA orders included): no deadlock (every wait is
//! bounded, a stall fails with the reservation dump), no torn frame.

use bufsync_examples::stress;
use std::time::Duration;

#[test]
fn stress_two_renderers_and_display_contend_through_tickets() {
    let Some(_display) =
        bufsync_tests::take_displays("stress_two_renderers_and_display_contend_through_tickets")
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
