//! bufsync-present: render on one device, scan out on the KMS display of
//! another, with every edge synchronized through bufsync's fences,
//! reservations and tickets — the render → scanout flow as a library.
//!
//! A [`Presenter`] is built over a render device ([`RenderDevice`]: the
//! application's own Vulkan device, one bufsync creates, or a GEM device
//! drawn by the CPU) and a display ([`DisplayTarget`]). At creation it
//! picks a pixel format both sides support and negotiates who allocates
//! the buffers ([`Negotiation`], logged at info, printable):
//!
//! 1. **render-alloc**: the renderer exports (with a DRM format modifier
//!    the plane's `IN_FORMATS` and the renderer share, or LINEAR), the
//!    display imports (PRIME + `ADDFB2`);
//! 2. **display-alloc**: the display allocates (GBM with the `gbm`
//!    feature, or dumb buffers), the renderer imports;
//! 3. **copy**: the renderer draws into its own buffers and each frame is
//!    copied into display buffers, on the render GPU where it can import
//!    them, else on the CPU (`DMA_BUF_IOCTL_SYNC` around the mappings).
//!
//! Each candidate is verified with an atomic TEST_ONLY commit; each
//! refusal is kept with its errno or failing check.
//!
//! Per frame: [`Presenter::acquire`] gives a [`Frame`] (a free buffer and
//! the fences to wait for before writing it: the out-fence of the flip that
//! took it off screen), [`Presenter::present`] takes it back with what
//! signals when it is rendered ([`RenderDone`]). Inside is the ticket flow
//! of [`FrameQueue`]; the render → display edge is chosen per frame by
//! probed capability ([`Edge`]: `IN_FENCE_FD`, `IMPORT_SYNC_FILE`, or a
//! bounded software wait); each flip's out-fence is the release fence of
//! the frame it replaces. FIFO and mailbox ([`PresentMode`]);
//! [`PresentStats`] per frame. [`WritebackCapture`] reads back what the
//! display composed for each flip (writeback connector), for checks. See
//! `docs/present.md`.
//!
//! ```
//! use bufsync_present::{DisplayTarget, Presenter, PresenterConfig, RenderDevice, RenderDone};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A CPU renderer on vgem and the vkms display (in the test VM).
//! let Ok(vgem) = bufsync_backends::drm::DrmDevice::find("vgem") else {
//!     return Ok(()); // no such device here
//! };
//! let mut presenter = Presenter::new(
//!     RenderDevice::Gem(std::sync::Arc::new(vgem)),
//!     DisplayTarget::Driver("vkms".into()),
//!     PresenterConfig::default(),
//! )?;
//! println!("{}", presenter.negotiation());
//! for _ in 0..3 {
//!     let frame = presenter.acquire(Duration::from_secs(1))?;
//!     frame.wait_fences().wait_all(Some(Duration::from_secs(1)))?;
//!     let target = frame.target().cpu().expect("a CPU target");
//!     let mut map = target.dmabuf().map_copies(true)?;
//!     map.write_at(0, &[0xff; 4096])?; // draw
//!     presenter.present(frame, RenderDone::Signaled)?;
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod alloc;
mod capture;
mod config;
mod copy;
mod edge;
mod error;
mod extension;
mod flow;
mod frame;
mod master;
mod negotiate;
mod presenter;
pub mod queue;
mod stats;
mod strategy;

pub use capture::{CapturedFrame, WritebackCapture};
pub use config::{
    AllocatorChoice, DisplayTarget, EdgeChoice, PresentMode, PresenterConfig, RenderDevice,
    StrategyChoice, ARGB8888, XRGB8888,
};
pub use error::PresentError;
pub use extension::FlipExtension;
pub use frame::{CpuTarget, Frame, FrameTarget, RenderDone};
pub use master::holders;
pub use presenter::Presenter;
pub use queue::{FrameQueue, SlotReservations, SlotState};
pub use stats::{Edge, PresentStats, PresentTotals};
pub use strategy::{errno_name, Allocator, CopyEngine, Negotiation, Refusal, Strategy};
