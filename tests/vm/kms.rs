//! KMS backend on vkms (inside the test VM): output choice and IN_FORMATS,
//! PRIME framebuffers from vgem and udmabuf, typed refusals, ports of IGT
//! kms_atomic `plane-invalid-params-fence` / `crtc-invalid-params-fence`
//! and kms_flip `flip-vs-fences`, EBUSY handling, and bit-exact writeback.
//!
//! All tests share one vkms CRTC (and DRM master), so they run one at a
//! time under [`LOCK`].

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use bufsync::fence::{alloc_contexts, Fence, FenceError};
use bufsync_backends::dmabuf::{fourcc, Access, DmaBuf, Layout, Udmabuf, MOD_LINEAR};
use bufsync_backends::drm::DrmDevice;
use bufsync_backends::kms::{
    AtomicRequest, CommitFlags, Display, FencedFlip, FlipRequest, Framebuffer, InFencePath,
    KmsError,
};
use bufsync_backends::sync_file::{SyncFile, SyncFileFence};
use bufsync_backends::testing::{SwSyncTimeline, VgemBuffer};
use bufsync_tests::{has_driver, open_fds, pattern_buffer, pattern_pixel, require, serial};

const XR24: u32 = fourcc(b"XR24");
const WAIT: Duration = Duration::from_secs(5);

fn errno_of(e: &KmsError) -> Option<i32> {
    e.errno()
}

const EINVAL: i32 = 22;
const EBUSY: i32 = 16;

fn open_display() -> Display {
    Display::open_by_driver("vkms").expect("open vkms by driver name")
}

/// A display-sized (zeroed) vgem buffer, its dma-buf and its framebuffer.
fn vgem_frame(display: &Display, vgem: &Arc<DrmDevice>) -> (VgemBuffer, DmaBuf, Framebuffer) {
    let (w, h) = display.size();
    let bo = VgemBuffer::create(vgem, w, h).unwrap();
    let buf = bo.export().unwrap();
    let fb = display.import_framebuffer(&buf).unwrap();
    (bo, buf, fb)
}

#[test]
fn open_chooses_output_and_parses_in_formats() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    let display = open_display();
    assert_eq!(display.driver(), "vkms");
    // The type index is numbered across devices (virtio-gpu may own
    // Virtual-1): only the kind is fixed.
    assert!(
        display.output().connector_name.starts_with("Virtual-"),
        "{:?}",
        display.output()
    );
    assert!(
        display.output().writeback.is_some(),
        "vkms has a writeback connector"
    );
    assert_eq!(display.size(), (1024, 768));
    let formats = display.formats();
    for f in [b"XR24", b"AR24", b"XR48", b"AR48", b"RG16"] {
        assert_eq!(
            formats.modifiers(fourcc(f)),
            &[MOD_LINEAR],
            "{}",
            String::from_utf8_lossy(f)
        );
    }
    assert!(display.props().plane.in_fence_fd.is_some());
    assert!(display.props().crtc.out_fence_ptr.is_some());
    let wb = display.props().writeback.as_ref().unwrap();
    assert!(wb.formats.contains(&XR24));
}

#[test]
fn unsupported_format_modifier_stride_refused() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("udmabuf", Udmabuf::is_available());
    let display = open_display();
    let buf = pattern_buffer(256, 64, 1);
    let fds = open_fds();

    let nv12 = Layout::linear(256, 64, fourcc(b"NV12"), 256);
    let e = display.import_framebuffer_as(&buf, &nv12).unwrap_err();
    assert!(matches!(e, KmsError::UnsupportedFormat { .. }), "{e}");

    let mut tiled = Layout::linear(256, 64, XR24, 1024);
    tiled.modifier = 0x0100_0000_0000_0001; // I915_FORMAT_MOD_X_TILED
    let e = display.import_framebuffer_as(&buf, &tiled).unwrap_err();
    assert!(
        matches!(
            e,
            KmsError::UnsupportedModifier {
                modifier: 0x0100_0000_0000_0001,
                ..
            }
        ),
        "{e}"
    );

    let short = Layout::linear(256, 64, XR24, 1000);
    let e = display.import_framebuffer_as(&buf, &short).unwrap_err();
    assert!(matches!(e, KmsError::BadStride { stride: 1000, .. }), "{e}");

    let odd = Layout::linear(256, 64, XR24, 1026);
    let e = display.import_framebuffer_as(&buf, &odd).unwrap_err();
    assert!(matches!(e, KmsError::BadStride { stride: 1026, .. }), "{e}");

    let too_tall = Layout::linear(256, 65, XR24, 1024);
    let e = display.import_framebuffer_as(&buf, &too_tall).unwrap_err();
    assert!(matches!(e, KmsError::BadStride { .. }), "{e}");

    let bare = buf.try_clone().unwrap();
    let bare = DmaBuf::from_fd(bare.into_fd()).unwrap();
    let e = display.import_framebuffer(&bare).unwrap_err();
    assert!(matches!(e, KmsError::MissingLayout), "{e}");
    drop(bare);

    // The good layout still imports, and nothing leaked on the way.
    let fb = display.import_framebuffer(&buf).unwrap();
    assert_eq!(
        (fb.width(), fb.height(), fb.fourcc(), fb.modifier()),
        (256, 64, XR24, MOD_LINEAR)
    );
    drop(fb);
    assert_eq!(open_fds(), fds);
}

#[test]
fn vgem_buffer_imported_through_prime() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let mut display = open_display();
    let (w, h) = display.size();
    let vgem = VgemBuffer::device().unwrap();
    let (_bo, _buf, fb) = vgem_frame(&display, &vgem);
    assert!(fb.id() != 0);
    display
        .test_commit(FlipRequest::new(&fb))
        .expect("TEST_ONLY accepts the vgem framebuffer");
    display.commit(FlipRequest::new(&fb)).unwrap();
    assert!(display.is_configured());
    // A fresh vgem buffer is zeroed: the composed frame is black.
    let cap = display.capture_writeback(WAIT).unwrap();
    assert_eq!((cap.width, cap.height), (w, h));
    for y in (0..h).step_by(97) {
        for x in (0..w).step_by(61) {
            assert_eq!(cap.pixel(x, y).unwrap() & 0x00ff_ffff, 0, "pixel {x},{y}");
        }
    }
    display.restore().unwrap();
}

#[test]
fn writeback_capture_is_bit_exact() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("udmabuf", Udmabuf::is_available());
    let mut display = open_display();
    let (w, h) = display.size();
    for seed in [0x5a17, 0xc0de] {
        let buf = pattern_buffer(w, h, seed);
        let fb = display.import_framebuffer(&buf).unwrap();
        display.commit(FlipRequest::new(&fb)).unwrap();
        let cap = display.capture_writeback(WAIT).unwrap();
        assert_eq!((cap.width, cap.height, cap.fourcc), (w, h, XR24));
        let mismatches = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| cap.pixel(x, y) != Some(pattern_pixel(x, y, seed)))
            .count();
        assert_eq!(
            mismatches,
            0,
            "seed {seed:#x}: first pixel {:#010x?}",
            cap.pixel(0, 0)
        );
        // The display connector is back: a plain flip works again.
        display.commit(FlipRequest::new(&fb)).unwrap();
    }
}

/// IGT kms_flip flip-vs-fences: a vgem fence's sync_file as IN_FENCE_FD
/// keeps the OUT_FENCE pending until VGEM_FENCE_SIGNAL.
#[test]
fn flip_waits_for_pending_in_fence() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let mut display = open_display();
    let vgem = VgemBuffer::device().unwrap();
    let (_first, _, first_fb) = vgem_frame(&display, &vgem);
    display.commit(FlipRequest::new(&first_fb)).unwrap();

    let (bo, buf, fb) = vgem_frame(&display, &vgem);
    let fence = bo.attach_fence(true).unwrap();
    let in_fence = buf.export_sync_file(Access::Read).unwrap();
    assert!(!in_fence.is_signaled().unwrap());

    let out = display
        .commit(FlipRequest {
            fb: &fb,
            in_fence: Some(&in_fence),
            want_out_fence: true,
            nonblock: true,
        })
        .unwrap()
        .expect("out-fence asked for");
    assert!(display.has_pending_flip());
    assert!(
        !out.is_signaled().unwrap(),
        "flip must wait for the in-fence"
    );
    // Still pending after a frame's worth of waiting and an event poll.
    assert!(matches!(
        display.wait_flip(display.frame_time() * 3),
        Err(KmsError::TimedOut { .. })
    ));
    assert!(
        !out.is_signaled().unwrap(),
        "flip must still wait for the in-fence"
    );

    fence.signal().unwrap();
    out.wait(WAIT)
        .expect("out-fence signals after the vgem signal");
    let ev = display.wait_flip(WAIT).unwrap().expect("flip event");
    assert_eq!(ev.crtc, display.output().crtc);
    assert!(!display.has_pending_flip());
}

/// Without IN_FENCE_FD the flip waits for the buffer's implicit write fence.
#[test]
fn flip_waits_for_implicit_write_fence() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let mut display = open_display();
    let vgem = VgemBuffer::device().unwrap();
    let (_first, _, first_fb) = vgem_frame(&display, &vgem);
    display.commit(FlipRequest::new(&first_fb)).unwrap();

    let (bo, _, fb) = vgem_frame(&display, &vgem);
    let fence = bo.attach_fence(true).unwrap();
    let out = display
        .commit(FlipRequest {
            fb: &fb,
            in_fence: None,
            want_out_fence: true,
            nonblock: true,
        })
        .unwrap()
        .unwrap();
    assert!(
        !out.is_signaled().unwrap(),
        "flip must wait for the implicit write fence"
    );
    fence.signal().unwrap();
    out.wait(WAIT).unwrap();
    display.wait_flip(WAIT).unwrap().expect("flip event");
}

/// Frame A on screen, then a non-blocking flip to frame B held back by a
/// pending vgem fence (`fence`) as its IN_FENCE_FD.
struct HeldFlip {
    a_fb: Framebuffer,
    fence: bufsync_backends::testing::VgemFence,
    _keep: (
        VgemBuffer,
        VgemBuffer,
        DmaBuf,
        Framebuffer,
        bufsync_backends::sync_file::SyncFile,
    ),
}

impl HeldFlip {
    fn new(display: &mut Display, vgem: &Arc<DrmDevice>) -> HeldFlip {
        let (a, _, a_fb) = vgem_frame(display, vgem);
        display.commit(FlipRequest::new(&a_fb)).unwrap();
        let (b, b_buf, b_fb) = vgem_frame(display, vgem);
        let fence = b.attach_fence(true).unwrap();
        let in_fence = b_buf.export_sync_file(Access::Read).unwrap();
        display
            .commit(FlipRequest {
                fb: &b_fb,
                in_fence: Some(&in_fence),
                want_out_fence: false,
                nonblock: true,
            })
            .unwrap();
        HeldFlip {
            a_fb,
            fence,
            _keep: (a, b, b_buf, b_fb, in_fence),
        }
    }
}

/// A non-blocking commit while the previous flip is pending gets EBUSY
/// from the kernel; `Display::commit` waits for that flip and retries.
#[test]
fn ebusy_waits_for_previous_flip() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let mut display = open_display();
    let vgem = VgemBuffer::device().unwrap();
    let held = HeldFlip::new(&mut display, &vgem);
    let (a_fb, fence) = (&held.a_fb, held.fence);

    // The raw commit sees EBUSY while the fenced flip is pending.
    let (raw, flags) = display
        .flip_request(&FlipRequest {
            fb: a_fb,
            in_fence: None,
            want_out_fence: false,
            nonblock: true,
        })
        .unwrap();
    let e = display.commit_atomic(&raw, flags).unwrap_err();
    assert_eq!(errno_of(&e), Some(EBUSY), "{e}");

    // Signal from another thread; commit() waits for the flip, retries.
    let signaler = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        fence.signal().unwrap();
    });
    let out = display
        .commit(FlipRequest {
            fb: a_fb,
            in_fence: None,
            want_out_fence: true,
            nonblock: true,
        })
        .unwrap()
        .unwrap();
    signaler.join().unwrap();
    out.wait(WAIT).unwrap();
    display
        .wait_flip(WAIT)
        .unwrap()
        .expect("flip event of the retried commit");
}

/// IGT kms_atomic plane-invalid-params-fence: a non-sync_file IN_FENCE_FD
/// and a valid fence on an invalid CRTC are refused; nothing leaks.
#[test]
fn plane_invalid_params_fence() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("sw_sync", SwSyncTimeline::is_available());
    require!("udmabuf", Udmabuf::is_available());
    let mut display = open_display();
    let (w, h) = display.size();
    let buf = pattern_buffer(w, h, 7);
    let fb = display.import_framebuffer(&buf).unwrap();
    display.commit(FlipRequest::new(&fb)).unwrap();
    let fds = open_fds();
    let plane = display.output().plane;
    let in_fence_prop = display.props().plane.in_fence_fd.unwrap();

    // A DRM device fd is not a sync_file: a typed refusal at the boundary
    // (a raw fd becomes an in-fence only as a checked SyncFile)...
    let other = DrmDevice::find("vkms").unwrap();
    match SyncFile::from_borrowed(other.as_fd()) {
        Err(bufsync_backends::Error::NotASyncFile { fd }) => {
            assert_eq!(fd, other.as_fd().as_raw_fd())
        }
        e => panic!("expected NotASyncFile, got {e:?}"),
    }
    // ...and EINVAL from the kernel when its number is sent raw.
    let (mut raw, flags) = display.flip_request(&FlipRequest::new(&fb)).unwrap();
    raw.set(plane, in_fence_prop, other.as_fd().as_raw_fd() as u64);
    let e = display.commit_atomic(&raw, flags).unwrap_err();
    assert!(
        matches!(e, KmsError::Commit { .. }) && errno_of(&e) == Some(EINVAL),
        "{e}"
    );
    drop(other);

    // A valid (pending) fence but an invalid CRTC.
    let timeline = SwSyncTimeline::new().unwrap();
    let pending = timeline.create_fence(1, "kms-test").unwrap();
    let (mut raw, flags) = display
        .flip_request(&FlipRequest {
            fb: &fb,
            in_fence: Some(&pending),
            want_out_fence: true,
            nonblock: false,
        })
        .unwrap();
    raw.set(plane, display.props().plane.crtc_id, u64::from(u32::MAX));
    let e = display.commit_atomic(&raw, flags).unwrap_err();
    assert!(matches!(e, KmsError::Commit { .. }), "{e}");

    // Signal it; the same flip with the right CRTC goes through.
    timeline.inc(1).unwrap();
    let out = display
        .commit(FlipRequest {
            fb: &fb,
            in_fence: Some(&pending),
            want_out_fence: true,
            nonblock: false,
        })
        .unwrap()
        .unwrap();
    out.wait(WAIT).unwrap();
    drop((out, pending, timeline));
    assert_eq!(open_fds(), fds, "fds leaked");
}

/// IGT kms_atomic crtc-invalid-params-fence: fences on an inactive CRTC
/// are refused; TEST_ONLY with fences set gives no out-fence; an out-fence
/// without a flip event works; nothing leaks.
#[test]
fn crtc_invalid_params_fence() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("sw_sync", SwSyncTimeline::is_available());
    require!("udmabuf", Udmabuf::is_available());
    let mut display = open_display();
    let (w, h) = display.size();
    let buf = pattern_buffer(w, h, 9);
    let fb = display.import_framebuffer(&buf).unwrap();
    display.commit(FlipRequest::new(&fb)).unwrap();
    let fds = open_fds();
    let crtc = display.output().crtc;
    let active = display.props().crtc.active;
    let out_prop = display.props().crtc.out_fence_ptr.unwrap();

    let timeline = SwSyncTimeline::new().unwrap();
    let pending = timeline.create_fence(1, "kms-test").unwrap();
    let req = FlipRequest {
        fb: &fb,
        in_fence: Some(&pending),
        want_out_fence: false,
        nonblock: false,
    };

    // In-fence on a CRTC being turned off.
    let (mut raw, flags) = display.flip_request(&req).unwrap();
    raw.set(crtc, active, 0);
    let e = display.commit_atomic(&raw, flags).unwrap_err();
    assert_eq!(errno_of(&e), Some(EINVAL), "{e}");

    // Plus an out-fence and a flip event.
    raw.out_fence(crtc, out_prop);
    let e = display
        .commit_atomic(
            &raw,
            CommitFlags {
                page_flip_event: true,
                ..flags
            },
        )
        .unwrap_err();
    assert_eq!(errno_of(&e), Some(EINVAL), "{e}");
    assert!(!display.has_pending_flip());

    // A flip event alone on an inactive CRTC.
    raw.unset(crtc, out_prop);
    let e = display
        .commit_atomic(
            &raw,
            CommitFlags {
                page_flip_event: true,
                ..flags
            },
        )
        .unwrap_err();
    assert_eq!(errno_of(&e), Some(EINVAL), "{e}");

    // Back to a valid configuration: TEST_ONLY with both fences set
    // succeeds and creates no out-fence.
    let (mut raw, flags) = display.flip_request(&req).unwrap();
    raw.out_fence(crtc, out_prop);
    let outcome = display
        .commit_atomic(
            &raw,
            CommitFlags {
                test_only: true,
                ..flags
            },
        )
        .unwrap();
    assert!(outcome.out_fences.is_empty(), "TEST_ONLY made an out-fence");
    display
        .test_commit(FlipRequest {
            want_out_fence: true,
            ..req
        })
        .unwrap();

    // An empty raw request is a no-op; with a flip event it is EINVAL.
    display
        .commit_atomic(&AtomicRequest::new(), CommitFlags::default())
        .unwrap();
    let e = display.commit_atomic(
        &AtomicRequest::new(),
        CommitFlags {
            page_flip_event: true,
            ..Default::default()
        },
    );
    assert_eq!(errno_of(&e.unwrap_err()), Some(EINVAL));
    assert!(!display.has_pending_flip());

    // Out-fence but no flip event: a sync_file that signals once the
    // in-fence has.
    timeline.inc(1).unwrap();
    let out = display
        .commit(FlipRequest {
            want_out_fence: true,
            ..req
        })
        .unwrap()
        .expect("out-fence");
    out.wait(WAIT).unwrap();
    drop((out, pending, timeline));
    assert_eq!(open_fds(), fds, "fds leaked");
}

/// Runtime fences: a sync_file fence goes to the plane (hardware path), a
/// software fence is waited on the CPU first, a signaled one needs
/// nothing; an errored one is refused. The out-fence is a runtime fence.
#[test]
fn commit_fenced_picks_the_path() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let mut display = open_display();
    let vgem = VgemBuffer::device().unwrap();
    let (_a, _, a_fb) = vgem_frame(&display, &vgem);
    let (b, b_buf, b_fb) = vgem_frame(&display, &vgem);
    let ctx = alloc_contexts(1);
    let flip = |fb, in_fence| FencedFlip {
        fb,
        in_fence,
        want_out_fence: true,
        nonblock: false,
        software_wait: WAIT,
    };

    // Already signaled: nothing to wait for.
    let done = Fence::signaled(ctx, 1);
    let out = display.commit_fenced(flip(&a_fb, Some(&done))).unwrap();
    assert_eq!(out.path, InFencePath::None);
    out.out_fence
        .expect("out-fence")
        .wait_timeout(WAIT)
        .unwrap();

    // A pending kernel fence: IN_FENCE_FD, non-blocking; the out-fence
    // (a runtime fence) waits for the vgem signal.
    let vgem_fence = b.attach_fence(true).unwrap();
    let render = SyncFileFence::fence(b_buf.export_sync_file(Access::Read).unwrap()).unwrap();
    let out = display
        .commit_fenced(FencedFlip {
            nonblock: true,
            ..flip(&b_fb, Some(&render))
        })
        .unwrap();
    assert_eq!(out.path, InFencePath::Hardware);
    let scanout = out.out_fence.expect("out-fence");
    assert!(!scanout.is_signaled());
    vgem_fence.signal().unwrap();
    scanout.wait_timeout(WAIT).unwrap();
    display.wait_flip(WAIT).unwrap().expect("flip event");

    // A software fence: waited on the CPU, then a plain flip.
    let soft = Fence::software(ctx, 2);
    let signaler = {
        let soft = soft.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            soft.signal().unwrap();
        })
    };
    let out = display.commit_fenced(flip(&a_fb, Some(&soft))).unwrap();
    signaler.join().unwrap();
    assert_eq!(out.path, InFencePath::Software);
    assert!(soft.is_signaled());
    out.out_fence
        .expect("out-fence")
        .wait_timeout(WAIT)
        .unwrap();

    // A failed render fence is refused.
    let failed = Fence::software(ctx, 3);
    failed.signal_with_error(FenceError::Cancelled).unwrap();
    let e = display
        .commit_fenced(flip(&b_fb, Some(&failed)))
        .unwrap_err();
    assert!(matches!(e, KmsError::InFenceFailed(_)), "{e}");

    // restore() turns the output back; the next commit sets the mode again.
    display.restore().unwrap();
    assert!(!display.is_configured());
    display.commit(FlipRequest::new(&a_fb)).unwrap();
    assert!(display.is_configured());
}

/// docs/kms.md: an in-fence that has already failed is refused with
/// `InFenceFailed` and nothing is committed: a kernel error (a closed
/// sw_sync timeline), noticed whether the runtime fence was created before
/// or after the failure, and an error a merge carried (the kernel's merge
/// dropped it). A software in-fence that stays pending times out the wait
/// and is left pending.
#[test]
fn failed_in_fence_is_refused() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("sw_sync", SwSyncTimeline::is_available());
    require!("udmabuf", Udmabuf::is_available());
    let mut display = open_display();
    let (w, h) = display.size();
    let first = display
        .import_framebuffer(&pattern_buffer(w, h, 1))
        .unwrap();
    let second = display
        .import_framebuffer(&pattern_buffer(w, h, 2))
        .unwrap();
    display.commit(FlipRequest::new(&first)).unwrap();
    let flip = |fb, in_fence| FencedFlip {
        fb,
        in_fence,
        want_out_fence: true,
        nonblock: true,
        software_wait: Duration::from_millis(50),
    };
    let refused = |e: KmsError| assert!(matches!(e, KmsError::InFenceFailed(_)), "{e}");

    // The runtime fence made while pending, the timeline closed after.
    let tl = SwSyncTimeline::new().unwrap();
    let before = SyncFileFence::fence(tl.create_fence(1, "dies").unwrap()).unwrap();
    let file = tl.create_fence(1, "dead").unwrap();
    drop(tl);
    refused(
        display
            .commit_fenced(flip(&second, Some(&before)))
            .unwrap_err(),
    );
    // Made after the failure.
    let after = SyncFileFence::fence(file.try_clone().unwrap()).unwrap();
    refused(
        display
            .commit_fenced(flip(&second, Some(&after)))
            .unwrap_err(),
    );
    // The raw sync_file as IN_FENCE_FD.
    let e = display
        .commit(FlipRequest {
            fb: &second,
            in_fence: Some(&file),
            want_out_fence: true,
            nonblock: true,
        })
        .unwrap_err();
    refused(e);
    // Carried by a merge with a pending fence (the kernel dropped it).
    let live = SwSyncTimeline::new().unwrap();
    let pending = live.create_fence(1, "live").unwrap();
    let merged = pending.merge(&file, "carried").unwrap();
    assert!(merged.carried_error().is_some());
    let e = display
        .commit(FlipRequest {
            fb: &second,
            in_fence: Some(&merged),
            want_out_fence: true,
            nonblock: true,
        })
        .unwrap_err();
    refused(e);
    let carried = SyncFileFence::fence(merged.try_clone().unwrap()).unwrap();
    refused(
        display
            .commit_fenced(flip(&second, Some(&carried)))
            .unwrap_err(),
    );
    assert!(!display.has_pending_flip(), "a refused flip was committed");

    // A pending software fence: the bounded wait times out, the fence stays
    // pending (only its producer ends it).
    let soft = Fence::software(alloc_contexts(1), 1);
    let e = display
        .commit_fenced(flip(&second, Some(&soft)))
        .unwrap_err();
    assert!(matches!(e, KmsError::TimedOut { .. }), "{e}");
    assert!(!soft.is_signaled());
    assert!(!display.has_pending_flip());
    // The display still works.
    soft.signal().unwrap();
    let out = display.commit_fenced(flip(&second, Some(&soft))).unwrap();
    out.out_fence.unwrap().wait_timeout(WAIT).unwrap();
    display.wait_flip(WAIT).unwrap();
    live.inc(1).unwrap();
}

/// docs/kms.md: a flip behind a flip that is held (its in-fence pending)
/// gives `Busy` after waiting at most one try (1 s) for the held flip, not
/// a timeout; once the fence signals the held flip completes and the next
/// flip goes through.
#[test]
fn flip_behind_a_held_flip_is_busy() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let mut display = open_display();
    let vgem = VgemBuffer::device().unwrap();
    let held = HeldFlip::new(&mut display, &vgem);
    let (a_fb, fence) = (&held.a_fb, held.fence);
    let t = std::time::Instant::now();
    let e = display
        .commit(FlipRequest {
            fb: a_fb,
            in_fence: None,
            want_out_fence: true,
            nonblock: true,
        })
        .unwrap_err();
    assert!(matches!(e, KmsError::Busy { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(display.has_pending_flip());
    fence.signal().unwrap();
    display
        .wait_flip(WAIT)
        .unwrap()
        .expect("the held flip completes");
    let out = display
        .commit(FlipRequest {
            fb: a_fb,
            in_fence: None,
            want_out_fence: true,
            nonblock: true,
        })
        .unwrap()
        .unwrap();
    out.wait(WAIT).unwrap();
    display.wait_flip(WAIT).unwrap();
}
