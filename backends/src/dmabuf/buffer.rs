//! The dma-buf fd with its size and optional layout.
//!
//! Locking: a `DmaBuf` is an fd plus immutable facts and a runtime
//! [`Reservation`] (shared by every `try_clone` of it); the reservation's
//! own rules apply to its fences (writers hold its ww lock). The other
//! methods are syscalls and need no lock; the kernel serializes fence
//! changes in the buffer's own `dma_resv`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use bufsync::resv::{AsReservation, Reservation};

use memmap2::{MmapOptions, MmapRaw};

use super::Layout;
use crate::error::{Error, Result};

/// `DMA_BUF_MAGIC` ("DMAB"): the `f_type` of the dma-buf pseudo file system.
const DMA_BUF_MAGIC: u64 = 0x444d_4142;

/// A dma-buf: an fd the kernel shares between devices, its size, and (when
/// known) how an image is laid out in it.
#[derive(Debug)]
pub struct DmaBuf {
    fd: OwnedFd,
    size: u64,
    layout: Option<Layout>,
    resv: Arc<Reservation>,
}

impl DmaBuf {
    /// Takes `fd` after checking it really is a dma-buf (`fstatfs` gives the
    /// dma-buf file system's magic): [`Error::NotADmaBuf`] for a memfd, a
    /// pipe or a sync_file, [`Error::BadFd`] for a closed fd.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        let size = Self::check(fd.as_fd())?;
        Ok(Self {
            fd,
            size,
            layout: None,
            resv: Arc::new(Reservation::new()),
        })
    }

    /// Checks that `fd` is a dma-buf without taking it; returns its size.
    pub fn check(fd: BorrowedFd<'_>) -> Result<u64> {
        let raw = fd.as_raw_fd();
        let st = rustix::fs::fstatfs(fd).map_err(|e| match e {
            rustix::io::Errno::BADF => Error::BadFd { fd: raw },
            e => Error::io("fstatfs", e.into()),
        })?;
        if st.f_type as u64 != DMA_BUF_MAGIC {
            return Err(Error::NotADmaBuf { fd: raw });
        }
        // A dma-buf's size is where SEEK_END lands (dma_buf_llseek).
        let size = rustix::fs::seek(fd, rustix::fs::SeekFrom::End(0))
            .map_err(|e| Error::io("lseek(dma-buf)", e.into()))?;
        rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0))
            .map_err(|e| Error::io("lseek(dma-buf)", e.into()))?;
        Ok(size)
    }

    /// Attaches layout metadata after [`Layout::validate`] against the size.
    pub fn with_layout(mut self, layout: Layout) -> Result<Self> {
        layout.validate(self.size)?;
        self.layout = Some(layout);
        Ok(self)
    }

    /// The fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives the fd up.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The layout, when known.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// The runtime reservation of this buffer (user-space fences).
    pub fn reservation(&self) -> &Reservation {
        &self.resv
    }

    /// A second handle on the same buffer (`dup`; same kernel dma-buf, same
    /// implicit fences, same runtime reservation).
    pub fn try_clone(&self) -> Result<Self> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| Error::io("F_DUPFD_CLOEXEC", e.into()))?;
        Ok(Self {
            fd,
            size: self.size,
            layout: self.layout.clone(),
            resv: Arc::clone(&self.resv),
        })
    }

    /// Maps the whole buffer shared, read-write when `writable`. Exporters
    /// that hand out read-only fds (GBM) fail a writable map with EACCES;
    /// some (virtio-gpu) cannot be mapped at all. Bracket CPU access with
    /// [`DmaBuf::begin_cpu_access`].
    pub fn map(&self, writable: bool) -> Result<MmapRaw> {
        let len = usize::try_from(self.size).map_err(|_| Error::InvalidArgument {
            what: format!("size {}", self.size),
        })?;
        let mut opts = MmapOptions::new();
        opts.len(len);
        let fd = self.fd.as_raw_fd();
        let map = if writable {
            opts.map_raw(fd)
        } else {
            opts.map_raw_read_only(fd)
        };
        map.map_err(|e| Error::io("mmap(dma-buf)", e))
    }
}

impl AsFd for DmaBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsReservation for DmaBuf {
    fn as_reservation(&self) -> &Reservation {
        &self.resv
    }
}
