//! drm_syncobj device tests on virtio-gpu: a subset of IGT
//! `syncobj_timeline` (signal, query, wait-for-submit, transfer, the
//! 32-bit limit), sync_file export/import of points and `SyncobjPoint`
//! fences woken through `DRM_IOCTL_SYNCOBJ_EVENTFD` and the reactor.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
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
    let _serial = bufsync_tests::serial();
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
    let _serial = bufsync_tests::serial();
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
    let _serial = bufsync_tests::serial();
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
    let _serial = bufsync_tests::serial();
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
    let _serial = bufsync_tests::serial();
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
    // Signaled cleanly: nothing left to wait for; the point itself still
    // exports as a (signaled) sync_file.
    assert!(to_sync_file(&fence).unwrap().is_none());
    let file = s.export_sync_file(7).unwrap();
    assert!(file.is_signaled().unwrap());
    // A pending, submitted point's sync_file form is its fence's.
    let gate = SwSyncTimeline::new().unwrap();
    s.import_sync_file(8, &gate.create_fence(1, "point8").unwrap())
        .unwrap();
    let pending = SyncobjPoint::fence(Arc::clone(&s), 8);
    let form = to_sync_file(&pending)
        .unwrap()
        .expect("a submitted point has a sync_file form");
    assert!(!form.is_signaled().unwrap());
    gate.inc(1).unwrap();
    form.wait(LONG).unwrap();
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
    let same = Syncobj::import(&dev, fd.as_fd()).unwrap();
    assert_eq!(same.query().unwrap(), 9);
}

/// `Syncobj::import` takes an fd as a fence container: every fd that is not
/// a syncobj gets a typed error naming it, a closed one `BadFd`; no fd or
/// syncobj handle leaks.
#[test]
fn syncobj_import_refuses_other_fds() {
    let _serial = bufsync_tests::serial();
    require!("virtio_gpu", has_driver("virtio_gpu"));
    require!("sw_sync", SwSyncTimeline::is_available());
    let dev = virtio();
    let fds = bufsync_tests::open_fds();
    let tl = SwSyncTimeline::new().unwrap();
    let sync_file = tl.create_fence(1, "not-a-syncobj").unwrap();
    let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let (pr, _pw) = rustix::pipe::pipe().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let dumb = bufsync_backends::drm::DumbBuffer::create(&dev, 16, 16, 32).unwrap();
    let dmabuf = dumb.handle().export(false).unwrap();
    let drm = DrmDevice::find("virtio_gpu").unwrap();
    let candidates: [(&str, BorrowedFd<'_>); 6] = [
        ("sync_file", sync_file.fd()),
        ("memfd", memfd.as_fd()),
        ("pipe", pr.as_fd()),
        ("/dev/null", null.as_fd()),
        ("dma-buf", dmabuf.fd()),
        ("DRM fd", drm.as_fd()),
    ];
    for (what, fd) in candidates {
        match Syncobj::import(&dev, fd) {
            Err(Error::NotASyncobj { fd: n }) => assert_eq!(n, fd.as_raw_fd(), "{what}"),
            other => panic!("{what}: expected NotASyncobj, got {other:?}"),
        }
    }
    // SAFETY: far above RLIMIT_NOFILE, so surely closed; only syscalls that
    // fail with EBADF are issued on it.
    let closed = unsafe { BorrowedFd::borrow_raw(1 << 30) };
    assert!(matches!(
        Syncobj::import(&dev, closed),
        Err(Error::BadFd { fd: 1_073_741_824 })
    ));
    drop((sync_file, tl, memfd, pr, _pw, null, dmabuf, dumb, drm));
    assert_eq!(bufsync_tests::open_fds(), fds, "fds leaked");
}

/// Devices without DRIVER_SYNCOBJ give a typed error.
#[test]
fn syncobj_unsupported_on_vgem() {
    let _serial = bufsync_tests::serial();
    require!("vgem", has_driver("vgem"));
    let vgem = Arc::new(DrmDevice::find("vgem").unwrap());
    assert!(matches!(
        Syncobj::create(&vgem, false),
        Err(Error::Unsupported { .. })
    ));
}
