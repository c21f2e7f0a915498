//! Writeback capture: the CRTC's composed frame written into a dumb
//! buffer through the writeback connector, for verifying what scanout
//! would show.
//!
//! vkms refuses a writeback connector on the CRTC together with its
//! virtual connector (EINVAL from the clone check), so the capture commit
//! detaches the display connector in the same commit and the next commit
//! puts it back; both are modesets.
//!
//! Locking: `&mut Display` (commits); the dumb buffer is private to one
//! capture.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use super::commit::{AtomicRequest, CommitFlags};
use super::device::Display;
use super::error::{Fourcc, KmsError};
use super::framebuffer::Framebuffer;
use crate::dmabuf::{fourcc, Layout};
use crate::drm::DumbBuffer;

/// The format captures are taken in.
const CAPTURE_FORMAT: u32 = fourcc(b"XR24");

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
    /// Captures the frame the CRTC composes next through the writeback
    /// connector, waiting at most `timeout` for the writeback fence. The
    /// display must have been configured by a first commit. The display
    /// connector is detached for the capture and attached again before
    /// returning (even when the capture failed).
    pub fn capture_writeback(&mut self, timeout: Duration) -> Result<Capture, KmsError> {
        let (Some(wb), Some(wb_conn)) = (self.props.writeback.clone(), self.output.writeback)
        else {
            return Err(KmsError::NoOutput {
                what: format!("no writeback connector on {}", self.dev.driver()),
            });
        };
        if !wb.formats.is_empty() && !wb.formats.contains(&CAPTURE_FORMAT) {
            return Err(KmsError::UnsupportedFormat {
                plane: wb_conn,
                fourcc: Fourcc(CAPTURE_FORMAT),
            });
        }
        if !self.configured {
            return Err(KmsError::NoOutput {
                what: "CRTC not configured yet: commit a frame first".into(),
            });
        }
        self.wait_flip(timeout)?;
        let (w, h) = self.size();
        let dumb = DumbBuffer::create(&self.dev, w, h, 32)?;
        let layout = Layout::linear(w, h, CAPTURE_FORMAT, dumb.pitch());
        let fb = Framebuffer::add(&self.dev, dumb.handle(), &layout)?;

        let crtc = self.output.crtc;
        let mut req = AtomicRequest::new();
        req.set(wb_conn, wb.crtc_id, u64::from(crtc))
            .set(wb_conn, wb.fb_id, u64::from(fb.id()))
            .out_fence(wb_conn, wb.out_fence_ptr)
            .set(self.output.connector, self.props.connector_crtc_id, 0);
        let flags = CommitFlags {
            allow_modeset: true,
            ..Default::default()
        };
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
        back.set(wb_conn, wb.crtc_id, 0).set(
            self.output.connector,
            self.props.connector_crtc_id,
            u64::from(crtc),
        );
        let reattached = self.commit_atomic(&back, flags);
        captured?;
        reattached?;

        let pixels = read_dumb(&self.dev, &dumb, w, h)?;
        drop(fb);
        Ok(Capture {
            width: w,
            height: h,
            fourcc: CAPTURE_FORMAT,
            pixels,
        })
    }
}

/// Copies the first `width * 4` bytes of each of `height` rows out of a
/// dumb buffer (mapped through `DRM_IOCTL_MODE_MAP_DUMB`).
fn read_dumb(
    dev: &crate::drm::DrmDevice,
    dumb: &DumbBuffer,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, KmsError> {
    let offset = dumb.map_offset()?;
    let len = usize::try_from(dumb.size()).map_err(|_| KmsError::BadSize {
        width,
        height,
        why: "buffer too large".into(),
    })?;
    let mut opts = memmap2::MmapOptions::new();
    opts.offset(offset).len(len);
    // SAFETY: the mapping is of a dumb buffer we own for the duration of
    // this function, mapped read-only and private to this call; the kernel
    // finished writing it (the writeback fence has signaled) and nothing
    // else writes it while it is mapped.
    let map = unsafe { opts.map(dev.as_fd().as_raw_fd()) }
        .map_err(|e| KmsError::io("mmap(dumb buffer)", e))?;
    let row = width as usize * 4;
    let pitch = dumb.pitch() as usize;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let start = y * pitch;
        let src = map.get(start..start + row).ok_or(KmsError::BadSize {
            width,
            height,
            why: "dumb buffer too small".into(),
        })?;
        pixels.extend_from_slice(src);
    }
    Ok(pixels)
}
