//! The GPU seqno producer: at the end of a submission, after a barrier, the
//! GPU writes a 32-bit seqno into a word of a dma-buf (imported or exported
//! as an [`ExternalBuffer`]). A seqno fence reading that word from its own
//! mapping of the dma-buf (`(i32)(word - seqno) >= 0`) then signals when the
//! GPU really got there: a hardware seqno fence.
//!
//! Locking: none; the writer is immutable and records into the caller's
//! command buffer.

use std::sync::Arc;

use ash::vk;

use super::error::{Result, VulkanError};
use super::memory::ExternalBuffer;

/// Writes seqnos into one word of a dma-buf-backed buffer.
#[derive(Debug, Clone)]
pub struct SeqnoWriter {
    buffer: Arc<ExternalBuffer>,
    offset: u64,
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
        Ok(SeqnoWriter { buffer, offset })
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
