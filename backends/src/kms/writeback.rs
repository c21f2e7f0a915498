//! Writeback: the CRTC's composed frame written into a buffer through the
//! writeback connector (the kernel's `drm_writeback.c`:
//! `WRITEBACK_FB_ID`, `WRITEBACK_OUT_FENCE_PTR`, `WRITEBACK_PIXEL_FORMATS`),
//! for verifying what scanout shows.
//!
//! - [`Display::writeback_connector`], [`Display::writeback_buffer`] and
//!   [`Display::add_writeback`]: the pieces, for a capture on every flip
//!   (`bufsync_present::WritebackCapture` builds on them);
//! - [`Display::capture_writeback`]: one capture of the next composed
//!   frame, connector detached and attached again around it.
//!
//! vkms refuses a writeback connector on the CRTC together with its
//! virtual connector (EINVAL from the clone check), so the commit that
//! routes the CRTC to the writeback connector detaches the display
//! connector in the same commit (a modeset).
//!
//! Locking: `&Display` to build requests, `&mut Display` to commit; a
//! writeback buffer belongs to its caller, who must not reuse it before
//! the fence of the writeback into it has signaled.

use std::time::Duration;

use super::commit::{AtomicRequest, CommitFlags};
use super::device::{Display, WritebackProps};
use super::error::{Fourcc, KmsError};
use super::framebuffer::Framebuffer;
use crate::dmabuf::{fourcc, Layout};
use crate::drm::DumbBuffer;

/// The format writeback buffers are made in: DRM_FORMAT_XRGB8888 (`XR24`),
/// which every writeback connector bufsync knows writes (vkms lists it).
pub const WRITEBACK_FORMAT: u32 = fourcc(b"XR24");

/// A captured frame: tightly packed rows of `XR24` pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc of `pixels` (`XR24`).
    pub fourcc: u32,
    /// `width * 4` bytes per row, `height` rows.
    pub pixels: Vec<u8>,
}

impl Capture {
    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * 4
    }

    /// The pixel at (`x`, `y`) as a little-endian `u32` (`0xXXRRGGBB`).
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = y as usize * self.stride() + x as usize * 4;
        let b = self.pixels.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Display {
    /// The output's writeback connector and its property ids, when it can
    /// take this CRTC and lists [`WRITEBACK_FORMAT`] in
    /// `WRITEBACK_PIXEL_FORMATS`. [`KmsError::NoOutput`] without one;
    /// [`KmsError::UnsupportedFormat`] (the connector as the object) when
    /// it does not write XRGB8888 (or its format list could not be read).
    ///
    /// Locking: `&self`; returns borrowed property ids.
    pub fn writeback_connector(&self) -> Result<(u32, &WritebackProps), KmsError> {
        let (Some(wb), Some(conn)) = (self.props.writeback.as_ref(), self.output.writeback) else {
            return Err(KmsError::NoOutput {
                what: format!("no writeback connector on {}", self.dev.driver()),
            });
        };
        if !wb.formats.contains(&WRITEBACK_FORMAT) {
            return Err(KmsError::UnsupportedFormat {
                plane: conn,
                fourcc: Fourcc(WRITEBACK_FORMAT),
            });
        }
        Ok((conn, wb))
    }

    /// A buffer for the writeback connector to write into: a dumb buffer
    /// of this display's own device at the mode's size in
    /// [`WRITEBACK_FORMAT`], and a framebuffer over it (no PRIME round
    /// trip). Read it with [`DumbBuffer::read_packed`] once the writeback
    /// fence has signaled.
    ///
    /// Locking: `&self`; the buffer and framebuffer are the caller's.
    pub fn writeback_buffer(&self) -> Result<(DumbBuffer, Framebuffer), KmsError> {
        let (w, h) = self.size();
        let dumb = DumbBuffer::create(&self.dev, w, h, 32)?;
        let layout = Layout::linear(w, h, WRITEBACK_FORMAT, dumb.pitch());
        let fb = Framebuffer::add(&self.dev, dumb.handle(), &layout)?;
        Ok((dumb, fb))
    }

    /// Adds a writeback of what the CRTC composes in this commit into `fb`
    /// to `req`: `WRITEBACK_FB_ID` and `WRITEBACK_OUT_FENCE_PTR` (take the
    /// fence from the outcome under the returned connector id). With
    /// `route`, the same commit also puts the writeback connector on this
    /// CRTC and detaches the display connector (vkms allows only one of
    /// them), and sets `flags.allow_modeset`: needed once, until the
    /// connector is attached again.
    ///
    /// Errors as [`writeback_connector`](Display::writeback_connector);
    /// `req` and `flags` are unchanged then.
    ///
    /// Locking: `&self`; builds the request only.
    pub fn add_writeback(
        &self,
        req: &mut AtomicRequest<'_>,
        flags: &mut CommitFlags,
        fb: &Framebuffer,
        route: bool,
    ) -> Result<u32, KmsError> {
        let (conn, wb) = self.writeback_connector()?;
        if route {
            req.set(self.output.connector, self.props.connector_crtc_id, 0)
                .set(conn, wb.crtc_id, u64::from(self.output.crtc));
            flags.allow_modeset = true;
        }
        req.set(conn, wb.fb_id, u64::from(fb.id()))
            .out_fence(conn, wb.out_fence_ptr);
        Ok(conn)
    }

    /// Captures the frame the CRTC composes next through the writeback
    /// connector, waiting at most `timeout` for the writeback fence. The
    /// display must have been configured by a first commit. The display
    /// connector is detached for the capture and attached again before
    /// returning (even when the capture failed); both commits are
    /// modesets.
    ///
    /// Locking: `&mut self` (commits and waits for the pending flip).
    pub fn capture_writeback(&mut self, timeout: Duration) -> Result<Capture, KmsError> {
        let (wb_conn, wb_crtc_id) = {
            let (conn, wb) = self.writeback_connector()?;
            (conn, wb.crtc_id)
        };
        if !self.configured {
            return Err(KmsError::NoOutput {
                what: "CRTC not configured yet: commit a frame first".into(),
            });
        }
        self.wait_flip(timeout)?;
        let (dumb, fb) = self.writeback_buffer()?;
        let mut req = AtomicRequest::new();
        let mut flags = CommitFlags::default();
        self.add_writeback(&mut req, &mut flags, &fb, true)?;
        let captured = self.commit_atomic(&req, flags).and_then(|mut out| {
            let fence = out.take(wb_conn).ok_or(KmsError::MissingProperty {
                object: wb_conn,
                name: "WRITEBACK_OUT_FENCE_PTR",
            })?;
            fence.wait(timeout).map_err(|e| match e {
                crate::Error::TimedOut { .. } => KmsError::TimedOut {
                    what: "writeback fence",
                },
                e => KmsError::Device(e),
            })
        });

        let mut back = AtomicRequest::new();
        back.set(wb_conn, wb_crtc_id, 0).set(
            self.output.connector,
            self.props.connector_crtc_id,
            u64::from(self.output.crtc),
        );
        let reattached = self.commit_atomic(&back, flags);
        captured?;
        reattached?;

        let (width, height) = (dumb.width(), dumb.height());
        let mut pixels = Vec::new();
        dumb.read_packed(width as usize * 4, &mut pixels)?;
        drop(fb);
        Ok(Capture {
            width,
            height,
            fourcc: WRITEBACK_FORMAT,
            pixels,
        })
    }
}
