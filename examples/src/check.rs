//! The demo's test pattern on the CPU and the frame check: the twin of
//! `examples/shaders/pattern.glsl` ([`pattern_pixel`]), the pixel-for-pixel
//! comparison of a captured or mapped frame ([`check_frame`]) and the frame
//! number its strip encodes ([`decode_frame_number`]).
//!
//! The pattern: the top [`STRIP_ROWS`] rows encode the frame number as 32
//! black/white blocks (MSB left); every other pixel is
//! `((x + 4f) & 255, (y + 2f) & 255, (x ^ y ^ f) & 255)`.
//!
//! Locking: none (pure functions).

use bufsync_backends::vulkan::{
    ImageLayout, DRM_FORMAT_ABGR8888, DRM_FORMAT_ARGB8888, DRM_FORMAT_XBGR8888, DRM_FORMAT_XRGB8888,
};

/// Rows at the top that carry the frame number.
pub const STRIP_ROWS: u32 = 16;

/// The RGBA value of pixel `(x, y)` of frame `frame` in a `width`-wide image.
pub fn pattern_pixel(x: u32, y: u32, width: u32, frame: u32) -> [u8; 4] {
    if y < STRIP_ROWS {
        let bit = 31 - (x.wrapping_mul(32) / width.max(1));
        let v = (((frame >> (bit & 31)) & 1) * 255) as u8;
        return [v, v, v, 255];
    }
    [
        (x.wrapping_add(frame.wrapping_mul(4)) & 255) as u8,
        (y.wrapping_add(frame.wrapping_mul(2)) & 255) as u8,
        ((x ^ y ^ frame) & 255) as u8,
        255,
    ]
}

pub(crate) fn bgra_order(fourcc: u32) -> Option<bool> {
    match fourcc {
        DRM_FORMAT_ARGB8888 | DRM_FORMAT_XRGB8888 => Some(true),
        DRM_FORMAT_ABGR8888 | DRM_FORMAT_XBGR8888 => Some(false),
        _ => None,
    }
}

/// The first pixel that differs from the expected frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pixel ({x}, {y}) is {got:02x?}, expected {expected:02x?} (bytes in memory order)")]
pub struct FrameMismatch {
    /// Column.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// Bytes expected in memory order.
    pub expected: [u8; 4],
    /// Bytes found.
    pub got: [u8; 4],
}

fn memory_bytes(rgba: [u8; 4], bgra: bool) -> [u8; 4] {
    if bgra {
        [rgba[2], rgba[1], rgba[0], rgba[3]]
    } else {
        rgba
    }
}

fn pixel_at(bytes: &[u8], layout: &ImageLayout, x: u32, y: u32) -> Option<[u8; 4]> {
    let p = layout.planes.first()?;
    let at = usize::try_from(p.offset + u64::from(y) * p.stride + u64::from(x) * 4).ok()?;
    bytes.get(at..at + 4).map(|s| [s[0], s[1], s[2], s[3]])
}

/// Checks every pixel of a LINEAR frame in `bytes` (the whole dma-buf,
/// e.g. its mmap) against frame `frame`. X formats ignore the alpha byte.
pub fn check_frame(bytes: &[u8], layout: &ImageLayout, frame: u32) -> Result<(), FrameMismatch> {
    let bgra = bgra_order(layout.fourcc).unwrap_or(true);
    let ignore_alpha = matches!(layout.fourcc, DRM_FORMAT_XRGB8888 | DRM_FORMAT_XBGR8888);
    for y in 0..layout.height {
        for x in 0..layout.width {
            let mut expected = memory_bytes(pattern_pixel(x, y, layout.width, frame), bgra);
            let mut got = pixel_at(bytes, layout, x, y).unwrap_or([0; 4]);
            if ignore_alpha {
                expected[3] = 0;
                got[3] = 0;
            }
            if got != expected {
                return Err(FrameMismatch {
                    x,
                    y,
                    expected,
                    got,
                });
            }
        }
    }
    Ok(())
}

/// Reads the frame number from the strip of a LINEAR frame (`None` if the
/// strip holds no valid code). Samples the middle of each block.
pub fn decode_frame_number(bytes: &[u8], layout: &ImageLayout) -> Option<u32> {
    let w = layout.width;
    if w < 32 || layout.height < STRIP_ROWS {
        return None;
    }
    let mut frame = 0u32;
    for block in 0..32u32 {
        // Middle of the block whose pixels map to bit 31 - block.
        let x = ((2 * block + 1) * w) / 64;
        let px = pixel_at(bytes, layout, x, STRIP_ROWS / 2)?;
        let bit = match px[0] {
            0 => 0,
            255 => 1,
            _ => return None,
        };
        frame = (frame << 1) | bit;
    }
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws a frame on the CPU exactly as the shader does.
    fn cpu_frame(layout: &ImageLayout, frame: u32) -> Vec<u8> {
        let bgra = bgra_order(layout.fourcc).unwrap();
        let p = layout.planes[0];
        let mut bytes = vec![0u8; layout.size as usize];
        for y in 0..layout.height {
            for x in 0..layout.width {
                let at = (p.offset + u64::from(y) * p.stride + u64::from(x) * 4) as usize;
                let px = memory_bytes(pattern_pixel(x, y, layout.width, frame), bgra);
                bytes[at..at + 4].copy_from_slice(&px);
            }
        }
        bytes
    }

    #[test]
    fn check_and_decode_round_trip() {
        for fourcc in [DRM_FORMAT_XRGB8888, DRM_FORMAT_ABGR8888] {
            let layout = ImageLayout::linear(70, 20, fourcc, 64, 300, 64 + 300 * 20);
            for frame in [0u32, 1, 0x1234_5678, u32::MAX] {
                let bytes = cpu_frame(&layout, frame);
                check_frame(&bytes, &layout, frame).unwrap();
                assert_eq!(decode_frame_number(&bytes, &layout), Some(frame));
                let err = check_frame(&bytes, &layout, frame.wrapping_add(1)).unwrap_err();
                assert!(err.y < layout.height && err.x < layout.width);
            }
        }
    }

    #[test]
    fn a_single_wrong_pixel_is_found() {
        let layout = ImageLayout::linear(40, 30, DRM_FORMAT_ARGB8888, 0, 160, 160 * 30);
        let mut bytes = cpu_frame(&layout, 9);
        let at = (25 * 160 + 33 * 4) as usize;
        bytes[at] ^= 1;
        let err = check_frame(&bytes, &layout, 9).unwrap_err();
        assert_eq!((err.x, err.y), (33, 25));
        // A truncated buffer is a mismatch, not a panic.
        assert!(check_frame(&bytes[..100], &layout, 9).is_err());
        assert_eq!(decode_frame_number(&bytes[..10], &layout), None);
    }

    #[test]
    fn every_frame_bit_is_visible() {
        for bit in 0..32 {
            let w = 96;
            let x = (31 - bit) * w / 32;
            assert_eq!(pattern_pixel(x, 0, w, 1 << bit)[0], 255);
            assert_eq!(pattern_pixel(x, 0, w, !(1 << bit))[0], 0);
        }
    }
}
