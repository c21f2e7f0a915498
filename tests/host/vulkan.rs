//! Vulkan backend on the host's lavapipe (no udmabuf): capability probing,
//! timeline fences, CPU waits with timeouts, memfd import as a dma-buf,
//! rendering into it, hardware/software wait classification, the GPU seqno
//! writer, fd hygiene, and the freshness of the checked-in SPIR-V.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bufsync::fence::{Fence, FenceError, WaitError};
use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::{
    wait_fence, ExternalBuffer, ExternalImage, ImageLayout, QueueSync, SeqnoWriter, Submitter,
    TimelinePoint, TimelineSemaphore, VulkanContext, VulkanError, Wait, WaitPath,
    DRM_FORMAT_XRGB8888,
};
use bufsync_examples::check::{check_frame, decode_frame_number};
use bufsync_examples::render::pattern::PatternRenderer;
use bufsync_tests::{lavapipe, require, serial};

/// Bound on waits that must succeed.
const LONG: std::time::Duration = std::time::Duration::from_secs(10);

/// `ctx_or_skip!(ctx)`: takes the serial lock and binds the lavapipe
/// context to `ctx`, or skips the test.
macro_rules! ctx_or_skip {
    ($ctx:ident) => {
        let _serial = serial();
        let $ctx = lavapipe();
        require!("lavapipe (Vulkan)", $ctx.is_some());
        let $ctx = $ctx.unwrap();
    };
}

fn memfd(size: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create("bufsync-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    fd
}

/// Reads the whole memfd (after the GPU work is done).
fn read_all(fd: &OwnedFd, size: u64) -> Vec<u8> {
    let mut out = vec![0u8; size as usize];
    let mut off = 0usize;
    while off < out.len() {
        let n = rustix::io::pread(fd, &mut out[off..], off as u64).unwrap();
        assert!(n > 0);
        off += n;
    }
    out
}

#[test]
fn caps_probe() {
    ctx_or_skip!(ctx);
    let caps = ctx.caps();
    log::info!("{caps}");
    assert!(caps.timeline_semaphore);
    assert!(!caps.device_name.is_empty());
    // lavapipe imports memfds as DMA_BUF handles on any kernel.
    assert!(
        caps.external_memory_dma_buf && caps.dmabuf_buffer.import,
        "{caps}"
    );
    // Printing lists every capability.
    let text = caps.to_string();
    for key in [
        "buffer DMA_BUF",
        "binary semaphore SYNC_FD",
        "DRM modifiers",
    ] {
        assert!(text.contains(key), "{key} missing from\n{text}");
    }
    // No SYNC_FD export on the host's lavapipe: the lazy probe has nothing
    // to try and submits nothing.
    assert_eq!(
        ctx.sync_fd_export(),
        bufsync_backends::vulkan::SyncFdExport::Unsupported
    );
}

/// An application's device with queue-lock hooks: constructing the context
/// (and a submitter) calls them never, i.e. submits nothing; every
/// submission bufsync makes is bracketed by exactly one lock and one unlock
/// of the application's queue, never nested.
#[test]
fn queue_lock_hooks_bracket_every_submit() {
    use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
    let _serial = serial();
    let Some(owned) = lavapipe() else {
        require!("lavapipe (Vulkan)", false);
        return;
    };
    let handles = app_device(&owned);
    let (device, queue) = (handles.device.clone(), handles.queue);
    let locks = Arc::new(AtomicUsize::new(0));
    let unlocks = Arc::new(AtomicUsize::new(0));
    let depth = Arc::new(AtomicI32::new(0));
    let sync = {
        let (l, u, d1, d2) = (locks.clone(), unlocks.clone(), depth.clone(), depth.clone());
        QueueSync::hooks(
            move |q| {
                assert_eq!(q, queue, "another queue");
                assert_eq!(d1.fetch_add(1, Ordering::SeqCst), 0, "nested lock");
                l.fetch_add(1, Ordering::SeqCst);
            },
            move |q| {
                assert_eq!(q, queue, "another queue");
                assert_eq!(d2.fetch_sub(1, Ordering::SeqCst), 1, "unlock without lock");
                u.fetch_add(1, Ordering::SeqCst);
            },
        )
    };
    {
        // SAFETY: the handles are valid and outlive `app` (destroyed below).
        let app = unsafe { VulkanContext::from_application(handles, sync) }.unwrap();
        let sub = Submitter::new(&app).unwrap();
        assert_eq!(
            locks.load(Ordering::SeqCst),
            0,
            "construction touched the queue"
        );
        for n in 1..=5 {
            let s = sub.submit(&[], LONG, |_, _| Ok(())).unwrap();
            assert_eq!(locks.load(Ordering::SeqCst), n);
            assert_eq!(unlocks.load(Ordering::SeqCst), n);
            wait_fence(&s.fence, LONG).unwrap();
        }
        // Submitting from several threads: still one bracket per submit.
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..5 {
                        sub.submit(&[], LONG, |_, _| Ok(())).unwrap();
                    }
                });
            }
        });
        sub.finish(LONG).unwrap();
        assert_eq!(locks.load(Ordering::SeqCst), 25);
        assert_eq!(unlocks.load(Ordering::SeqCst), 25);
        app.with_queue(|q| assert_eq!(q, queue));
        assert_eq!(locks.load(Ordering::SeqCst), 26);
    }
    assert_eq!(depth.load(Ordering::SeqCst), 0);
    // SAFETY: no object of this device is alive any more.
    unsafe {
        device.device_wait_idle().unwrap();
        device.destroy_device(None);
    }
}

/// An "application's" device of our own on the owned context's instance
/// (one queue, timeline semaphores, no extension), as handles to wrap. The
/// caller destroys `handles.device` once nothing of it is alive.
fn app_device(owned: &VulkanContext) -> bufsync_backends::vulkan::ApplicationHandles {
    let inst = owned.instance();
    let prio = [1.0f32];
    let queues = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(owned.queue_family_index())
        .queue_priorities(&prio)];
    let mut v12 = vk::PhysicalDeviceVulkan12Features::default().timeline_semaphore(true);
    let info = vk::DeviceCreateInfo::default()
        .queue_create_infos(&queues)
        .push_next(&mut v12);
    // SAFETY: valid instance and physical device; pointers are locals.
    let device = unsafe { inst.create_device(owned.physical_device(), &info, None) }.unwrap();
    // SAFETY: the family was requested with one queue.
    let queue = unsafe { device.get_device_queue(owned.queue_family_index(), 0) };
    bufsync_backends::vulkan::ApplicationHandles {
        entry: owned.entry().clone(),
        instance: inst.clone(),
        physical_device: owned.physical_device(),
        device,
        queue_family_index: owned.queue_family_index(),
        queue,
        enabled_device_extensions: Vec::new(),
        timeline_semaphore: true,
    }
}

#[test]
fn context_on_application_handles() {
    let _serial = serial();
    let Some(owned) = lavapipe() else {
        require!("lavapipe (Vulkan)", false);
        return;
    };
    // Build the "application's" objects with the owned context's instance
    // and a second device of our own, then wrap them.
    let handles = app_device(&owned);
    let device = handles.device.clone();
    {
        // SAFETY: the handles are valid and outlive `app` (destroyed below).
        let app =
            unsafe { VulkanContext::from_application(handles, QueueSync::Application) }.unwrap();
        assert!(!app.is_owned());
        // No extension was enabled: nothing external is claimed.
        assert!(!app.caps().external_memory_fd && !app.caps().dmabuf_buffer.import);
        let err = ExternalBuffer::import(
            &app,
            memfd(4096).as_fd(),
            0,
            4096,
            vk::BufferUsageFlags::STORAGE_BUFFER,
        );
        assert!(matches!(err, Err(VulkanError::Missing(_))), "{err:?}");
        let sem = TimelineSemaphore::new(&app, 0).unwrap();
        let f = sem.point(1);
        sem.signal(1).unwrap();
        assert!(f.is_signaled());
    }
    // The wrapper destroyed nothing of ours: this would crash otherwise.
    // SAFETY: no object of this device is alive any more.
    unsafe {
        device.device_wait_idle().unwrap();
        device.destroy_device(None);
    }
}

#[test]
fn timeline_point_is_signaled_from_counter() {
    ctx_or_skip!(ctx);
    let sem = TimelineSemaphore::new(&ctx, 0).unwrap();
    let f2 = sem.point(2);
    let f3 = sem.point(3);
    assert!(!f2.is_signaled() && !f3.is_signaled());
    assert_eq!(f3.context(), sem.fence_context());
    assert_eq!(f3.seqno(), 3);
    assert_eq!(f3.driver_name(), "vulkan");
    sem.signal(2).unwrap();
    assert!(f2.is_signaled());
    assert!(!f3.is_signaled());
    assert!(f3
        .kind_as::<TimelinePoint>()
        .is_some_and(|p| p.same_device(&ctx)));
    sem.signal(5).unwrap();
    assert!(f3.is_signaled());
    assert_eq!(sem.value().unwrap(), 5);
}

#[test]
fn waiter_signals_fences_and_callbacks() {
    ctx_or_skip!(ctx);
    let sem = TimelineSemaphore::new(&ctx, 0).unwrap();
    let fences: Vec<Fence> = (1..=4).map(|v| sem.point(v)).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    for f in &fences {
        let tx = tx.clone();
        f.add_callback(move |f| {
            let _ = tx.send(f.seqno());
        })
        .unwrap();
    }
    let waiter = {
        let f = fences[3].clone();
        std::thread::spawn(move || f.wait())
    };
    sem.signal(2).unwrap();
    let mut got = vec![rx.recv().unwrap(), rx.recv().unwrap()];
    got.sort();
    assert_eq!(got, vec![1, 2]);
    assert!(!fences[2].is_signaled());
    sem.signal(4).unwrap();
    waiter.join().unwrap().unwrap();
    let mut rest = vec![rx.recv().unwrap(), rx.recv().unwrap()];
    rest.sort();
    assert_eq!(rest, vec![3, 4]);
}

#[test]
fn cpu_wait_with_timeout() {
    ctx_or_skip!(ctx);
    let sem = TimelineSemaphore::new(&ctx, 0).unwrap();
    let f = sem.point(1);
    let p = f.kind_as::<TimelinePoint>().unwrap();
    assert_eq!(
        p.wait_cpu(Duration::from_millis(5)),
        Err(WaitError::TimedOut)
    );
    assert_eq!(
        wait_fence(&f, Duration::from_millis(5)),
        Err(WaitError::TimedOut)
    );
    assert!(!f.is_signaled(), "a waiter's timeout ended the fence");
    assert!(!sem.wait(1, Duration::ZERO).unwrap());
    let s2 = sem.clone();
    let t = std::thread::spawn(move || s2.signal(1));
    assert_eq!(wait_fence(&f, LONG), Ok(()));
    t.join().unwrap().unwrap();
    assert!(f.is_signaled());
    assert!(sem.wait(1, Duration::ZERO).unwrap());
}

#[test]
fn context_drop_with_outstanding_fences_is_clean() {
    ctx_or_skip!(ctx);
    let sem = TimelineSemaphore::new(&ctx, 0).unwrap();
    let f = sem.point(1);
    f.enable_signaling();
    drop(ctx);
    drop(sem);
    // The engine's poller holds the last context reference until the point
    // signals; the context is then dropped on the engine's thread, which
    // must not deadlock.
    let k = f.kind_as::<TimelinePoint>().unwrap();
    k.semaphore().signal(1).unwrap();
    f.wait().unwrap();
    drop(f);
}

const W: u32 = 96;
const H: u32 = 40;

fn linear_layout(offset: u64, stride: u64, size: u64) -> ImageLayout {
    ImageLayout::linear(W, H, DRM_FORMAT_XRGB8888, offset, stride, size)
}

#[test]
fn memfd_import_render_and_check_pixels() {
    ctx_or_skip!(ctx);
    let stride = u64::from(W) * 4 + 64;
    let offset = 4096;
    let size = offset + stride * u64::from(H);
    let fd = memfd(size);
    let buf = ExternalBuffer::import(
        &ctx,
        fd.as_fd(),
        0,
        size,
        vk::BufferUsageFlags::STORAGE_BUFFER,
    )
    .unwrap();
    let renderer = PatternRenderer::new(&ctx).unwrap();
    let layout = linear_layout(offset, stride, size);
    let target = renderer.target(Arc::new(buf), &layout).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    for frame in [7u32, 0xdead_beef] {
        let s = sub
            .submit(&[], LONG, |_, cmd| {
                renderer.record(cmd, &target, frame);
                Ok(())
            })
            .unwrap();
        assert!(
            s.sync_file.is_none(),
            "lavapipe hands out no pending sync_files"
        );
        wait_fence(&s.fence, LONG).unwrap();
        let bytes = read_all(&fd, size);
        check_frame(&bytes, &layout, frame).unwrap();
        assert_eq!(decode_frame_number(&bytes, &layout), Some(frame));
        // The bytes before the plane were not touched.
        assert!(bytes[..offset as usize].iter().all(|&b| b == 0));
    }
}

#[test]
fn memfd_import_at_offset_and_bad_ranges() {
    ctx_or_skip!(ctx);
    let fd = memfd(8192);
    let usage = vk::BufferUsageFlags::STORAGE_BUFFER;
    let b = ExternalBuffer::import(&ctx, fd.as_fd(), 4096, 4096, usage).unwrap();
    assert_eq!((b.offset(), b.size()), (4096, 4096));
    let e = ExternalBuffer::import(&ctx, fd.as_fd(), 4096, 8192, usage);
    assert!(matches!(e, Err(VulkanError::Invalid(_))), "{e:?}");
    let e = ExternalBuffer::import(&ctx, fd.as_fd(), 0, 0, usage);
    assert!(matches!(e, Err(VulkanError::Invalid(_))), "{e:?}");
    let renderer = PatternRenderer::new(&ctx).unwrap();
    // A layout that overruns the buffer is refused.
    let e = renderer.target(Arc::new(b), &linear_layout(4096, u64::from(W) * 4, 8192));
    assert!(matches!(e, Err(VulkanError::Invalid(_))), "{e:?}");
}

#[test]
fn memfd_import_as_linear_image() {
    ctx_or_skip!(ctx);
    let stride = u64::from(W) * 4;
    let size = stride * u64::from(H);
    let fd = memfd(size);
    let layout = linear_layout(0, stride, size);
    match ExternalImage::import(&ctx, fd.as_fd(), &layout, vk::ImageUsageFlags::TRANSFER_SRC) {
        Ok(img) => {
            assert_eq!(img.layout().planes[0].stride, stride);
            assert_eq!(img.format(), vk::Format::B8G8R8A8_UNORM);
        }
        // A driver whose LINEAR pitch differs must say so, typed.
        Err(VulkanError::Unsupported(why)) => log::info!("linear image import refused: {why}"),
        Err(e) => panic!("{e}"),
    }
    let bad = ImageLayout {
        modifier: 0x0100_0000_0000_0001,
        ..layout.clone()
    };
    if !ctx.caps().image_drm_format_modifier {
        let e = ExternalImage::import(&ctx, fd.as_fd(), &bad, vk::ImageUsageFlags::TRANSFER_SRC);
        assert!(matches!(e, Err(VulkanError::Missing(_))), "{e:?}");
    }
}

#[test]
fn memfd_image_render_through_storage_image() {
    ctx_or_skip!(ctx);
    let stride = u64::from(W) * 4;
    let size = stride * u64::from(H);
    let fd = memfd(size);
    let layout = linear_layout(0, stride, size);
    let usage = vk::ImageUsageFlags::STORAGE | vk::ImageUsageFlags::TRANSFER_SRC;
    let img = match ExternalImage::import(&ctx, fd.as_fd(), &layout, usage) {
        Ok(img) => img,
        Err(VulkanError::Unsupported(why)) => {
            require!("LINEAR image import with this stride", false);
            panic!("{why}");
        }
        Err(e) => panic!("{e}"),
    };
    let renderer = PatternRenderer::new(&ctx).unwrap();
    let target = renderer.image_target(Arc::new(img)).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    for frame in [3u32, 1 << 31] {
        let s = sub
            .submit(&[], LONG, |_, cmd| {
                renderer.record(cmd, &target, frame);
                Ok(())
            })
            .unwrap();
        wait_fence(&s.fence, LONG).unwrap();
        let bytes = read_all(&fd, size);
        check_frame(&bytes, target.layout(), frame).unwrap();
        assert_eq!(decode_frame_number(&bytes, target.layout()), Some(frame));
    }
}

#[test]
fn failed_imports_leak_no_fd() {
    ctx_or_skip!(ctx);
    let (r, w) = rustix::pipe::pipe().unwrap();
    // Warm up whatever the driver opens once.
    let fd = memfd(4096);
    drop(
        ExternalBuffer::import(
            &ctx,
            fd.as_fd(),
            0,
            4096,
            vk::BufferUsageFlags::STORAGE_BUFFER,
        )
        .unwrap(),
    );
    drop(fd);
    let before = bufsync_tests::open_fds();
    for _ in 0..8 {
        let e = ExternalBuffer::import(&ctx, r.as_fd(), 0, 1, vk::BufferUsageFlags::STORAGE_BUFFER);
        assert!(e.is_err());
        // A memfd that the driver accepts, imported and dropped.
        let fd = memfd(4096);
        drop(
            ExternalBuffer::import(
                &ctx,
                fd.as_fd(),
                0,
                4096,
                vk::BufferUsageFlags::STORAGE_BUFFER,
            )
            .unwrap(),
        );
    }
    assert_eq!(bufsync_tests::open_fds(), before);
    drop((r, w));
}

#[test]
fn same_device_timeline_wait_is_done_in_hardware() {
    ctx_or_skip!(ctx);
    let gate = TimelineSemaphore::new(&ctx, 0).unwrap();
    let dep = gate.point(1);
    let sub = Submitter::new(&ctx).unwrap();
    assert_eq!(sub.classify(&Wait::Fence(&dep)), WaitPath::TimelineHw);
    let s = sub
        .submit(&[Wait::Fence(&dep)], LONG, |_, _| Ok(()))
        .unwrap();
    assert_eq!(s.report.timeline_hw, 1);
    assert_eq!(s.report.software, 0);
    // The GPU cannot pass the gate: the submission stays pending.
    assert_eq!(
        wait_fence(&s.fence, Duration::from_millis(20)),
        Err(WaitError::TimedOut)
    );
    assert!(!s.fence.is_signaled());
    gate.signal(1).unwrap();
    wait_fence(&s.fence, LONG).unwrap();
    // Signaled dependencies cost nothing.
    let s2 = sub
        .submit(&[Wait::Fence(&dep)], LONG, |_, _| Ok(()))
        .unwrap();
    assert_eq!(s2.report.signaled, 1);
    s2.fence.wait().unwrap();
}

/// A foreign fence kind that signals as soon as someone waits for it, so
/// a submission sees it pending and must wait for it in software.
struct SignalsOnWait;

impl bufsync::fence::FenceKind for SignalsOnWait {
    fn driver_name(&self) -> &str {
        "test"
    }
    fn timeline_name(&self) -> &str {
        "signals-on-wait"
    }
    fn enable_signaling(&self, fence: &Fence) -> Result<(), FenceError> {
        let _ = fence.signal();
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn render_points_have_no_sync_file_form_on_lavapipe() {
    ctx_or_skip!(ctx);
    let gate = TimelineSemaphore::new(&ctx, 0).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    let dep = gate.point(1);
    let s = sub
        .submit(&[Wait::Fence(&dep)], LONG, |_, _| Ok(()))
        .unwrap();
    assert!(s.sync_file.is_none());
    let p = s.fence.kind_as::<TimelinePoint>().unwrap();
    assert!(p.sync_file().is_none());
    // Pending without a sync_file form: the display must wait in software.
    assert!(bufsync_backends::vulkan::to_sync_file(&s.fence).is_err());
    gate.signal(1).unwrap();
    wait_fence(&s.fence, LONG).unwrap();
    // Signaled cleanly: nothing to wait for.
    assert!(bufsync_backends::vulkan::to_sync_file(&s.fence)
        .unwrap()
        .is_none());
}

#[test]
fn foreign_fences_are_waited_in_software() {
    ctx_or_skip!(ctx);
    let sub = Submitter::new(&ctx).unwrap();
    let foreign = Fence::new(
        Arc::new(SignalsOnWait),
        bufsync::fence::alloc_contexts(1),
        1,
    );
    assert_eq!(sub.classify(&Wait::Fence(&foreign)), WaitPath::Software);
    let s = sub
        .submit(&[Wait::Fence(&foreign)], LONG, |_, _| Ok(()))
        .unwrap();
    assert!(foreign.is_signaled());
    assert_eq!(s.report.software, 1);
    s.fence.wait().unwrap();
    // A failed dependency fails the submission (nothing is submitted).
    let bad = Fence::software(bufsync::fence::alloc_contexts(1), 1);
    bad.signal_with_error(FenceError::Cancelled).unwrap();
    let e = sub.submit(&[Wait::Fence(&bad)], LONG, |_, _| Ok(()));
    assert!(
        matches!(e, Err(VulkanError::Fence(FenceError::Cancelled))),
        "{e:?}"
    );
    // A timeline point of another device is foreign too.
    let other = VulkanContext::new().unwrap();
    let osem = TimelineSemaphore::new(&other, 0).unwrap();
    assert_eq!(
        sub.classify(&Wait::Fence(&osem.point(1))),
        WaitPath::Software
    );
}

#[test]
fn gpu_writes_seqno_into_dmabuf_word() {
    ctx_or_skip!(ctx);
    let fd = memfd(4096);
    let usage = vk::BufferUsageFlags::TRANSFER_DST | vk::BufferUsageFlags::STORAGE_BUFFER;
    let buf = Arc::new(ExternalBuffer::import(&ctx, fd.as_fd(), 0, 4096, usage).unwrap());
    assert!(SeqnoWriter::new(buf.clone(), 4094).is_err());
    let writer = SeqnoWriter::new(buf, 256).unwrap();
    assert_eq!(writer.dmabuf_offset(), 256);
    let gate = TimelineSemaphore::new(&ctx, 0).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    let dep = gate.point(1);
    let s = sub
        .submit(&[Wait::Fence(&dep)], LONG, |dev, cmd| {
            writer.record(dev, cmd, 0x1234_5678);
            Ok(())
        })
        .unwrap();
    let word = |fd: &OwnedFd| {
        let b = read_all(fd, 4096);
        u32::from_ne_bytes([b[256], b[257], b[258], b[259]])
    };
    assert_eq!(word(&fd), 0, "written before its dependency");
    gate.signal(1).unwrap();
    s.fence.wait().unwrap();
    assert_eq!(word(&fd), 0x1234_5678);
}

#[test]
fn gpu_seqno_fence_on_memfd() {
    ctx_or_skip!(ctx);
    let fd = memfd(4096);
    let writer = SeqnoWriter::for_fd(&ctx, fd.as_fd(), 128).unwrap();
    let gate = TimelineSemaphore::new(&ctx, 0).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    for seqno in 1..=3u32 {
        let fence = writer.fence(seqno).unwrap();
        assert!(!fence.is_signaled());
        let dep = gate.point(u64::from(seqno));
        let s = sub
            .submit(&[Wait::Fence(&dep)], LONG, |dev, cmd| {
                writer.record(dev, cmd, seqno);
                Ok(())
            })
            .unwrap();
        assert!(!fence.is_signaled(), "seqno {seqno} before its dependency");
        gate.signal(u64::from(seqno)).unwrap();
        // The runtime learns of it from the word the GPU wrote.
        fence.wait().unwrap();
        assert_eq!(writer.word().unwrap().load(), u64::from(seqno));
        wait_fence(&s.fence, LONG).unwrap();
    }
    assert!(SeqnoWriter::for_fd(&ctx, fd.as_fd(), 4096).is_err());
}

#[test]
fn checked_in_spirv_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let shaders = root.join("examples").join("shaders");
    let have_glslc = std::process::Command::new("glslc")
        .arg("--version")
        .output()
        .is_ok();
    require!("glslc (apt-get install glslc spirv-tools)", have_glslc);
    let out = std::env::temp_dir().join(format!("bufsync-spv-{}", std::process::id()));
    let status = std::process::Command::new("sh")
        .arg(shaders.join("build.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "examples/shaders/build.sh failed");
    let mut n = 0;
    for entry in std::fs::read_dir(&shaders).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "comp") {
            let name = format!("{}.spv", path.file_name().unwrap().to_string_lossy());
            let fresh = std::fs::read(out.join(&name)).unwrap();
            let checked_in = std::fs::read(shaders.join(&name)).unwrap_or_default();
            assert!(
                fresh == checked_in,
                "examples/shaders/{name} is stale: run examples/shaders/build.sh"
            );
            n += 1;
        }
    }
    assert!(n > 0);
    let _ = std::fs::remove_dir_all(&out);
}

/// A dependency waited in software that never signals: the submission ends
/// at its bound with an error naming the fence, nothing is submitted, and
/// the queue keeps working for the next submission.
#[test]
fn stuck_software_dependency_fails_the_submit_at_its_bound() {
    ctx_or_skip!(ctx);
    let sub = Submitter::new(&ctx).unwrap();
    let never = Fence::new(
        Arc::new(bufsync::fence::SoftwareKind::new("app", "never")),
        bufsync::fence::alloc_contexts(1),
        9,
    );
    assert_eq!(sub.classify(&Wait::Fence(&never)), WaitPath::Software);
    let t = std::time::Instant::now();
    let e = sub.submit(&[Wait::Fence(&never)], Duration::from_millis(50), |_, _| {
        Ok(())
    });
    let took = t.elapsed();
    match e {
        Err(VulkanError::DependencyPending { fence, waited }) => {
            assert!(fence.ptr_eq(&never));
            assert!(waited >= Duration::from_millis(50));
            assert!(e_text(&VulkanError::DependencyPending { fence, waited }).contains("app/never"));
        }
        other => panic!("expected DependencyPending, got {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(!never.is_signaled(), "the bound ended the fence");
    assert_eq!(
        sub.timeline().value().unwrap(),
        0,
        "something was submitted"
    );
    let s = sub.submit(&[], LONG, |_, _| Ok(())).unwrap();
    assert_eq!(s.value, 1);
    wait_fence(&s.fence, LONG).unwrap();
}

fn e_text(e: &VulkanError) -> String {
    e.to_string()
}

/// A submission the GPU holds back on a dependency that does not signal:
/// `finish` ends at its bound with a typed error, and dropping the
/// submitter does not block past its drop bound (it leaks the stuck
/// submission's objects instead of destroying them under the GPU).
#[test]
fn submitter_drop_is_bounded_by_a_stuck_submission() {
    ctx_or_skip!(ctx);
    let gate = TimelineSemaphore::new(&ctx, 0).unwrap();
    let dep = gate.point(1);
    let mut sub = Submitter::new(&ctx).unwrap();
    let s = sub
        .submit(&[Wait::Fence(&dep)], LONG, |_, _| Ok(()))
        .unwrap();
    assert_eq!(s.report.timeline_hw, 1);
    assert!(matches!(
        sub.finish(Duration::from_millis(30)),
        Err(VulkanError::TimedOut { .. })
    ));
    sub.set_drop_timeout(Duration::from_millis(50));
    let t = std::time::Instant::now();
    drop(sub);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "drop blocked {:?}",
        t.elapsed()
    );
    assert!(!s.fence.is_signaled());
    // Its producer finishes after all: the leaked submission completes.
    gate.signal(1).unwrap();
    wait_fence(&s.fence, LONG).unwrap();
}
