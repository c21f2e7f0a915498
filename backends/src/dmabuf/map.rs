//! A CPU mapping of a whole dma-buf (`mmap` of the dma-buf fd) with
//! bounds-checked copies in and out, and an image copy between two
//! mapped linear images. Bracket every access with
//! [`DmaBuf::begin_cpu_access`] (`DMA_BUF_IOCTL_SYNC`): the mapping itself
//! waits for nothing.
//!
//! Locking: none. A [`DmaBufMap`] keeps the mapping (and with it the
//! dma-buf's file) alive on its own, so it may outlive the `DmaBuf` it came
//! from (a presenter keeps its copy mappings for the buffers' life: mapping
//! and faulting 3 MB in every frame costs more than the copy). Concurrent
//! writers of the same memory can only race on the pixels, never on this
//! process's memory safety (plain bytes, no references into the mapping
//! are handed out).

use memmap2::MmapRaw;

use super::{DmaBuf, Layout};
use crate::error::{Error, Result};

/// A shared mapping of a whole dma-buf.
#[derive(Debug)]
pub struct DmaBufMap {
    map: MmapRaw,
    writable: bool,
}

impl DmaBuf {
    /// Maps the whole buffer shared (read-write when `writable`) for
    /// bounds-checked copies. Exporters that hand out read-only fds (GBM's
    /// own export) fail a writable map with EACCES.
    pub fn map_copies(&self, writable: bool) -> Result<DmaBufMap> {
        Ok(DmaBufMap {
            map: self.map(writable)?,
            writable,
        })
    }
}

impl DmaBufMap {
    fn range(&self, offset: usize, len: usize) -> Result<()> {
        crate::sys::mmap::range(&self.map, offset, len, "mapping")
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Copies `out.len()` bytes at `offset` into `out`.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        crate::sys::mmap::read_at(&self.map, offset, out, "mapping")
    }

    /// Copies `data` into the mapping at `offset` (a writable mapping).
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::InvalidArgument {
                what: "write to a read-only dma-buf mapping".into(),
            });
        }
        crate::sys::mmap::write_at(&mut self.map, offset, data, "mapping")
    }

    /// Copies a single-plane linear image from `src` (laid out as
    /// `src_layout`) into this mapping (laid out as `dst_layout`), row by
    /// row: both must have the same size and format. Returns the bytes
    /// copied.
    pub fn copy_image_from(
        &mut self,
        src: &DmaBufMap,
        src_layout: &Layout,
        dst_layout: &Layout,
    ) -> Result<u64> {
        let bad = |what: String| Error::InvalidArgument { what };
        if (src_layout.width, src_layout.height, src_layout.fourcc)
            != (dst_layout.width, dst_layout.height, dst_layout.fourcc)
        {
            return Err(bad(format!(
                "image copy between {}x{} {:#x} and {}x{} {:#x}",
                src_layout.width,
                src_layout.height,
                src_layout.fourcc,
                dst_layout.width,
                dst_layout.height,
                dst_layout.fourcc
            )));
        }
        let cpp = Layout::bytes_per_pixel(src_layout.fourcc)
            .ok_or_else(|| bad(format!("unknown format {:#x}", src_layout.fourcc)))?;
        let (Some(s), Some(d)) = (src_layout.planes.first(), dst_layout.planes.first()) else {
            return Err(bad("image copy without planes".into()));
        };
        if !self.writable {
            return Err(bad("copy into a read-only dma-buf mapping".into()));
        }
        let row = src_layout.width as usize * cpp as usize;
        let rows = src_layout.height as usize;
        let last = |p: &super::Plane| p.offset as usize + p.stride as usize * (rows - 1) + row;
        src.range(0, last(s))?;
        self.range(0, last(d))?;
        if s.stride == d.stride && s.stride as usize == row && s.offset == d.offset {
            // Both tightly packed the same way: one copy of the whole image.
            // SAFETY: the range was checked against both mappings above;
            // `src` and `self` are two different mappings (distinct virtual
            // ranges, `&` and `&mut` of two objects), so they do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.map.as_ptr().add(s.offset as usize),
                    self.map.as_mut_ptr().add(d.offset as usize),
                    row * rows,
                );
            }
            return Ok((row * rows) as u64);
        }
        for y in 0..rows {
            let from = s.offset as usize + y * s.stride as usize;
            let to = d.offset as usize + y * d.stride as usize;
            // SAFETY: both rows lie inside their live mappings (the last
            // row's end was checked above and rows grow monotonically); the
            // two mappings are distinct virtual ranges (see above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.map.as_ptr().add(from),
                    self.map.as_mut_ptr().add(to),
                    row,
                );
            }
        }
        Ok((row * rows) as u64)
    }
}
