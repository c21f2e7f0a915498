//! A CPU renderer with real kernel fences: the stand-in for a render GPU
//! whose fences are pending kernel fences (the `hw` and `implicit` paths in
//! the VM), drawing into the presenter's CPU targets.
//!
//! A render job is a vgem fence (`VGEM_FENCE_ATTACH`) on a separate *job*
//! buffer: its sync_file (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE` of the job
//! buffer) is the render-done fence, and nothing ties it to the frame
//! except what bufsync does with it (IN_FENCE_FD, or IMPORT_SYNC_FILE into
//! the frame). The pixels are drawn in [`VgemRenderer::finish`], after the
//! frame was presented with the pending fence, then the fence is signaled:
//! a display that did not wait would show a stale or half-drawn frame,
//! which the capture check catches.
//!
//! The drawing goes through the buffer owner's own mapping (a dumb buffer's
//! `MAP_DUMB`, as a GPU writes its memory), or the dma-buf mapping for GBM
//! buffers, never through the dma-buf CPU-access bracket (which would wait
//! for the very fence this job is about to signal).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync_backends::dmabuf::{Access, DmaBuf};
use bufsync_backends::drm::DrmDevice;
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::testing::{VgemBuffer, VgemFence};
use bufsync_present::{CpuTarget, Frame, RenderDone};

use super::{RenderError, Rendered};
use crate::check::pattern_pixel;

/// DRM_FORMAT_XRGB8888.
pub const XRGB8888: u32 = u32::from_le_bytes(*b"XR24");

/// Draws the test pattern of frame `n` (`width` x `height`, XRGB8888) a
/// row at a time through `write(offset of row y, row bytes)`, with rows
/// `pitch` bytes apart; `row` is scratch of at least `width * 4` bytes.
pub fn draw_rows(
    width: u32,
    height: u32,
    pitch: usize,
    n: u32,
    row: &mut Vec<u8>,
    mut write: impl FnMut(usize, &[u8]) -> Result<(), bufsync_backends::Error>,
) -> Result<(), bufsync_backends::Error> {
    row.resize(width as usize * 4, 0);
    for y in 0..height {
        for x in 0..width {
            let [r, g, b, _] = pattern_pixel(x, y, width, n);
            let o = x as usize * 4;
            // XRGB8888 little-endian: B, G, R, X in memory.
            row[o..o + 4].copy_from_slice(&[b, g, r, 0xff]);
        }
        write(y as usize * pitch, row)?;
    }
    Ok(())
}

/// Draws frame `n` into a vgem buffer through vgem's own mapping.
pub fn draw_pattern(
    buffer: &VgemBuffer,
    width: u32,
    height: u32,
    n: u32,
    row: &mut Vec<u8>,
) -> Result<(), bufsync_backends::Error> {
    let dumb = buffer.dumb();
    let mut map = dumb.map()?;
    draw_rows(width, height, dumb.pitch() as usize, n, row, |o, r| {
        map.write_at(o, r)
    })
}

/// Draws frame `n` into a presenter CPU target (see the module docs).
pub fn draw_target(
    target: &CpuTarget,
    n: u32,
    row: &mut Vec<u8>,
) -> Result<(), bufsync_backends::Error> {
    let layout = target.layout().clone();
    let plane = layout.planes[0];
    match target.dumb() {
        Some(dumb) => {
            let mut map = dumb.map()?;
            draw_rows(
                layout.width,
                layout.height,
                plane.stride as usize,
                n,
                row,
                |o, r| map.write_at(plane.offset as usize + o, r),
            )
        }
        None => {
            let mut map = target.dmabuf().map_copies(true)?;
            draw_rows(
                layout.width,
                layout.height,
                plane.stride as usize,
                n,
                row,
                |o, r| map.write_at(plane.offset as usize + o, r),
            )
        }
    }
}

struct Job {
    target: CpuTarget,
    n: u32,
    fence: VgemFence,
}

/// The vgem CPU renderer.
pub struct VgemRenderer {
    vgem: Arc<DrmDevice>,
    job_buffer: VgemBuffer,
    job_dmabuf: DmaBuf,
    pending: Option<Job>,
    row: Vec<u8>,
    dep_timeout: Duration,
}

impl VgemRenderer {
    /// Opens vgem (by driver name) and makes the job buffer.
    pub fn new() -> Result<Self, RenderError> {
        let vgem = VgemBuffer::device()?;
        let job_buffer = VgemBuffer::create(&vgem, 64, 1)?;
        let job_dmabuf = job_buffer.export()?;
        Ok(VgemRenderer {
            vgem,
            job_buffer,
            job_dmabuf,
            pending: None,
            row: Vec::new(),
            dep_timeout: Duration::from_secs(5),
        })
    }

    /// The vgem device (the presenter's render device).
    pub fn device(&self) -> &Arc<DrmDevice> {
        &self.vgem
    }

    /// A short name for tables.
    pub fn name(&self) -> String {
        "vgem (CPU, kernel fences)".into()
    }

    /// Starts frame `frame` (pattern number `n`): waits (bounded) for the
    /// frame's fences on the CPU, attaches a pending vgem fence and returns
    /// its sync_file as the render-done fence. The pixels come in
    /// [`VgemRenderer::finish`].
    pub fn begin(&mut self, frame: &Frame, n: u32) -> Result<(RenderDone, Rendered), RenderError> {
        self.finish()?;
        let target = frame
            .target()
            .cpu()
            .ok_or_else(|| RenderError::Target("the vgem renderer draws CPU targets".into()))?
            .clone();
        let deps = frame.wait_fences();
        let software_waits = deps.iter().filter(|f| !f.is_signaled()).count() as u32;
        let t = Instant::now();
        deps.wait_all(Some(self.dep_timeout))?;
        let wait_time = t.elapsed();
        let fence = self.job_buffer.attach_fence(true)?;
        let sync: SyncFile = self.job_dmabuf.export_sync_file(Access::Write)?;
        self.pending = Some(Job { target, n, fence });
        Ok((
            RenderDone::SyncFile(sync),
            Rendered {
                software_waits,
                hardware_waits: 0,
                wait_time,
            },
        ))
    }

    /// Draws the pending job and signals its fence (also when drawing
    /// failed: a fence must complete).
    pub fn finish(&mut self) -> Result<(), RenderError> {
        if let Some(job) = self.pending.take() {
            let drawn = draw_target(&job.target, job.n, &mut self.row);
            job.fence.signal()?;
            drawn?;
        }
        Ok(())
    }
}

impl Drop for VgemRenderer {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("vgem renderer: finishing the last job: {e}");
        }
    }
}
