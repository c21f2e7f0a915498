//! The demo's renderer: an animated test pattern drawn by a compute shader
//! into dma-buf memory, so KMS can scan it out and a checker can verify
//! every pixel. Two targets: a buffer with an image layout (offset, stride,
//! fourcc; `examples/shaders/pattern.comp`, LINEAR only) and a storage image
//! of any tiling, DRM-modifier images included
//! (`examples/shaders/pattern_image.comp`).
//!
//! The pattern (`examples/shaders/pattern.glsl`; its CPU twin and the
//! checks are in [`crate::check`]).
//!
//! Locking: none. A [`RenderTarget`] owns its descriptor set (its own small
//! pool), so recording needs no shared mutable state; the caller owns the
//! command buffer.

use std::sync::Arc;

use bufsync_backends::vulkan::{
    ash::{self, vk},
    ExternalBuffer, ExternalImage, ImageLayout, PlaneLayout, Result, VulkanContext, VulkanError,
    DRM_FORMAT_MOD_LINEAR,
};

use crate::check::bgra_order;

/// A Vulkan result's error for `call`.
fn vk_err(call: &'static str) -> impl FnOnce(vk::Result) -> VulkanError {
    move |result| VulkanError::Vk { call, result }
}

/// The compiled shader (checked in; `examples/shaders/build.sh` regenerates it).
const PATTERN_SPV: &[u8] = include_bytes!("../../shaders/pattern.comp.spv");
/// The storage-image variant (any tiling).
const PATTERN_IMAGE_SPV: &[u8] = include_bytes!("../../shaders/pattern_image.comp.spv");

const LOCAL_SIZE: u32 = 8;

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
        .map_err(vk_err("vkCreateShaderModule"))?;
        let bindings = [vk::DescriptorSetLayoutBinding::default()
            .binding(0)
            .descriptor_type(ty)
            .descriptor_count(1)
            .stage_flags(vk::ShaderStageFlags::COMPUTE)];
        let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
        // SAFETY: valid device; arrays live across the call.
        self.set_layout = unsafe { dev.create_descriptor_set_layout(&info, None) }
            .map_err(vk_err("vkCreateDescriptorSetLayout"))?;
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
            .map_err(vk_err("vkCreatePipelineLayout"))?;
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
                .map_err(|(_, e)| vk_err("vkCreateComputePipelines")(e))?;
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
            .map_err(vk_err("vkCreateDescriptorPool"))?;
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
                Err(vk_err("vkAllocateDescriptorSets")(e))
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
        let view =
            unsafe { dev.create_image_view(&info, None) }.map_err(vk_err("vkCreateImageView"))?;
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
