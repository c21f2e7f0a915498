//! drm_syncobj device tests on virtio-gpu: a subset of IGT
//! `syncobj_timeline` (signal, query, wait-for-submit, transfer, the
//! 32-bit limit), sync_file export/import of points and `SyncobjPoint`
//! fences woken through `DRM_IOCTL_SYNCOBJ_EVENTFD` and the reactor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::FenceStatus;
use bufsync_backends::drm::{DrmDevice, Syncobj, SyncobjPoint, WaitFor};
use bufsync_backends::sync_file::{to_sync_file, SyncFileFence};
use bufsync_backends::testing::SwSyncTimeline;
use bufsync_backends::Error;
use bufsync_tests::{has_driver, require};

const LONG: Duration = Duration::from_secs(5);

fn virtio() -> Arc<DrmDevice> {
    let dev = Arc::new(DrmDevice::find("virtio_gpu").unwrap());
    assert!(
        dev.caps().syncobj_timeline,
        "virtio-gpu has timeline syncobjs"
    );
    dev
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(10)
}

/// IGT syncobj_timeline@host-signal-points + query.
#[test]
fn signal_and_query() {
    require!("virtio_gpu", has_driver("virtio_gpu"));
    let dev = virtio();
    let s = Syncobj::create(&dev, false).unwrap();
    assert_eq!(s.query().unwrap(), 0);
    for p in [1, 2, 5] {
        s.signal(p).unwrap();
        assert_eq!(s.query().unwrap(), p);
    }
    assert_eq!(s.query_last_submitted().unwrap(), 5);
    s.wait(5, soon(), WaitFor::Signaled).unwrap();
    s.wait(3, soon(), WaitFor::Signaled).unwrap();
}

/// IGT syncobj_timeline@wait-for-submit: without WAIT_FOR_SUBMIT an
/// unsubmitted point is an error; with it, the wait ends once the point is
/// submitted and signaled; a bounded wait times out.
#[test]
fn wait_for_submit() {
    require!("virtio_gpu", has_driver("virtio_gpu"));
    let dev = virtio();
    let s = Arc::new(Syncobj::create(&dev, false).unwrap());
    assert!(matches!(
        s.wait(1, soon(), WaitFor::Signaled),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        s.wait(1, soon(), WaitFor::SubmitThenSignaled),
        Err(Error::TimedOut { .. })
    ));
    let waiter = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || s.wait(3, Instant::now() + LONG, WaitFor::SubmitThenSignaled))
    };
    s.signal(3).unwrap();
    waiter.join().unwrap().unwrap();
    s.wait(3, soon(), WaitFor::Available).unwrap();
}

/// IGT syncobj_timeline@transfer: a pending point moved to a binary syncobj
/// and out as a sync_file; and a sync_file imported into a point.
#[test]
fn transfer_and_sync_file() {
    require!("virtio_gpu", has_driver("virtio_gpu"));
    require!("sw_sync", SwSyncTimeline::is_available());
    let dev = virtio();
    let timeline = Syncobj::create(&dev, false).unwrap();
    let binary = Syncobj::create(&dev, false).unwrap();
    let tl = SwSyncTimeline::new().unwrap();
    // Import a pending sync_file at point 1 (via a temporary binary).
    timeline
        .import_sync_file(1, &tl.create_fence(1, "p1").unwrap())
        .unwrap();
    assert_eq!(timeline.query_last_submitted().unwrap(), 1);
    assert_eq!(timeline.query().unwrap(), 0);
    timeline.transfer(1, &binary, 0).unwrap();
    let out = binary.export_sync_file(0).unwrap();
    let point_out = timeline.export_sync_file(1).unwrap();
    assert!(!out.is_signaled().unwrap() && !point_out.is_signaled().unwrap());
    // Binary import straight from a sync_file (the raw ioctl: drm-rs sends
    // handle 0 and gets ENOENT).
    let other = Syncobj::create(&dev, false).unwrap();
    other.import_sync_file(0, &out).unwrap();
    assert!(matches!(
        other.wait(0, soon(), WaitFor::Signaled),
        Err(Error::TimedOut { .. })
    ));
    tl.inc(1).unwrap();
    out.wait(LONG).unwrap();
    point_out.wait(LONG).unwrap();
    timeline
        .wait(1, Instant::now() + LONG, WaitFor::Signaled)
        .unwrap();
    other
        .wait(0, Instant::now() + LONG, WaitFor::Signaled)
        .unwrap();
    assert_eq!(timeline.query().unwrap(), 1);
}

/// IGT syncobj_timeline@32bits-limit: points beyond 2^32 work, and
/// runtime fences on them compare as 64-bit.
#[test]
fn points_beyond_32_bits() {
    require!("virtio_gpu", has_driver("virtio_gpu"));
    let dev = virtio();
    let s = Arc::new(Syncobj::create(&dev, false).unwrap());
    let low = 0xffff_fff0u64;
    let high = (1u64 << 32) + 5;
    s.signal(low).unwrap();
    assert_eq!(s.query().unwrap(), low);
    let f_high = s.point_fence(high);
    let f_low = s.point_fence(low);
    assert!(f_low.is_signaled());
    assert!(!f_high.is_signaled());
    assert!(f_high.kind().is_64bit());
    s.signal(high).unwrap();
    assert_eq!(s.query().unwrap(), high);
    assert!(f_high.is_signaled());
}

/// SyncobjPoint fences: woken through SYNCOBJ_EVENTFD and the reactor;
/// exported as a sync_file; a foreign sync_file fence imported into a
/// point.
#[test]
fn syncobj_point_fence_through_reactor() {
    require!("virtio_gpu", has_driver("virtio_gpu"));
    let dev = virtio();
    let s = Arc::new(Syncobj::create(&dev, false).unwrap());
    let fence = SyncobjPoint::fence(Arc::clone(&s), 7);
    assert_eq!(fence.driver_name(), "drm_syncobj");
    let (tx, rx) = std::sync::mpsc::channel();
    fence
        .add_callback(move |f| tx.send(f.status()).unwrap())
        .unwrap();
    s.signal(7).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), FenceStatus::Signaled);
    // Signaled cleanly: nothing to wait for, so no sync_file (the contract
    // of `to_sync_file`; a pending point exports one).
    assert!(to_sync_file(&fence).unwrap().is_none());
    // The eventfd itself.
    let efd = s.eventfd(9, false).unwrap();
    s.signal(9).unwrap();
    let mut fds = [rustix::event::PollFd::new(
        &efd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::time::Timespec {
        tv_sec: 5,
        tv_nsec: 0,
    };
    assert_eq!(rustix::event::poll(&mut fds, Some(&ts)).unwrap(), 1);
    // Round trip: a point's sync_file as a SyncFileFence.
    let back = SyncFileFence::fence(s.export_sync_file(9).unwrap()).unwrap();
    assert!(back.is_signaled());
    // Opaque fd export/import shares the syncobj.
    let fd = s.export().unwrap();
    let same = Syncobj::import(&dev, &fd).unwrap();
    assert_eq!(same.query().unwrap(), 9);
}

/// Devices without DRIVER_SYNCOBJ give a typed error.
#[test]
fn syncobj_unsupported_on_vgem() {
    require!("vgem", has_driver("vgem"));
    let vgem = Arc::new(DrmDevice::find("vgem").unwrap());
    assert!(matches!(
        Syncobj::create(&vgem, false),
        Err(Error::Unsupported { .. })
    ));
}
