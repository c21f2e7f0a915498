//! GPU copies of an image into a buffer that holds another device's
//! linear image (Mesa's PRIME blit: render in the GPU's own layout, copy
//! into memory the display can scan out).
//!
//! Locking: none; recording into the caller's command buffer.

use ash::vk;

use super::buffer::ExternalBuffer;
use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::image::ExternalImage;
use super::layout::ImageLayout;

/// Records into `cmd` a copy of `image` (single plane, in
/// `VK_IMAGE_LAYOUT_GENERAL`, made with TRANSFER_SRC usage) into `dst`
/// laid out as `dst_layout` (the same size, 4 bytes per pixel, plane 0's
/// offset relative to the dma-buf, stride a multiple of 4), with barriers
/// after earlier writes of the image and before later reads of the buffer
/// (by the host and, through the submission's signal, other devices).
pub fn record_image_to_buffer_copy(
    ctx: &VulkanContext,
    cmd: vk::CommandBuffer,
    image: &ExternalImage,
    dst: &ExternalBuffer,
    dst_layout: &ImageLayout,
) -> Result<()> {
    let src = image.layout();
    if (src.width, src.height) != (dst_layout.width, dst_layout.height) {
        return Err(VulkanError::Invalid(format!(
            "copy {}x{} into {}x{}",
            src.width, src.height, dst_layout.width, dst_layout.height
        )));
    }
    let plane = dst_layout
        .planes
        .first()
        .ok_or_else(|| VulkanError::Invalid("destination layout has no planes".into()))?;
    let offset = plane
        .offset
        .checked_sub(dst.offset())
        .ok_or_else(|| VulkanError::Invalid("plane starts before the buffer".into()))?;
    if plane.stride % 4 != 0 || offset % 4 != 0 {
        return Err(VulkanError::Invalid(format!(
            "destination stride {} / offset {offset} not a multiple of 4",
            plane.stride
        )));
    }
    let end = offset
        + plane.stride * u64::from(dst_layout.height.max(1) - 1)
        + u64::from(dst_layout.width) * 4;
    if end > dst.size() {
        return Err(VulkanError::Invalid(format!(
            "copy ends at {end}, destination buffer has {} bytes",
            dst.size()
        )));
    }
    let row_length = u32::try_from(plane.stride / 4)
        .map_err(|_| VulkanError::Invalid(format!("stride {}", plane.stride)))?;
    let subresource = vk::ImageSubresourceLayers {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        mip_level: 0,
        base_array_layer: 0,
        layer_count: 1,
    };
    let region = vk::BufferImageCopy {
        buffer_offset: offset,
        buffer_row_length: row_length,
        buffer_image_height: dst_layout.height,
        image_subresource: subresource,
        image_offset: vk::Offset3D::default(),
        image_extent: vk::Extent3D {
            width: src.width,
            height: src.height,
            depth: 1,
        },
    };
    let before = [vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
        .dst_access_mask(vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE)];
    let after = [vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
        .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::HOST_READ)];
    let dev = ctx.device();
    // SAFETY: `cmd` is recording (the caller's contract, as for every
    // record closure of `Submitter::submit`); the image and buffer are
    // alive while the caller keeps them (until the submission retires);
    // the region was checked against both above.
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
        dev.cmd_copy_image_to_buffer(
            cmd,
            image.handle(),
            vk::ImageLayout::GENERAL,
            dst.handle(),
            &[region],
        );
        dev.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::ALL_COMMANDS | vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &after,
            &[],
            &[],
        );
    }
    Ok(())
}
