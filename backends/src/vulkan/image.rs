//! `ExternalImage`: a VkImage over dma-buf memory, LINEAR or with a DRM
//! format modifier (explicit plane layouts on import, a driver-chosen
//! modifier from the probed list on export).
//!
//! Locking: none; an owned value whose drop destroys the Vulkan objects (the
//! caller keeps it alive while the GPU uses it).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use ash::vk;

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::layout::{
    drm_fourcc, fd_size, vk_format, ImageLayout, PlaneLayout, DRM_FORMAT_MOD_LINEAR,
};
use super::memory::{export_memory, import_memory, memory_fd, require_dmabuf, Dedicated};
use crate::dmabuf::DmaBuf;

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
        let modifiers = if use_modifiers {
            Self::exportable_modifiers(ctx, format, usage)
        } else {
            Vec::new()
        };
        Self::export_with_modifiers(ctx, width, height, format, usage, &modifiers)
    }

    /// The single-plane DRM format modifiers `ctx` can create `format`
    /// images with for `usage` (empty without the modifier extension).
    pub fn exportable_modifiers(
        ctx: &VulkanContext,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
    ) -> Vec<u64> {
        if !ctx.caps().image_drm_format_modifier {
            return Vec::new();
        }
        let mut need = vk::FormatFeatureFlags::empty();
        if usage.contains(vk::ImageUsageFlags::STORAGE) {
            need |= vk::FormatFeatureFlags::STORAGE_IMAGE;
        }
        if usage.contains(vk::ImageUsageFlags::COLOR_ATTACHMENT) {
            need |= vk::FormatFeatureFlags::COLOR_ATTACHMENT;
        }
        ctx.caps()
            .drm_modifiers
            .iter()
            .filter(|m| m.format == format)
            .flat_map(|m| m.modifiers.iter())
            .filter(|m| m.planes == 1 && m.features.contains(need))
            .map(|m| m.modifier)
            .collect()
    }

    /// Allocates an exportable image whose modifier the driver picks among
    /// `modifiers` (`VK_EXT_image_drm_format_modifier`), or a LINEAR image
    /// when `modifiers` is empty, and exports it as a dma-buf.
    pub fn export_with_modifiers(
        ctx: &Arc<VulkanContext>,
        width: u32,
        height: u32,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
        modifiers: &[u64],
    ) -> Result<(Self, OwnedFd)> {
        require_dmabuf(ctx)?;
        let fourcc = drm_fourcc(format)
            .ok_or_else(|| VulkanError::Unsupported(format!("format {format:?}")))?;
        if !modifiers.is_empty() && !ctx.caps().image_drm_format_modifier {
            return Err(VulkanError::Missing("VK_EXT_image_drm_format_modifier"));
        }
        let mut list =
            vk::ImageDrmFormatModifierListCreateInfoEXT::default().drm_format_modifiers(modifiers);
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
