//! The demo's renderer: an animated test pattern drawn by a compute shader
//! into a dma-buf-backed buffer with an image layout (offset, stride,
//! fourcc), so KMS can scan it out and a checker can verify every pixel.
//!
//! The pattern (`shaders/pattern.comp`, twin: [`pattern_pixel`]): the top
//! [`STRIP_ROWS`] rows encode the frame number as 32 black/white blocks (MSB
//! left); every other pixel is `((x + 4f) & 255, (y + 2f) & 255, (x ^ y ^ f) & 255)`.
//!
//! Locking: none. A [`RenderTarget`] owns its descriptor set (its own small
//! pool), so recording needs no shared mutable state; the caller owns the
//! command buffer.

use std::sync::Arc;

use ash::vk;

use super::context::VulkanContext;
use super::error::{Result, VulkanError};
use super::memory::{
    ExternalBuffer, ImageLayout, DRM_FORMAT_ABGR8888, DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_LINEAR,
    DRM_FORMAT_XBGR8888, DRM_FORMAT_XRGB8888,
};

/// Rows at the top that carry the frame number.
pub const STRIP_ROWS: u32 = 16;

/// The compiled shader (checked in; `shaders/build.sh` regenerates it).
const PATTERN_SPV: &[u8] = include_bytes!("../../../shaders/pattern.comp.spv");

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

struct RendererInner {
    ctx: Arc<VulkanContext>,
    module: vk::ShaderModule,
    set_layout: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    pipeline: vk::Pipeline,
}

impl Drop for RendererInner {
    fn drop(&mut self) {
        let dev = self.ctx.device();
        // SAFETY: our objects; every target holds an Arc of us and command
        // buffers using the pipeline are the caller's to have finished.
        unsafe {
            dev.destroy_pipeline(self.pipeline, None);
            dev.destroy_pipeline_layout(self.layout, None);
            dev.destroy_descriptor_set_layout(self.set_layout, None);
            dev.destroy_shader_module(self.module, None);
        }
    }
}

/// The compute pipeline that draws the test pattern.
pub struct PatternRenderer {
    inner: Arc<RendererInner>,
}

impl std::fmt::Debug for PatternRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternRenderer")
            .field("pipeline", &self.inner.pipeline)
            .finish()
    }
}

/// A buffer the renderer draws into: a descriptor set plus the image layout.
pub struct RenderTarget {
    renderer: Arc<RendererInner>,
    buffer: Arc<ExternalBuffer>,
    pool: vk::DescriptorPool,
    set: vk::DescriptorSet,
    params: [u32; 6],
    layout: ImageLayout,
}

impl std::fmt::Debug for RenderTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderTarget")
            .field("buffer", &self.buffer)
            .field("layout", &self.layout)
            .finish()
    }
}

impl RenderTarget {
    /// The buffer drawn into.
    pub fn buffer(&self) -> &Arc<ExternalBuffer> {
        &self.buffer
    }

    /// The image layout in the dma-buf.
    pub fn layout(&self) -> &ImageLayout {
        &self.layout
    }
}

impl Drop for RenderTarget {
    fn drop(&mut self) {
        // SAFETY: our pool (frees its set); the caller finished the GPU work.
        unsafe {
            self.renderer
                .ctx
                .device()
                .destroy_descriptor_pool(self.pool, None)
        };
    }
}

impl PatternRenderer {
    /// Builds the pipeline from the checked-in SPIR-V.
    pub fn new(ctx: &Arc<VulkanContext>) -> Result<Self> {
        let dev = ctx.device();
        let code = ash::util::read_spv(&mut std::io::Cursor::new(PATTERN_SPV))
            .map_err(|e| VulkanError::Invalid(format!("pattern.comp.spv: {e}")))?;
        // SAFETY: valid device; `code` is validated SPIR-V (shaders/build.sh).
        let module = unsafe {
            dev.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&code), None)
        }
        .map_err(VulkanError::vk("vkCreateShaderModule"))?;
        let mut inner = RendererInner {
            ctx: ctx.clone(),
            module,
            set_layout: vk::DescriptorSetLayout::null(),
            layout: vk::PipelineLayout::null(),
            pipeline: vk::Pipeline::null(),
        };
        let bindings = [vk::DescriptorSetLayoutBinding::default()
            .binding(0)
            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(1)
            .stage_flags(vk::ShaderStageFlags::COMPUTE)];
        // SAFETY: valid device; arrays live across the call.
        inner.set_layout = unsafe {
            dev.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                None,
            )
        }
        .map_err(VulkanError::vk("vkCreateDescriptorSetLayout"))?;
        let set_layouts = [inner.set_layout];
        let ranges = [vk::PushConstantRange::default()
            .stage_flags(vk::ShaderStageFlags::COMPUTE)
            .offset(0)
            .size(24)];
        let info = vk::PipelineLayoutCreateInfo::default()
            .set_layouts(&set_layouts)
            .push_constant_ranges(&ranges);
        // SAFETY: as above.
        inner.layout = unsafe { dev.create_pipeline_layout(&info, None) }
            .map_err(VulkanError::vk("vkCreatePipelineLayout"))?;
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(c"main");
        let info = [vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(inner.layout)];
        // SAFETY: as above.
        let pipelines =
            unsafe { dev.create_compute_pipelines(vk::PipelineCache::null(), &info, None) }
                .map_err(|(_, e)| VulkanError::vk("vkCreateComputePipelines")(e))?;
        inner.pipeline = pipelines[0];
        Ok(PatternRenderer {
            inner: Arc::new(inner),
        })
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
                "modifier {:#x} (buffer targets are LINEAR)",
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
            planes: vec![super::memory::PlaneLayout {
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
        let dev = self.inner.ctx.device();
        let sizes = [vk::DescriptorPoolSize {
            ty: vk::DescriptorType::STORAGE_BUFFER,
            descriptor_count: 1,
        }];
        // SAFETY: valid device; arrays live across the call.
        let pool = unsafe {
            dev.create_descriptor_pool(
                &vk::DescriptorPoolCreateInfo::default()
                    .max_sets(1)
                    .pool_sizes(&sizes),
                None,
            )
        }
        .map_err(VulkanError::vk("vkCreateDescriptorPool"))?;
        let layouts = [self.inner.set_layout];
        // SAFETY: pool has room for one set of this layout.
        let sets = unsafe {
            dev.allocate_descriptor_sets(
                &vk::DescriptorSetAllocateInfo::default()
                    .descriptor_pool(pool)
                    .set_layouts(&layouts),
            )
        };
        let set = match sets {
            Ok(s) => s[0],
            Err(e) => {
                // SAFETY: created above, unused.
                unsafe { dev.destroy_descriptor_pool(pool, None) };
                return Err(VulkanError::vk("vkAllocateDescriptorSets")(e));
            }
        };
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
        unsafe { dev.update_descriptor_sets(&[write], &[]) };
        Ok(RenderTarget {
            renderer: self.inner.clone(),
            buffer,
            pool,
            set,
            params,
            layout: layout.clone(),
        })
    }

    /// Records frame `frame` into `cmd`: a barrier after earlier work, the
    /// dispatch, and a barrier that makes the pixels visible to later
    /// commands, the host and (through the submission's signal) other devices.
    pub fn record(&self, cmd: vk::CommandBuffer, target: &RenderTarget, frame: u32) {
        let dev = self.inner.ctx.device();
        let mut params = target.params;
        params[4] = frame;
        let mut bytes = [0u8; 24];
        for (chunk, v) in bytes.chunks_exact_mut(4).zip(params) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
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
                &[],
            );
            dev.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, self.inner.pipeline);
            dev.cmd_bind_descriptor_sets(
                cmd,
                vk::PipelineBindPoint::COMPUTE,
                self.inner.layout,
                0,
                &[target.set],
                &[],
            );
            dev.cmd_push_constants(
                cmd,
                self.inner.layout,
                vk::ShaderStageFlags::COMPUTE,
                0,
                &bytes,
            );
            dev.cmd_dispatch(
                cmd,
                target.layout.width.div_ceil(LOCAL_SIZE),
                target.layout.height.div_ceil(LOCAL_SIZE),
                1,
            );
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
