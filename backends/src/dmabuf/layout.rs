//! Optional layout metadata of a dma-buf (what `AddFB2` and Vulkan's
//! explicit DRM-modifier layouts need).

use crate::error::{Error, Result};

/// `DRM_FORMAT_MOD_LINEAR`.
pub const MOD_LINEAR: u64 = 0;
/// `DRM_FORMAT_MOD_INVALID`: layout implied by the producer.
pub const MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;

/// One memory plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    /// Byte offset of the plane in the buffer.
    pub offset: u32,
    /// Bytes per row.
    pub stride: u32,
}

/// Format, modifier and planes of an image in a dma-buf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc (e.g. `XR24`).
    pub fourcc: u32,
    /// DRM format modifier.
    pub modifier: u64,
    /// Up to 4 memory planes.
    pub planes: Vec<Plane>,
}

impl Layout {
    /// A single-plane linear layout.
    pub fn linear(width: u32, height: u32, fourcc: u32, stride: u32) -> Self {
        Self {
            width,
            height,
            fourcc,
            modifier: MOD_LINEAR,
            planes: vec![Plane { offset: 0, stride }],
        }
    }

    /// Bytes per pixel of the single-plane RGB formats bufsync scans out,
    /// or `None` for a format it does not know.
    pub fn bytes_per_pixel(fourcc: u32) -> Option<u32> {
        match &fourcc.to_le_bytes() {
            b"XR24" | b"AR24" | b"XB24" | b"AB24" | b"XR30" | b"AR30" => Some(4),
            b"RG16" => Some(2),
            b"XR48" | b"AR48" | b"XB48" | b"AB48" => Some(8),
            b"R8  " => Some(1),
            _ => None,
        }
    }

    /// Checks the layout against a buffer of `size` bytes: 1..=4 planes,
    /// each within the buffer; for a known linear single-plane format, the
    /// stride holds a row. An unknown format with a linear modifier is
    /// [`Error::UnsupportedFormat`] only when it cannot be checked at all
    /// (no planes).
    pub fn validate(&self, size: u64) -> Result<()> {
        if self.planes.is_empty() || self.planes.len() > 4 {
            return Err(Error::InvalidArgument {
                what: format!("{} planes", self.planes.len()),
            });
        }
        if self.width == 0 || self.height == 0 {
            return Err(Error::InvalidArgument {
                what: format!("{}x{} image", self.width, self.height),
            });
        }
        if self.modifier == MOD_LINEAR && self.planes.len() == 1 {
            let Some(bpp) = Self::bytes_per_pixel(self.fourcc) else {
                return Err(Error::UnsupportedFormat {
                    fourcc: self.fourcc,
                    modifier: self.modifier,
                });
            };
            let p = self.planes[0];
            if (p.stride as u64) < self.width as u64 * bpp as u64 {
                return Err(Error::InvalidArgument {
                    what: format!("stride {} below a row of {} px", p.stride, self.width),
                });
            }
            let end = p.offset as u64 + p.stride as u64 * self.height as u64;
            if end > size {
                return Err(Error::InvalidArgument {
                    what: format!("plane ends at {end}, buffer has {size} bytes"),
                });
            }
        } else {
            for p in &self.planes {
                if p.offset as u64 >= size {
                    return Err(Error::InvalidArgument {
                        what: format!("plane offset {} beyond {size} bytes", p.offset),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A DRM fourcc from its four characters.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_layout_checks() {
        let xr24 = fourcc(b"XR24");
        assert!(Layout::linear(64, 64, xr24, 256).validate(64 * 256).is_ok());
        assert!(matches!(
            Layout::linear(64, 64, xr24, 255).validate(1 << 20),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            Layout::linear(64, 64, xr24, 256).validate(100),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            Layout::linear(64, 64, fourcc(b"ZZZZ"), 256).validate(1 << 20),
            Err(Error::UnsupportedFormat { .. })
        ));
    }
}
