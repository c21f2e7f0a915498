//! `ExternalBuffer`: a VkBuffer over dma-buf memory, imported (at an
//! offset) or exported.
//!
//! Locking: none; an owned value whose drop destroys the Vulkan objects (the
//! caller keeps it alive while the GPU uses it).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use ash::vk;

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::layout::{fd_size, ImageLayout};
use super::memory::{export_memory, import_memory, memory_fd, require_dmabuf, Dedicated};
use crate::dmabuf::DmaBuf;

/// A VkBuffer bound to dma-buf memory (imported or exported).
pub struct ExternalBuffer {
    ctx: Arc<VulkanContext>,
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    offset: u64,
    size: u64,
}

impl std::fmt::Debug for ExternalBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalBuffer")
            .field("buffer", &self.buffer)
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish()
    }
}

fn create_buffer(
    ctx: &VulkanContext,
    size: u64,
    usage: vk::BufferUsageFlags,
) -> Result<vk::Buffer> {
    if size == 0 {
        return Err(VulkanError::Invalid("zero-sized buffer".into()));
    }
    let mut ext = vk::ExternalMemoryBufferCreateInfo::default()
        .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    let info = vk::BufferCreateInfo::default()
        .size(size)
        .usage(usage)
        .sharing_mode(vk::SharingMode::EXCLUSIVE)
        .push_next(&mut ext);
    // SAFETY: valid device; chain points to locals.
    unsafe { ctx.device().create_buffer(&info, None) }.map_err(VulkanError::vk("vkCreateBuffer"))
}

impl ExternalBuffer {
    /// Imports `size` bytes at `offset` of the dma-buf `fd` as a buffer. The
    /// fd is duplicated; the caller keeps its own.
    pub fn import(
        ctx: &Arc<VulkanContext>,
        fd: BorrowedFd<'_>,
        offset: u64,
        size: u64,
        usage: vk::BufferUsageFlags,
    ) -> Result<Self> {
        require_dmabuf(ctx)?;
        let total = fd_size(fd)?;
        if offset.checked_add(size).map_or(true, |end| end > total) {
            return Err(VulkanError::Invalid(format!(
                "range {offset}+{size} exceeds the {total}-byte dma-buf"
            )));
        }
        let buffer = create_buffer(ctx, size, usage)?;
        let mut me = ExternalBuffer {
            ctx: ctx.clone(),
            buffer,
            memory: vk::DeviceMemory::null(),
            offset,
            size,
        };
        // SAFETY: valid buffer.
        let req = unsafe { ctx.device().get_buffer_memory_requirements(buffer) };
        if offset % req.alignment.max(1) != 0 {
            return Err(VulkanError::Invalid(format!(
                "offset {offset} is not a multiple of the buffer alignment {}",
                req.alignment
            )));
        }
        me.memory = import_memory(ctx, fd, total, req.memory_type_bits, Dedicated::None)?;
        // SAFETY: memory and buffer are ours; offset checked against alignment and size.
        unsafe { ctx.device().bind_buffer_memory(buffer, me.memory, offset) }
            .map_err(VulkanError::vk("vkBindBufferMemory"))?;
        Ok(me)
    }

    /// Allocates an exportable buffer of `size` bytes and exports it as a
    /// dma-buf (needs DMA_BUF export, e.g. udmabuf under lavapipe).
    pub fn export(
        ctx: &Arc<VulkanContext>,
        size: u64,
        usage: vk::BufferUsageFlags,
    ) -> Result<(Self, OwnedFd)> {
        require_dmabuf(ctx)?;
        let buffer = create_buffer(ctx, size, usage)?;
        let mut me = ExternalBuffer {
            ctx: ctx.clone(),
            buffer,
            memory: vk::DeviceMemory::null(),
            offset: 0,
            size,
        };
        // SAFETY: valid buffer.
        let req = unsafe { ctx.device().get_buffer_memory_requirements(buffer) };
        me.memory = export_memory(ctx, req, Dedicated::Buffer(buffer))?;
        // SAFETY: memory and buffer are ours, offset 0.
        unsafe { ctx.device().bind_buffer_memory(buffer, me.memory, 0) }
            .map_err(VulkanError::vk("vkBindBufferMemory"))?;
        let fd = memory_fd(ctx, me.memory)?;
        Ok((me, fd))
    }

    /// Imports the whole of `dmabuf` as a buffer.
    pub fn import_dmabuf(
        ctx: &Arc<VulkanContext>,
        dmabuf: &DmaBuf,
        usage: vk::BufferUsageFlags,
    ) -> Result<Self> {
        Self::import(ctx, dmabuf.fd(), 0, dmabuf.size(), usage)
    }

    /// [`ExternalBuffer::export`] with the fd checked and wrapped as a
    /// [`DmaBuf`] (with `layout`, if given).
    pub fn export_dmabuf(
        ctx: &Arc<VulkanContext>,
        size: u64,
        usage: vk::BufferUsageFlags,
        layout: Option<&ImageLayout>,
    ) -> Result<(Self, DmaBuf)> {
        let (me, fd) = Self::export(ctx, size, usage)?;
        let mut buf = DmaBuf::from_fd(fd)?;
        if let Some(l) = layout {
            buf = buf.with_layout(l.to_dmabuf()?)?;
        }
        Ok((me, buf))
    }

    /// The Vulkan buffer.
    pub fn handle(&self) -> vk::Buffer {
        self.buffer
    }

    /// The memory it is bound to.
    pub fn memory(&self) -> vk::DeviceMemory {
        self.memory
    }

    /// Offset of the buffer in the dma-buf.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Size of the buffer in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for ExternalBuffer {
    fn drop(&mut self) {
        // SAFETY: our objects; the owner keeps us alive while GPU work uses them.
        unsafe {
            self.ctx.device().destroy_buffer(self.buffer, None);
            if self.memory != vk::DeviceMemory::null() {
                self.ctx.device().free_memory(self.memory, None);
            }
        }
    }
}
