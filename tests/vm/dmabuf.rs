//! dma-buf device tests: ports of IGT `dmabuf_sync_file` and `prime_vgem`
//! (basic-fence-read / basic-fence-mmap), the dma-buf sources (PRIME dumb
//! buffers, udmabuf, DMA heap) and the cross-device PRIME import
//! (vgem -> vkms). Run inside the test VM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bufsync_backends::dmabuf::{fourcc, Access, DmaBuf, DmaHeap, Udmabuf};
use bufsync_backends::drm::{DrmDevice, DumbBuffer};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::testing::{SwSyncTimeline, VgemBuffer};
use bufsync_backends::Error;
use bufsync_tests::{has_driver, require};

const LONG: Duration = Duration::from_secs(5);

fn vgem_buf() -> (VgemBuffer, DmaBuf) {
    let vgem = VgemBuffer::device().expect("vgem");
    let bo = VgemBuffer::create(&vgem, 32, 32).expect("vgem bo");
    let buf = bo.export().expect("PRIME export");
    (bo, buf)
}

fn signaled(f: &SyncFile) -> bool {
    f.is_signaled().expect("poll sync_file")
}

/// IGT dmabuf_sync_file@export-basic.
#[test]
fn export_basic() {
    require!("vgem", has_driver("vgem"));
    let (bo, buf) = vgem_buf();
    assert!(signaled(&buf.export_sync_file(Access::Read).unwrap()));
    assert!(signaled(&buf.export_sync_file(Access::Write).unwrap()));

    // A write fence: both readers and writers must wait.
    let w = bo.attach_fence(true).unwrap();
    let r_file = buf.export_sync_file(Access::Read).unwrap();
    let w_file = buf.export_sync_file(Access::Write).unwrap();
    assert!(!signaled(&r_file) && !signaled(&w_file));
    w.signal().unwrap();
    assert!(signaled(&r_file) && signaled(&w_file));

    // A read fence: only writers wait.
    let r = bo.attach_fence(false).unwrap();
    assert!(signaled(&buf.export_sync_file(Access::Read).unwrap()));
    let w_file = buf.export_sync_file(Access::Write).unwrap();
    assert!(!signaled(&w_file));
    r.signal().unwrap();
    assert!(signaled(&w_file));
}

/// IGT dmabuf_sync_file@export-before-signal: a snapshot taken while the
/// fence is pending signals with it.
#[test]
fn export_before_signal() {
    require!("vgem", has_driver("vgem"));
    let (bo, buf) = vgem_buf();
    let fence = bo.attach_fence(true).unwrap();
    let files: Vec<SyncFile> = (0..4)
        .map(|_| buf.export_sync_file(Access::Write).unwrap())
        .collect();
    assert!(files.iter().all(|f| !signaled(f)));
    fence.signal().unwrap();
    for f in &files {
        f.wait(LONG).unwrap();
    }
}

/// IGT dmabuf_sync_file@export-multiwait: a snapshot holds only the fences
/// present when it was taken.
#[test]
fn export_multiwait() {
    require!("vgem", has_driver("vgem"));
    let (bo, buf) = vgem_buf();
    let first = bo.attach_fence(false).unwrap();
    let file = buf.export_sync_file(Access::Write).unwrap();
    let second = bo.attach_fence(false).unwrap();
    assert!(!signaled(&file));
    first.signal().unwrap();
    assert!(
        signaled(&file),
        "the snapshot does not hold the later fence"
    );
    assert!(!signaled(&buf.export_sync_file(Access::Write).unwrap()));
    second.signal().unwrap();
    assert!(signaled(&buf.export_sync_file(Access::Write).unwrap()));
}

/// IGT dmabuf_sync_file@export-wait-after-attach: a snapshot taken before
/// a fence is attached does not wait for it.
#[test]
fn export_wait_after_attach() {
    require!("vgem", has_driver("vgem"));
    let (bo, buf) = vgem_buf();
    let before_r = buf.export_sync_file(Access::Read).unwrap();
    let before_w = buf.export_sync_file(Access::Write).unwrap();
    let fence = bo.attach_fence(true).unwrap();
    assert!(signaled(&before_r) && signaled(&before_w));
    assert!(!signaled(&buf.export_sync_file(Access::Read).unwrap()));
    fence.signal().unwrap();
}

/// IGT dmabuf_sync_file@import-basic: a foreign (sw_sync) fence imported as
/// a write fence blocks readers and writers; as a read fence, writers only.
#[test]
fn import_basic() {
    require!("vgem", has_driver("vgem"));
    require!("sw_sync", SwSyncTimeline::is_available());
    let (_bo, buf) = vgem_buf();
    let tl = SwSyncTimeline::new().unwrap();
    let write = tl.create_fence(1, "write").unwrap();
    buf.import_sync_file(Access::Write, &write).unwrap();
    assert!(!signaled(&buf.export_sync_file(Access::Read).unwrap()));
    assert!(!signaled(&buf.export_sync_file(Access::Write).unwrap()));
    // The import does not consume the fd.
    assert!(!signaled(&write));
    tl.inc(1).unwrap();
    assert!(signaled(&buf.export_sync_file(Access::Read).unwrap()));
    assert!(signaled(&buf.export_sync_file(Access::Write).unwrap()));

    let read = tl.create_fence(2, "read").unwrap();
    buf.import_sync_file(Access::Read, &read).unwrap();
    assert!(signaled(&buf.export_sync_file(Access::Read).unwrap()));
    assert!(!signaled(&buf.export_sync_file(Access::Write).unwrap()));
    tl.inc(1).unwrap();
    assert!(signaled(&buf.export_sync_file(Access::Write).unwrap()));
}

/// IGT dmabuf_sync_file@import-multiple-read-only: several read fences;
/// readers never wait, writers wait for all of them.
#[test]
fn import_multiple_read_only() {
    require!("vgem", has_driver("vgem"));
    require!("sw_sync", SwSyncTimeline::is_available());
    let (_bo, buf) = vgem_buf();
    let (t1, t2) = (
        SwSyncTimeline::new().unwrap(),
        SwSyncTimeline::new().unwrap(),
    );
    buf.import_sync_file(Access::Read, &t1.create_fence(1, "r1").unwrap())
        .unwrap();
    buf.import_sync_file(Access::Read, &t2.create_fence(1, "r2").unwrap())
        .unwrap();
    assert!(signaled(&buf.export_sync_file(Access::Read).unwrap()));
    let w = buf.export_sync_file(Access::Write).unwrap();
    assert_eq!(w.info().unwrap().fences.len(), 2);
    t1.inc(1).unwrap();
    assert!(!signaled(&w));
    t2.inc(1).unwrap();
    assert!(signaled(&w));
}

/// IGT dmabuf_sync_file@import-multiple-read-write: read fences then a
/// write fence; readers wait for the writer only, writers for all.
#[test]
fn import_multiple_read_write() {
    require!("vgem", has_driver("vgem"));
    require!("sw_sync", SwSyncTimeline::is_available());
    let (_bo, buf) = vgem_buf();
    let (tr, tw) = (
        SwSyncTimeline::new().unwrap(),
        SwSyncTimeline::new().unwrap(),
    );
    buf.import_sync_file(Access::Read, &tr.create_fence(1, "r").unwrap())
        .unwrap();
    buf.import_sync_file(Access::Write, &tw.create_fence(1, "w").unwrap())
        .unwrap();
    let r = buf.export_sync_file(Access::Read).unwrap();
    let w = buf.export_sync_file(Access::Write).unwrap();
    assert!(!signaled(&r) && !signaled(&w));
    tw.inc(1).unwrap();
    assert!(signaled(&r), "readers wait for the writer only");
    assert!(!signaled(&w), "writers also wait for the reader");
    tr.inc(1).unwrap();
    assert!(signaled(&w));
}

/// Runs `begin` while another thread signals `fence` after marking a flag:
/// `begin` must only return after the flag is set.
fn cpu_access_waits(write_fence: bool, access: Access) {
    let (bo, buf) = vgem_buf();
    let map = buf.map(true).expect("mmap dma-buf");
    let fence = bo.attach_fence(write_fence).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&released);
    let signaler = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        flag.store(true, Ordering::SeqCst);
        fence.signal().unwrap();
    });
    let guard = buf.begin_cpu_access(access, LONG).expect("CPU access");
    assert!(
        released.load(Ordering::SeqCst),
        "CPU access began before the fence signaled"
    );
    // SAFETY: the mapping is `buf.size()` bytes and alive; we are inside a
    // CPU-access bracket.
    unsafe {
        if access == Access::Write {
            map.as_mut_ptr().write_bytes(0xa5, map.len());
        }
        assert!(map.as_ptr().read() == 0 || map.as_ptr().read() == 0xa5);
    }
    guard.end().unwrap();
    signaler.join().unwrap();
}

/// IGT prime_vgem@basic-fence-read: reading through the mapping waits for
/// the writer's fence.
#[test]
fn prime_vgem_basic_fence_read() {
    require!("vgem", has_driver("vgem"));
    cpu_access_waits(true, Access::Read);
}

/// IGT prime_vgem@basic-fence-mmap: writing through the mapping waits for
/// a reader's fence too.
#[test]
fn prime_vgem_basic_fence_mmap() {
    require!("vgem", has_driver("vgem"));
    cpu_access_waits(false, Access::Write);
    cpu_access_waits(true, Access::Write);
}

/// A fence that does not signal in time: a bounded CPU-access wait ends
/// with a timeout error (the vgem fence self-signals 10 s later).
#[test]
fn cpu_access_wait_is_bounded() {
    require!("vgem", has_driver("vgem"));
    let (bo, buf) = vgem_buf();
    let fence = bo.attach_fence(true).unwrap();
    let r = buf.begin_cpu_access(Access::Read, Duration::from_millis(100));
    assert!(matches!(r, Err(Error::TimedOut { .. })), "{r:?}");
    fence.signal().unwrap();
    buf.begin_cpu_access(Access::Read, LONG)
        .unwrap()
        .end()
        .unwrap();
}

/// Dumb buffers on vkms through PRIME, udmabuf and the system DMA heap:
/// each is a dma-buf, maps, and brackets CPU access.
#[test]
fn dmabuf_sources() {
    require!("vkms", has_driver("vkms"));
    require!("udmabuf", Udmabuf::is_available());
    require!("dma heap", DmaHeap::path("system").exists());
    let vkms = Arc::new(DrmDevice::find("vkms").unwrap());
    let dumb = DumbBuffer::create(&vkms, 64, 32, 32).unwrap();
    let a = dumb.export(fourcc(b"XR24")).unwrap();
    assert_eq!(a.layout().unwrap().planes[0].stride, dumb.pitch());
    let b = Udmabuf::create(10_000).unwrap();
    assert_eq!(b.size(), 12_288);
    let c = DmaHeap::open("system").unwrap().alloc(1 << 16).unwrap();
    for buf in [&a, &b, &c] {
        DmaBuf::check(buf.fd()).unwrap();
        let map = buf.map(true).unwrap();
        let g = buf.begin_cpu_access(Access::Write, LONG).unwrap();
        // SAFETY: inside the bracket; the mapping covers the whole buffer.
        unsafe { map.as_mut_ptr().write(7) };
        g.end().unwrap();
        let g = buf.begin_cpu_access(Access::Read, LONG).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { map.as_ptr().read() }, 7);
        g.end().unwrap();
        assert!(buf.supports_sync_file_export());
    }
    // Bad input on real devices: a layout that does not fit, a bad format.
    let big = bufsync_backends::dmabuf::Layout::linear(4096, 4096, fourcc(b"XR24"), 16384);
    assert!(matches!(
        b.try_clone().unwrap().with_layout(big),
        Err(Error::InvalidArgument { .. })
    ));
    let odd = bufsync_backends::dmabuf::Layout::linear(4, 4, fourcc(b"ZZZZ"), 16);
    assert!(matches!(
        b.try_clone().unwrap().with_layout(odd),
        Err(Error::UnsupportedFormat { .. })
    ));
    // Bad flags through the raw layer: EINVAL, no panic.
    use bufsync_backends::sys::dma_buf as raw;
    assert!(raw::sync(b.fd(), 0x80).is_err());
    assert!(raw::export_sync_file(b.fd(), 0).is_err());
    assert!(raw::import_sync_file(b.fd(), 0x40, b.fd()).is_err());
    // A sync_file ioctl on a dma-buf: not a sync_file.
    assert!(matches!(
        SyncFile::check(b.fd()),
        Err(Error::NotASyncFile { .. })
    ));
    // A udmabuf over an unsealed memfd is refused with a typed error.
    let memfd = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&memfd, 4096).unwrap();
    assert!(matches!(
        Udmabuf::from_memfd(std::os::fd::AsFd::as_fd(&memfd), 0, 4096),
        Err(bufsync_backends::Error::InvalidArgument { .. })
    ));
    // Not a memfd at all, and a closed fd (docs/backends.md: `BadFd`).
    let (pr, _pw) = rustix::pipe::pipe().unwrap();
    assert!(matches!(
        Udmabuf::from_memfd(std::os::fd::AsFd::as_fd(&pr), 0, 4096),
        Err(bufsync_backends::Error::InvalidArgument { .. })
    ));
    // SAFETY: far above RLIMIT_NOFILE, so surely closed; only syscalls that
    // fail with EBADF are issued on it.
    let closed = unsafe { std::os::fd::BorrowedFd::borrow_raw(1 << 30) };
    assert!(matches!(
        Udmabuf::from_memfd(closed, 0, 4096),
        Err(bufsync_backends::Error::BadFd { fd: 1_073_741_824 })
    ));
}

/// The cross-device case: a vgem buffer imported into vkms through PRIME;
/// virtio-gpu refuses foreign dma-bufs with a typed error.
#[test]
fn vgem_buffer_imported_into_vkms() {
    require!("vgem", has_driver("vgem"));
    require!("vkms", has_driver("vkms"));
    let (bo, buf) = vgem_buf();
    let vkms = Arc::new(DrmDevice::find("vkms").unwrap());
    assert!(vkms.caps().prime_import);
    let handle = vkms
        .import_dmabuf(&buf)
        .expect("vkms imports the vgem dma-buf");
    assert_ne!(handle.raw(), 0);
    // The same kernel dma-buf: re-exported from vkms it carries vgem's fences.
    let again = handle.export(true).unwrap();
    let fence = bo.attach_fence(true).unwrap();
    assert!(!again
        .export_sync_file(Access::Read)
        .unwrap()
        .is_signaled()
        .unwrap());
    fence.signal().unwrap();
    assert!(again
        .export_sync_file(Access::Read)
        .unwrap()
        .is_signaled()
        .unwrap());
    if has_driver("virtio_gpu") {
        let virtio = Arc::new(DrmDevice::find("virtio_gpu").unwrap());
        assert!(virtio.import_dmabuf(&buf).is_err());
    }
}

/// The implicit-sync bridge, pull: the kernel's fences enter the runtime
/// reservation as a sync_file fence, which the reactor signals.
#[test]
fn bridge_pull_kernel_fences() {
    require!("vgem", has_driver("vgem"));
    let (bo, buf) = vgem_buf();
    assert!(
        buf.pull_kernel_fences(Access::Read).unwrap().is_none(),
        "nothing pending"
    );
    let kernel = bo.attach_fence(true).unwrap();
    let fence = buf
        .pull_kernel_fences(Access::Read)
        .unwrap()
        .expect("pending writer");
    assert_eq!(fence.driver_name(), "vgem");
    let resv = buf.reservation();
    assert!(!resv.test_signaled(bufsync::resv::Usage::Write));
    kernel.signal().unwrap();
    resv.wait(bufsync::resv::Usage::Read, Some(LONG)).unwrap();
    assert!(fence.is_signaled());
}

/// The implicit-sync bridge, push: a runtime fence with a sync_file form
/// becomes a kernel fence of the dma-buf; a software one is handed back for
/// a software wait; CPU access waits for the runtime reservation.
#[test]
fn bridge_push_runtime_fences() {
    require!("vgem", has_driver("vgem"));
    require!("sw_sync", SwSyncTimeline::is_available());
    use bufsync::fence::{alloc_contexts, Fence};
    use bufsync::resv::Usage;
    use bufsync_backends::sync_file::SyncFileFence;
    let (_bo, buf) = vgem_buf();
    let tl = SwSyncTimeline::new().unwrap();
    let fence = SyncFileFence::fence(tl.create_fence(1, "render").unwrap()).unwrap();
    assert!(buf.push_fence(&fence, Access::Write).unwrap());
    assert!(!signaled(&buf.export_sync_file(Access::Read).unwrap()));

    let soft = Fence::software(alloc_contexts(1), 1);
    {
        let mut g = buf.reservation().lock_alone();
        g.reserve_fences(2).unwrap();
        g.add_fence(&fence, Usage::Write);
        g.add_fence(&soft, Usage::Read);
    }
    let left = buf.push_reservation().unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].ptr_eq(&soft));
    // Readers wait for the runtime writer (bounded: the error names it),
    // writers also for `soft`.
    assert!(matches!(
        buf.begin_cpu_access(Access::Read, Duration::from_millis(50)),
        Err(Error::Pending { fence: f, .. }) if f.ptr_eq(&fence)
    ));
    tl.inc(1).unwrap();
    buf.begin_cpu_access(Access::Read, LONG)
        .unwrap()
        .end()
        .unwrap();
    assert!(signaled(&buf.export_sync_file(Access::Write).unwrap()));
    assert!(matches!(
        buf.begin_cpu_access(Access::Write, Duration::from_millis(50)),
        Err(Error::Pending { fence: f, .. }) if f.ptr_eq(&soft)
    ));
    soft.signal().unwrap();
    buf.begin_cpu_access(Access::Write, LONG)
        .unwrap()
        .end()
        .unwrap();
}

/// SeqnoFence over a word in a dma-buf mapping (udmabuf): a CPU producer
/// wakes waiters at once; a silent write (as a GPU would do) is found by
/// polling; 32-bit seqnos wrap correctly.
#[test]
fn seqno_fence_in_dmabuf() {
    require!("udmabuf", Udmabuf::is_available());
    use bufsync_backends::seqno::{SeqnoMemory, SeqnoWidth};
    let buf = Udmabuf::create(4096).unwrap();
    let mem = SeqnoMemory::from_dmabuf(&buf).unwrap();
    let word = mem.word(64, SeqnoWidth::U32).unwrap();
    word.store(0xffff_fff0);
    let fence = word.fence(0x10); // past the wrap
    assert!(!fence.is_signaled());
    let producer = {
        let word = Arc::clone(&word);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            word.advance(0x10);
        })
    };
    fence.wait_timeout(LONG).unwrap();
    producer.join().unwrap();
    // The same memory seen through a second mapping of the dma-buf.
    let other = SeqnoMemory::from_dmabuf(&buf)
        .unwrap()
        .word(64, SeqnoWidth::U32)
        .unwrap();
    assert_eq!(other.load(), 0x10);
    let later = other.fence(0x20);
    let writer = {
        let word = Arc::clone(&word);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            word.store(0x20); // no wake-up: the engine's poller finds it
        })
    };
    later.wait_timeout(LONG).unwrap();
    writer.join().unwrap();
    word.wait(0x20, LONG).unwrap();
    assert!(matches!(
        word.wait(0x30, Duration::from_millis(5)),
        Err(Error::TimedOut { .. })
    ));
}
