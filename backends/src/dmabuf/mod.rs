//! dma-bufs: the buffer fd, its layout, CPU access (bracketing and a
//! checked mapping), the implicit-sync bridge and the ways to get one (DRM
//! PRIME, GBM, udmabuf, DMA heap).

mod buffer;
mod cpu_access;
#[cfg(feature = "gbm")]
mod gbm;
mod heap;
mod implicit;
mod layout;
mod map;
mod udmabuf;

pub use buffer::DmaBuf;
pub use cpu_access::CpuAccess;
#[cfg(feature = "gbm")]
pub use gbm::{GbmAllocator, GbmBuffer};
pub use heap::DmaHeap;
pub use layout::{fourcc, Layout, Plane, MOD_INVALID, MOD_LINEAR};
pub use map::DmaBufMap;
pub use udmabuf::Udmabuf;

/// How a user touches a buffer; picks which fences it must wait for
/// (`dma_resv_usage_rw`: a reader waits for writers, a writer for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only.
    Read,
    /// Write (or read and write).
    Write,
}

impl Access {
    /// `DMA_BUF_SYNC_READ` / `DMA_BUF_SYNC_WRITE` (write access includes
    /// reading for the cache maintenance of `DMA_BUF_IOCTL_SYNC`).
    pub(crate) fn sync_flags(self) -> u64 {
        match self {
            Access::Read => crate::sys::dma_buf::SYNC_READ,
            Access::Write => crate::sys::dma_buf::SYNC_RW,
        }
    }

    /// The flag for EXPORT/IMPORT_SYNC_FILE.
    pub(crate) fn sync_file_flag(self) -> u32 {
        match self {
            Access::Read => crate::sys::dma_buf::SYNC_READ as u32,
            Access::Write => crate::sys::dma_buf::SYNC_WRITE as u32,
        }
    }
}
