//! The formats and modifiers a plane scans out: the `IN_FORMATS` blob
//! (`struct drm_format_modifier_blob`, include/uapi/drm/drm_mode.h), with
//! the plane's plain format list as the fallback for drivers without it.
//!
//! Locking: a [`FormatSet`] is immutable once parsed; no lock.

use super::error::{Fourcc, KmsError};
use crate::dmabuf::MOD_LINEAR;

/// `FORMAT_BLOB_CURRENT`: the only blob version the kernel writes.
const FORMAT_BLOB_VERSION: u32 = 1;
/// Size of the blob header (six u32).
const HEADER_LEN: usize = 24;
/// Size of one `struct drm_format_modifier`.
const MODIFIER_LEN: usize = 24;

/// The (format, modifier) pairs a plane accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatSet {
    formats: Vec<u32>,
    /// For each entry of `formats`, the modifiers it supports.
    modifiers: Vec<Vec<u64>>,
}

fn read_u32(blob: &[u8], at: usize) -> Option<u32> {
    blob.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(blob: &[u8], at: usize) -> Option<u64> {
    let b = blob.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_ne_bytes(a))
}

impl FormatSet {
    /// Parses an `IN_FORMATS` blob (`blob_id` is only for the error).
    /// Every count and offset is bounds-checked: a malformed blob gives
    /// [`KmsError::BadBlob`], never a panic.
    pub fn parse_in_formats(blob_id: u64, blob: &[u8]) -> Result<Self, KmsError> {
        let bad = |what: String| KmsError::BadBlob {
            blob: blob_id,
            what,
        };
        let header = |i: usize| {
            read_u32(blob, i * 4)
                .ok_or_else(|| bad(format!("{} bytes, header needs {HEADER_LEN}", blob.len())))
        };
        let version = header(0)?;
        if version != FORMAT_BLOB_VERSION {
            return Err(bad(format!("version {version}")));
        }
        let count_formats = header(2)? as usize;
        let formats_offset = header(3)? as usize;
        let count_modifiers = header(4)? as usize;
        let modifiers_offset = header(5)? as usize;

        let formats_end = count_formats
            .checked_mul(4)
            .and_then(|n| n.checked_add(formats_offset))
            .filter(|&end| end <= blob.len())
            .ok_or_else(|| {
                bad(format!(
                    "{count_formats} formats at {formats_offset} overrun {} bytes",
                    blob.len()
                ))
            })?;
        let formats: Vec<u32> = (formats_offset..formats_end)
            .step_by(4)
            .filter_map(|at| read_u32(blob, at))
            .collect();

        count_modifiers
            .checked_mul(MODIFIER_LEN)
            .and_then(|n| n.checked_add(modifiers_offset))
            .filter(|&end| end <= blob.len())
            .ok_or_else(|| {
                bad(format!(
                    "{count_modifiers} modifiers at {modifiers_offset} overrun {} bytes",
                    blob.len()
                ))
            })?;
        let mut modifiers = vec![Vec::new(); formats.len()];
        for m in 0..count_modifiers {
            let at = modifiers_offset + m * MODIFIER_LEN;
            let (Some(mask), Some(offset), Some(modifier)) = (
                read_u64(blob, at),
                read_u32(blob, at + 8),
                read_u64(blob, at + 16),
            ) else {
                return Err(bad(format!("modifier entry {m} truncated")));
            };
            for bit in 0..64usize {
                if mask & (1u64 << bit) == 0 {
                    continue;
                }
                let index = offset as usize + bit;
                let Some(list) = modifiers.get_mut(index) else {
                    return Err(bad(format!(
                        "modifier {modifier:#x} names format index {index} of {}",
                        formats.len()
                    )));
                };
                if !list.contains(&modifier) {
                    list.push(modifier);
                }
            }
        }
        Ok(Self { formats, modifiers })
    }

    /// A set from a plane's plain format list (no `IN_FORMATS`): every
    /// format is taken to support only the linear modifier, which is what
    /// the kernel assumes for drivers without modifier support.
    pub fn linear_only(formats: impl IntoIterator<Item = u32>) -> Self {
        let formats: Vec<u32> = formats.into_iter().collect();
        let modifiers = vec![vec![MOD_LINEAR]; formats.len()];
        Self { formats, modifiers }
    }

    /// The formats, in the driver's order.
    pub fn formats(&self) -> &[u32] {
        &self.formats
    }

    /// The modifiers supported with `fourcc` (empty when the format is not).
    pub fn modifiers(&self, fourcc: u32) -> &[u64] {
        match self.formats.iter().position(|&f| f == fourcc) {
            Some(i) => &self.modifiers[i],
            None => &[],
        }
    }

    /// Whether `fourcc` is scanned out with any modifier.
    pub fn has_format(&self, fourcc: u32) -> bool {
        self.formats.contains(&fourcc)
    }

    /// Whether the pair is supported.
    pub fn supports(&self, fourcc: u32, modifier: u64) -> bool {
        self.modifiers(fourcc).contains(&modifier)
    }

    /// Checks the pair for `plane`: [`KmsError::UnsupportedFormat`] when the
    /// format is unknown to the plane, [`KmsError::UnsupportedModifier`]
    /// when only the modifier is refused.
    pub fn check(&self, plane: u32, fourcc: u32, modifier: u64) -> Result<(), KmsError> {
        if !self.has_format(fourcc) {
            return Err(KmsError::UnsupportedFormat {
                plane,
                fourcc: Fourcc(fourcc),
            });
        }
        if !self.supports(fourcc, modifier) {
            return Err(KmsError::UnsupportedModifier {
                plane,
                fourcc: Fourcc(fourcc),
                modifier,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmabuf::fourcc;

    /// Builds a blob the way the kernel's `create_in_format_blob` does.
    fn blob(formats: &[u32], mods: &[(u64, u32, u64)]) -> Vec<u8> {
        let formats_offset = HEADER_LEN as u32;
        let modifiers_offset =
            (formats_offset as usize + formats.len() * 4).next_multiple_of(8) as u32;
        let mut b = Vec::new();
        for v in [
            1u32,
            0,
            formats.len() as u32,
            formats_offset,
            mods.len() as u32,
            modifiers_offset,
        ] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        for f in formats {
            b.extend_from_slice(&f.to_ne_bytes());
        }
        b.resize(modifiers_offset as usize, 0);
        for &(mask, offset, modifier) in mods {
            b.extend_from_slice(&mask.to_ne_bytes());
            b.extend_from_slice(&offset.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&modifier.to_ne_bytes());
        }
        b
    }

    const XR24: u32 = fourcc(b"XR24");
    const AR24: u32 = fourcc(b"AR24");
    const NV12: u32 = fourcc(b"NV12");
    const TILED: u64 = 0x0100_0000_0000_0001;

    #[test]
    fn parses_formats_and_modifiers() {
        let b = blob(
            &[XR24, AR24, NV12],
            &[
                (0b011, 0, MOD_LINEAR),
                (0b001, 0, TILED),
                (0b100, 0, MOD_LINEAR),
            ],
        );
        let set = FormatSet::parse_in_formats(7, &b).unwrap();
        assert_eq!(set.formats(), &[XR24, AR24, NV12]);
        assert_eq!(set.modifiers(XR24), &[MOD_LINEAR, TILED]);
        assert_eq!(set.modifiers(AR24), &[MOD_LINEAR]);
        assert!(set.supports(NV12, MOD_LINEAR));
        assert!(set.check(1, XR24, TILED).is_ok());
        assert!(matches!(
            set.check(1, AR24, TILED),
            Err(KmsError::UnsupportedModifier {
                modifier: TILED,
                ..
            })
        ));
        assert!(matches!(
            set.check(1, fourcc(b"RG16"), MOD_LINEAR),
            Err(KmsError::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn modifier_offset_shifts_the_mask() {
        let formats: Vec<u32> = (0..70u32).map(|i| 0x1000 + i).collect();
        let b = blob(&formats, &[(1 << 2, 64, TILED)]);
        let set = FormatSet::parse_in_formats(1, &b).unwrap();
        assert_eq!(set.modifiers(0x1000 + 66), &[TILED]);
        assert!(set.modifiers(0x1000 + 2).is_empty());
    }

    #[test]
    fn malformed_blobs_are_typed_errors() {
        let good = blob(&[XR24], &[(1, 0, MOD_LINEAR)]);
        for cut in [0, 4, 23, 27, good.len() - 1] {
            assert!(
                matches!(
                    FormatSet::parse_in_formats(3, &good[..cut]),
                    Err(KmsError::BadBlob { blob: 3, .. })
                ),
                "cut {cut}"
            );
        }
        let mut wrong_version = good.clone();
        wrong_version[0] = 2;
        assert!(matches!(
            FormatSet::parse_in_formats(3, &wrong_version),
            Err(KmsError::BadBlob { .. })
        ));
        // A mask bit beyond the format list.
        let b = blob(&[XR24], &[(0b10, 0, MOD_LINEAR)]);
        assert!(matches!(
            FormatSet::parse_in_formats(3, &b),
            Err(KmsError::BadBlob { .. })
        ));
        // Huge counts must not overflow.
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            FormatSet::parse_in_formats(3, &huge),
            Err(KmsError::BadBlob { .. })
        ));
        let mut huge_off = good;
        huge_off[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            FormatSet::parse_in_formats(3, &huge_off),
            Err(KmsError::BadBlob { .. })
        ));
    }

    #[test]
    fn linear_only_fallback() {
        let set = FormatSet::linear_only([XR24]);
        assert!(set.supports(XR24, MOD_LINEAR));
        assert!(matches!(
            set.check(9, XR24, TILED),
            Err(KmsError::UnsupportedModifier { plane: 9, .. })
        ));
    }
}
