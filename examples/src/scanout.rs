//! Display B of the flow: flips with out-fences and, where the display has a
//! writeback connector, a capture of what the CRTC composed for every flip.
//!
//! Capture mode routes the CRTC to the writeback connector instead of the
//! display connector (vkms refuses both at once): from the second flip on,
//! each flip commit also sets `WRITEBACK_FB_ID` to a capture buffer and asks
//! `WRITEBACK_OUT_FENCE_PTR`, so the capture shows exactly what that flip
//! put on screen, not a later or earlier frame. Capture buffers are vgem
//! dumb buffers imported through PRIME, read back through vgem's mapping.

use bufsync_backends::drm::DrmDevice;
use bufsync_backends::kms::{Display, FlipRequest, Framebuffer, KmsError};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::testing::VgemBuffer;
use bufsync_backends::vulkan::ImageLayout;
use std::sync::Arc;
use std::time::Duration;

use crate::render::vgem::XRGB8888;

/// How long to wait for a flip or a capture before giving up.
pub const FLIP_TIMEOUT: Duration = Duration::from_secs(5);

struct CaptureSlot {
    buffer: VgemBuffer,
    fb: Framebuffer,
}

/// A capture in flight: read it once its fence has signaled.
#[derive(Debug)]
pub struct PendingCapture {
    slot: usize,
    /// The writeback fence.
    pub fence: SyncFile,
}

/// The display and its capture ring.
pub struct Scanout {
    display: Display,
    captures: Vec<CaptureSlot>,
    next_capture: usize,
    /// The writeback fence of the last capture queued.
    last_capture: Option<SyncFile>,
    routed_to_writeback: bool,
    _vgem: Option<Arc<DrmDevice>>,
}

/// What one flip gave back.
#[derive(Debug)]
pub struct Flip {
    /// Signals when the frame is on screen (`OUT_FENCE_PTR`).
    pub out_fence: SyncFile,
    /// The capture of this flip, in capture mode.
    pub capture: Option<PendingCapture>,
}

impl Scanout {
    /// Opens the display (a driver name, or a path to a card node). With
    /// `capture`, every flip after the first is captured through writeback
    /// (needs a writeback connector and vgem).
    pub fn open(display: &str, capture: bool) -> Result<Self, KmsError> {
        let display = if display.starts_with('/') {
            Display::open_path(display)?
        } else {
            Display::open_by_driver(display)?
        };
        let mut me = Scanout {
            display,
            captures: Vec::new(),
            next_capture: 0,
            last_capture: None,
            routed_to_writeback: false,
            _vgem: None,
        };
        if capture {
            me.setup_captures()?;
        }
        Ok(me)
    }

    fn setup_captures(&mut self) -> Result<(), KmsError> {
        if self.display.output().writeback.is_none() || self.display.props().writeback.is_none() {
            return Err(KmsError::NoOutput {
                what: format!("no writeback connector on {}", self.display.driver()),
            });
        }
        let vgem = VgemBuffer::device()?;
        let (w, h) = self.display.size();
        for _ in 0..2 {
            let buffer = VgemBuffer::create(&vgem, w, h)?;
            let fb = self
                .display
                .import_framebuffer(&buffer.dumb().export(XRGB8888)?)?;
            self.captures.push(CaptureSlot { buffer, fb });
        }
        self._vgem = Some(vgem);
        Ok(())
    }

    /// The display.
    pub fn display(&self) -> &Display {
        &self.display
    }

    /// Whether flips are captured.
    pub fn captures(&self) -> bool {
        !self.captures.is_empty()
    }

    /// Imports a frame from another device as a framebuffer.
    pub fn import(&self, buf: &bufsync_backends::dmabuf::DmaBuf) -> Result<Framebuffer, KmsError> {
        self.display.import_framebuffer(buf)
    }

    /// Flips to `fb`, waiting for `in_fence` in the kernel if given, and
    /// returns the out-fence (and the capture in capture mode). Waits
    /// (bounded) for the previous flip's event first.
    pub fn flip(
        &mut self,
        fb: &Framebuffer,
        in_fence: Option<&SyncFile>,
    ) -> Result<Flip, KmsError> {
        let mut req = FlipRequest::new(fb);
        req.in_fence = in_fence;
        req.want_out_fence = true;
        if !self.display.is_configured() || self.captures.is_empty() {
            // The first flip also sets the mode; every flip is non-blocking
            // (a blocking one would wait for an in-fence that is only
            // signaled after the commit returns).
            req.nonblock = true;
            self.display.wait_flip(FLIP_TIMEOUT)?;
            let out_fence = self.display.commit(req)?.ok_or(KmsError::MissingProperty {
                object: self.display.output().crtc,
                name: "OUT_FENCE_PTR",
            })?;
            return Ok(Flip {
                out_fence,
                capture: None,
            });
        }
        req.nonblock = true;
        self.display.wait_flip(FLIP_TIMEOUT)?;
        // One writeback job at a time: the previous capture completes at the
        // vblank that showed its flip, so this costs (almost) nothing, and a
        // job never waits behind another in the connector's queue.
        if let Some(prev) = self.last_capture.take() {
            prev.wait(FLIP_TIMEOUT).map_err(KmsError::Device)?;
        }
        let (mut atomic, mut flags) = self.display.flip_request(&req)?;
        let out = self.display.output().clone();
        let props = self.display.props().clone();
        let wb = props
            .writeback
            .as_ref()
            .expect("capture mode has writeback");
        let wb_conn = out.writeback.expect("capture mode has writeback");
        if !self.routed_to_writeback {
            atomic.set(out.connector, props.connector_crtc_id, 0).set(
                wb_conn,
                wb.crtc_id,
                u64::from(out.crtc),
            );
            flags.allow_modeset = true;
        }
        let slot = self.next_capture;
        self.next_capture = (slot + 1) % self.captures.len();
        atomic
            .set(wb_conn, wb.fb_id, u64::from(self.captures[slot].fb.id()))
            .out_fence(wb_conn, wb.out_fence_ptr);
        let mut outcome = self.display.commit_atomic(&atomic, flags)?;
        self.routed_to_writeback = true;
        let out_fence = outcome.take(out.crtc).ok_or(KmsError::MissingProperty {
            object: out.crtc,
            name: "OUT_FENCE_PTR",
        })?;
        let fence = outcome.take(wb_conn).ok_or(KmsError::MissingProperty {
            object: wb_conn,
            name: "WRITEBACK_OUT_FENCE_PTR",
        })?;
        self.last_capture = Some(fence.try_clone().map_err(KmsError::Device)?);
        Ok(Flip {
            out_fence,
            capture: Some(PendingCapture { slot, fence }),
        })
    }

    /// The layout of what [`Scanout::read_capture`] returns: XRGB8888 at the
    /// display's size, rows of `width * 4` bytes.
    pub fn capture_layout(&self) -> ImageLayout {
        let (w, h) = self.display.size();
        let row = u64::from(w) * 4;
        ImageLayout::linear(w, h, XRGB8888, 0, row, row * u64::from(h))
    }

    /// Waits for a capture and copies its pixels (XRGB8888, rows of
    /// `width * 4` bytes) into `out`.
    pub fn read_capture(&self, cap: &PendingCapture, out: &mut Vec<u8>) -> Result<(), KmsError> {
        cap.fence.wait(FLIP_TIMEOUT).map_err(KmsError::Device)?;
        let (w, h) = self.display.size();
        let dumb = self.captures[cap.slot].buffer.dumb();
        let map = dumb.map()?;
        let row = w as usize * 4;
        out.resize(row * h as usize, 0);
        for (y, chunk) in out.chunks_mut(row).enumerate() {
            map.read_at(y * dumb.pitch() as usize, chunk)?;
        }
        Ok(())
    }

    /// Waits for the last flip's event (bounded).
    pub fn settle(&mut self) -> Result<(), KmsError> {
        self.display.wait_flip(FLIP_TIMEOUT).map(drop)
    }
}

impl Drop for Scanout {
    fn drop(&mut self) {
        let _ = self.display.wait_flip(FLIP_TIMEOUT);
        if let Err(e) = self.display.restore() {
            log::warn!("restoring the display: {e}");
        }
    }
}
