//! `--verify` on KMS planes: one display output per KMS node (its first
//! connected connector, preferred mode, the CRTC `Display` picks), two
//! dumb framebuffers for the primary plane and two small ones for each
//! other plane on that CRTC, and a flip per cell that waits for the fence
//! the way the decision says:
//! - primary plane, `IN_FENCE_FD` or a software wait: the runtime's own
//!   [`Display::commit_fenced`] (its path is checked against the decision);
//! - any plane, implicit sync: `DmaBuf::push_fence` into the frame, a flip
//!   without an in-fence;
//! - other planes: the primary flip extended with the plane (`FB_ID`,
//!   `CRTC_ID`, `SRC_*`, `CRTC_*`, and `IN_FENCE_FD` or nothing after a
//!   software wait).
//!
//! Every flip asks for `OUT_FENCE_PTR`; the waiter is done when the
//! out-fence signals (the frame is on screen). Planes used are turned off
//! at the end and the display is put back as it was (`Display::restore`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::Fence;
use bufsync_backends::dmabuf::{fourcc, Access, DmaBuf, Layout, MOD_LINEAR};
use bufsync_backends::drm::{DrmDevice, DumbBuffer};
use bufsync_backends::kms::{
    CommitFlags, Display, FencedFlip, FlipRequest, Framebuffer, InFencePath,
};
use bufsync_backends::wait_path::{to_sync_file, wait_fence, Route};

use super::env::KmsNode;

/// A framebuffer and the dma-buf of its memory (for implicit sync).
struct Frame {
    fb: Framebuffer,
    buf: DmaBuf,
}

/// Property ids of a non-primary plane.
struct PlaneIds {
    fb_id: u32,
    crtc_id: u32,
    src: [u32; 4],
    dst: [u32; 4],
    in_fence_fd: Option<u32>,
}

struct PlaneTarget {
    ids: PlaneIds,
    frames: [Frame; 2],
    size: u32,
    next: usize,
}

/// One output driven for `--verify`.
pub(crate) struct Output {
    display: Display,
    primary: [Frame; 2],
    next: usize,
    planes: HashMap<u32, Result<PlaneTarget, String>>,
    used: Vec<u32>,
}

fn frame(
    display: &Display,
    plane: Option<(u32, &bufsync_backends::kms::FormatSet)>,
    w: u32,
    h: u32,
    code: u32,
) -> Result<Frame, String> {
    let dumb = DumbBuffer::create(display.device(), w, h, 32).map_err(|e| e.to_string())?;
    let layout = Layout::linear(w, h, code, dumb.pitch());
    let fb = match plane {
        None => display.add_framebuffer(dumb.handle(), dumb.size(), &layout),
        Some((id, formats)) => {
            display.add_plane_framebuffer(id, formats, dumb.handle(), dumb.size(), &layout)
        }
    }
    .map_err(|e| e.to_string())?;
    let buf = dumb.export(code).map_err(|e| e.to_string())?;
    Ok(Frame { fb, buf })
}

fn plane_ids(dev: &DrmDevice, plane: u32) -> Result<PlaneIds, String> {
    let h: drm::control::plane::Handle = drm::control::from_u32(plane).ok_or("plane 0")?;
    let props = dev.properties(h).map_err(|e| e.to_string())?;
    let get = |n: &str| {
        props
            .iter()
            .find(|p| p.name == n)
            .map(|p| p.id)
            .ok_or(format!("no {n} property"))
    };
    Ok(PlaneIds {
        fb_id: get("FB_ID")?,
        crtc_id: get("CRTC_ID")?,
        src: [get("SRC_X")?, get("SRC_Y")?, get("SRC_W")?, get("SRC_H")?],
        dst: [
            get("CRTC_X")?,
            get("CRTC_Y")?,
            get("CRTC_W")?,
            get("CRTC_H")?,
        ],
        in_fence_fd: get("IN_FENCE_FD").ok(),
    })
}

impl Output {
    /// Takes `node`'s fd for a display, sets its mode with a first frame.
    pub(crate) fn open(node: &mut KmsNode) -> Result<Output, String> {
        let dev = node.dev.take().ok_or("the node is already in use")?;
        let dev = Arc::try_unwrap(dev).map_err(|_| "the node's fd is shared".to_string())?;
        let mut display = Display::with_device(dev).map_err(|e| e.to_string())?;
        let (w, h) = display.size();
        let xr24 = fourcc(b"XR24");
        let primary = [
            frame(&display, None, w, h, xr24)?,
            frame(&display, None, w, h, xr24)?,
        ];
        display
            .commit(FlipRequest::new(&primary[0].fb))
            .map_err(|e| {
                if e.errno() == Some(rustix::io::Errno::ACCESS.raw_os_error()) {
                    format!("not DRM master of {} (a compositor holds it?)", node.path)
                } else {
                    format!("first modeset: {e}")
                }
            })?;
        let crtc = display.output().crtc;
        let primary_id = display.output().plane;
        let mut planes = HashMap::new();
        for p in &node.planes {
            if p.id == primary_id {
                continue;
            }
            let target = if !p.possible_crtcs.contains(&crtc) {
                Err(format!(
                    "plane not usable on CRTC {crtc} (the one verify drives)"
                ))
            } else {
                let code = [fourcc(b"AR24"), xr24]
                    .into_iter()
                    .find(|&c| p.formats.supports(c, MOD_LINEAR));
                match code {
                    None => Err("no AR24 or XR24 LINEAR format".to_string()),
                    Some(code) => (|| {
                        let size = 64.min(w).min(h);
                        Ok(PlaneTarget {
                            ids: plane_ids(display.device(), p.id)?,
                            frames: [
                                frame(&display, Some((p.id, &p.formats)), size, size, code)?,
                                frame(&display, Some((p.id, &p.formats)), size, size, code)?,
                            ],
                            size,
                            next: 0,
                        })
                    })(),
                }
            };
            planes.insert(p.id, target);
        }
        Ok(Output {
            display,
            primary,
            next: 1,
            planes,
            used: Vec::new(),
        })
    }

    /// A bound at least this many frames long (the hold before a signal).
    pub(crate) fn frame_time(&self) -> Duration {
        self.display.frame_time()
    }

    /// Whether `plane` can be flipped here (`Err`: why not).
    pub(crate) fn usable(&self, plane: u32) -> Result<(), String> {
        if plane == self.display.output().plane {
            return Ok(());
        }
        match self.planes.get(&plane) {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.clone()),
            None => Err("plane not found".into()),
        }
    }

    /// Flips `plane` after `fence` by `route`; returns when the out-fence
    /// signaled (the frame is on screen), with what was done.
    pub(crate) fn flip(
        &mut self,
        plane: u32,
        route: Route,
        fence: &Fence,
        bound: Duration,
    ) -> Result<(Instant, String), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let primary = self.display.output().plane;
        let crtc = self.display.output().crtc;
        let i = self.next;
        let mut done = None;
        let what;
        if plane == primary && route != Route::ImplicitFlip {
            self.next ^= 1;
            let out = self
                .display
                .commit_fenced(FencedFlip {
                    fb: &self.primary[i].fb,
                    in_fence: Some(fence),
                    want_out_fence: true,
                    nonblock: true,
                    software_wait: bound,
                })
                .map_err(|e| err(&e))?;
            let expected = match route {
                Route::InFenceFd => InFencePath::Hardware,
                _ => InFencePath::Software,
            };
            if out.path != expected {
                return Err(format!(
                    "decided {route} but commit_fenced took {:?}",
                    out.path
                ));
            }
            let out_fence = out.out_fence.ok_or("no out-fence")?;
            wait_fence(&out_fence, bound).map_err(|e| format!("out-fence: {e}"))?;
            done = Some(Instant::now());
            what = format!("commit_fenced: {:?}", out.path);
        } else {
            // The primary frame stays; the flip carries the plane.
            let shown = &self.primary[i ^ 1].fb;
            let sync;
            let (mut atomic, flags) = self
                .display
                .flip_request(&FlipRequest {
                    fb: shown,
                    in_fence: None,
                    want_out_fence: true,
                    nonblock: true,
                })
                .map_err(|e| err(&e))?;
            let target_buf;
            let mut in_fence_prop = None;
            if plane == primary {
                target_buf = &self.primary[i ^ 1].buf;
            } else {
                let t = match self.planes.get_mut(&plane) {
                    Some(Ok(t)) => t,
                    Some(Err(e)) => return Err(e.clone()),
                    None => return Err("plane not found".into()),
                };
                let j = t.next;
                t.next ^= 1;
                let s = u64::from(t.size);
                atomic
                    .set(plane, t.ids.fb_id, u64::from(t.frames[j].fb.id()))
                    .set(plane, t.ids.crtc_id, u64::from(crtc))
                    .set(plane, t.ids.src[0], 0)
                    .set(plane, t.ids.src[1], 0)
                    .set(plane, t.ids.src[2], s << 16)
                    .set(plane, t.ids.src[3], s << 16)
                    .set(plane, t.ids.dst[0], 0)
                    .set(plane, t.ids.dst[1], 0)
                    .set(plane, t.ids.dst[2], s)
                    .set(plane, t.ids.dst[3], s);
                if !self.used.contains(&plane) {
                    self.used.push(plane);
                }
                in_fence_prop = t.ids.in_fence_fd;
                target_buf = &t.frames[j].buf;
            }
            match route {
                Route::InFenceFd => {
                    let prop = in_fence_prop.ok_or("decided IN_FENCE_FD on a plane without it")?;
                    sync = to_sync_file(fence)
                        .map_err(|e| err(&e))?
                        .ok_or("the fence signaled before the commit")?;
                    atomic.in_fence(plane, prop, &sync);
                    what = "IN_FENCE_FD on the plane".to_string();
                }
                Route::ImplicitFlip => {
                    let pushed = target_buf
                        .push_fence(fence, Access::Write)
                        .map_err(|e| err(&e))?;
                    what = format!("IMPORT_SYNC_FILE into the frame ({pushed}), no in-fence");
                }
                _ => {
                    wait_fence(fence, bound).map_err(|e| format!("software wait: {e}"))?;
                    what = "software wait, then the commit".to_string();
                }
            }
            let mut outcome = self
                .display
                .commit_request(&atomic, flags)
                .map_err(|e| err(&e))?;
            let out = outcome.take(crtc).ok_or("no out-fence")?;
            out.wait(bound).map_err(|e| format!("out-fence: {e}"))?;
            done = done.or(Some(Instant::now()));
        }
        self.display
            .wait_flip(bound)
            .map_err(|e| format!("flip event: {e}"))?;
        Ok((done.unwrap_or_else(Instant::now), what))
    }

    /// Turns the planes used off (the display restores the rest on drop).
    pub(crate) fn finish(mut self) {
        if self.used.is_empty() {
            return;
        }
        let mut req = bufsync_backends::kms::AtomicRequest::new();
        for p in &self.used {
            if let Some(Ok(t)) = self.planes.get(p) {
                req.set(*p, t.ids.fb_id, 0).set(*p, t.ids.crtc_id, 0);
            }
        }
        if let Err(e) = self.display.commit_atomic(&req, CommitFlags::default()) {
            log::warn!("turning the verified planes off: {e}");
        }
    }
}
