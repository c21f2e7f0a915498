//! What the display really showed, for the checks.
//!
//! [`WritebackCapture`]: every flip after the first also routes the CRTC to
//! the display's writeback connector (vkms) with `WRITEBACK_FB_ID` and
//! `WRITEBACK_OUT_FENCE_PTR`, so each capture is exactly what that flip
//! composed, not a later or earlier frame. vkms refuses its virtual
//! connector and the writeback connector on the CRTC together, so the
//! first capture commit detaches the connector (a modeset). Capture buffers
//! are vgem dumb buffers imported through PRIME, read back through vgem's
//! mapping. It plugs into the presenter's flips as a [`FlipExtension`],
//! and into a hand-made flip (the stress) through [`WritebackCapture::add`]
//! and [`WritebackCapture::committed_flip`].
//!
//! Locking: the capture state is shared between the presenter's extension
//! and the caller that reads captures, under one mutex taken briefly (never
//! while waiting for a fence).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bufsync_backends::drm::DrmDevice;
use bufsync_backends::kms::{
    AtomicRequest, CommitFlags, CommitOutcome, Display, Framebuffer, KmsError,
};
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::testing::VgemBuffer;
use bufsync_backends::vulkan::ImageLayout;
use bufsync_present::FlipExtension;

use crate::render::vgem::XRGB8888;

/// Capture buffers in the ring (a buffer is read before it is reused).
const RING: usize = 3;

struct Slot {
    buffer: VgemBuffer,
    fb: Framebuffer,
}

struct Pending {
    frame: u64,
    slot: usize,
    fence: SyncFile,
}

struct State {
    slots: Vec<Slot>,
    next: usize,
    pending: VecDeque<Pending>,
    done: VecDeque<(u64, Vec<u8>)>,
    routed: bool,
    timeout: Duration,
    width: u32,
    height: u32,
    _vgem: Arc<DrmDevice>,
}

/// A writeback capture of every flip (see the module docs). Clone it: one
/// clone goes to the presenter, the other reads the captures.
#[derive(Clone)]
pub struct WritebackCapture {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for WritebackCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritebackCapture").finish_non_exhaustive()
    }
}

impl WritebackCapture {
    /// Sets up capture buffers on `display` (which needs a writeback
    /// connector; vgem provides the buffers). Waits at most `timeout` for
    /// any one capture.
    pub fn new(display: &Display, timeout: Duration) -> Result<Self, KmsError> {
        if display.output().writeback.is_none() || display.props().writeback.is_none() {
            return Err(KmsError::NoOutput {
                what: format!("no writeback connector on {}", display.driver()),
            });
        }
        let vgem = VgemBuffer::device()?;
        let (width, height) = display.size();
        let mut slots = Vec::new();
        for _ in 0..RING {
            let buffer = VgemBuffer::create(&vgem, width, height)?;
            let fb = display.import_framebuffer(&buffer.dumb().export(XRGB8888)?)?;
            slots.push(Slot { buffer, fb });
        }
        Ok(WritebackCapture {
            state: Arc::new(Mutex::new(State {
                slots,
                next: 0,
                pending: VecDeque::new(),
                done: VecDeque::new(),
                routed: false,
                timeout,
                width,
                height,
                _vgem: vgem,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The layout of the captures: XRGB8888 at the display's size, rows of
    /// `width * 4` bytes.
    pub fn layout(&self) -> ImageLayout {
        let s = self.lock();
        let row = u64::from(s.width) * 4;
        ImageLayout::linear(
            s.width,
            s.height,
            XRGB8888,
            0,
            row,
            row * u64::from(s.height),
        )
    }

    /// Adds the capture of frame `frame` to a flip request (after the
    /// display's first flip: that one sets the mode on the connector).
    /// One capture at a time: waits (bounded) for the previous one first,
    /// which completed at the vblank that showed its flip.
    pub fn add(
        &self,
        display: &Display,
        request: &mut AtomicRequest<'_>,
        flags: &mut CommitFlags,
    ) -> Result<(), KmsError> {
        if !display.is_configured() {
            return Ok(());
        }
        self.read_finished(true)?;
        let s = self.lock();
        let (Some(wb), Some(wb_conn)) = (
            display.props().writeback.as_ref(),
            display.output().writeback,
        ) else {
            return Ok(());
        };
        if !s.routed {
            request
                .set(
                    display.output().connector,
                    display.props().connector_crtc_id,
                    0,
                )
                .set(wb_conn, wb.crtc_id, u64::from(display.output().crtc));
            flags.allow_modeset = true;
        }
        let slot = s.next;
        request
            .set(wb_conn, wb.fb_id, u64::from(s.slots[slot].fb.id()))
            .out_fence(wb_conn, wb.out_fence_ptr);
        drop(s);
        Ok(())
    }

    /// After the commit of frame `frame` with a capture: takes the
    /// writeback fence from `outcome`.
    pub fn committed_flip(&self, display: &Display, frame: u64, outcome: &mut CommitOutcome) {
        let Some(wb_conn) = display.output().writeback else {
            return;
        };
        if let Some(fence) = outcome.take(wb_conn) {
            let mut s = self.lock();
            s.routed = true;
            let slot = s.next;
            s.next = (slot + 1) % RING;
            s.pending.push_back(Pending { frame, slot, fence });
        }
    }

    /// Reads every capture whose fence has signaled (with `wait`, the
    /// oldest pending one is waited for, bounded) into the done list.
    fn read_finished(&self, wait: bool) -> Result<(), KmsError> {
        loop {
            let (frame, slot, fence) = {
                let mut s = self.lock();
                let Some(p) = s.pending.front() else {
                    return Ok(());
                };
                let signaled = p.fence.is_signaled().map_err(KmsError::Device)?;
                if !signaled && !wait {
                    return Ok(());
                }
                let p = s.pending.pop_front().expect("checked");
                (p.frame, p.slot, p.fence)
            };
            let timeout = self.lock().timeout;
            fence.wait(timeout).map_err(KmsError::Device)?;
            let s = self.lock();
            let (w, h) = (s.width as usize, s.height as usize);
            let dumb = s.slots[slot].buffer.dumb();
            let map = dumb.map()?;
            let row = w * 4;
            let mut pixels = vec![0; row * h];
            for (y, chunk) in pixels.chunks_mut(row).enumerate() {
                map.read_at(y * dumb.pitch() as usize, chunk)?;
            }
            drop(map);
            drop(s);
            self.lock().done.push_back((frame, pixels));
        }
    }

    /// The next finished capture (frame number, XRGB8888 pixels), oldest
    /// first; with `wait`, waits (bounded) for the oldest pending one.
    pub fn next(&self, wait: bool) -> Result<Option<(u64, Vec<u8>)>, KmsError> {
        if let Some(d) = self.lock().done.pop_front() {
            return Ok(Some(d));
        }
        self.read_finished(wait)?;
        Ok(self.lock().done.pop_front())
    }

    /// The presenter extension that captures every flip.
    pub fn extension(&self) -> Box<dyn FlipExtension> {
        Box::new(self.clone())
    }
}

impl FlipExtension for WritebackCapture {
    fn extend(
        &mut self,
        display: &Display,
        _frame: u64,
        request: &mut AtomicRequest<'_>,
        flags: &mut CommitFlags,
    ) -> Result<(), KmsError> {
        self.add(display, request, flags)
    }

    fn committed(&mut self, display: &Display, frame: u64, outcome: &mut CommitOutcome) {
        self.committed_flip(display, frame, outcome);
    }
}
