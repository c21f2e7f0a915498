//! The GPU seqno producer: at the end of a submission, after a barrier, the
//! GPU writes a 32-bit seqno into a word of a dma-buf (imported or exported
//! as an [`ExternalBuffer`]). A seqno fence reading that word from its own
//! mapping of the dma-buf (`(i32)(word - seqno) >= 0`) then signals when the
//! GPU really got there: a hardware seqno fence.
//!
//! Locking: none; the writer is immutable and records into the caller's
//! command buffer.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use ash::vk;
use bufsync::fence::Fence;

use super::buffer::ExternalBuffer;
use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::layout::fd_size;
use crate::dmabuf::DmaBuf;
use crate::seqno::{SeqnoMemory, SeqnoWidth, SeqnoWord};

/// Writes seqnos into one word of a dma-buf-backed buffer.
#[derive(Debug, Clone)]
pub struct SeqnoWriter {
    buffer: Arc<ExternalBuffer>,
    offset: u64,
    word: Option<Arc<SeqnoWord>>,
}

impl SeqnoWriter {
    /// A writer for the word at `offset` (bytes from the buffer's start,
    /// 4-aligned) of `buffer`, which needs TRANSFER_DST usage.
    pub fn new(buffer: Arc<ExternalBuffer>, offset: u64) -> Result<Self> {
        if offset % 4 != 0
            || offset
                .checked_add(4)
                .map_or(true, |end| end > buffer.size())
        {
            return Err(VulkanError::Invalid(format!(
                "seqno word at {offset} must be 4-aligned inside the {}-byte buffer",
                buffer.size()
            )));
        }
        Ok(SeqnoWriter {
            buffer,
            offset,
            word: None,
        })
    }

    /// Imports the 4-byte word at `offset` of the file `fd` (a dma-buf, or a
    /// memfd on lavapipe) for the GPU and maps the whole file for the CPU:
    /// [`SeqnoWriter::fence`] then gives real hardware seqno fences. The
    /// mapping must be coherent with the GPU's writes (true for lavapipe and
    /// for the coherent memory seqno fences have always needed).
    pub fn for_fd(ctx: &Arc<VulkanContext>, fd: BorrowedFd<'_>, offset: u64) -> Result<Self> {
        let size = fd_size(fd)?;
        let len =
            usize::try_from(size).map_err(|_| VulkanError::Invalid(format!("size {size}")))?;
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(fd.as_raw_fd())
            .map_err(|e| VulkanError::Os {
                call: "mmap",
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        Self::with_memory(ctx, fd, offset, SeqnoMemory::from_mmap(map))
    }

    /// [`SeqnoWriter::for_fd`] for a [`DmaBuf`], mapped through the dma-buf
    /// backend.
    pub fn for_dmabuf(ctx: &Arc<VulkanContext>, dmabuf: &DmaBuf, offset: u64) -> Result<Self> {
        let mem = SeqnoMemory::from_dmabuf(dmabuf)?;
        Self::with_memory(ctx, dmabuf.fd(), offset, mem)
    }

    fn with_memory(
        ctx: &Arc<VulkanContext>,
        fd: BorrowedFd<'_>,
        offset: u64,
        mem: Arc<SeqnoMemory>,
    ) -> Result<Self> {
        let at = usize::try_from(offset)
            .map_err(|_| VulkanError::Invalid(format!("offset {offset}")))?;
        let word = mem.word(at, SeqnoWidth::U32)?;
        let buffer =
            ExternalBuffer::import(ctx, fd, 0, fd_size(fd)?, vk::BufferUsageFlags::TRANSFER_DST)?;
        let mut me = Self::new(Arc::new(buffer), offset)?;
        me.word = Some(word);
        Ok(me)
    }

    /// The CPU view of the word, when the writer was made with one.
    pub fn word(&self) -> Option<&Arc<SeqnoWord>> {
        self.word.as_ref()
    }

    /// A runtime [`SeqnoFence`](crate::seqno::SeqnoFence) signaled when the
    /// GPU has written `seqno` (or a later one) into the word.
    pub fn fence(&self, seqno: u32) -> Option<Fence> {
        self.word.as_ref().map(|w| w.fence(u64::from(seqno)))
    }

    /// The buffer written to.
    pub fn buffer(&self) -> &Arc<ExternalBuffer> {
        &self.buffer
    }

    /// Offset of the word in the dma-buf (buffer offset + word offset).
    pub fn dmabuf_offset(&self) -> u64 {
        self.buffer.offset() + self.offset
    }

    /// Records, at the end of `cmd`: a barrier after all earlier commands,
    /// the write of `seqno`, and a barrier making it visible to the host and
    /// other devices.
    pub fn record(&self, dev: &ash::Device, cmd: vk::CommandBuffer, seqno: u32) {
        let before = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
            .dst_access_mask(vk::AccessFlags::TRANSFER_WRITE)];
        let after = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ | vk::AccessFlags::MEMORY_READ)];
        // SAFETY: `cmd` is recording (caller's contract) on `dev`; the buffer
        // is alive while `self` is and has TRANSFER_DST usage (caller's).
        unsafe {
            dev.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::ALL_COMMANDS,
                vk::PipelineStageFlags::TRANSFER,
                vk::DependencyFlags::empty(),
                &before,
                &[],
                &[],
            );
            dev.cmd_fill_buffer(cmd, self.buffer.handle(), self.offset, 4, seqno);
            dev.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::HOST | vk::PipelineStageFlags::ALL_COMMANDS,
                vk::DependencyFlags::empty(),
                &after,
                &[],
                &[],
            );
        }
    }
}
