//! Page-flip events: `DRM_EVENT_FLIP_COMPLETE` records read from the DRM
//! fd after a bounded poll.
//!
//! Locking: events are read from the device fd; only the `Display` that
//! owns the fd reads them (through `&mut self`), so no lock is needed.

use std::time::Duration;

use drm::control::{Device as _, Event};
use rustix::event::PollFlags;

use super::error::KmsError;
use crate::drm::DrmDevice;

/// A completed flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlipEvent {
    /// The CRTC that flipped.
    pub crtc: u32,
    /// The vblank sequence number of the flip.
    pub frame: u32,
    /// When it happened (CLOCK_MONOTONIC).
    pub time: Duration,
}

/// Polls `dev` for at most `timeout`; true when events can be read.
fn poll_readable(dev: &DrmDevice, timeout: Duration) -> Result<bool, KmsError> {
    crate::sys::poll::poll_one(std::os::fd::AsFd::as_fd(dev), PollFlags::IN, Some(timeout))
        .map(|ready| ready.is_some())
        .map_err(|e| KmsError::io("poll(DRM fd)", e))
}

/// Reads the flip events available within `timeout` (empty when none
/// came). Vblank and unknown events are logged and dropped.
pub(crate) fn read_flip_events(
    dev: &DrmDevice,
    timeout: Duration,
) -> Result<Vec<FlipEvent>, KmsError> {
    if !poll_readable(dev, timeout)? {
        return Ok(Vec::new());
    }
    let events = match dev.receive_events() {
        Ok(ev) => ev,
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::Interrupted =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(KmsError::io("read(DRM events)", e)),
    };
    let mut flips = Vec::new();
    for event in events {
        match event {
            Event::PageFlip(f) => flips.push(FlipEvent {
                crtc: u32::from(f.crtc),
                frame: f.frame,
                time: f.duration,
            }),
            Event::Vblank(v) => log::trace!("vblank event on CRTC {:?} ignored", v.crtc),
            Event::Unknown(raw) => log::debug!("unknown DRM event ({} bytes) ignored", raw.len()),
        }
    }
    Ok(flips)
}
