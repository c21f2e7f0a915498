//! A CPU renderer on vgem: the stand-in for a render GPU whose fences are
//! real, pending kernel fences (the `hw` and `implicit` paths in the VM).
//!
//! Frames are vgem dumb buffers exported through PRIME. A render job is a
//! vgem fence (`VGEM_FENCE_ATTACH`) on a separate *job* buffer: its sync_file
//! (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE` of the job buffer) is the render-done
//! fence, and nothing ties it to the frame except what bufsync does with it
//! (IN_FENCE_FD, or IMPORT_SYNC_FILE into the frame). The pixels are drawn
//! in [`Renderer::flush`], after the display was handed the pending fence,
//! then the fence is signaled: a display that did not wait would show a
//! stale or half-drawn frame, which the writeback check catches.
//!
//! The drawing goes through the vgem device's own mapping of the buffer, as
//! a GPU writes its memory, not through the dma-buf CPU-access path (which
//! would wait for the very fence this job is about to signal).

use super::{RenderError, Rendered, Renderer};
use bufsync::fence::FenceSet;
use bufsync_backends::dmabuf::{Access, DmaBuf};
use bufsync_backends::drm::DrmDevice;
use bufsync_backends::sync_file::SyncFileFence;
use bufsync_backends::testing::{VgemBuffer, VgemFence};
use bufsync_backends::vulkan::pattern_pixel;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// DRM_FORMAT_XRGB8888.
pub const XRGB8888: u32 = u32::from_le_bytes(*b"XR24");

struct Job {
    index: usize,
    n: u32,
    fence: VgemFence,
}

/// Draws the test pattern of frame `n` into a `width` x `height` XRGB8888
/// vgem buffer through the device's own mapping (as a GPU writes its
/// memory), a row at a time through `row` (`width * 4` bytes).
pub fn draw_pattern(
    buffer: &VgemBuffer,
    width: u32,
    height: u32,
    n: u32,
    row: &mut [u8],
) -> Result<(), bufsync_backends::Error> {
    let dumb = buffer.dumb();
    let pitch = dumb.pitch() as usize;
    let mut map = dumb.map()?;
    for y in 0..height {
        for x in 0..width {
            let [r, g, b, _] = pattern_pixel(x, y, width, n);
            let o = x as usize * 4;
            // XRGB8888 little-endian: B, G, R, X in memory.
            row[o..o + 4].copy_from_slice(&[b, g, r, 0xff]);
        }
        map.write_at(y as usize * pitch, row)?;
    }
    Ok(())
}

/// The vgem CPU renderer.
pub struct VgemRenderer {
    _vgem: Arc<DrmDevice>,
    buffers: Vec<VgemBuffer>,
    job_buffer: VgemBuffer,
    job_dmabuf: DmaBuf,
    pending: Option<Job>,
    width: u32,
    height: u32,
    row: Vec<u8>,
    dep_timeout: Duration,
}

impl VgemRenderer {
    /// Opens vgem and allocates `count` frames of `width` x `height`,
    /// returned as dma-bufs.
    pub fn new(count: usize, width: u32, height: u32) -> Result<(Self, Vec<DmaBuf>), RenderError> {
        let vgem = VgemBuffer::device()?;
        let mut buffers = Vec::with_capacity(count);
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count {
            let b = VgemBuffer::create(&vgem, width, height)?;
            frames.push(b.dumb().export(XRGB8888)?);
            buffers.push(b);
        }
        let job_buffer = VgemBuffer::create(&vgem, 64, 1)?;
        let job_dmabuf = job_buffer.export()?;
        let me = VgemRenderer {
            _vgem: vgem,
            buffers,
            job_buffer,
            job_dmabuf,
            pending: None,
            width,
            height,
            row: vec![0; width as usize * 4],
            dep_timeout: Duration::from_secs(5),
        };
        Ok((me, frames))
    }

    fn draw(&mut self, index: usize, n: u32) -> Result<(), RenderError> {
        draw_pattern(
            &self.buffers[index],
            self.width,
            self.height,
            n,
            &mut self.row,
        )?;
        Ok(())
    }
}

impl Renderer for VgemRenderer {
    fn name(&self) -> String {
        "vgem (CPU, kernel fences)".into()
    }

    fn submit(&mut self, index: usize, n: u32, deps: &FenceSet) -> Result<Rendered, RenderError> {
        self.flush()?;
        // A CPU cannot wait for a fence in hardware: dependencies are waited
        // here, bounded.
        let software_waits = deps.iter().filter(|f| !f.is_signaled()).count() as u32;
        let t = Instant::now();
        deps.wait_all(Some(self.dep_timeout))?;
        let wait_time = t.elapsed();
        let fence = self.job_buffer.attach_fence(true)?;
        let sync = self.job_dmabuf.export_sync_file(Access::Write)?;
        let render_done = SyncFileFence::fence(sync)?;
        self.pending = Some(Job { index, n, fence });
        Ok(Rendered {
            fence: render_done,
            software_waits,
            hardware_waits: 0,
            wait_time,
        })
    }

    fn flush(&mut self) -> Result<(), RenderError> {
        if let Some(job) = self.pending.take() {
            let drawn = self.draw(job.index, job.n);
            // Signal even when drawing failed: a fence must complete.
            job.fence.signal()?;
            drawn?;
        }
        Ok(())
    }
}

impl Drop for VgemRenderer {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::warn!("vgem renderer: finishing the last job: {e}");
        }
    }
}
