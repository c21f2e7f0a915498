//! Names for DRM fourccs and format modifiers, as the kernel's
//! `include/uapi/drm/drm_fourcc.h` spells them (`XR24`, `LINEAR`,
//! `X_TILED`, `NVIDIA_BLOCK_LINEAR_2D(h=4,k=0,g=2,s=0,c=0)`), and the pair
//! form `XR24:LINEAR` used by every subcommand.

/// `DRM_FORMAT_MOD_LINEAR`.
pub const MOD_LINEAR: u64 = 0;
/// `DRM_FORMAT_MOD_INVALID`.
pub const MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;
/// `DRM_FORMAT_BIG_ENDIAN`.
const BIG_ENDIAN: u32 = 1 << 31;

/// The four characters of a fourcc (`XR24`), `_BE` appended for
/// big-endian formats; `0x…` when they are not printable.
pub fn fourcc(code: u32) -> String {
    let bytes = (code & !BIG_ENDIAN).to_le_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        let mut s: String = bytes.iter().map(|&b| b as char).collect();
        s.truncate(s.trim_end().len());
        if code & BIG_ENDIAN != 0 {
            s.push_str("_BE");
        }
        s
    } else {
        format!("{code:#010x}")
    }
}

fn vendor(v: u8) -> Option<&'static str> {
    Some(match v {
        0x01 => "INTEL",
        0x02 => "AMD",
        0x03 => "NVIDIA",
        0x04 => "SAMSUNG",
        0x05 => "QCOM",
        0x06 => "VIVANTE",
        0x07 => "BROADCOM",
        0x08 => "ARM",
        0x09 => "ALLWINNER",
        0x0a => "AMLOGIC",
        0x0b => "MTK",
        0x0c => "APPLE",
        _ => return None,
    })
}

fn intel(code: u64) -> Option<&'static str> {
    Some(match code {
        1 => "X_TILED",
        2 => "Y_TILED",
        3 => "Yf_TILED",
        4 => "Y_TILED_CCS",
        5 => "Yf_TILED_CCS",
        6 => "Y_TILED_GEN12_RC_CCS",
        7 => "Y_TILED_GEN12_MC_CCS",
        8 => "Y_TILED_GEN12_RC_CCS_CC",
        9 => "4_TILED",
        10 => "4_TILED_DG2_RC_CCS",
        11 => "4_TILED_DG2_MC_CCS",
        12 => "4_TILED_DG2_RC_CCS_CC",
        13 => "4_TILED_MTL_RC_CCS",
        14 => "4_TILED_MTL_MC_CCS",
        15 => "4_TILED_MTL_RC_CCS_CC",
        16 => "4_TILED_LNL_CCS",
        17 => "4_TILED_BMG_CCS",
        _ => return None,
    })
}

/// A format modifier's name: `LINEAR`, `INVALID`, Intel's tilings by
/// their macro names, NVIDIA's block-linear layouts with their parameters
/// (`DRM_FORMAT_MOD_NVIDIA_BLOCK_LINEAR_2D(c, s, g, k, h)`), otherwise the
/// vendor and the vendor-specific bits (`AMD(0x…)`).
pub fn modifier(m: u64) -> String {
    match m {
        MOD_LINEAR => return "LINEAR".into(),
        MOD_INVALID => return "INVALID".into(),
        _ => {}
    }
    let v = (m >> 56) as u8;
    let code = m & 0x00ff_ffff_ffff_ffff;
    match (vendor(v), v) {
        (Some(_), 0x01) if intel(code).is_some() => intel(code).unwrap_or_default().into(),
        (Some(_), 0x03) if code == 1 => "NVIDIA_TEGRA_TILED".into(),
        (Some(_), 0x03) if code & 0x10 != 0 && code >> 26 == 0 => format!(
            "NVIDIA_BLOCK_LINEAR_2D(h={},k={},g={},s={},c={})",
            code & 0xf,
            (code >> 12) & 0xff,
            (code >> 20) & 0x3,
            (code >> 22) & 0x1,
            (code >> 23) & 0x7
        ),
        (Some(name), _) => format!("{name}({code:#x})"),
        (None, _) => format!("{m:#x}"),
    }
}

/// `FOURCC:MODIFIER`, e.g. `XR24:LINEAR`.
pub fn pair(code: u32, m: u64) -> String {
    format!("{}:{}", fourcc(code), modifier(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourccs() {
        assert_eq!(fourcc(u32::from_le_bytes(*b"XR24")), "XR24");
        assert_eq!(fourcc(u32::from_le_bytes(*b"R8  ")), "R8");
        assert_eq!(fourcc(u32::from_le_bytes(*b"RG16") | BIG_ENDIAN), "RG16_BE");
        assert_eq!(fourcc(0x0102_0304), "0x01020304");
    }

    #[test]
    fn modifiers() {
        assert_eq!(modifier(0), "LINEAR");
        assert_eq!(modifier(MOD_INVALID), "INVALID");
        assert_eq!(modifier(0x0100_0000_0000_0001), "X_TILED");
        assert_eq!(modifier(0x0100_0000_0000_0009), "4_TILED");
        // DRM_FORMAT_MOD_NVIDIA_BLOCK_LINEAR_2D(0, 1, 2, 0x06, 4)
        let nv = 0x0300_0000_0000_0000 | 0x10 | 4 | (0x06 << 12) | (2 << 20) | (1 << 22);
        assert_eq!(modifier(nv), "NVIDIA_BLOCK_LINEAR_2D(h=4,k=6,g=2,s=1,c=0)");
        assert_eq!(modifier(0x0200_0000_0000_1234), "AMD(0x1234)");
        assert_eq!(modifier(0x7f00_0000_0000_0001), "0x7f00000000000001");
        assert_eq!(pair(u32::from_le_bytes(*b"AR24"), 0), "AR24:LINEAR");
    }
}
