//! Image layouts in dma-bufs: DRM fourccs and modifiers, planes (offset,
//! stride), and the conversion to the dma-buf backend's `Layout`.
//!
//! Locking: none (plain data).

use std::os::fd::BorrowedFd;

use ash::vk;

use super::error::{Result, VulkanError};
use crate::dmabuf::{Layout, Plane};

/// `DRM_FORMAT_MOD_LINEAR`.
pub const DRM_FORMAT_MOD_LINEAR: u64 = 0;
/// `DRM_FORMAT_MOD_INVALID`.
pub const DRM_FORMAT_MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;

const fn fourcc(c: &[u8; 4]) -> u32 {
    (c[0] as u32) | ((c[1] as u32) << 8) | ((c[2] as u32) << 16) | ((c[3] as u32) << 24)
}

/// `DRM_FORMAT_ARGB8888` (bytes B, G, R, A).
pub const DRM_FORMAT_ARGB8888: u32 = fourcc(b"AR24");
/// `DRM_FORMAT_XRGB8888` (bytes B, G, R, X).
pub const DRM_FORMAT_XRGB8888: u32 = fourcc(b"XR24");
/// `DRM_FORMAT_ABGR8888` (bytes R, G, B, A).
pub const DRM_FORMAT_ABGR8888: u32 = fourcc(b"AB24");
/// `DRM_FORMAT_XBGR8888` (bytes R, G, B, X).
pub const DRM_FORMAT_XBGR8888: u32 = fourcc(b"XB24");

/// The DRM fourcc of a Vulkan format (with alpha).
pub fn drm_fourcc(format: vk::Format) -> Option<u32> {
    match format {
        vk::Format::B8G8R8A8_UNORM => Some(DRM_FORMAT_ARGB8888),
        vk::Format::R8G8B8A8_UNORM => Some(DRM_FORMAT_ABGR8888),
        _ => None,
    }
}

/// The Vulkan format of a DRM fourcc.
pub fn vk_format(fourcc: u32) -> Option<vk::Format> {
    match fourcc {
        DRM_FORMAT_ARGB8888 | DRM_FORMAT_XRGB8888 => Some(vk::Format::B8G8R8A8_UNORM),
        DRM_FORMAT_ABGR8888 | DRM_FORMAT_XBGR8888 => Some(vk::Format::R8G8B8A8_UNORM),
        _ => None,
    }
}

/// One memory plane of an image in a dma-buf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Byte offset of the plane in the dma-buf.
    pub offset: u64,
    /// Bytes per row.
    pub stride: u64,
}

/// How an image lies in a dma-buf (what KMS AddFB2 and GBM import take).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc.
    pub fourcc: u32,
    /// DRM format modifier.
    pub modifier: u64,
    /// Memory planes.
    pub planes: Vec<PlaneLayout>,
    /// Size of the dma-buf in bytes.
    pub size: u64,
}

impl ImageLayout {
    /// A single-plane LINEAR layout.
    pub fn linear(
        width: u32,
        height: u32,
        fourcc: u32,
        offset: u64,
        stride: u64,
        size: u64,
    ) -> Self {
        ImageLayout {
            width,
            height,
            fourcc,
            modifier: DRM_FORMAT_MOD_LINEAR,
            planes: vec![PlaneLayout { offset, stride }],
            size,
        }
    }

    /// The layout of a [`DmaBuf`](crate::dmabuf::DmaBuf) (with its size).
    pub fn from_dmabuf(layout: &Layout, size: u64) -> Self {
        ImageLayout {
            width: layout.width,
            height: layout.height,
            fourcc: layout.fourcc,
            modifier: layout.modifier,
            planes: layout
                .planes
                .iter()
                .map(|p| PlaneLayout {
                    offset: u64::from(p.offset),
                    stride: u64::from(p.stride),
                })
                .collect(),
            size,
        }
    }

    /// This layout as the dma-buf backend's [`Layout`] (offsets and strides
    /// must fit in 32 bits, as in `AddFB2`).
    pub fn to_dmabuf(&self) -> Result<Layout> {
        let planes = self
            .planes
            .iter()
            .map(|p| {
                Ok(Plane {
                    offset: u32::try_from(p.offset)
                        .map_err(|_| VulkanError::Invalid(format!("offset {}", p.offset)))?,
                    stride: u32::try_from(p.stride)
                        .map_err(|_| VulkanError::Invalid(format!("stride {}", p.stride)))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Layout {
            width: self.width,
            height: self.height,
            fourcc: self.fourcc,
            modifier: self.modifier,
            planes,
        })
    }

    /// Checks that plane 0 of a 32-bit format fits in `size`.
    pub fn validate(&self) -> Result<()> {
        let p = self
            .planes
            .first()
            .ok_or_else(|| VulkanError::Invalid("layout has no planes".into()))?;
        let row = u64::from(self.width) * 4;
        if self.width == 0 || self.height == 0 || p.stride < row {
            return Err(VulkanError::Invalid(format!(
                "{}x{} with stride {} (row needs {row})",
                self.width, self.height, p.stride
            )));
        }
        let end = p
            .stride
            .checked_mul(u64::from(self.height) - 1)
            .and_then(|v| v.checked_add(row))
            .and_then(|v| v.checked_add(p.offset));
        match end {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(VulkanError::Invalid(format!(
                "plane at offset {} stride {} overruns the {}-byte buffer",
                p.offset, p.stride, self.size
            ))),
        }
    }
}

/// Size of the file behind `fd` (`fstat`, or `lseek(SEEK_END)` for files
/// that report 0, restoring the position).
pub fn fd_size(fd: BorrowedFd<'_>) -> Result<u64> {
    let st = rustix::fs::fstat(fd).map_err(VulkanError::os("fstat"))?;
    if st.st_size > 0 {
        return Ok(st.st_size as u64);
    }
    let pos =
        rustix::fs::seek(fd, rustix::fs::SeekFrom::Current(0)).map_err(VulkanError::os("lseek"))?;
    let end =
        rustix::fs::seek(fd, rustix::fs::SeekFrom::End(0)).map_err(VulkanError::os("lseek"))?;
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(pos)).map_err(VulkanError::os("lseek"))?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_overruns_and_short_strides() {
        let ok = ImageLayout::linear(16, 4, DRM_FORMAT_XRGB8888, 0, 64, 256);
        ok.validate().unwrap();
        let cases = [
            ImageLayout {
                size: 255,
                ..ok.clone()
            },
            ImageLayout::linear(16, 4, DRM_FORMAT_XRGB8888, 0, 60, 256),
            ImageLayout::linear(16, 4, DRM_FORMAT_XRGB8888, 4, 64, 256),
            ImageLayout::linear(0, 4, DRM_FORMAT_XRGB8888, 0, 64, 256),
            ImageLayout::linear(16, 4, DRM_FORMAT_XRGB8888, u64::MAX, 64, 256),
            ImageLayout {
                planes: Vec::new(),
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(
                matches!(c.validate(), Err(VulkanError::Invalid(_))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn dmabuf_layout_round_trip() {
        let l = ImageLayout::linear(640, 480, DRM_FORMAT_ARGB8888, 4096, 2560, 4096 + 2560 * 480);
        let d = l.to_dmabuf().unwrap();
        assert_eq!(ImageLayout::from_dmabuf(&d, l.size), l);
        let big = ImageLayout::linear(1, 1, DRM_FORMAT_ARGB8888, 1 << 33, 4, 1 << 34);
        assert!(big.to_dmabuf().is_err());
        assert_eq!(
            vk_format(drm_fourcc(vk::Format::R8G8B8A8_UNORM).unwrap()),
            Some(vk::Format::R8G8B8A8_UNORM)
        );
        assert_eq!(
            vk_format(DRM_FORMAT_XRGB8888),
            Some(vk::Format::B8G8R8A8_UNORM)
        );
        assert_eq!(drm_fourcc(vk::Format::R16_UNORM), None);
    }
}
