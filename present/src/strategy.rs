//! The buffer strategies and the record of a negotiation: which one was
//! chosen and why each earlier one was refused (the errno, or the check
//! that failed), as one printable struct.
//!
//! Locking: none (plain data).

use std::fmt;

use bufsync_backends::kms::{Fourcc, KmsError};
use bufsync_backends::vulkan::VulkanError;

/// Where display-allocated buffers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Allocator {
    /// `DRM_IOCTL_MODE_CREATE_DUMB` on the display device.
    Dumb,
    /// Mesa's GBM on the display device.
    Gbm,
}

/// Who copies in the copy strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyEngine {
    /// The render device, into the display buffer it imports (Mesa's PRIME
    /// blit).
    Gpu,
    /// The CPU, through mappings of both buffers, bracketed with
    /// `DMA_BUF_IOCTL_SYNC`.
    Cpu,
}

/// A buffer strategy, in the order negotiation tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// a. The renderer allocates (with a modifier both sides support, or
    /// LINEAR) and exports; the display imports (PRIME + ADDFB2). Zero copy.
    RenderAlloc,
    /// b. The display allocates; the renderer imports. Zero copy.
    DisplayAlloc(Allocator),
    /// c. The renderer draws into its own buffers; each frame is copied into
    /// display-allocated ones.
    Copy(CopyEngine, Allocator),
}

impl Strategy {
    /// `render-alloc`, `display-alloc`, `copy`.
    pub fn kind(self) -> &'static str {
        match self {
            Strategy::RenderAlloc => "render-alloc",
            Strategy::DisplayAlloc(_) => "display-alloc",
            Strategy::Copy(..) => "copy",
        }
    }

    /// Whether frames are copied.
    pub fn copies(self) -> Option<CopyEngine> {
        match self {
            Strategy::Copy(e, _) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alloc = |a: &Allocator| match a {
            Allocator::Dumb => "dumb",
            Allocator::Gbm => "gbm",
        };
        match self {
            Strategy::RenderAlloc => write!(f, "render-alloc"),
            Strategy::DisplayAlloc(a) => write!(f, "display-alloc ({})", alloc(a)),
            Strategy::Copy(e, a) => write!(
                f,
                "copy ({}, {} display buffers)",
                match e {
                    CopyEngine::Gpu => "gpu",
                    CopyEngine::Cpu => "cpu",
                },
                alloc(a)
            ),
        }
    }
}

/// Why one strategy was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The strategy.
    pub strategy: Strategy,
    /// The step that failed (`PRIME import on virtio_gpu`, `TEST_ONLY
    /// commit`, `modifiers`...).
    pub step: String,
    /// The kernel's errno, when the step was an ioctl.
    pub errno: Option<i32>,
    /// What was said.
    pub reason: String,
}

impl Refusal {
    /// A refusal from a failed check, without an errno.
    pub fn check(strategy: Strategy, step: impl Into<String>, reason: impl Into<String>) -> Self {
        Refusal {
            strategy,
            step: step.into(),
            errno: None,
            reason: reason.into(),
        }
    }

    /// A refusal from a display error.
    pub fn kms(strategy: Strategy, step: impl Into<String>, e: &KmsError) -> Self {
        Refusal {
            strategy,
            step: step.into(),
            errno: e.errno(),
            reason: e.to_string(),
        }
    }

    /// A refusal from a device error.
    pub fn device(
        strategy: Strategy,
        step: impl Into<String>,
        e: &bufsync_backends::Error,
    ) -> Self {
        Refusal {
            strategy,
            step: step.into(),
            errno: e.errno(),
            reason: e.to_string(),
        }
    }

    /// A refusal from a Vulkan error.
    pub fn vulkan(strategy: Strategy, step: impl Into<String>, e: &VulkanError) -> Self {
        let errno = match e {
            VulkanError::Os { errno, .. } => Some(*errno),
            VulkanError::Backend(b) => b.errno(),
            _ => None,
        };
        Refusal {
            strategy,
            step: step.into(),
            errno,
            reason: e.to_string(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.strategy, self.step)?;
        if let Some(e) = self.errno {
            write!(f, ": {} ({e})", errno_name(e))?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The symbolic name of an errno (`ENODEV`), `E?` for others.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        19 => "ENODEV",
        22 => "EINVAL",
        25 => "ENOTTY",
        28 => "ENOSPC",
        34 => "ERANGE",
        38 => "ENOSYS",
        62 => "ETIME",
        95 => "EOPNOTSUPP",
        110 => "ETIMEDOUT",
        _ => "E?",
    }
}

/// The result of buffer negotiation: what was chosen, and why each
/// strategy tried before it was refused. Printed (and logged at info) as
/// one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    /// The display: driver, node, connector, mode.
    pub display: String,
    /// The renderer.
    pub renderer: String,
    /// The pixel format.
    pub format: Fourcc,
    /// The chosen strategy (`None` when every one was refused).
    pub chosen: Option<Strategy>,
    /// The DRM format modifier of the display buffers.
    pub modifier: u64,
    /// Every strategy refused, in the order tried.
    pub refusals: Vec<Refusal>,
}

impl Negotiation {
    /// The refusal of the first strategy of `kind` (`render-alloc`...).
    pub fn refusal(&self, kind: &str) -> Option<&Refusal> {
        self.refusals.iter().find(|r| r.strategy.kind() == kind)
    }
}

impl fmt::Display for Negotiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "display {} x renderer {}, {}: ",
            self.display, self.renderer, self.format
        )?;
        match self.chosen {
            Some(s) => writeln!(f, "strategy {s}, modifier {:#x}", self.modifier)?,
            None => writeln!(f, "no strategy")?,
        }
        for r in &self.refusals {
            writeln!(f, "  refused {r}")?;
        }
        Ok(())
    }
}
