//! One buffer slot per strategy: who allocates, who imports, and the
//! checks before the TEST_ONLY commit. Each builder returns the slot or
//! the [`Refusal`] of the step that failed, with its errno.
//!
//! Locking: none; builders run at creation, on the presenter's thread.

use std::sync::Arc;

use bufsync_backends::dmabuf::{DmaBuf, DmaBufMap, Layout, MOD_LINEAR};
use bufsync_backends::drm::{DumbBuffer, GemHandle};
use bufsync_backends::kms::{Display, Framebuffer};
use bufsync_backends::vulkan::{
    ash::vk, vk_format, ExternalBuffer, ExternalImage, ImageLayout, VulkanContext,
};

use crate::config::RenderDevice;
use crate::frame::{CpuTarget, FrameTarget};
use crate::strategy::{Allocator, CopyEngine, Refusal, Strategy};

/// What every builder needs.
pub(crate) struct Env<'a> {
    pub display: &'a Display,
    pub render: &'a RenderDevice,
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    pub usage: vk::ImageUsageFlags,
    /// Made on first use (a GBM device loads Mesa's driver for the
    /// display); `Err` holds why it could not be.
    #[cfg(feature = "gbm")]
    pub gbm: &'a std::cell::OnceCell<Result<bufsync_backends::dmabuf::GbmAllocator, String>>,
}

impl Env<'_> {
    /// The GBM device of the display, made on first use.
    #[cfg(feature = "gbm")]
    fn gbm(&self) -> Result<&bufsync_backends::dmabuf::GbmAllocator, &str> {
        self.gbm
            .get_or_init(|| {
                bufsync_backends::dmabuf::GbmAllocator::new(self.display.device())
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// What keeps a slot's memory alive besides its dma-bufs.
#[derive(Debug)]
#[allow(dead_code)] // held for their drop
enum Keep {
    Dumb(Arc<DumbBuffer>),
    #[cfg(feature = "gbm")]
    Gbm(bufsync_backends::dmabuf::GbmBuffer),
    Import(GemHandle),
}

/// The buffers of one slot.
#[derive(Debug)]
pub(crate) struct SlotBuffers {
    /// What the plane scans out (its reservation is the slot's display
    /// reservation).
    pub display: Arc<DmaBuf>,
    /// Its framebuffer on the display.
    pub fb: Framebuffer,
    /// What the renderer draws into.
    pub target: FrameTarget,
    /// Copy strategy: the renderer's own buffer.
    pub render: Option<Arc<DmaBuf>>,
    /// GPU copy: the display buffer imported by the renderer.
    pub copy_dst: Option<ExternalBuffer>,
    /// CPU copy: the mappings of the render buffer and the display buffer
    /// (made once: faulting a frame's pages in every frame costs more than
    /// the copy).
    pub cpu_maps: Option<(DmaBufMap, DmaBufMap)>,
    /// The modifier of the display buffer.
    pub modifier: u64,
    _keep: Vec<Keep>,
}

impl SlotBuffers {
    /// A zero-copy slot: the renderer draws straight into what the plane
    /// scans out.
    fn zero_copy(
        display: Arc<DmaBuf>,
        fb: Framebuffer,
        target: FrameTarget,
        keep: Vec<Keep>,
    ) -> SlotBuffers {
        SlotBuffers {
            modifier: layout_of(&display).modifier,
            display,
            fb,
            target,
            render: None,
            copy_dst: None,
            cpu_maps: None,
            _keep: keep,
        }
    }
}

fn layout_of(buf: &DmaBuf) -> &Layout {
    buf.layout().expect("built with a layout")
}

/// A Vulkan image exported with `modifiers` (LINEAR when empty) as a
/// dma-buf carrying `fourcc` (the display's name for the same memory
/// layout: XR24 and AR24 are both B8G8R8A8).
fn export_image(
    ctx: &Arc<VulkanContext>,
    env: &Env<'_>,
    modifiers: &[u64],
    strategy: Strategy,
) -> Result<(Arc<ExternalImage>, Arc<DmaBuf>), Refusal> {
    let format = vk_format(env.fourcc).ok_or_else(|| {
        Refusal::check(
            strategy,
            "format",
            format!("no Vulkan format for {:#x}", env.fourcc),
        )
    })?;
    let (image, fd) = ExternalImage::export_with_modifiers(
        ctx, env.width, env.height, format, env.usage, modifiers,
    )
    .map_err(|e| Refusal::vulkan(strategy, "Vulkan dma-buf export", &e))?;
    let mut layout = image
        .layout()
        .to_dmabuf()
        .map_err(|e| Refusal::vulkan(strategy, "exported layout", &e))?;
    layout.fourcc = env.fourcc;
    let buf = DmaBuf::from_fd(fd)
        .and_then(|b| b.with_layout(layout))
        .map_err(|e| Refusal::device(strategy, "exported dma-buf", &e))?;
    Ok((Arc::new(image), Arc::new(buf)))
}

/// A dumb buffer on `dev` exported read-write with the chosen format.
fn dumb_buffer(
    dev: &Arc<bufsync_backends::drm::DrmDevice>,
    env: &Env<'_>,
    strategy: Strategy,
) -> Result<(Arc<DumbBuffer>, Arc<DmaBuf>), Refusal> {
    let step = |what: &str| format!("{what} on {}", dev.driver());
    let dumb = DumbBuffer::create(dev, env.width, env.height, 32)
        .map_err(|e| Refusal::device(strategy, step("DRM_IOCTL_MODE_CREATE_DUMB"), &e))?;
    let buf = dumb
        .export(env.fourcc)
        .map_err(|e| Refusal::device(strategy, step("PRIME export"), &e))?;
    Ok((Arc::new(dumb), Arc::new(buf)))
}

/// The render device's side of a buffer it allocates (render-alloc, and
/// the render buffers of copy): `modifiers` as negotiated (Vulkan only).
fn render_buffer(
    env: &Env<'_>,
    modifiers: &[u64],
    strategy: Strategy,
) -> Result<(FrameTarget, Arc<DmaBuf>, Option<Keep>), Refusal> {
    match env.render {
        RenderDevice::Vulkan(ctx) => {
            let (image, buf) = export_image(ctx, env, modifiers, strategy)?;
            Ok((FrameTarget::Vulkan(image), buf, None))
        }
        RenderDevice::Gem(dev) => {
            let (dumb, buf) = dumb_buffer(dev, env, strategy)?;
            let target = FrameTarget::Cpu(CpuTarget {
                dmabuf: buf.clone(),
                dumb: Some(dumb.clone()),
            });
            Ok((target, buf, Some(Keep::Dumb(dumb))))
        }
    }
}

/// The modifiers both the plane (for the format) and the renderer take,
/// LINEAR last; `Err` with both lists when none is common.
fn common_modifiers(env: &Env<'_>, strategy: Strategy) -> Result<Vec<u64>, Refusal> {
    let plane: Vec<u64> = env.display.formats().modifiers(env.fourcc).to_vec();
    let render: Vec<u64> = match env.render {
        RenderDevice::Vulkan(ctx) => match vk_format(env.fourcc) {
            Some(f) => {
                let mut m = ExternalImage::exportable_modifiers(ctx, f, env.usage);
                if m.is_empty() && ctx.caps().dmabuf_linear_image.export {
                    m.push(MOD_LINEAR);
                }
                m
            }
            None => Vec::new(),
        },
        RenderDevice::Gem(_) => vec![MOD_LINEAR],
    };
    let mut common: Vec<u64> = render
        .iter()
        .copied()
        .filter(|m| plane.contains(m))
        .collect();
    common.sort_by_key(|&m| m == MOD_LINEAR);
    if common.is_empty() {
        return Err(Refusal::check(
            strategy,
            "modifiers",
            format!("plane takes {plane:#x?}, renderer offers {render:#x?}: none in common"),
        ));
    }
    Ok(common)
}

/// Modifiers to pass to the Vulkan export: the common list, or none (a
/// plain LINEAR image) when LINEAR is all there is or the driver has no
/// modifier extension.
fn export_list(env: &Env<'_>, common: &[u64]) -> Vec<u64> {
    let explicit = match env.render {
        RenderDevice::Vulkan(ctx) => ctx.caps().image_drm_format_modifier,
        RenderDevice::Gem(_) => false,
    };
    if !explicit || common == [MOD_LINEAR] {
        Vec::new()
    } else {
        common.to_vec()
    }
}

/// a. The renderer allocates and exports; the display imports.
pub(crate) fn render_alloc(env: &Env<'_>) -> Result<SlotBuffers, Refusal> {
    let s = Strategy::RenderAlloc;
    let common = common_modifiers(env, s)?;
    let (target, buf, keep) = render_buffer(env, &export_list(env, &common), s)?;
    let fb = env.display.import_framebuffer(&buf).map_err(|e| {
        Refusal::kms(
            s,
            format!("PRIME import + ADDFB2 on {}", env.display.driver()),
            &e,
        )
    })?;
    Ok(SlotBuffers::zero_copy(
        buf,
        fb,
        target,
        keep.into_iter().collect(),
    ))
}

/// A display-allocated buffer: the dma-buf, its framebuffer, what keeps it,
/// and the dumb buffer when it is one.
type DisplayBuffer = (Arc<DmaBuf>, Framebuffer, Keep, Option<Arc<DumbBuffer>>);

/// A display-allocated buffer and its framebuffer (over the display's own
/// handle: no PRIME round trip on the owner's fd).
fn display_buffer(
    env: &Env<'_>,
    allocator: Allocator,
    modifiers: &[u64],
    strategy: Strategy,
) -> Result<DisplayBuffer, Refusal> {
    let dev = env.display.device();
    let on = |what: &str| format!("{what} on {}", dev.driver());
    match allocator {
        Allocator::Dumb => {
            let (dumb, buf) = dumb_buffer(dev, env, strategy)?;
            let fb = env
                .display
                .add_framebuffer(dumb.handle(), dumb.size(), layout_of(&buf))
                .map_err(|e| Refusal::kms(strategy, on("ADDFB2"), &e))?;
            Ok((buf, fb, Keep::Dumb(dumb.clone()), Some(dumb)))
        }
        #[cfg(feature = "gbm")]
        Allocator::Gbm => {
            let gbm = env
                .gbm()
                .map_err(|e| Refusal::check(strategy, on("gbm_create_device"), e))?;
            let mods: Vec<u64> = if modifiers == [MOD_LINEAR] {
                Vec::new()
            } else {
                modifiers.to_vec()
            };
            let bo = gbm
                .create_buffer(env.width, env.height, env.fourcc, &mods)
                .map_err(|e| Refusal::device(strategy, on("gbm_bo_create"), &e))?;
            // GBM owns the BO's handle on its own fd; the display imports
            // the BO (PRIME, on the device that allocated it) into its
            // fd's handle table.
            let fb = env
                .display
                .import_framebuffer(bo.dmabuf())
                .map_err(|e| Refusal::kms(strategy, on("PRIME import + ADDFB2"), &e))?;
            let buf = Arc::new(
                bo.dmabuf()
                    .try_clone()
                    .map_err(|e| Refusal::device(strategy, "dup", &e))?,
            );
            Ok((buf, fb, Keep::Gbm(bo), None))
        }
        #[cfg(not(feature = "gbm"))]
        Allocator::Gbm => {
            let _ = modifiers;
            Err(Refusal::check(
                strategy,
                "GBM",
                "bufsync-present was built without the `gbm` feature",
            ))
        }
    }
}

/// b. The display allocates; the renderer imports.
pub(crate) fn display_alloc(env: &Env<'_>, allocator: Allocator) -> Result<SlotBuffers, Refusal> {
    let s = Strategy::DisplayAlloc(allocator);
    let common = common_modifiers(env, s)?;
    let (buf, fb, keep, dumb) = display_buffer(env, allocator, &common, s)?;
    let mut keeps = vec![keep];
    let target = match env.render {
        RenderDevice::Vulkan(ctx) => {
            let layout = ImageLayout::from_dmabuf(layout_of(&buf), buf.size());
            let image = ExternalImage::import(ctx, buf.fd(), &layout, env.usage).map_err(|e| {
                Refusal::vulkan(
                    s,
                    format!("Vulkan import of a {} buffer", env.display.driver()),
                    &e,
                )
            })?;
            FrameTarget::Vulkan(Arc::new(image))
        }
        RenderDevice::Gem(dev) => {
            let handle = dev
                .import_dmabuf(&buf)
                .map_err(|e| Refusal::device(s, format!("PRIME import on {}", dev.driver()), &e))?;
            keeps.push(Keep::Import(handle));
            FrameTarget::Cpu(CpuTarget {
                dmabuf: buf.clone(),
                dumb,
            })
        }
    };
    Ok(SlotBuffers::zero_copy(buf, fb, target, keeps))
}

/// c. The renderer draws into its own LINEAR buffers; frames are copied
/// into display-allocated ones by `engine`.
pub(crate) fn copy(
    env: &Env<'_>,
    engine: CopyEngine,
    allocator: Allocator,
) -> Result<SlotBuffers, Refusal> {
    let s = Strategy::Copy(engine, allocator);
    if engine == CopyEngine::Gpu && matches!(env.render, RenderDevice::Gem(_)) {
        return Err(Refusal::check(
            s,
            "GPU copy",
            "a CPU renderer has no GPU to copy with",
        ));
    }
    let plane = env.display.formats().modifiers(env.fourcc);
    let display_mods: Vec<u64> = if plane.contains(&MOD_LINEAR) {
        vec![MOD_LINEAR]
    } else {
        plane.to_vec()
    };
    let (buf, fb, keep, _dumb) = display_buffer(env, allocator, &display_mods, s)?;
    let mut keeps = vec![keep];
    let (target, render, render_keep) = render_buffer(env, &[], s)?;
    keeps.extend(render_keep);
    let mut copy_dst = None;
    let mut cpu_maps = None::<(DmaBufMap, DmaBufMap)>;
    match engine {
        CopyEngine::Gpu => {
            let RenderDevice::Vulkan(ctx) = env.render else {
                unreachable!("checked above")
            };
            let dst = ExternalBuffer::import(
                ctx,
                buf.fd(),
                0,
                buf.size(),
                vk::BufferUsageFlags::TRANSFER_DST,
            )
            .map_err(|e| {
                Refusal::vulkan(
                    s,
                    format!("Vulkan import of a {} buffer", env.display.driver()),
                    &e,
                )
            })?;
            copy_dst = Some(dst);
        }
        CopyEngine::Cpu => {
            let from = render
                .map_copies(false)
                .map_err(|e| Refusal::device(s, "mmap of the render buffer", &e))?;
            let to = buf.map_copies(true).map_err(|e| {
                Refusal::device(
                    s,
                    format!("mmap of the {} buffer", env.display.driver()),
                    &e,
                )
            })?;
            cpu_maps = Some((from, to));
        }
    }
    if layout_of(&buf).modifier != MOD_LINEAR {
        return Err(Refusal::check(
            s,
            "display buffer layout",
            format!(
                "modifier {:#x}: copies write LINEAR rows",
                layout_of(&buf).modifier
            ),
        ));
    }
    Ok(SlotBuffers {
        modifier: layout_of(&buf).modifier,
        display: buf,
        fb,
        target,
        render: Some(render),
        copy_dst,
        cpu_maps,
        _keep: keeps,
    })
}
