//! No fd leak: count `/proc/self/fd` before and after 10 000 create /
//! import / export / drop cycles of every fd-backed object.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bufsync_backends::dmabuf::{Access, DmaBuf, Udmabuf};
use bufsync_backends::drm::{DrmDevice, Syncobj};
use bufsync_backends::sync_file::{to_sync_file, SyncFile, SyncFileFence};
use bufsync_backends::testing::{SwSyncTimeline, VgemBuffer};
use bufsync_tests::{has_driver, open_fds, require};

const CYCLES: usize = 10_000;

#[test]
fn no_fd_leak_over_10000_cycles() {
    bufsync_tests::init_log();
    require!("vgem", has_driver("vgem"));
    require!("virtio_gpu", has_driver("virtio_gpu"));
    require!("sw_sync", SwSyncTimeline::is_available());
    require!("udmabuf", Udmabuf::is_available());
    let vgem = VgemBuffer::device().unwrap();
    let vkms = Arc::new(DrmDevice::find("vkms").unwrap());
    let virtio = Arc::new(DrmDevice::find("virtio_gpu").unwrap());
    let tl = SwSyncTimeline::new().unwrap();

    let cycle = |i: usize| {
        let value = i as u32 + 1;
        // vgem buffer -> PRIME dma-buf -> import into vkms -> implicit fences.
        let bo = VgemBuffer::create(&vgem, 16, 16).unwrap();
        let buf = bo.export().unwrap();
        let clone = buf.try_clone().unwrap();
        let handle = vkms.import_dmabuf(&clone).unwrap();
        let pending = tl.create_fence(value, "leak").unwrap();
        buf.import_sync_file(Access::Write, &pending).unwrap();
        let out = buf.export_sync_file(Access::Write).unwrap();
        let merged = out.merge(&pending, "leak-merge").unwrap();
        let fence = SyncFileFence::fence(merged).unwrap();
        fence.enable_signaling(); // registers with the reactor
        let exported = to_sync_file(&fence).unwrap().unwrap();
        SyncFile::check(exported.fd()).unwrap();
        tl.inc(1).unwrap();
        fence.wait_timeout(Duration::from_secs(5)).unwrap();
        drop((handle, clone, buf, bo, exported, out, pending, fence));

        // syncobj create / export / import / sync_file / eventfd.
        let s = Syncobj::create(&virtio, false).unwrap();
        s.signal(1).unwrap();
        let fd = s.export().unwrap();
        let same = Syncobj::import(&virtio, fd.as_fd()).unwrap();
        let file = same.export_sync_file(1).unwrap();
        let point = Arc::new(same).point_fence(1);
        assert!(point.is_signaled());
        drop((s, fd, file, point));

        if i.is_multiple_of(10) {
            // udmabuf (memfd + /dev/udmabuf) and a bad-input round.
            let u = Udmabuf::create(4096).unwrap();
            assert!(DmaBuf::check(u.fd()).is_ok());
            let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
            assert!(DmaBuf::from_fd(memfd).is_err());
        }
    };
    // One cycle first: lazily created fds (the reactor's epoll) are not leaks.
    cycle(0);
    let reactor = bufsync_backends::reactor::global().unwrap();
    let settle = || {
        for _ in 0..500 {
            if reactor.pending() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    settle();
    let before = open_fds();
    for i in 1..=CYCLES {
        cycle(i);
    }
    // Let the reactor drop its last entries.
    settle();
    let after = open_fds();
    log::info!(
        "fd-leak: {before} fds before, {after} after {CYCLES} cycles; reactor pending {}",
        reactor.pending()
    );
    assert_eq!(before, after, "fds leaked");
}
