//! The presenter's error cases on real devices, each leaving the process's
//! fd count and the display's state as they were: no common format, not
//! DRM master, a render fence that never signals, EBUSY on a flip, and a
//! display that goes away (virtio_gpu unbound from its driver) and comes
//! back.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bufsync_backends::dmabuf::fourcc;
use bufsync_backends::drm::{DrmDevice, NodeKind};
use bufsync_backends::kms::{AtomicRequest, CommitFlags, CommitOutcome, Display, KmsError};
use bufsync_backends::testing::SwSyncTimeline;
use bufsync_backends::vulkan::TimelineSemaphore;
use bufsync_present::{
    DisplayTarget, EdgeChoice, FlipExtension, PresentError, Presenter, PresenterConfig,
    RenderDevice, RenderDone, XRGB8888,
};
use bufsync_tests::{lavapipe, routing_at_rest, settled_fds, take_displays};

const SECOND: Duration = Duration::from_secs(1);

fn vgem() -> RenderDevice {
    RenderDevice::Gem(Arc::new(DrmDevice::find("vgem").expect("vgem")))
}

fn presenter(render: RenderDevice, display: &str, cfg: PresenterConfig) -> Presenter {
    Presenter::new(render, DisplayTarget::Driver(display.into()), cfg)
        .unwrap_or_else(|e| panic!("presenter on {display}: {e}"))
}

/// Presents `n` frames that need no rendering.
fn present_done(p: &mut Presenter, n: usize) {
    for _ in 0..n {
        let f = p.acquire(SECOND).expect("a free buffer");
        p.present(f, RenderDone::Signaled).expect("presented");
    }
}

/// Runs `f` and checks that it left the fd count and `display`'s state as
/// they were.
fn leaves_no_trace(display: &str, f: impl FnOnce()) {
    bufsync_backends::reactor::global().unwrap();
    let routing = routing_at_rest(display);
    let fds = settled_fds();
    f();
    assert_eq!(settled_fds(), fds, "fds leaked");
    assert_eq!(
        bufsync_tests::display_routing(display),
        routing,
        "{display} not restored"
    );
}

#[test]
fn no_common_format_names_both_sides() {
    let Some(_d) = take_displays("no_common_format_names_both_sides") else {
        return;
    };
    leaves_no_trace("vkms", || {
        let render = vgem();
        // vkms scans out RG16, the CPU renderer draws 32-bit pixels only.
        let cfg = PresenterConfig {
            formats: vec![fourcc(b"RG16")],
            ..Default::default()
        };
        let e = Presenter::new(render, DisplayTarget::Driver("vkms".into()), cfg).unwrap_err();
        let msg = e.to_string();
        log::info!("{msg}");
        match &e {
            PresentError::NoCommonFormat {
                display_formats,
                render_formats,
                ..
            } => {
                let d: Vec<u32> = display_formats.iter().map(|f| f.0).collect();
                let r: Vec<u32> = render_formats.iter().map(|f| f.0).collect();
                assert!(
                    d.contains(&fourcc(b"RG16")) && d.contains(&XRGB8888),
                    "{msg}"
                );
                assert!(
                    r.contains(&XRGB8888) && !r.contains(&fourcc(b"RG16")),
                    "{msg}"
                );
            }
            e => panic!("expected NoCommonFormat, got {e}"),
        }
        assert!(msg.contains("RG16") && msg.contains("XR24"), "{msg}");
    });
}

#[test]
fn not_drm_master_says_so_and_what_to_do() {
    let Some(_d) = take_displays("not_drm_master_says_so_and_what_to_do") else {
        return;
    };
    leaves_no_trace("vkms", || {
        let render = vgem();
        // The first opener of a node without a master becomes master.
        let holder = DrmDevice::find_node("vkms", NodeKind::Primary).unwrap();
        let e = Presenter::new(
            render,
            DisplayTarget::Driver("vkms".into()),
            Default::default(),
        )
        .unwrap_err();
        let msg = e.to_string();
        log::info!("{msg}");
        assert!(matches!(e, PresentError::NotMaster { .. }), "{msg}");
        assert!(
            msg.contains("not DRM master") && msg.contains("Stop the compositor"),
            "{msg}"
        );
        assert_eq!(e.errno(), Some(13));
        drop(holder);
    });
}

/// A render fence that never signals: the wait is bounded, the frame is
/// dropped with an error, the display keeps its last frame, the buffer
/// stays out of rotation until the fence ends while the presenter goes on
/// with the others; then it comes back. Once with a lavapipe timeline point
/// (software edge), once with a sw_sync fence waited in software.
#[test]
fn never_signaling_render_fence_drops_the_frame_and_benches_its_buffer() {
    let Some(_d) =
        take_displays("never_signaling_render_fence_drops_the_frame_and_benches_its_buffer")
    else {
        return;
    };
    let ctx = lavapipe().expect("lavapipe");
    let sw = SwSyncTimeline::new().expect("sw_sync");
    for case in ["lavapipe timeline", "sw_sync"] {
        let sem = TimelineSemaphore::new(&ctx, 0).unwrap();
        leaves_no_trace("vkms", || {
            let render = match case {
                "sw_sync" => vgem(),
                _ => RenderDevice::Vulkan(ctx.clone()),
            };
            let cfg = PresenterConfig {
                render_timeout: Duration::from_millis(300),
                edge: EdgeChoice::Software,
                ..Default::default()
            };
            let mut p = presenter(render, "vkms", cfg);
            present_done(&mut p, 2);
            let f = p.acquire(SECOND).unwrap();
            let stuck = f.index();
            let done = match case {
                "sw_sync" => RenderDone::SyncFile(sw.create_fence(1, "never").unwrap()),
                _ => RenderDone::Timeline {
                    semaphore: sem.clone(),
                    value: 1,
                },
            };
            let e = p.present(f, done).unwrap_err();
            assert!(
                matches!(e, PresentError::RenderTimeout { slot, .. } if slot == stuck),
                "{case}: {e}"
            );
            assert_eq!(p.totals().render_timeouts, 1);
            for _ in 0..6 {
                let f = p.acquire(SECOND).unwrap();
                assert_ne!(f.index(), stuck, "{case}: a benched buffer came back early");
                p.present(f, RenderDone::Signaled).unwrap();
            }
            // The producer ends the fence: the buffer returns to rotation.
            match case {
                "sw_sync" => sw.inc(1).unwrap(),
                _ => sem.signal(1).unwrap(),
            }
            let mut back = false;
            for _ in 0..6 {
                let f = p.acquire(SECOND).unwrap();
                back |= f.index() == stuck;
                p.present(f, RenderDone::Signaled).unwrap();
            }
            assert!(back, "{case}: the buffer never came back");
            p.wait_idle(SECOND).unwrap();
            assert_eq!(p.totals().shown, 2 + 6 + 6);
        });
    }
}

/// Commits a copy of the presenter's next flip (without its fences) just
/// before it, non-blocking and without an event, `left` times: the
/// presenter's own commit then meets the kernel's EBUSY.
struct Interfere {
    left: u32,
}

impl FlipExtension for Interfere {
    fn extend(
        &mut self,
        display: &Display,
        _frame: u64,
        request: &mut AtomicRequest<'_>,
        _flags: &mut CommitFlags,
    ) -> Result<(), KmsError> {
        if !display.is_configured() || self.left == 0 {
            return Ok(());
        }
        self.left -= 1;
        let mut other = request.clone();
        if let Some(p) = display.props().plane.in_fence_fd {
            other.unset(display.output().plane, p);
        }
        if let Some(p) = display.props().crtc.out_fence_ptr {
            other.unset(display.output().crtc, p);
        }
        let flags = CommitFlags {
            nonblock: true,
            ..Default::default()
        };
        other.commit(display.device().as_fd(), flags).map(drop)
    }

    fn committed(&mut self, _: &Display, _: u64, _: &mut CommitOutcome) {}
}

#[test]
fn ebusy_on_a_flip_is_retried_at_the_next_vblank() {
    let Some(_d) = take_displays("ebusy_on_a_flip_is_retried_at_the_next_vblank") else {
        return;
    };
    leaves_no_trace("vkms", || {
        let mut p = presenter(vgem(), "vkms", Default::default());
        present_done(&mut p, 1);
        p.set_extension(Some(Box::new(Interfere { left: 3 })));
        present_done(&mut p, 6);
        p.wait_idle(SECOND).unwrap();
        let t = p.totals();
        log::info!("{t:?}");
        assert!(t.busy_retries >= 1, "no EBUSY met: {t:?}");
        assert_eq!(t.shown, 7, "every frame shown despite EBUSY");
    });
}

/// The virtio device virtio_gpu is bound to (`virtioN`).
fn virtio_gpu_device() -> String {
    let dir = "/sys/bus/virtio/drivers/virtio_gpu";
    std::fs::read_dir(dir)
        .expect("virtio_gpu's driver directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("virtio"))
        .expect("a device bound to virtio_gpu")
}

#[test]
fn display_gone_is_an_error_and_the_presenter_can_be_rebuilt() {
    let Some(_d) = take_displays("display_gone_is_an_error_and_the_presenter_can_be_rebuilt")
    else {
        return;
    };
    let vgem = vgem();
    bufsync_backends::reactor::global().unwrap();
    let fds = settled_fds();
    let dev = virtio_gpu_device();
    let cfg = PresenterConfig {
        flip_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    {
        let mut p = presenter(vgem.clone(), "virtio_gpu", cfg.clone());
        present_done(&mut p, 3);
        std::fs::write("/sys/bus/virtio/drivers/virtio_gpu/unbind", &dev).unwrap();
        let mut gone = None;
        for _ in 0..4 {
            let r = p
                .acquire(SECOND)
                .and_then(|f| p.present(f, RenderDone::Signaled));
            match r {
                Err(e @ PresentError::DisplayGone { .. }) => {
                    gone = Some(e);
                    break;
                }
                Err(e) => log::info!("before ENODEV: {e}"),
                Ok(()) => {}
            }
        }
        let e = gone.expect("DisplayGone after the unbind");
        log::info!("{e}");
        assert!(e.to_string().contains("build a new one"));
    }
    std::fs::write("/sys/bus/virtio/drivers/virtio_gpu/bind", &dev).unwrap();
    let mut p = None;
    for _ in 0..50 {
        match Presenter::new(
            vgem.clone(),
            DisplayTarget::Driver("virtio_gpu".into()),
            cfg.clone(),
        ) {
            Ok(x) => {
                p = Some(x);
                break;
            }
            Err(e) => log::debug!("virtio_gpu not back yet: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut p = p.expect("a presenter on the rebound virtio_gpu");
    present_done(&mut p, 3);
    p.wait_idle(SECOND).unwrap();
    assert_eq!(p.totals().shown, 3);
    drop(p);
    assert_eq!(settled_fds(), fds, "fds leaked");
}

/// The acquire semaphore of a Vulkan frame carries its release fence (the
/// out-fence of the flip that took the buffer off screen) to the GPU: a
/// submission that waits on it runs only after that flip. The flip is held
/// by a pending sw_sync fence (IN_FENCE_FD), so the order is certain.
#[test]
fn acquire_semaphore_orders_the_render_after_the_release() {
    use bufsync_backends::vulkan::ash::vk;
    let Some(_d) = take_displays("acquire_semaphore_orders_the_render_after_the_release") else {
        return;
    };
    let ctx = lavapipe().expect("lavapipe");
    let sw = SwSyncTimeline::new().expect("sw_sync");
    leaves_no_trace("vkms", || {
        let cfg = PresenterConfig {
            buffers: 2,
            ..Default::default()
        };
        let mut p = presenter(RenderDevice::Vulkan(ctx.clone()), "vkms", cfg);
        present_done(&mut p, 1);
        // The second flip waits for a fence only this test signals.
        let f = p.acquire(SECOND).unwrap();
        let hold = sw.create_fence(1, "hold").unwrap();
        p.present(f, RenderDone::SyncFile(hold)).unwrap();
        // Two buffers: the one just released waits for that flip.
        let f = p.acquire(SECOND).unwrap();
        assert!(!f.wait_fences().is_signaled(), "the release is pending");
        let sem = p
            .acquire_semaphore(&f)
            .unwrap()
            .expect("a semaphore to wait on");
        let done = TimelineSemaphore::new(&ctx, 0).unwrap();
        let waits = [sem];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let signals = [done.handle()];
        let values = [0u64];
        let signal_values = [1u64];
        let mut tl = vk::TimelineSemaphoreSubmitInfo::default()
            .wait_semaphore_values(&values)
            .signal_semaphore_values(&signal_values);
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(&waits)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(&signals)
            .push_next(&mut tl);
        ctx.with_queue(|queue| {
            // SAFETY: the queue lock is held; the semaphores live until the
            // submission is waited for below.
            unsafe {
                ctx.device()
                    .queue_submit(queue, &[submit], vk::Fence::null())
            }
        })
        .expect("vkQueueSubmit");
        assert!(
            !done.wait(1, Duration::from_millis(300)).unwrap(),
            "the GPU did not wait for the release"
        );
        sw.inc(1).unwrap();
        assert!(
            done.wait(1, Duration::from_secs(10)).unwrap(),
            "the GPU wait ended after the flip"
        );
        assert!(f.wait_fences().is_signaled());
        p.present(f, RenderDone::Signaled).unwrap();
        p.wait_idle(SECOND).unwrap();
    });
}
