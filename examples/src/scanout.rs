//! A display driven by hand, for the stress: flips with out-fences and a
//! writeback capture of every flip after the first
//! ([`WritebackCapture::add`] in a hand-made flip).
//! The demo and the flow tests go through the presenter instead.
//!
//! Locking: owned by the display thread of the stress.

use std::time::Duration;

use bufsync_backends::kms::{Display, FlipRequest, Framebuffer, KmsError};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::vulkan::ImageLayout;
use bufsync_present::WritebackCapture;

/// How long to wait for a flip or a capture before giving up.
pub const FLIP_TIMEOUT: Duration = Duration::from_secs(5);

/// A capture in flight: the number of the flip it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCapture(u64);

/// What one flip gave back.
#[derive(Debug)]
pub struct Flip {
    /// Signals when the frame is on screen (`OUT_FENCE_PTR`).
    pub out_fence: SyncFile,
    /// The capture of this flip, when it has one.
    pub capture: Option<PendingCapture>,
}

/// The display and its capture ring.
pub struct Scanout {
    display: Display,
    capture: WritebackCapture,
    flips: u64,
}

impl Scanout {
    /// Opens the display (a driver name, or a path to a card node) with a
    /// writeback capture of every flip after the first.
    pub fn open(display: &str) -> Result<Self, KmsError> {
        let display = Display::open(display, &Default::default())?;
        let capture = WritebackCapture::new(&display, FLIP_TIMEOUT)?;
        Ok(Scanout {
            display,
            capture,
            flips: 0,
        })
    }

    /// The display.
    pub fn display(&self) -> &Display {
        &self.display
    }

    /// Imports a frame from another device as a framebuffer.
    pub fn import(&self, buf: &bufsync_backends::dmabuf::DmaBuf) -> Result<Framebuffer, KmsError> {
        self.display.import_framebuffer(buf)
    }

    /// Flips to `fb` (non-blocking, waiting for `in_fence` in the kernel if
    /// given) after the previous flip's event (bounded), with a capture.
    pub fn flip(
        &mut self,
        fb: &Framebuffer,
        in_fence: Option<&SyncFile>,
    ) -> Result<Flip, KmsError> {
        self.display.wait_flip(FLIP_TIMEOUT)?;
        let req = FlipRequest {
            fb,
            in_fence,
            want_out_fence: true,
            nonblock: true,
        };
        let (mut atomic, mut flags) = self.display.flip_request(&req)?;
        self.capture.add(&self.display, &mut atomic, &mut flags)?;
        let mut outcome = self.display.commit_request(&atomic, flags)?;
        let n = self.flips;
        self.flips += 1;
        let captured = self.capture.committed_flip(&self.display, n, &mut outcome);
        let crtc = self.display.output().crtc;
        let out_fence = outcome.take(crtc).ok_or(KmsError::MissingProperty {
            object: crtc,
            name: "OUT_FENCE_PTR",
        })?;
        Ok(Flip {
            out_fence,
            capture: captured.then_some(PendingCapture(n)),
        })
    }

    /// The layout of what [`Scanout::read_capture`] returns.
    pub fn capture_layout(&self) -> ImageLayout {
        self.capture.layout()
    }

    /// Waits for a capture and puts its pixels (XRGB8888, rows of
    /// `width * 4` bytes) in `out` (its old buffer is reused).
    pub fn read_capture(&self, cap: &PendingCapture, out: &mut Vec<u8>) -> Result<(), KmsError> {
        loop {
            match self.capture.next(true)? {
                Some(mut c) if c.frame == cap.0 => {
                    std::mem::swap(out, &mut c.pixels);
                    self.capture.recycle(c);
                    return Ok(());
                }
                Some(c) if c.frame < cap.0 => self.capture.recycle(c),
                _ => {
                    return Err(KmsError::TimedOut {
                        what: "writeback capture",
                    })
                }
            }
        }
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
