//! Vulkan memory as dma-bufs: the import and export of `VkDeviceMemory`
//! shared by buffers (`buffer`) and images (`image`).
//!
//! Ownership of fds: `vkAllocateMemory` with `VkImportMemoryFdInfoKHR` takes
//! the fd on success. lavapipe also closes it when the import *fails*, which
//! the spec does not allow; so imports always hand Vulkan a private dup and,
//! on failure, close that dup only if its number still names the same file
//! (same device and inode), i.e. the driver did not close it already.
//!
//! Locking: none; plain functions over the caller's objects.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use ash::vk;

use super::context::VulkanContext;
use super::error::{Result, VulkanError};

pub(crate) fn require_dmabuf(ctx: &VulkanContext) -> Result<&ash::khr::external_memory_fd::Device> {
    if !ctx.caps().external_memory_dma_buf {
        return Err(VulkanError::Missing("VK_EXT_external_memory_dma_buf"));
    }
    ctx.fns
        .memory_fd
        .as_ref()
        .ok_or(VulkanError::Missing("VK_KHR_external_memory_fd"))
}

/// What a dedicated allocation is for.
#[derive(Clone, Copy)]
pub(crate) enum Dedicated {
    None,
    Buffer(vk::Buffer),
    Image(vk::Image),
}

/// Imports `fd` (a dup of it) as `size` bytes of memory of a type in
/// `resource_bits`.
pub(crate) fn import_memory(
    ctx: &VulkanContext,
    fd: BorrowedFd<'_>,
    size: u64,
    resource_bits: u32,
    dedicated: Dedicated,
) -> Result<vk::DeviceMemory> {
    let mfd = require_dmabuf(ctx)?;
    let handle = vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT;
    let mut fd_props = vk::MemoryFdPropertiesKHR::default();
    // SAFETY: `fd` is open for the call; the function does not take it.
    unsafe { mfd.get_memory_fd_properties(handle, fd.as_raw_fd(), &mut fd_props) }
        .map_err(VulkanError::vk("vkGetMemoryFdPropertiesKHR"))?;
    let bits = resource_bits & fd_props.memory_type_bits;
    let type_index = ctx
        .memory_type(bits, vk::MemoryPropertyFlags::empty())
        .filter(|_| bits != 0)
        .ok_or(VulkanError::NoMemoryType {
            resource: resource_bits,
            fd: fd_props.memory_type_bits,
        })?;
    let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| match e {
        rustix::io::Errno::BADF => VulkanError::Backend(crate::Error::BadFd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        }),
        e => VulkanError::os("F_DUPFD_CLOEXEC")(e),
    })?;
    let id = rustix::fs::fstat(&dup)
        .map(|s| (s.st_dev, s.st_ino))
        .map_err(VulkanError::os("fstat"))?;
    let raw = dup.into_raw_fd();
    let mut import = vk::ImportMemoryFdInfoKHR::default()
        .handle_type(handle)
        .fd(raw);
    let mut ded = vk::MemoryDedicatedAllocateInfo::default();
    let mut info = vk::MemoryAllocateInfo::default()
        .allocation_size(size)
        .memory_type_index(type_index)
        .push_next(&mut import);
    match dedicated {
        Dedicated::None => {}
        Dedicated::Buffer(b) => {
            ded = ded.buffer(b);
            info = info.push_next(&mut ded);
        }
        Dedicated::Image(i) => {
            ded = ded.image(i);
            info = info.push_next(&mut ded);
        }
    }
    // SAFETY: valid device; the chain points to locals; `raw` is ours to give.
    match unsafe { ctx.device().allocate_memory(&info, None) } {
        Ok(mem) => Ok(mem),
        Err(e) => {
            reclaim_fd(raw, id);
            Err(VulkanError::vk("vkAllocateMemory(import dma-buf)")(e))
        }
    }
}

/// Closes `raw` after a failed import unless the driver closed it already.
fn reclaim_fd(raw: i32, id: (u64, u64)) {
    // SAFETY: only used for fstat below; `raw` may be closed (then fstat fails).
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    match rustix::fs::fstat(borrowed) {
        Ok(s) if (s.st_dev, s.st_ino) == id => {
            // SAFETY: the number still names our dup of the same file: the
            // driver left it open, so it is still ours to close.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        }
        _ => log::debug!("vulkan: driver closed fd {raw} on a failed import"),
    }
}

pub(crate) fn export_memory(
    ctx: &VulkanContext,
    req: vk::MemoryRequirements,
    dedicated: Dedicated,
) -> Result<vk::DeviceMemory> {
    let type_index = ctx
        .memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::DEVICE_LOCAL)
        .ok_or(VulkanError::NoMemoryType {
            resource: req.memory_type_bits,
            fd: !0,
        })?;
    let mut export = vk::ExportMemoryAllocateInfo::default()
        .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    let mut ded = vk::MemoryDedicatedAllocateInfo::default();
    match dedicated {
        Dedicated::None => {}
        Dedicated::Buffer(b) => ded = ded.buffer(b),
        Dedicated::Image(i) => ded = ded.image(i),
    }
    let info = vk::MemoryAllocateInfo::default()
        .allocation_size(req.size)
        .memory_type_index(type_index)
        .push_next(&mut export)
        .push_next(&mut ded);
    // SAFETY: valid device; the chain points to locals.
    unsafe { ctx.device().allocate_memory(&info, None) }
        .map_err(VulkanError::vk("vkAllocateMemory(export dma-buf)"))
}

pub(crate) fn memory_fd(ctx: &VulkanContext, memory: vk::DeviceMemory) -> Result<OwnedFd> {
    let mfd = require_dmabuf(ctx)?;
    let info = vk::MemoryGetFdInfoKHR::default()
        .memory(memory)
        .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    // SAFETY: the memory was allocated exportable as DMA_BUF.
    let fd = unsafe { mfd.get_memory_fd(&info) }.map_err(VulkanError::vk("vkGetMemoryFdKHR"))?;
    // SAFETY: vkGetMemoryFdKHR returns a new fd owned by the caller.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
