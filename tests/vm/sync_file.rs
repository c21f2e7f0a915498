//! sync_file device tests: ports of IGT `sw_sync` (alloc, merge,
//! merge-same, multi-timeline wait, a closed timeline signals its fences
//! with an error) and the `SyncFileFence` runtime kind through the shared
//! reactor. Run inside the test VM (sw_sync from debugfs).

use std::time::{Duration, Instant};

use bufsync::fence::{FenceError, FenceStatus, WaitError};
use bufsync::resv::{Access, Reservation, ResvWaitError, Ticket, Usage};
use bufsync_backends::sync_file::{merge_to_sync_file, to_sync_file, SyncFile, SyncFileFence};
use bufsync_backends::testing::SwSyncTimeline;
use bufsync_backends::Error;
use bufsync_tests::require;

const LONG: Duration = Duration::from_secs(5);

fn sw_sync() -> bool {
    SwSyncTimeline::is_available()
}

/// IGT sw_sync@alloc_timeline / alloc_fence: a fence is pending until the
/// timeline reaches it; FILE_INFO names the driver and timeline.
#[test]
fn alloc() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let tl = SwSyncTimeline::new().unwrap();
    let f = tl.create_fence(1, "alloc").unwrap();
    SyncFile::check(f.fd()).unwrap();
    let info = f.info().unwrap();
    assert_eq!((info.status, info.fences.len()), (0, 1));
    assert_eq!(info.fences[0].driver_name, "sw_sync");
    assert!(!f.is_signaled().unwrap());
    tl.inc(1).unwrap();
    assert!(f.is_signaled().unwrap());
    let info = f.info().unwrap();
    assert_eq!(info.status, 1);
    assert_ne!(info.fences[0].timestamp_ns, 0);
}

/// IGT sw_sync@sync_merge: a merge of fences on two timelines signals once
/// both have.
#[test]
fn merge() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let (a, b) = (
        SwSyncTimeline::new().unwrap(),
        SwSyncTimeline::new().unwrap(),
    );
    let fa = a.create_fence(1, "a").unwrap();
    let fb = b.create_fence(2, "b").unwrap();
    let m = fa.merge(&fb, "merged").unwrap();
    let info = m.info().unwrap();
    assert_eq!((info.name.as_str(), info.fences.len()), ("merged", 2));
    a.inc(1).unwrap();
    assert!(!m.is_signaled().unwrap());
    b.inc(2).unwrap();
    m.wait(LONG).unwrap();
}

/// IGT sw_sync@sync_merge_same: merging a fence with itself keeps one fence.
#[test]
fn merge_same() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let tl = SwSyncTimeline::new().unwrap();
    let f = tl.create_fence(1, "same").unwrap();
    let m = f.merge(&f, "same").unwrap();
    assert_eq!(m.info().unwrap().fences.len(), 1);
    assert!(!m.is_signaled().unwrap());
    tl.inc(1).unwrap();
    assert!(m.is_signaled().unwrap());
}

/// IGT sw_sync@sync_multi_timeline_wait: a wait on a merge of three
/// timelines ends only after the last one advances.
#[test]
fn multi_timeline_wait() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let tls: Vec<SwSyncTimeline> = (0..3).map(|_| SwSyncTimeline::new().unwrap()).collect();
    let fences: Vec<SyncFile> = tls
        .iter()
        .map(|t| t.create_fence(5, "mt").unwrap())
        .collect();
    let m = fences[0]
        .merge(&fences[1], "m01")
        .unwrap()
        .merge(&fences[2], "m012")
        .unwrap();
    assert_eq!(m.info().unwrap().fences.len(), 3);
    assert!(matches!(
        m.wait(Duration::from_millis(20)),
        Err(Error::TimedOut { .. })
    ));
    for (i, t) in tls.iter().enumerate() {
        t.inc(5).unwrap();
        assert_eq!(m.is_signaled().unwrap(), i == 2);
    }
    m.wait(LONG).unwrap();
}

/// A closed sw_sync timeline signals its pending fences with an error, and
/// that error becomes the runtime fence's error.
#[test]
fn closed_timeline_signals_with_error() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let tl = SwSyncTimeline::new().unwrap();
    let file = tl.create_fence(1, "orphan").unwrap();
    let fence = SyncFileFence::fence(file.try_clone().unwrap()).unwrap();
    // A waiter blocked on it (through the reactor) is woken by the kernel's
    // error, mirrored: nobody but the kernel ended it.
    let waiter = {
        let f = SyncFileFence::fence(file.try_clone().unwrap()).unwrap();
        std::thread::spawn(move || f.wait_timeout(LONG))
    };
    std::thread::sleep(Duration::from_millis(50));
    drop(tl);
    match waiter.join().unwrap() {
        Err(WaitError::Fence(FenceError::Errno(_))) => {}
        other => panic!("expected the kernel's errno, got {other:?}"),
    }
    assert!(file.is_signaled().unwrap());
    let status = file.info().unwrap().status;
    assert!(status < 0, "status {status}");
    assert!(matches!(file.wait(LONG), Err(Error::Fence(_))));
    assert_eq!(
        fence.status(),
        FenceStatus::Error(FenceError::from_errno(status).unwrap())
    );
}

/// SyncFileFence through the reactor: a waiter sleeping on the runtime
/// fence wakes when the kernel fence signals.
#[test]
fn sync_file_fence_wakes_through_reactor() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let tl = SwSyncTimeline::new().unwrap();
    let fence = SyncFileFence::fence(tl.create_fence(1, "reactor").unwrap()).unwrap();
    assert_eq!(fence.driver_name(), "sw_sync");
    assert!(!fence.is_signaled());
    let (tx, rx) = std::sync::mpsc::channel();
    fence
        .add_callback(move |f| tx.send(f.status()).unwrap())
        .unwrap();
    let waiter = {
        let fence = fence.clone();
        std::thread::spawn(move || fence.wait_timeout(LONG))
    };
    tl.inc(1).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), FenceStatus::Signaled);
    waiter.join().unwrap().unwrap();
    assert!(bufsync_backends::reactor::global().unwrap().pending() < 1000);
}

/// A sw_sync fence kept pending for 3x the stuck threshold, then signaled:
/// bounded waits time out meanwhile (the fence stays pending: nobody but its
/// producer ends it), a reservation holding it never lets a writer through
/// early, it is reported as stuck; after the signal everything proceeds.
#[test]
fn pending_fence_stays_pending_until_its_producer_signals() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let threshold = Duration::from_millis(100);
    bufsync::fence::engine::global().set_stuck_threshold(threshold);
    let tl = SwSyncTimeline::new().unwrap();
    let fence = SyncFileFence::fence(tl.create_fence(1, "held").unwrap()).unwrap();
    let resv = Reservation::new();
    {
        let mut g = resv.lock_alone();
        g.reserve_fences(1).unwrap();
        g.add_fence(&fence, Usage::Write);
    }
    let until = Instant::now() + threshold * 3 + Duration::from_millis(50);
    let mut rounds = 0;
    while Instant::now() < until {
        rounds += 1;
        assert_eq!(
            fence.wait_timeout(Duration::from_millis(20)),
            Err(WaitError::TimedOut)
        );
        assert_eq!(fence.status(), FenceStatus::Pending);
        match resv.wait(Usage::Read, Some(Duration::from_millis(10))) {
            Err(ResvWaitError::Pending { fence: f, .. }) => assert!(f.ptr_eq(&fence)),
            other => panic!("expected Pending, got {other:?}"),
        }
        let mut ticket = Ticket::reservation();
        let list = [(&resv, Access::Write)];
        let mut r = ticket.reserve(&list, 1).unwrap();
        assert!(
            r.wait_set().iter().any(|f| f.ptr_eq(&fence)),
            "a writer got through early"
        );
    }
    assert!(rounds >= 3);
    let dump = bufsync::debug::dump();
    assert!(dump.contains("sw_sync/"), "not reported as stuck: {dump}");
    tl.inc(1).unwrap();
    fence.wait_timeout(LONG).unwrap();
    resv.wait(Usage::Read, Some(LONG)).unwrap();
    let mut ticket = Ticket::reservation();
    let list = [(&resv, Access::Write)];
    let mut r = ticket.reserve(&list, 1).unwrap();
    assert!(r.wait_set().is_empty());
    drop(r);
    assert!(!bufsync::debug::dump().contains("sw_sync/"));
    bufsync::fence::engine::global()
        .set_stuck_threshold(bufsync::fence::engine::DEFAULT_STUCK_THRESHOLD);
}

/// Export: a runtime fence with a sync_file form gives one (merged for
/// several); a pending software fence has none (typed error).
#[test]
fn export_runtime_fences_as_sync_file() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let (a, b) = (
        SwSyncTimeline::new().unwrap(),
        SwSyncTimeline::new().unwrap(),
    );
    let fa = SyncFileFence::fence(a.create_fence(1, "a").unwrap()).unwrap();
    let fb = SyncFileFence::fence(b.create_fence(1, "b").unwrap()).unwrap();
    let done = bufsync::fence::Fence::signaled(1, 1);
    let merged = merge_to_sync_file([&fa, &done, &fb], "export")
        .unwrap()
        .expect("pending parts");
    assert_eq!(merged.info().unwrap().fences.len(), 2);
    assert!(to_sync_file(&done).unwrap().is_none());
    let soft = bufsync::fence::Fence::software(bufsync::fence::alloc_contexts(1), 1);
    assert!(matches!(to_sync_file(&soft), Err(Error::NoSyncFile { .. })));
    a.inc(1).unwrap();
    b.inc(1).unwrap();
    merged.wait(LONG).unwrap();
    // SET_DEADLINE: accepted on 6.12 (or reported unsupported).
    let c = a.create_fence(2, "deadline").unwrap();
    match c.set_deadline(Instant::now() + Duration::from_millis(5)) {
        Ok(()) | Err(Error::Unsupported { .. }) => {}
        Err(e) => panic!("SYNC_IOC_SET_DEADLINE: {e}"),
    }
}

/// Every API that takes a raw fd as a fence checks it once, at the
/// boundary (`SYNC_IOC_FILE_INFO`): a memfd, a pipe, /dev/null, a dma-buf
/// and a DRM fd are `NotASyncFile` naming the fd, a closed fd `BadFd`; no fd
/// leaks. Past the boundary only a typed `SyncFile` travels (a Vulkan
/// `Wait::SyncFile`, a KMS in-fence, `SyncFileFence`), so nothing can be
/// submitted or flipped behind such an fd.
#[test]
fn every_fd_given_as_a_fence_is_checked() {
    let _serial = bufsync_tests::serial();
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
    require!("vgem", bufsync_tests::has_driver("vgem"));
    let fds = bufsync_tests::open_fds();
    let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let (pr, pw) = rustix::pipe::pipe().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let vgem = bufsync_backends::testing::VgemBuffer::device().unwrap();
    let bo = bufsync_backends::testing::VgemBuffer::create(&vgem, 16, 16).unwrap();
    let dmabuf = bo.export().unwrap();
    let candidates: [(&str, BorrowedFd<'_>); 6] = [
        ("memfd", memfd.as_fd()),
        ("pipe (read end)", pr.as_fd()),
        ("pipe (write end)", pw.as_fd()),
        ("/dev/null", null.as_fd()),
        ("dma-buf", dmabuf.fd()),
        ("DRM fd", vgem.as_fd()),
    ];
    for (what, fd) in candidates {
        let raw = fd.as_raw_fd();
        for r in [SyncFile::check(fd), SyncFile::from_borrowed(fd).map(drop)] {
            match r {
                Err(Error::NotASyncFile { fd: n }) => assert_eq!(n, raw, "{what}"),
                other => panic!("{what}: expected NotASyncFile, got {other:?}"),
            }
        }
        // An owned fd given over is checked and closed on refusal.
        let dup = fd.try_clone_to_owned().unwrap();
        let dup_raw = dup.as_raw_fd();
        match SyncFile::from_fd(dup) {
            Err(Error::NotASyncFile { fd: n }) => assert_eq!(n, dup_raw, "{what}"),
            other => panic!("{what}: expected NotASyncFile, got {other:?}"),
        }
    }
    // SAFETY: far above RLIMIT_NOFILE, so surely closed; only syscalls that
    // fail with EBADF are issued on it.
    let closed = unsafe { BorrowedFd::borrow_raw(1 << 30) };
    assert!(matches!(
        SyncFile::check(closed),
        Err(Error::BadFd { fd: 1_073_741_824 })
    ));
    assert!(matches!(
        SyncFile::from_borrowed(closed),
        Err(Error::BadFd { .. })
    ));
    drop((memfd, pr, pw, null, dmabuf, bo, vgem));
    assert_eq!(bufsync_tests::open_fds(), fds, "fds leaked");
}

/// Errors survive `SyncFile::merge` (docs/backends.md): the kernel's merge
/// drops fences that already signaled, errors included; the merged
/// `SyncFile` keeps the first error and reports it once everything ended.
#[test]
fn merge_keeps_errors() {
    let _serial = bufsync_tests::serial();
    require!("sw_sync", sw_sync());
    let failed = {
        let tl = SwSyncTimeline::new().unwrap();
        let f = tl.create_fence(1, "failed").unwrap();
        drop(tl); // closing the timeline fails its pending fences (-ENOENT)
        f
    };
    let status = failed.info().unwrap().status;
    assert!(status < 0, "status {status}");
    let err = FenceError::from_errno(status).unwrap();
    let ok_tl = SwSyncTimeline::new().unwrap();
    let clean = ok_tl.create_fence(1, "clean").unwrap();
    ok_tl.inc(1).unwrap();
    // Failed + already signaled: the kernel's result is a clean stub.
    let m = failed.merge(&clean, "m").unwrap();
    assert_eq!(m.carried_error(), Some(err));
    assert_eq!(m.status().unwrap(), FenceStatus::Error(err));
    assert!(m.info().unwrap().status < 0);
    assert!(matches!(m.wait(LONG), Err(Error::Fence(e)) if e == err));
    // Either order, and a merge of a merge.
    let m2 = clean.merge(&failed, "m2").unwrap();
    assert_eq!(m2.status().unwrap(), FenceStatus::Error(err));
    let pending_tl = SwSyncTimeline::new().unwrap();
    let pending = pending_tl.create_fence(1, "pending").unwrap();
    let mm = pending.merge(&m2, "mm").unwrap();
    // Pending until every member ended, then the first error.
    assert_eq!(mm.status().unwrap(), FenceStatus::Pending);
    assert!(matches!(
        mm.wait(Duration::from_millis(20)),
        Err(Error::TimedOut { .. })
    ));
    pending_tl.inc(1).unwrap();
    assert_eq!(mm.status().unwrap(), FenceStatus::Error(err));
    // The runtime fence over it reports the same error.
    let fence = SyncFileFence::fence(mm.try_clone().unwrap()).unwrap();
    assert_eq!(fence.wait_timeout(LONG), Err(WaitError::Fence(err)));
    // merge_to_sync_file: a failed runtime fence is carried by the result.
    let p2 = pending_tl.create_fence(2, "p2").unwrap();
    let failed_fence = SyncFileFence::fence(failed.try_clone().unwrap()).unwrap();
    let pending_fence = SyncFileFence::fence(p2).unwrap();
    let merged = merge_to_sync_file([&failed_fence, &pending_fence], "export")
        .unwrap()
        .expect("a pending part");
    assert_eq!(merged.carried_error(), Some(err));
    pending_tl.inc(1).unwrap();
    assert_eq!(merged.status().unwrap(), FenceStatus::Error(err));
    // Nothing pending at all: the error itself.
    assert!(matches!(
        merge_to_sync_file([&failed_fence], "only"),
        Err(Error::Fence(e)) if e == err
    ));
}
