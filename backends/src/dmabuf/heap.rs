//! dma-bufs from a DMA heap (`/dev/dma_heap/<name>`, e.g. `system`).
//!
//! Locking: none; the heap fd is shared read-only.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use super::DmaBuf;
use crate::error::{Error, Result};
use crate::sys;

/// An open DMA heap.
#[derive(Debug)]
pub struct DmaHeap {
    fd: OwnedFd,
    name: String,
}

impl DmaHeap {
    /// The path of heap `name`.
    pub fn path(name: &str) -> PathBuf {
        PathBuf::from("/dev/dma_heap").join(name)
    }

    /// Opens heap `name` (e.g. `system`).
    pub fn open(name: &str) -> Result<Self> {
        let path = Self::path(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|source| Error::Open { path, source })?;
        Ok(Self {
            fd: file.into(),
            name: name.to_owned(),
        })
    }

    /// The heap's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `DMA_HEAP_IOCTL_ALLOC`: a read-write dma-buf of `len` bytes.
    pub fn alloc(&self, len: u64) -> Result<DmaBuf> {
        if len == 0 {
            return Err(Error::InvalidArgument {
                what: "DMA heap allocation of 0 bytes".into(),
            });
        }
        let fd = sys::dma_heap::alloc(self.fd.as_fd(), len)
            .map_err(|e| Error::io("DMA_HEAP_IOCTL_ALLOC", e))?;
        DmaBuf::from_fd(fd)
    }
}
