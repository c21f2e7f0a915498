//! The KMS backend's error type: one typed variant per way a display
//! request can be refused, each with the context needed to act on it.

use std::io;

/// Errors from the KMS backend.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// A device-layer error (open, PRIME, dumb buffers, sync_file checks).
    #[error(transparent)]
    Device(#[from] crate::Error),
    /// The device has no usable output: what was missing.
    #[error("no usable display output: {what}")]
    NoOutput {
        /// What could not be found (connector, CRTC, primary plane, mode).
        what: String,
    },
    /// A KMS object lacks a property bufsync needs.
    #[error("KMS object {object} has no property `{name}`")]
    MissingProperty {
        /// KMS object id.
        object: u32,
        /// Property name.
        name: &'static str,
    },
    /// A property blob (IN_FORMATS, MODE_ID) is malformed.
    #[error("malformed property blob {blob}: {what}")]
    BadBlob {
        /// Blob id.
        blob: u64,
        /// What is wrong with it.
        what: String,
    },
    /// The buffer carries no layout (fourcc, modifier, planes).
    #[error("dma-buf has no layout: a framebuffer needs fourcc, modifier and strides")]
    MissingLayout,
    /// The plane does not scan out this format at all.
    #[error("plane {plane} does not support format {fourcc}")]
    UnsupportedFormat {
        /// Plane id.
        plane: u32,
        /// The format, printable.
        fourcc: Fourcc,
    },
    /// The plane scans out this format, but not with this modifier.
    #[error("plane {plane} does not support format {fourcc} with modifier {modifier:#x}")]
    UnsupportedModifier {
        /// Plane id.
        plane: u32,
        /// The format, printable.
        fourcc: Fourcc,
        /// The refused modifier.
        modifier: u64,
    },
    /// A plane's stride or offset does not fit the image or the buffer.
    #[error("bad stride {stride} (offset {offset}) for plane {index} of a {width}x{height} {fourcc} image in {size} bytes: {why}")]
    BadStride {
        /// Memory plane index.
        index: usize,
        /// The stride given.
        stride: u32,
        /// The offset given.
        offset: u32,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
        /// The format, printable.
        fourcc: Fourcc,
        /// Buffer size in bytes.
        size: u64,
        /// Which rule it broke.
        why: &'static str,
    },
    /// An image size the CRTC cannot show (zero, or larger than the
    /// device's framebuffer limits).
    #[error("bad image size {width}x{height}: {why}")]
    BadSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Why it is refused.
        why: String,
    },
    /// The in-fence signaled with an error, or carries one (a merge with a
    /// failed fence), or its wait was cancelled: the frame it guards is not
    /// complete.
    #[error("in-fence failed: {0}")]
    InFenceFailed(bufsync::fence::FenceError),
    /// The framebuffer was imported on another display's fd.
    #[error("framebuffer {fb} belongs to another display")]
    ForeignFramebuffer {
        /// The framebuffer id.
        fb: u32,
    },
    /// The GEM handle belongs to another DRM fd than the display's.
    #[error("GEM handle {handle} belongs to another DRM fd ({driver})")]
    ForeignHandle {
        /// The handle number.
        handle: u32,
        /// The driver of the fd it belongs to.
        driver: String,
    },
    /// The kernel refused an atomic commit.
    #[error("atomic commit (flags {flags:#x}) refused: {source}")]
    Commit {
        /// The `DRM_MODE_ATOMIC_*` / `DRM_MODE_PAGE_FLIP_*` flags.
        flags: u32,
        /// The OS error (EINVAL: bad request, EFAULT, ENOENT: bad ids,
        /// EACCES: not DRM master, ...).
        source: io::Error,
    },
    /// A non-blocking commit stayed busy (EBUSY) after waiting for the
    /// previous flip, `attempts` times.
    #[error("CRTC still busy after {attempts} attempts")]
    Busy {
        /// How many times the commit was tried.
        attempts: u32,
    },
    /// A TEST_ONLY commit said the configuration would not work.
    #[error("configuration rejected by TEST_ONLY: {source}")]
    TestFailed {
        /// The kernel's answer.
        source: io::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out waiting for {what}")]
    TimedOut {
        /// What was waited for.
        what: &'static str,
    },
    /// Another KMS ioctl failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The ioctl.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl KmsError {
    /// Wraps an OS error from a KMS ioctl.
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        KmsError::Io {
            op,
            source: source.into(),
        }
    }

    /// The errno behind this error, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KmsError::Commit { source, .. }
            | KmsError::TestFailed { source }
            | KmsError::Io { source, .. } => source.raw_os_error(),
            KmsError::Device(e) => e.errno(),
            _ => None,
        }
    }
}

/// A DRM fourcc that prints as its four characters (`XR24`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fourcc(pub u32);

impl std::fmt::Display for Fourcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.to_le_bytes() {
            let c = if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        write!(f, " ({:#010x})", self.0)
    }
}

impl std::fmt::Debug for Fourcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
