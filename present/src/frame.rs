//! What the renderer gets from [`Presenter::acquire`](crate::Presenter::acquire)
//! ([`Frame`]: a buffer and what to wait for before writing it) and what
//! it gives back to [`Presenter::present`](crate::Presenter::present)
//! ([`RenderDone`]).
//!
//! Locking: none. A [`Frame`] is owned by the caller between acquire and
//! present; its target's memory belongs to the caller's renderer until
//! then.

use std::sync::Arc;

use bufsync::fence::{Fence, FenceSet};
use bufsync_backends::dmabuf::{DmaBuf, Layout};
use bufsync_backends::drm::DumbBuffer;
use bufsync_backends::sync_file::{SyncFile, SyncFileFence};
use bufsync_backends::vulkan::{ExternalImage, TimelineSemaphore};

/// A buffer to render the next frame into.
///
/// Before writing it, the renderer waits for [`Frame::wait_fences`] (on the
/// GPU where it can: a Vulkan submission takes them as waits, or
/// [`Presenter::acquire_semaphore`](crate::Presenter::acquire_semaphore)
/// gives one semaphore for them). Hand it back with
/// [`Presenter::present`](crate::Presenter::present), or
/// [`Presenter::cancel`](crate::Presenter::cancel) to give it back unshown.
#[derive(Debug)]
#[must_use = "a frame not presented or cancelled stays out of rotation"]
pub struct Frame {
    pub(crate) presenter: u64,
    pub(crate) slot: usize,
    pub(crate) number: u64,
    pub(crate) waits: FenceSet,
    pub(crate) target: FrameTarget,
}

impl Frame {
    /// The buffer slot (0..buffers).
    pub fn index(&self) -> usize {
        self.slot
    }

    /// The frame's number: 0, 1, 2... in acquire order.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// What the renderer must wait for before writing the buffer: the
    /// buffer's readers (the out-fence of the flip that took it off
    /// screen) and earlier writers; signaled ones left out.
    pub fn wait_fences(&self) -> &FenceSet {
        &self.waits
    }

    /// What to render into.
    pub fn target(&self) -> &FrameTarget {
        &self.target
    }
}

/// What a frame is rendered into.
#[derive(Debug, Clone)]
pub enum FrameTarget {
    /// A Vulkan image on the render device (dma-buf memory), in
    /// `VK_IMAGE_LAYOUT_GENERAL` when handed out and expected so when
    /// presented.
    Vulkan(Arc<ExternalImage>),
    /// A buffer the CPU draws into (GEM render devices).
    Cpu(CpuTarget),
}

impl FrameTarget {
    /// The Vulkan image, for Vulkan targets.
    pub fn image(&self) -> Option<&Arc<ExternalImage>> {
        match self {
            FrameTarget::Vulkan(i) => Some(i),
            FrameTarget::Cpu(_) => None,
        }
    }

    /// The CPU target, for GEM render devices.
    pub fn cpu(&self) -> Option<&CpuTarget> {
        match self {
            FrameTarget::Cpu(c) => Some(c),
            FrameTarget::Vulkan(_) => None,
        }
    }
}

/// A buffer drawn by the CPU: the dma-buf and, when its owner is a dumb
/// buffer, that buffer for a mapping through its own device (as a GPU
/// writes its memory: no dma-buf fence waits, no cache-maintenance ioctl).
#[derive(Debug, Clone)]
pub struct CpuTarget {
    pub(crate) dmabuf: Arc<DmaBuf>,
    pub(crate) dumb: Option<Arc<DumbBuffer>>,
}

impl CpuTarget {
    /// The buffer.
    pub fn dmabuf(&self) -> &DmaBuf {
        &self.dmabuf
    }

    /// Its layout (single-plane linear).
    pub fn layout(&self) -> &Layout {
        self.dmabuf
            .layout()
            .expect("presenter buffers always carry a layout")
    }

    /// The dumb buffer behind it, when its owner made one (map it with
    /// [`DumbBuffer::map`]); `None` for GBM buffers (map the dma-buf).
    pub fn dumb(&self) -> Option<&DumbBuffer> {
        self.dumb.as_deref()
    }
}

/// What [`Presenter::present`](crate::Presenter::present) waits for before
/// the frame may be scanned out.
#[derive(Debug)]
pub enum RenderDone {
    /// A runtime fence of any kind (a Vulkan timeline point from
    /// `Submitter`, a sync_file fence, a software fence).
    Fence(Fence),
    /// A sync_file (a kernel fence: a GPU job, a vgem fence).
    SyncFile(SyncFile),
    /// A point on a Vulkan timeline semaphore of the render device.
    Timeline {
        /// The semaphore (wrap an application's with
        /// [`TimelineSemaphore::from_raw`]).
        semaphore: Arc<TimelineSemaphore>,
        /// The value its counter reaches when the frame is rendered.
        value: u64,
    },
    /// Nothing to wait for (the renderer finished before presenting).
    Signaled,
}

impl RenderDone {
    /// The runtime fence of it.
    pub(crate) fn into_fence(self) -> Result<Fence, bufsync_backends::Error> {
        Ok(match self {
            RenderDone::Fence(f) => f,
            RenderDone::SyncFile(s) => SyncFileFence::fence(s)?,
            RenderDone::Timeline { semaphore, value } => semaphore.point(value),
            RenderDone::Signaled => Fence::stub(),
        })
    }
}

impl From<Fence> for RenderDone {
    fn from(f: Fence) -> Self {
        RenderDone::Fence(f)
    }
}

impl From<SyncFile> for RenderDone {
    fn from(s: SyncFile) -> Self {
        RenderDone::SyncFile(s)
    }
}
