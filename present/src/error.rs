//! The presenter's errors: one typed variant per way a frame or a
//! presenter can fail, each saying what happened to the frame and what the
//! caller can do.

use std::path::PathBuf;
use std::time::Duration;

use bufsync::fence::FenceError;
use bufsync_backends::kms::{Fourcc, KmsError};
use bufsync_backends::vulkan::VulkanError;

use crate::strategy::Negotiation;

/// Errors of [`Presenter`](crate::Presenter).
#[derive(Debug, thiserror::Error)]
pub enum PresentError {
    /// No pixel format both the display's plane and the renderer support
    /// (among those asked for).
    #[error(
        "no common pixel format: asked for {wanted:?}; display {display} offers {display_formats:?}; \
         renderer {renderer} offers {render_formats:?}"
    )]
    NoCommonFormat {
        /// The formats the configuration asked for, in order.
        wanted: Vec<Fourcc>,
        /// The display (driver, node).
        display: String,
        /// What its primary plane scans out.
        display_formats: Vec<Fourcc>,
        /// The renderer.
        renderer: String,
        /// What it can render.
        render_formats: Vec<Fourcc>,
    },
    /// Every buffer strategy was refused; the negotiation says why each was.
    #[error("no buffer strategy works:\n{0}")]
    NoStrategy(Box<Negotiation>),
    /// The strategy negotiation chose could not allocate every buffer.
    #[error("allocating buffer {slot} for {strategy}: {refusal}")]
    Allocate {
        /// The chosen strategy.
        strategy: crate::Strategy,
        /// The buffer that failed.
        slot: usize,
        /// What failed.
        refusal: crate::Refusal,
    },
    /// The process is not DRM master of the display's node, so it cannot
    /// commit (EACCES).
    #[error(
        "not DRM master of {node}: another process holds the display{holders}. Stop the \
         compositor or display server on that device (or switch to a free VT), or present \
         through it instead; a second fd of this process on the node also holds master"
    )]
    NotMaster {
        /// The node.
        node: PathBuf,
        /// ", open in 123 (gnome-shell), ..." when known.
        holders: String,
    },
    /// The display went away (ENODEV: unplugged, driver unbound; or its
    /// connector disappeared). Drop the presenter and build a new one.
    #[error("display {node} is gone ({source}); drop this presenter and build a new one")]
    DisplayGone {
        /// The node.
        node: PathBuf,
        /// What failed.
        source: KmsError,
    },
    /// The render fence of a frame did not signal in time: the frame was
    /// dropped (the display keeps its last frame) and its buffer stays out
    /// of rotation until the fence ends, since its producer may still write.
    #[error(
        "frame {frame}: render fence did not signal within {timeout:?}; frame dropped, buffer \
         {slot} out of rotation until the fence ends"
    )]
    RenderTimeout {
        /// The frame number.
        frame: u64,
        /// Its buffer.
        slot: usize,
        /// The bound.
        timeout: Duration,
    },
    /// The render fence signaled with an error: the frame is not complete
    /// and was dropped (the display keeps its last frame).
    #[error("frame {frame}: render fence failed ({error}); frame dropped")]
    RenderFailed {
        /// The frame number.
        frame: u64,
        /// The fence's error.
        error: FenceError,
    },
    /// No buffer became free in time (all with the renderer, queued, on
    /// screen or out of rotation).
    #[error("no free buffer within {timeout:?} ({states})")]
    AcquireTimeout {
        /// The bound.
        timeout: Duration,
        /// The buffers' states.
        states: String,
    },
    /// The frame was acquired from another presenter (or a presenter
    /// rebuilt since).
    #[error("frame {frame} does not belong to this presenter")]
    ForeignFrame {
        /// The frame number.
        frame: u64,
    },
    /// The configuration cannot work (zero buffers, a size the display
    /// cannot show, a strategy the render device does not have...).
    #[error("invalid presenter configuration: {0}")]
    Config(String),
    /// A display request failed.
    #[error("display: {0}")]
    Display(#[from] KmsError),
    /// A Vulkan call of the renderer side failed.
    #[error("vulkan: {0}")]
    Vulkan(#[from] VulkanError),
    /// A kernel object (dma-buf, sync_file, GEM) failed.
    #[error(transparent)]
    Device(#[from] bufsync_backends::Error),
    /// A reservation could not be taken in time.
    #[error("reservation: {0}")]
    Reserve(#[from] bufsync::resv::ResvError),
}

impl PresentError {
    /// The errno behind the error, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            PresentError::Display(e) | PresentError::DisplayGone { source: e, .. } => e.errno(),
            PresentError::Device(e) => e.errno(),
            PresentError::NotMaster { .. } => Some(rustix::io::Errno::ACCESS.raw_os_error()),
            _ => None,
        }
    }
}
