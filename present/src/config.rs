//! What a [`Presenter`](crate::Presenter) is built from: the render
//! device, the display, and the choices the caller may make (buffers,
//! presentation mode, strategy, formats, time bounds). Everything has a
//! default that works.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bufsync_backends::dmabuf::fourcc;
use bufsync_backends::drm::DrmDevice;
use bufsync_backends::kms::OutputSpec;
use bufsync_backends::vulkan::{ash::vk, VulkanContext};

/// The device that renders.
#[derive(Debug, Clone)]
pub enum RenderDevice {
    /// A Vulkan device: the application's own (wrap its handles with
    /// [`VulkanContext::from_application`]) or one bufsync creates
    /// ([`VulkanContext::new`]).
    Vulkan(Arc<VulkanContext>),
    /// A GEM device whose buffers the application draws with the CPU
    /// (vgem, or any driver without Vulkan): frames are dumb buffers on it,
    /// or display buffers it imports.
    Gem(Arc<DrmDevice>),
}

impl RenderDevice {
    /// A short name for messages (`vulkan (llvmpipe ...)`, `vgem`).
    pub fn name(&self) -> String {
        match self {
            RenderDevice::Vulkan(ctx) => format!("vulkan ({})", ctx.caps().device_name),
            RenderDevice::Gem(dev) => format!("{} (CPU)", dev.driver()),
        }
    }
}

/// Where the display is.
#[derive(Debug)]
pub enum DisplayTarget {
    /// The first primary node whose driver has this name (`vkms`,
    /// `virtio_gpu`, `i915`...).
    Driver(String),
    /// A primary node's path (`/dev/dri/card0`).
    Path(PathBuf),
    /// An already open primary node (e.g. from a seat manager or a C
    /// caller's fd).
    Device(DrmDevice),
}

impl DisplayTarget {
    /// A driver name, or a path when `s` starts with `/`.
    pub fn parse(s: &str) -> DisplayTarget {
        if s.starts_with('/') {
            DisplayTarget::Path(PathBuf::from(s))
        } else {
            DisplayTarget::Driver(s.to_string())
        }
    }
}

/// How frames reach the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresentMode {
    /// Every presented frame is shown, in order, one per vblank:
    /// [`Presenter::present`](crate::Presenter::present) waits for the
    /// previous flip first.
    #[default]
    Fifo,
    /// The newest ready frame is shown at each vblank; older ones that were
    /// not shown yet are dropped. Present never waits for a flip.
    Mailbox,
}

impl PresentMode {
    /// Parses `fifo` or `mailbox`.
    pub fn parse(s: &str) -> Option<PresentMode> {
        match s {
            "fifo" => Some(PresentMode::Fifo),
            "mailbox" => Some(PresentMode::Mailbox),
            _ => None,
        }
    }

    /// `fifo` or `mailbox`.
    pub fn name(self) -> &'static str {
        match self {
            PresentMode::Fifo => "fifo",
            PresentMode::Mailbox => "mailbox",
        }
    }
}

/// Which buffer strategy to use; `Auto` tries them in the order of
/// [`Negotiation`](crate::Negotiation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrategyChoice {
    /// render-alloc, then display-alloc, then copy.
    #[default]
    Auto,
    /// Only render-allocated buffers the display imports.
    RenderAlloc,
    /// Only display-allocated buffers the renderer imports.
    DisplayAlloc,
    /// Only a copy from the renderer's buffers into display buffers.
    Copy,
}

impl StrategyChoice {
    /// Parses `auto`, `render-alloc`, `display-alloc` or `copy`.
    pub fn parse(s: &str) -> Option<StrategyChoice> {
        match s {
            "auto" => Some(StrategyChoice::Auto),
            "render-alloc" => Some(StrategyChoice::RenderAlloc),
            "display-alloc" => Some(StrategyChoice::DisplayAlloc),
            "copy" => Some(StrategyChoice::Copy),
            _ => None,
        }
    }
}

/// Which allocator display-allocated buffers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocatorChoice {
    /// GBM where the `gbm` feature is built and the device has a GBM
    /// backend, else dumb buffers.
    #[default]
    Auto,
    /// Mesa's GBM on the display device (feature `gbm`).
    Gbm,
    /// `DRM_IOCTL_MODE_CREATE_DUMB`.
    Dumb,
}

/// How the render → display edge is synchronized; `Auto` picks by
/// probed capability, per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdgeChoice {
    /// `IN_FENCE_FD` when the render fence has a pending sync_file form and
    /// the plane has the property; `IMPORT_SYNC_FILE` when it has the form
    /// but the plane lacks the property; a software wait otherwise.
    #[default]
    Auto,
    /// Prefer `IN_FENCE_FD` (falls back like `Auto`).
    InFence,
    /// Prefer `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` into the frame and a flip
    /// without an in-fence (the kernel's implicit sync; falls back to a
    /// software wait).
    Implicit,
    /// Always wait for the render fence in software (bounded) before the
    /// flip.
    Software,
}

/// DRM_FORMAT_XRGB8888.
pub const XRGB8888: u32 = fourcc(b"XR24");
/// DRM_FORMAT_ARGB8888.
pub const ARGB8888: u32 = fourcc(b"AR24");

/// A presenter's configuration.
#[derive(Debug, Clone)]
pub struct PresenterConfig {
    /// The output: connector and mode (default: the first connected
    /// connector, its preferred mode).
    pub output: OutputSpec,
    /// Buffers in rotation (at least 2; default 3; mailbox drops frames
    /// only with 4 or more).
    pub buffers: usize,
    /// FIFO or mailbox.
    pub mode: PresentMode,
    /// The buffer strategy.
    pub strategy: StrategyChoice,
    /// Where display-allocated buffers come from.
    pub allocator: AllocatorChoice,
    /// The render → display edge.
    pub edge: EdgeChoice,
    /// DRM formats in order of preference (default XRGB8888, ARGB8888).
    pub formats: Vec<u32>,
    /// Usage of Vulkan frame images (default STORAGE, TRANSFER_SRC,
    /// TRANSFER_DST).
    pub image_usage: vk::ImageUsageFlags,
    /// Bound on every wait for a render fence (software wait, CPU copy).
    pub render_timeout: Duration,
    /// Bound on every wait for a flip or a capture.
    pub flip_timeout: Duration,
}

impl Default for PresenterConfig {
    fn default() -> Self {
        PresenterConfig {
            output: OutputSpec::default(),
            buffers: 3,
            mode: PresentMode::Fifo,
            strategy: StrategyChoice::Auto,
            allocator: AllocatorChoice::Auto,
            edge: EdgeChoice::Auto,
            formats: vec![XRGB8888, ARGB8888],
            image_usage: vk::ImageUsageFlags::STORAGE
                | vk::ImageUsageFlags::TRANSFER_SRC
                | vk::ImageUsageFlags::TRANSFER_DST,
            render_timeout: Duration::from_secs(2),
            flip_timeout: Duration::from_secs(2),
        }
    }
}
