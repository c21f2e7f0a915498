//! The demo's renderer: an animated test pattern drawn by a compute shader
//! into dma-buf memory, so KMS can scan it out and a checker can verify
//! every pixel. Two targets: a buffer with an image layout (offset, stride,
//! fourcc; `shaders/pattern.comp`, LINEAR only) and a storage image of any
//! tiling, DRM-modifier images included (`shaders/pattern_image.comp`).
//!
//! The pattern (`shaders/pattern.glsl`, twin: [`pattern_pixel`]): the top
//! [`STRIP_ROWS`] rows encode the frame number as 32 black/white blocks (MSB
//! left); every other pixel is `((x + 4f) & 255, (y + 2f) & 255, (x ^ y ^ f) & 255)`.
//!
//! Locking: none. A [`RenderTarget`] owns its descriptor set (its own small
//! pool), so recording needs no shared mutable state; the caller owns the
//! command buffer.

use std::sync::Arc;

use ash::vk;

use super::buffer::ExternalBuffer;
use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::image::ExternalImage;
use super::layout::{
    ImageLayout, PlaneLayout, DRM_FORMAT_ABGR8888, DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_LINEAR,
    DRM_FORMAT_XBGR8888, DRM_FORMAT_XRGB8888,
};

/// Rows at the top that carry the frame number.
pub const STRIP_ROWS: u32 = 16;

/// The compiled shader (checked in; `shaders/build.sh` regenerates it).
const PATTERN_SPV: &[u8] = include_bytes!("../../../shaders/pattern.comp.spv");
/// The storage-image variant (any tiling).
const PATTERN_IMAGE_SPV: &[u8] = include_bytes!("../../../shaders/pattern_image.comp.spv");

const LOCAL_SIZE: u32 = 8;

/// The RGBA value of pixel `(x, y)` of frame `frame` in a `width`-wide image.
pub fn pattern_pixel(x: u32, y: u32, width: u32, frame: u32) -> [u8; 4] {
    if y < STRIP_ROWS {
        let bit = 31 - (x.wrapping_mul(32) / width.max(1));
        let v = (((frame >> (bit & 31)) & 1) * 255) as u8;
        return [v, v, v, 255];
    }
    [
        (x.wrapping_add(frame.wrapping_mul(4)) & 255) as u8,
        (y.wrapping_add(frame.wrapping_mul(2)) & 255) as u8,
        ((x ^ y ^ frame) & 255) as u8,
        255,
    ]
}

fn bgra_order(fourcc: u32) -> Option<bool> {
    match fourcc {
        DRM_FORMAT_ARGB8888 | DRM_FORMAT_XRGB8888 => Some(true),
        DRM_FORMAT_ABGR8888 | DRM_FORMAT_XBGR8888 => Some(false),
        _ => None,
    }
}

/// The first pixel that differs from the expected frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pixel ({x}, {y}) is {got:02x?}, expected {expected:02x?} (bytes in memory order)")]
pub struct FrameMismatch {
    /// Column.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// Bytes expected in memory order.
    pub expected: [u8; 4],
    /// Bytes found.
    pub got: [u8; 4],
}

fn memory_bytes(rgba: [u8; 4], bgra: bool) -> [u8; 4] {
    if bgra {
        [rgba[2], rgba[1], rgba[0], rgba[3]]
    } else {
        rgba
    }
}

fn pixel_at(bytes: &[u8], layout: &ImageLayout, x: u32, y: u32) -> Option<[u8; 4]> {
    let p = layout.planes.first()?;
    let at = usize::try_from(p.offset + u64::from(y) * p.stride + u64::from(x) * 4).ok()?;
    bytes.get(at..at + 4).map(|s| [s[0], s[1], s[2], s[3]])
}

/// Checks every pixel of a LINEAR frame in `bytes` (the whole dma-buf,
/// e.g. its mmap) against frame `frame`. X formats ignore the alpha byte.
pub fn check_frame(bytes: &[u8], layout: &ImageLayout, frame: u32) -> Result<(), FrameMismatch> {
    let bgra = bgra_order(layout.fourcc).unwrap_or(true);
    let ignore_alpha = matches!(layout.fourcc, DRM_FORMAT_XRGB8888 | DRM_FORMAT_XBGR8888);
    for y in 0..layout.height {
        for x in 0..layout.width {
            let mut expected = memory_bytes(pattern_pixel(x, y, layout.width, frame), bgra);
            let mut got = pixel_at(bytes, layout, x, y).unwrap_or([0; 4]);
            if ignore_alpha {
                expected[3] = 0;
                got[3] = 0;
            }
            if got != expected {
                return Err(FrameMismatch {
                    x,
                    y,
                    expected,
                    got,
                });
            }
        }
    }
    Ok(())
}

/// Reads the frame number from the strip of a LINEAR frame (`None` if the
/// strip holds no valid code). Samples the middle of each block.
pub fn decode_frame_number(bytes: &[u8], layout: &ImageLayout) -> Option<u32> {
    let w = layout.width;
    if w < 32 || layout.height < STRIP_ROWS {
        return None;
    }
    let mut frame = 0u32;
    for block in 0..32u32 {
        // Middle of the block whose pixels map to bit 31 - block.
        let x = ((2 * block + 1) * w) / 64;
        let px = pixel_at(bytes, layout, x, STRIP_ROWS / 2)?;
        let bit = match px[0] {
            0 => 0,
            255 => 1,
            _ => return None,
        };
        frame = (frame << 1) | bit;
    }
    Some(frame)
}

/// One compute pipeline: shader, set layout (one binding), pipeline layout.
struct Pipe {
    module: vk::ShaderModule,
    set_layout: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    pipeline: vk::Pipeline,
}

impl Pipe {
    fn destroy(&self, dev: &ash::Device) {
        // SAFETY: our objects (null handles are ignored); every target holds
        // an Arc of the renderer and command buffers using the pipeline are
        // the caller's to have finished.
        unsafe {
            dev.destroy_pipeline(self.pipeline, None);
            dev.destroy_pipeline_layout(self.layout, None);
            dev.destroy_descriptor_set_layout(self.set_layout, None);
            dev.destroy_shader_module(self.module, None);
        }
    }

    fn new(dev: &ash::Device, spv: &[u8], ty: vk::DescriptorType) -> Result<Self> {
        let code = ash::util::read_spv(&mut std::io::Cursor::new(spv))
            .map_err(|e| VulkanError::Invalid(format!("SPIR-V: {e}")))?;
        let mut pipe = Pipe {
            module: vk::ShaderModule::null(),
            set_layout: vk::DescriptorSetLayout::null(),
            layout: vk::PipelineLayout::null(),
            pipeline: vk::Pipeline::null(),
        };
        match pipe.build(dev, &code, ty) {
            Ok(()) => Ok(pipe),
            Err(e) => {
                pipe.destroy(dev);
                Err(e)
            }
        }
    }

    fn build(&mut self, dev: &ash::Device, code: &[u32], ty: vk::DescriptorType) -> Result<()> {
        // SAFETY: valid device; `code` is validated SPIR-V (shaders/build.sh).
        self.module = unsafe {
            dev.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(code), None)
        }
        .map_err(VulkanError::vk("vkCreateShaderModule"))?;
        let bindings = [vk::DescriptorSetLayoutBinding::default()
            .binding(0)
            .descriptor_type(ty)
            .descriptor_count(1)
            .stage_flags(vk::ShaderStageFlags::COMPUTE)];
        let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
        // SAFETY: valid device; arrays live across the call.
        self.set_layout = unsafe { dev.create_descriptor_set_layout(&info, None) }
            .map_err(VulkanError::vk("vkCreateDescriptorSetLayout"))?;
        let set_layouts = [self.set_layout];
        let ranges = [vk::PushConstantRange::default()
            .stage_flags(vk::ShaderStageFlags::COMPUTE)
            .offset(0)
            .size(24)];
        let info = vk::PipelineLayoutCreateInfo::default()
            .set_layouts(&set_layouts)
            .push_constant_ranges(&ranges);
        // SAFETY: as above.
        self.layout = unsafe { dev.create_pipeline_layout(&info, None) }
            .map_err(VulkanError::vk("vkCreatePipelineLayout"))?;
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(self.module)
            .name(c"main");
        let info = [vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(self.layout)];
        // SAFETY: as above.
        let pipelines =
            unsafe { dev.create_compute_pipelines(vk::PipelineCache::null(), &info, None) }
                .map_err(|(_, e)| VulkanError::vk("vkCreateComputePipelines")(e))?;
        self.pipeline = pipelines[0];
        Ok(())
    }
}

struct RendererInner {
    ctx: Arc<VulkanContext>,
    buffer_pipe: Pipe,
    image_pipe: Pipe,
}

impl Drop for RendererInner {
    fn drop(&mut self) {
        self.buffer_pipe.destroy(self.ctx.device());
        self.image_pipe.destroy(self.ctx.device());
    }
}

/// The compute pipelines that draw the test pattern (into buffers with an
/// image layout, or into storage images of any tiling).
pub struct PatternRenderer {
    inner: Arc<RendererInner>,
}

impl std::fmt::Debug for PatternRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternRenderer").finish_non_exhaustive()
    }
}

enum TargetKind {
    Buffer(Arc<ExternalBuffer>),
    Image {
        image: Arc<ExternalImage>,
        view: vk::ImageView,
    },
}

/// What the renderer draws into: a descriptor set (in its own small pool)
/// plus the image layout.
pub struct RenderTarget {
    renderer: Arc<RendererInner>,
    kind: TargetKind,
    pool: vk::DescriptorPool,
    set: vk::DescriptorSet,
    params: [u32; 6],
    layout: ImageLayout,
}

impl std::fmt::Debug for RenderTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            TargetKind::Buffer(_) => "buffer",
            TargetKind::Image { .. } => "image",
        };
        f.debug_struct("RenderTarget")
            .field("kind", &kind)
            .field("layout", &self.layout)
            .finish()
    }
}

impl RenderTarget {
    /// The buffer drawn into, for buffer targets.
    pub fn buffer(&self) -> Option<&Arc<ExternalBuffer>> {
        match &self.kind {
            TargetKind::Buffer(b) => Some(b),
            TargetKind::Image { .. } => None,
        }
    }

    /// The image drawn into, for image targets.
    pub fn image(&self) -> Option<&Arc<ExternalImage>> {
        match &self.kind {
            TargetKind::Image { image, .. } => Some(image),
            TargetKind::Buffer(_) => None,
        }
    }

    /// The image layout in the dma-buf.
    pub fn layout(&self) -> &ImageLayout {
        &self.layout
    }
}

impl Drop for RenderTarget {
    fn drop(&mut self) {
        let dev = self.renderer.ctx.device();
        // SAFETY: our pool (frees its set) and view; the caller finished the GPU work.
        unsafe {
            dev.destroy_descriptor_pool(self.pool, None);
            if let TargetKind::Image { view, .. } = &self.kind {
                dev.destroy_image_view(*view, None);
            }
        }
    }
}

impl PatternRenderer {
    /// Builds the pipelines from the checked-in SPIR-V.
    pub fn new(ctx: &Arc<VulkanContext>) -> Result<Self> {
        let dev = ctx.device();
        let buffer_pipe = Pipe::new(dev, PATTERN_SPV, vk::DescriptorType::STORAGE_BUFFER)?;
        let image_pipe = match Pipe::new(dev, PATTERN_IMAGE_SPV, vk::DescriptorType::STORAGE_IMAGE)
        {
            Ok(p) => p,
            Err(e) => {
                buffer_pipe.destroy(dev);
                return Err(e);
            }
        };
        Ok(PatternRenderer {
            inner: Arc::new(RendererInner {
                ctx: ctx.clone(),
                buffer_pipe,
                image_pipe,
            }),
        })
    }

    fn descriptor_set(
        &self,
        ty: vk::DescriptorType,
        set_layout: vk::DescriptorSetLayout,
    ) -> Result<(vk::DescriptorPool, vk::DescriptorSet)> {
        let dev = self.inner.ctx.device();
        let sizes = [vk::DescriptorPoolSize {
            ty,
            descriptor_count: 1,
        }];
        let info = vk::DescriptorPoolCreateInfo::default()
            .max_sets(1)
            .pool_sizes(&sizes);
        // SAFETY: valid device; arrays live across the call.
        let pool = unsafe { dev.create_descriptor_pool(&info, None) }
            .map_err(VulkanError::vk("vkCreateDescriptorPool"))?;
        let layouts = [set_layout];
        let info = vk::DescriptorSetAllocateInfo::default()
            .descriptor_pool(pool)
            .set_layouts(&layouts);
        // SAFETY: the pool has room for one set of this layout.
        match unsafe { dev.allocate_descriptor_sets(&info) } {
            Ok(s) => Ok((pool, s[0])),
            Err(e) => {
                // SAFETY: created above, unused.
                unsafe { dev.destroy_descriptor_pool(pool, None) };
                Err(VulkanError::vk("vkAllocateDescriptorSets")(e))
            }
        }
    }

    /// Prepares `buffer` as a target for a LINEAR 32-bit image with `layout`
    /// (plane offsets are dma-buf offsets; the buffer may start inside).
    pub fn target(
        &self,
        buffer: Arc<ExternalBuffer>,
        layout: &ImageLayout,
    ) -> Result<RenderTarget> {
        let bgra = bgra_order(layout.fourcc)
            .ok_or_else(|| VulkanError::Unsupported(format!("fourcc {:#010x}", layout.fourcc)))?;
        if layout.modifier != DRM_FORMAT_MOD_LINEAR {
            return Err(VulkanError::Unsupported(format!(
                "modifier {:#x}: buffer targets are LINEAR (use image_target)",
                layout.modifier
            )));
        }
        let plane = *layout
            .planes
            .first()
            .ok_or_else(|| VulkanError::Invalid("layout has no planes".into()))?;
        let rel = plane
            .offset
            .checked_sub(buffer.offset())
            .ok_or_else(|| VulkanError::Invalid("plane starts before the buffer".into()))?;
        let check = ImageLayout {
            size: buffer.size(),
            planes: vec![PlaneLayout {
                offset: rel,
                stride: plane.stride,
            }],
            ..layout.clone()
        };
        check.validate()?;
        if rel % 4 != 0 || plane.stride % 4 != 0 {
            return Err(VulkanError::Invalid(
                "offset and stride must be multiples of 4".into(),
            ));
        }
        let to_u32 = |v: u64| {
            u32::try_from(v / 4).map_err(|_| VulkanError::Invalid("buffer too large".into()))
        };
        let params = [
            layout.width,
            layout.height,
            to_u32(plane.stride)?,
            to_u32(rel)?,
            0,
            u32::from(bgra),
        ];
        let (pool, set) = self.descriptor_set(
            vk::DescriptorType::STORAGE_BUFFER,
            self.inner.buffer_pipe.set_layout,
        )?;
        let infos = [vk::DescriptorBufferInfo {
            buffer: buffer.handle(),
            offset: 0,
            range: vk::WHOLE_SIZE,
        }];
        let write = vk::WriteDescriptorSet::default()
            .dst_set(set)
            .dst_binding(0)
            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
            .buffer_info(&infos);
        // SAFETY: the set is new and unused by any command buffer.
        unsafe {
            self.inner
                .ctx
                .device()
                .update_descriptor_sets(&[write], &[])
        };
        Ok(RenderTarget {
            renderer: self.inner.clone(),
            kind: TargetKind::Buffer(buffer),
            pool,
            set,
            params,
            layout: layout.clone(),
        })
    }

    /// Prepares an image (any tiling: LINEAR or a DRM format modifier) made
    /// with STORAGE usage as a target; drawn through an R8G8B8A8 view.
    pub fn image_target(&self, image: Arc<ExternalImage>) -> Result<RenderTarget> {
        let layout = image.layout().clone();
        let bgra = match image.format() {
            vk::Format::B8G8R8A8_UNORM => true,
            vk::Format::R8G8B8A8_UNORM => false,
            f => return Err(VulkanError::Unsupported(format!("format {f:?}"))),
        };
        let dev = self.inner.ctx.device();
        let info = vk::ImageViewCreateInfo::default()
            .image(image.handle())
            .view_type(vk::ImageViewType::TYPE_2D)
            .format(vk::Format::R8G8B8A8_UNORM)
            .subresource_range(color_range());
        // SAFETY: valid image (MUTABLE_FORMAT when B8G8R8A8 with STORAGE usage).
        let view = unsafe { dev.create_image_view(&info, None) }
            .map_err(VulkanError::vk("vkCreateImageView"))?;
        let (pool, set) = match self.descriptor_set(
            vk::DescriptorType::STORAGE_IMAGE,
            self.inner.image_pipe.set_layout,
        ) {
            Ok(v) => v,
            Err(e) => {
                // SAFETY: created above, unused.
                unsafe { dev.destroy_image_view(view, None) };
                return Err(e);
            }
        };
        let infos = [vk::DescriptorImageInfo {
            sampler: vk::Sampler::null(),
            image_view: view,
            image_layout: vk::ImageLayout::GENERAL,
        }];
        let write = vk::WriteDescriptorSet::default()
            .dst_set(set)
            .dst_binding(0)
            .descriptor_type(vk::DescriptorType::STORAGE_IMAGE)
            .image_info(&infos);
        // SAFETY: the set is new and unused by any command buffer.
        unsafe { dev.update_descriptor_sets(&[write], &[]) };
        let params = [layout.width, layout.height, 0, 0, 0, u32::from(bgra)];
        Ok(RenderTarget {
            renderer: self.inner.clone(),
            kind: TargetKind::Image { image, view },
            pool,
            set,
            params,
            layout,
        })
    }

    /// Records frame `frame` into `cmd`: a barrier after earlier work (for
    /// images: a transition to GENERAL, discarding old contents since every
    /// pixel is rewritten), the dispatch, and a barrier that makes the pixels
    /// visible to later commands, the host and (through the submission's
    /// signal) other devices.
    pub fn record(&self, cmd: vk::CommandBuffer, target: &RenderTarget, frame: u32) {
        let dev = self.inner.ctx.device();
        let mut params = target.params;
        params[4] = frame;
        let mut bytes = [0u8; 24];
        for (chunk, v) in bytes.chunks_exact_mut(4).zip(params) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        let (pipe, image) = match &target.kind {
            TargetKind::Buffer(_) => (&self.inner.buffer_pipe, None),
            TargetKind::Image { image, .. } => (&self.inner.image_pipe, Some(image.handle())),
        };
        let before = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE)
            .dst_access_mask(vk::AccessFlags::SHADER_WRITE)];
        let after = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE)
            .dst_access_mask(
                vk::AccessFlags::MEMORY_READ
                    | vk::AccessFlags::HOST_READ
                    | vk::AccessFlags::TRANSFER_WRITE,
            )];
        let to_general: Vec<vk::ImageMemoryBarrier> = image
            .map(|i| {
                vk::ImageMemoryBarrier::default()
                    .src_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE)
                    .dst_access_mask(vk::AccessFlags::SHADER_WRITE)
                    .old_layout(vk::ImageLayout::UNDEFINED)
                    .new_layout(vk::ImageLayout::GENERAL)
                    .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                    .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                    .image(i)
                    .subresource_range(color_range())
            })
            .into_iter()
            .collect();
        let groups = (
            target.layout.width.div_ceil(LOCAL_SIZE),
            target.layout.height.div_ceil(LOCAL_SIZE),
        );
        // SAFETY: `cmd` is in the recording state (caller's contract); every
        // object bound is alive as long as `target` and `self`.
        unsafe {
            dev.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::ALL_COMMANDS,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::DependencyFlags::empty(),
                &before,
                &[],
                &to_general,
            );
            dev.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipe.pipeline);
            dev.cmd_bind_descriptor_sets(
                cmd,
                vk::PipelineBindPoint::COMPUTE,
                pipe.layout,
                0,
                &[target.set],
                &[],
            );
            dev.cmd_push_constants(cmd, pipe.layout, vk::ShaderStageFlags::COMPUTE, 0, &bytes);
            dev.cmd_dispatch(cmd, groups.0, groups.1, 1);
            dev.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::ALL_COMMANDS | vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &after,
                &[],
                &[],
            );
        }
    }
}

fn color_range() -> vk::ImageSubresourceRange {
    vk::ImageSubresourceRange {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        base_mip_level: 0,
        level_count: 1,
        base_array_layer: 0,
        layer_count: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws a frame on the CPU exactly as the shader does.
    fn cpu_frame(layout: &ImageLayout, frame: u32) -> Vec<u8> {
        let bgra = bgra_order(layout.fourcc).unwrap();
        let p = layout.planes[0];
        let mut bytes = vec![0u8; layout.size as usize];
        for y in 0..layout.height {
            for x in 0..layout.width {
                let at = (p.offset + u64::from(y) * p.stride + u64::from(x) * 4) as usize;
                let px = memory_bytes(pattern_pixel(x, y, layout.width, frame), bgra);
                bytes[at..at + 4].copy_from_slice(&px);
            }
        }
        bytes
    }

    #[test]
    fn check_and_decode_round_trip() {
        for fourcc in [DRM_FORMAT_XRGB8888, DRM_FORMAT_ABGR8888] {
            let layout = ImageLayout::linear(70, 20, fourcc, 64, 300, 64 + 300 * 20);
            for frame in [0u32, 1, 0x1234_5678, u32::MAX] {
                let bytes = cpu_frame(&layout, frame);
                check_frame(&bytes, &layout, frame).unwrap();
                assert_eq!(decode_frame_number(&bytes, &layout), Some(frame));
                let err = check_frame(&bytes, &layout, frame.wrapping_add(1)).unwrap_err();
                assert!(err.y < layout.height && err.x < layout.width);
            }
        }
    }

    #[test]
    fn a_single_wrong_pixel_is_found() {
        let layout = ImageLayout::linear(40, 30, DRM_FORMAT_ARGB8888, 0, 160, 160 * 30);
        let mut bytes = cpu_frame(&layout, 9);
        let at = (25 * 160 + 33 * 4) as usize;
        bytes[at] ^= 1;
        let err = check_frame(&bytes, &layout, 9).unwrap_err();
        assert_eq!((err.x, err.y), (33, 25));
        // A truncated buffer is a mismatch, not a panic.
        assert!(check_frame(&bytes[..100], &layout, 9).is_err());
        assert_eq!(decode_frame_number(&bytes[..10], &layout), None);
    }

    #[test]
    fn every_frame_bit_is_visible() {
        for bit in 0..32 {
            let w = 96;
            let x = (31 - bit) * w / 32;
            assert_eq!(pattern_pixel(x, 0, w, 1 << bit)[0], 255);
            assert_eq!(pattern_pixel(x, 0, w, !(1 << bit))[0], 0);
        }
    }
}
