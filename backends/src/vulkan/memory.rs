//! Vulkan memory as dma-bufs: export buffers and images, import dma-bufs
//! (GEM, GBM, udmabuf, memfd, another Vulkan device) as buffers and images.
//!
//! Ownership of fds: `vkAllocateMemory` with `VkImportMemoryFdInfoKHR` takes
//! the fd on success. lavapipe also closes it when the import *fails*, which
//! the spec does not allow; so imports always hand Vulkan a private dup and,
//! on failure, close that dup only if its number still names the same file
//! (same device and inode), i.e. the driver did not close it already.
//!
//! Locking: none; objects here are owned values, their drop destroys the
//! Vulkan objects (the caller keeps them alive while the GPU uses them).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;

use ash::vk;

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use crate::dmabuf::{DmaBuf, Layout, Plane};

/// `DRM_FORMAT_MOD_LINEAR`.
pub const DRM_FORMAT_MOD_LINEAR: u64 = 0;
/// `DRM_FORMAT_MOD_INVALID`.
pub const DRM_FORMAT_MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;

const fn fourcc(c: &[u8; 4]) -> u32 {
    (c[0] as u32) | ((c[1] as u32) << 8) | ((c[2] as u32) << 16) | ((c[3] as u32) << 24)
}

/// `DRM_FORMAT_ARGB8888` (bytes B, G, R, A).
pub const DRM_FORMAT_ARGB8888: u32 = fourcc(b"AR24");
/// `DRM_FORMAT_XRGB8888` (bytes B, G, R, X).
pub const DRM_FORMAT_XRGB8888: u32 = fourcc(b"XR24");
/// `DRM_FORMAT_ABGR8888` (bytes R, G, B, A).
pub const DRM_FORMAT_ABGR8888: u32 = fourcc(b"AB24");
/// `DRM_FORMAT_XBGR8888` (bytes R, G, B, X).
pub const DRM_FORMAT_XBGR8888: u32 = fourcc(b"XB24");

/// The DRM fourcc of a Vulkan format (with alpha).
pub fn drm_fourcc(format: vk::Format) -> Option<u32> {
    match format {
        vk::Format::B8G8R8A8_UNORM => Some(DRM_FORMAT_ARGB8888),
        vk::Format::R8G8B8A8_UNORM => Some(DRM_FORMAT_ABGR8888),
        _ => None,
    }
}

/// The Vulkan format of a DRM fourcc.
pub fn vk_format(fourcc: u32) -> Option<vk::Format> {
    match fourcc {
        DRM_FORMAT_ARGB8888 | DRM_FORMAT_XRGB8888 => Some(vk::Format::B8G8R8A8_UNORM),
        DRM_FORMAT_ABGR8888 | DRM_FORMAT_XBGR8888 => Some(vk::Format::R8G8B8A8_UNORM),
        _ => None,
    }
}

/// One memory plane of an image in a dma-buf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Byte offset of the plane in the dma-buf.
    pub offset: u64,
    /// Bytes per row.
    pub stride: u64,
}

/// How an image lies in a dma-buf (what KMS AddFB2 and GBM import take).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc.
    pub fourcc: u32,
    /// DRM format modifier.
    pub modifier: u64,
    /// Memory planes.
    pub planes: Vec<PlaneLayout>,
    /// Size of the dma-buf in bytes.
    pub size: u64,
}

impl ImageLayout {
    /// A single-plane LINEAR layout.
    pub fn linear(
        width: u32,
        height: u32,
        fourcc: u32,
        offset: u64,
        stride: u64,
        size: u64,
    ) -> Self {
        ImageLayout {
            width,
            height,
            fourcc,
            modifier: DRM_FORMAT_MOD_LINEAR,
            planes: vec![PlaneLayout { offset, stride }],
            size,
        }
    }

    /// The layout of a [`DmaBuf`] (with its size).
    pub fn from_dmabuf(layout: &Layout, size: u64) -> Self {
        ImageLayout {
            width: layout.width,
            height: layout.height,
            fourcc: layout.fourcc,
            modifier: layout.modifier,
            planes: layout
                .planes
                .iter()
                .map(|p| PlaneLayout {
                    offset: u64::from(p.offset),
                    stride: u64::from(p.stride),
                })
                .collect(),
            size,
        }
    }

    /// This layout as the dma-buf backend's [`Layout`] (offsets and strides
    /// must fit in 32 bits, as in `AddFB2`).
    pub fn to_dmabuf(&self) -> Result<Layout> {
        let planes = self
            .planes
            .iter()
            .map(|p| {
                Ok(Plane {
                    offset: u32::try_from(p.offset)
                        .map_err(|_| VulkanError::Invalid(format!("offset {}", p.offset)))?,
                    stride: u32::try_from(p.stride)
                        .map_err(|_| VulkanError::Invalid(format!("stride {}", p.stride)))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Layout {
            width: self.width,
            height: self.height,
            fourcc: self.fourcc,
            modifier: self.modifier,
            planes,
        })
    }

    /// Checks that plane 0 of a 32-bit format fits in `size`.
    pub fn validate(&self) -> Result<()> {
        let p = self
            .planes
            .first()
            .ok_or_else(|| VulkanError::Invalid("layout has no planes".into()))?;
        let row = u64::from(self.width) * 4;
        if self.width == 0 || self.height == 0 || p.stride < row {
            return Err(VulkanError::Invalid(format!(
                "{}x{} with stride {} (row needs {row})",
                self.width, self.height, p.stride
            )));
        }
        let end = p
            .stride
            .checked_mul(u64::from(self.height) - 1)
            .and_then(|v| v.checked_add(row))
            .and_then(|v| v.checked_add(p.offset));
        match end {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(VulkanError::Invalid(format!(
                "plane at offset {} stride {} overruns the {}-byte buffer",
                p.offset, p.stride, self.size
            ))),
        }
    }
}

/// Size of the file behind `fd` (`fstat`, or `lseek(SEEK_END)` for files
/// that report 0, restoring the position).
pub fn fd_size(fd: BorrowedFd<'_>) -> Result<u64> {
    let st = rustix::fs::fstat(fd).map_err(VulkanError::os("fstat"))?;
    if st.st_size > 0 {
        return Ok(st.st_size as u64);
    }
    let pos =
        rustix::fs::seek(fd, rustix::fs::SeekFrom::Current(0)).map_err(VulkanError::os("lseek"))?;
    let end =
        rustix::fs::seek(fd, rustix::fs::SeekFrom::End(0)).map_err(VulkanError::os("lseek"))?;
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(pos)).map_err(VulkanError::os("lseek"))?;
    Ok(end)
}

fn require_dmabuf(ctx: &VulkanContext) -> Result<&ash::khr::external_memory_fd::Device> {
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
enum Dedicated {
    None,
    Buffer(vk::Buffer),
    Image(vk::Image),
}

/// Imports `fd` (a dup of it) as `size` bytes of memory of a type in
/// `resource_bits`.
fn import_memory(
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
    let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(VulkanError::os("F_DUPFD_CLOEXEC"))?;
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

fn export_memory(
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

fn memory_fd(ctx: &VulkanContext, memory: vk::DeviceMemory) -> Result<OwnedFd> {
    let mfd = require_dmabuf(ctx)?;
    let info = vk::MemoryGetFdInfoKHR::default()
        .memory(memory)
        .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    // SAFETY: the memory was allocated exportable as DMA_BUF.
    let fd = unsafe { mfd.get_memory_fd(&info) }.map_err(VulkanError::vk("vkGetMemoryFdKHR"))?;
    // SAFETY: vkGetMemoryFdKHR returns a new fd owned by the caller.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A VkImage bound to dma-buf memory, with its layout in the dma-buf.
pub struct ExternalImage {
    ctx: Arc<VulkanContext>,
    image: vk::Image,
    memory: vk::DeviceMemory,
    format: vk::Format,
    layout: ImageLayout,
}

impl std::fmt::Debug for ExternalImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalImage")
            .field("image", &self.image)
            .field("format", &self.format)
            .field("layout", &self.layout)
            .finish()
    }
}

impl ExternalImage {
    /// Imports a single-plane image from the dma-buf `fd` with `layout`. A
    /// non-LINEAR modifier (or any modifier with the extension present) uses
    /// `VK_EXT_image_drm_format_modifier`'s explicit layout; without it, a
    /// LINEAR image is accepted only if the driver's row pitch is `stride`.
    pub fn import(
        ctx: &Arc<VulkanContext>,
        fd: BorrowedFd<'_>,
        layout: &ImageLayout,
        usage: vk::ImageUsageFlags,
    ) -> Result<Self> {
        require_dmabuf(ctx)?;
        let total = fd_size(fd)?;
        let layout = ImageLayout {
            size: total,
            ..layout.clone()
        };
        layout.validate()?;
        if layout.planes.len() != 1 {
            return Err(VulkanError::Unsupported(format!(
                "{} memory planes",
                layout.planes.len()
            )));
        }
        let format = vk_format(layout.fourcc)
            .ok_or_else(|| VulkanError::Unsupported(format!("fourcc {:#010x}", layout.fourcc)))?;
        let plane = layout.planes[0];
        let explicit = ctx.caps().image_drm_format_modifier;
        if !explicit && layout.modifier != DRM_FORMAT_MOD_LINEAR {
            return Err(VulkanError::Missing(
                "VK_EXT_image_drm_format_modifier (non-linear modifier)",
            ));
        }
        let plane_layouts = [vk::SubresourceLayout {
            offset: plane.offset,
            size: 0,
            row_pitch: plane.stride,
            array_pitch: 0,
            depth_pitch: 0,
        }];
        let mut explicit_info = vk::ImageDrmFormatModifierExplicitCreateInfoEXT::default()
            .drm_format_modifier(layout.modifier)
            .plane_layouts(&plane_layouts);
        let mut ext = vk::ExternalMemoryImageCreateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let mut view_formats =
            vk::ImageFormatListCreateInfo::default().view_formats(&MUTABLE_VIEW_FORMATS);
        let mut info = image_info(format, layout.width, layout.height, usage).push_next(&mut ext);
        if needs_rgba_view(format, usage) {
            info = info
                .flags(vk::ImageCreateFlags::MUTABLE_FORMAT)
                .push_next(&mut view_formats);
        }
        if explicit {
            info = info
                .tiling(vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT)
                .initial_layout(vk::ImageLayout::UNDEFINED)
                .push_next(&mut explicit_info);
        }
        // SAFETY: valid device; chain points to locals.
        let image = unsafe { ctx.device().create_image(&info, None) }
            .map_err(VulkanError::vk("vkCreateImage"))?;
        let mut me = ExternalImage {
            ctx: ctx.clone(),
            image,
            memory: vk::DeviceMemory::null(),
            format,
            layout,
        };
        let bind_offset = if explicit {
            0
        } else {
            // SAFETY: valid LINEAR image, color aspect.
            let sub = unsafe {
                ctx.device().get_image_subresource_layout(
                    image,
                    vk::ImageSubresource {
                        aspect_mask: vk::ImageAspectFlags::COLOR,
                        mip_level: 0,
                        array_layer: 0,
                    },
                )
            };
            if sub.row_pitch != plane.stride {
                return Err(VulkanError::Unsupported(format!(
                    "driver LINEAR pitch {} != dma-buf stride {} (no explicit modifier layouts)",
                    sub.row_pitch, plane.stride
                )));
            }
            plane.offset
        };
        // SAFETY: valid image.
        let req = unsafe { ctx.device().get_image_memory_requirements(image) };
        if bind_offset % req.alignment.max(1) != 0 || bind_offset + req.size > total {
            return Err(VulkanError::Invalid(format!(
                "plane offset {bind_offset} (alignment {}, size {}) does not fit the {total}-byte dma-buf",
                req.alignment, req.size
            )));
        }
        let dedicated = if bind_offset == 0 {
            Dedicated::Image(image)
        } else {
            Dedicated::None
        };
        me.memory = import_memory(ctx, fd, total, req.memory_type_bits, dedicated)?;
        // SAFETY: our image and memory; offset checked above.
        unsafe {
            ctx.device()
                .bind_image_memory(image, me.memory, bind_offset)
        }
        .map_err(VulkanError::vk("vkBindImageMemory"))?;
        Ok(me)
    }

    /// Allocates an exportable image and exports it as a dma-buf. With
    /// `use_modifiers` and the modifier extension, the driver picks among
    /// the format's modifiers that support `usage` (tiled where it likes);
    /// otherwise the image is LINEAR.
    pub fn export(
        ctx: &Arc<VulkanContext>,
        width: u32,
        height: u32,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
        use_modifiers: bool,
    ) -> Result<(Self, OwnedFd)> {
        require_dmabuf(ctx)?;
        let fourcc = drm_fourcc(format)
            .ok_or_else(|| VulkanError::Unsupported(format!("format {format:?}")))?;
        let modifiers: Vec<u64> = if use_modifiers && ctx.caps().image_drm_format_modifier {
            let need = if usage.contains(vk::ImageUsageFlags::STORAGE) {
                vk::FormatFeatureFlags::STORAGE_IMAGE
            } else {
                vk::FormatFeatureFlags::empty()
            };
            ctx.caps()
                .drm_modifiers
                .iter()
                .filter(|m| m.format == format)
                .flat_map(|m| m.modifiers.iter())
                .filter(|m| m.planes == 1 && m.features.contains(need))
                .map(|m| m.modifier)
                .collect()
        } else {
            Vec::new()
        };
        let mut list =
            vk::ImageDrmFormatModifierListCreateInfoEXT::default().drm_format_modifiers(&modifiers);
        let mut ext = vk::ExternalMemoryImageCreateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let mut view_formats =
            vk::ImageFormatListCreateInfo::default().view_formats(&MUTABLE_VIEW_FORMATS);
        let mut info = image_info(format, width, height, usage).push_next(&mut ext);
        if needs_rgba_view(format, usage) {
            info = info
                .flags(vk::ImageCreateFlags::MUTABLE_FORMAT)
                .push_next(&mut view_formats);
        }
        if !modifiers.is_empty() {
            info = info
                .tiling(vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT)
                .initial_layout(vk::ImageLayout::UNDEFINED)
                .push_next(&mut list);
        }
        // SAFETY: valid device; chain points to locals.
        let image = unsafe { ctx.device().create_image(&info, None) }
            .map_err(VulkanError::vk("vkCreateImage"))?;
        let layout = ImageLayout {
            width,
            height,
            fourcc,
            modifier: DRM_FORMAT_MOD_LINEAR,
            planes: Vec::new(),
            size: 0,
        };
        let mut me = ExternalImage {
            ctx: ctx.clone(),
            image,
            memory: vk::DeviceMemory::null(),
            format,
            layout,
        };
        // SAFETY: valid image.
        let req = unsafe { ctx.device().get_image_memory_requirements(image) };
        me.memory = export_memory(ctx, req, Dedicated::Image(image))?;
        // SAFETY: our image and memory.
        unsafe { ctx.device().bind_image_memory(image, me.memory, 0) }
            .map_err(VulkanError::vk("vkBindImageMemory"))?;
        let (modifier, aspect) = if modifiers.is_empty() {
            (DRM_FORMAT_MOD_LINEAR, vk::ImageAspectFlags::COLOR)
        } else {
            let ext = ctx
                .fns
                .drm_modifier
                .as_ref()
                .ok_or(VulkanError::Missing("VK_EXT_image_drm_format_modifier"))?;
            let mut props = vk::ImageDrmFormatModifierPropertiesEXT::default();
            // SAFETY: the image was created with DRM_FORMAT_MODIFIER_EXT tiling.
            unsafe { ext.get_image_drm_format_modifier_properties(image, &mut props) }
                .map_err(VulkanError::vk("vkGetImageDrmFormatModifierPropertiesEXT"))?;
            (
                props.drm_format_modifier,
                vk::ImageAspectFlags::MEMORY_PLANE_0_EXT,
            )
        };
        // SAFETY: valid image, aspect fits its tiling.
        let sub = unsafe {
            ctx.device().get_image_subresource_layout(
                image,
                vk::ImageSubresource {
                    aspect_mask: aspect,
                    mip_level: 0,
                    array_layer: 0,
                },
            )
        };
        me.layout.modifier = modifier;
        me.layout.planes = vec![PlaneLayout {
            offset: sub.offset,
            stride: sub.row_pitch,
        }];
        me.layout.size = req.size;
        let fd = memory_fd(ctx, me.memory)?;
        if let Ok(real) = fd_size(fd.as_fd()) {
            me.layout.size = real;
        }
        Ok((me, fd))
    }

    /// Imports a [`DmaBuf`] that carries a layout.
    pub fn import_dmabuf(
        ctx: &Arc<VulkanContext>,
        dmabuf: &DmaBuf,
        usage: vk::ImageUsageFlags,
    ) -> Result<Self> {
        let layout = dmabuf
            .layout()
            .ok_or_else(|| VulkanError::Invalid("dma-buf has no layout".into()))?;
        Self::import(
            ctx,
            dmabuf.fd(),
            &ImageLayout::from_dmabuf(layout, dmabuf.size()),
            usage,
        )
    }

    /// [`ExternalImage::export`] as a [`DmaBuf`] carrying the image's layout.
    pub fn export_dmabuf(
        ctx: &Arc<VulkanContext>,
        width: u32,
        height: u32,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
        use_modifiers: bool,
    ) -> Result<(Self, DmaBuf)> {
        let (me, fd) = Self::export(ctx, width, height, format, usage, use_modifiers)?;
        let buf = DmaBuf::from_fd(fd)?.with_layout(me.layout.to_dmabuf()?)?;
        Ok((me, buf))
    }

    /// The Vulkan image.
    pub fn handle(&self) -> vk::Image {
        self.image
    }

    /// The memory it is bound to.
    pub fn memory(&self) -> vk::DeviceMemory {
        self.memory
    }

    /// Its Vulkan format.
    pub fn format(&self) -> vk::Format {
        self.format
    }

    /// Its layout in the dma-buf.
    pub fn layout(&self) -> &ImageLayout {
        &self.layout
    }
}

/// Formats a B8G8R8A8 storage image may be viewed as (the renderer writes
/// it through an R8G8B8A8 view: `rgba8` is a portable storage format).
const MUTABLE_VIEW_FORMATS: [vk::Format; 2] =
    [vk::Format::B8G8R8A8_UNORM, vk::Format::R8G8B8A8_UNORM];

/// Whether an image is created MUTABLE_FORMAT for an R8G8B8A8 storage view.
pub(crate) fn needs_rgba_view(format: vk::Format, usage: vk::ImageUsageFlags) -> bool {
    format == vk::Format::B8G8R8A8_UNORM && usage.contains(vk::ImageUsageFlags::STORAGE)
}

fn image_info<'a>(
    format: vk::Format,
    width: u32,
    height: u32,
    usage: vk::ImageUsageFlags,
) -> vk::ImageCreateInfo<'a> {
    vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(format)
        .extent(vk::Extent3D {
            width,
            height,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::LINEAR)
        .usage(usage)
        .sharing_mode(vk::SharingMode::EXCLUSIVE)
        .initial_layout(vk::ImageLayout::PREINITIALIZED)
}

impl Drop for ExternalImage {
    fn drop(&mut self) {
        // SAFETY: our objects; the owner keeps us alive while GPU work uses them.
        unsafe {
            self.ctx.device().destroy_image(self.image, None);
            if self.memory != vk::DeviceMemory::null() {
                self.ctx.device().free_memory(self.memory, None);
            }
        }
    }
}
