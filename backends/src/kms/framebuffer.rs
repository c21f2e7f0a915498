//! Framebuffers from dma-bufs: PRIME import of a (possibly foreign)
//! dma-buf, then `DRM_IOCTL_MODE_ADDFB2` with its layout and modifier.
//! Format, modifier and strides are checked against the plane first, so a
//! buffer the plane cannot scan out is a typed error, not a bare EINVAL.
//!
//! Locking: none. A [`Framebuffer`] is owned by one holder and removed
//! (`DRM_IOCTL_MODE_RMFB`) on drop. It holds one reference of its GEM
//! handle in the display fd's handle table until then: PRIME gives every
//! import of one buffer on one fd the same handle (a dumb buffer of this fd
//! exported and imported back included), so the handle is closed only when
//! its last holder (buffer, import or framebuffer) goes.

use std::os::fd::AsFd;
use std::sync::Arc;

use super::error::{Fourcc, KmsError};
use super::formats::FormatSet;
use crate::dmabuf::{DmaBuf, Layout, MOD_INVALID};
use crate::drm::{DrmDevice, GemHandle};

/// `DRM_MODE_FB_MODIFIERS`: the modifier array of ADDFB2 is valid.
const FB_MODIFIERS: u32 = 1 << 1;

/// A KMS framebuffer, removed on drop. Removing a framebuffer that is
/// still on screen turns its plane off (the kernel's RMFB contract), so
/// keep it until a later flip has replaced it.
#[derive(Debug)]
pub struct Framebuffer {
    dev: Arc<DrmDevice>,
    /// Keeps the handle open while the framebuffer exists.
    gem: GemHandle,
    id: u32,
    width: u32,
    height: u32,
    fourcc: u32,
    modifier: u64,
}

impl Framebuffer {
    /// The KMS object id (the plane's `FB_ID` value).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// DRM fourcc.
    pub fn fourcc(&self) -> u32 {
        self.fourcc
    }

    /// DRM format modifier.
    pub fn modifier(&self) -> u64 {
        self.modifier
    }

    /// The GEM handle it scans out (a reference of the fd's table).
    pub fn handle(&self) -> &GemHandle {
        &self.gem
    }

    /// Whether it belongs to `dev`'s fd.
    pub(crate) fn is_on(&self, dev: &Arc<DrmDevice>) -> bool {
        Arc::ptr_eq(&self.dev, dev)
    }

    /// ADDFB2 over GEM handle `gem` of `dev` (every memory plane in the same
    /// object) with an already checked `layout`; the framebuffer keeps a
    /// reference of the handle.
    pub(crate) fn add(
        dev: &Arc<DrmDevice>,
        gem: &GemHandle,
        layout: &Layout,
    ) -> Result<Self, KmsError> {
        let handle = gem.raw();
        let mut handles = [0u32; 4];
        let mut pitches = [0u32; 4];
        let mut offsets = [0u32; 4];
        let mut modifiers = [0u64; 4];
        // A LINEAR buffer goes without the modifier array to drivers that
        // take none (DRM_CAP_ADDFB2_MODIFIERS 0: virtio_gpu answers EINVAL
        // to DRM_MODE_FB_MODIFIERS); linear is what they assume.
        let modifiers_cap =
            crate::sys::drm::get_cap(dev.as_fd(), drm_ffi::DRM_CAP_ADDFB2_MODIFIERS).unwrap_or(0)
                != 0;
        let with_modifier = layout.modifier != MOD_INVALID
            && (modifiers_cap || layout.modifier != crate::dmabuf::MOD_LINEAR);
        for (i, p) in layout.planes.iter().enumerate().take(4) {
            handles[i] = handle;
            pitches[i] = p.stride;
            offsets[i] = p.offset;
            if with_modifier {
                modifiers[i] = layout.modifier;
            }
        }
        let flags = if with_modifier { FB_MODIFIERS } else { 0 };
        let fb = drm_ffi::mode::add_fb2(
            dev.as_fd(),
            layout.width,
            layout.height,
            layout.fourcc,
            &handles,
            &pitches,
            &offsets,
            &modifiers,
            flags,
        )
        .map_err(|e| KmsError::io("DRM_IOCTL_MODE_ADDFB2", e))?;
        log::debug!(
            "framebuffer {} on {}: {}x{} {} modifier {:#x}",
            fb.fb_id,
            dev.driver(),
            layout.width,
            layout.height,
            Fourcc(layout.fourcc),
            layout.modifier
        );
        Ok(Self {
            dev: Arc::clone(dev),
            gem: gem.clone(),
            id: fb.fb_id,
            width: layout.width,
            height: layout.height,
            fourcc: layout.fourcc,
            modifier: layout.modifier,
        })
    }

    /// Imports `buf` with `layout` into `dev` (PRIME), after
    /// [`check_layout`] against `formats` of `plane`.
    pub(crate) fn import(
        dev: &Arc<DrmDevice>,
        plane: u32,
        formats: &FormatSet,
        max: (u32, u32),
        buf: &DmaBuf,
        layout: &Layout,
    ) -> Result<Self, KmsError> {
        check_layout(plane, formats, max, buf.size(), layout)?;
        let gem = dev.import_dmabuf(buf)?;
        // The import's reference goes at the end of this call; the
        // framebuffer keeps its own.
        Self::add(dev, &gem, layout)
    }
}

impl Drop for Framebuffer {
    fn drop(&mut self) {
        if let Err(e) = drm_ffi::mode::rm_fb(self.dev.as_fd(), self.id) {
            log::warn!("RMFB of framebuffer {} failed: {e}", self.id);
        }
    }
}

/// Checks a layout before ADDFB2: size within the device's limits, the
/// (format, modifier) pair in the plane's set, and for single-plane linear
/// RGB formats the stride (at least one row, rows within the buffer, a
/// multiple of the pixel size).
pub fn check_layout(
    plane: u32,
    formats: &FormatSet,
    max: (u32, u32),
    size: u64,
    layout: &Layout,
) -> Result<(), KmsError> {
    let (w, h) = (layout.width, layout.height);
    if w == 0 || h == 0 {
        return Err(KmsError::BadSize {
            width: w,
            height: h,
            why: "empty image".into(),
        });
    }
    if w > max.0 || h > max.1 {
        return Err(KmsError::BadSize {
            width: w,
            height: h,
            why: format!("device maximum is {}x{}", max.0, max.1),
        });
    }
    formats.check(plane, layout.fourcc, layout.modifier)?;
    let bad = |index: usize, why: &'static str| {
        let p = layout
            .planes
            .get(index)
            .copied()
            .unwrap_or(crate::dmabuf::Plane {
                offset: 0,
                stride: 0,
            });
        KmsError::BadStride {
            index,
            stride: p.stride,
            offset: p.offset,
            width: w,
            height: h,
            fourcc: Fourcc(layout.fourcc),
            size,
            why,
        }
    };
    if layout.planes.is_empty() {
        return Err(bad(0, "no memory planes"));
    }
    if layout.planes.len() > 4 {
        return Err(bad(4, "more than 4 memory planes"));
    }
    for (i, p) in layout.planes.iter().enumerate() {
        if p.stride == 0 {
            return Err(bad(i, "zero stride"));
        }
        if u64::from(p.offset) >= size {
            return Err(bad(i, "plane starts beyond the buffer"));
        }
    }
    if let Some(cpp) = Layout::bytes_per_pixel(layout.fourcc) {
        if layout.planes.len() != 1 {
            return Err(bad(1, "single-plane format given several planes"));
        }
        let p = layout.planes[0];
        if u64::from(p.stride) < u64::from(w) * u64::from(cpp) {
            return Err(bad(0, "stride shorter than one row"));
        }
        if p.stride % cpp != 0 {
            return Err(bad(0, "stride not a multiple of the pixel size"));
        }
        let end = u64::from(p.offset)
            + u64::from(p.stride) * u64::from(h - 1)
            + u64::from(w) * u64::from(cpp);
        if end > size {
            return Err(bad(0, "rows run past the end of the buffer"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmabuf::{fourcc, MOD_LINEAR};

    const XR24: u32 = fourcc(b"XR24");

    fn set() -> FormatSet {
        FormatSet::linear_only([XR24, fourcc(b"RG16")])
    }

    #[test]
    fn good_linear_layout_passes() {
        let l = Layout::linear(64, 32, XR24, 256);
        check_layout(1, &set(), (4096, 4096), 256 * 32, &l).unwrap();
        // The last row may be short of the stride.
        let l = Layout::linear(64, 32, XR24, 512);
        check_layout(1, &set(), (4096, 4096), 512 * 31 + 256, &l).unwrap();
    }

    #[test]
    fn refusals_are_typed() {
        let max = (4096, 4096);
        let e =
            check_layout(1, &set(), max, 1 << 20, &Layout::linear(64, 32, XR24, 255)).unwrap_err();
        assert!(
            matches!(
                e,
                KmsError::BadStride {
                    index: 0,
                    stride: 255,
                    why: "stride shorter than one row",
                    ..
                }
            ),
            "{e}"
        );
        let e =
            check_layout(1, &set(), max, 1 << 20, &Layout::linear(64, 32, XR24, 258)).unwrap_err();
        assert!(
            matches!(
                e,
                KmsError::BadStride {
                    why: "stride not a multiple of the pixel size",
                    ..
                }
            ),
            "{e}"
        );
        let e =
            check_layout(1, &set(), max, 256 * 31, &Layout::linear(64, 32, XR24, 256)).unwrap_err();
        assert!(
            matches!(
                e,
                KmsError::BadStride {
                    why: "rows run past the end of the buffer",
                    ..
                }
            ),
            "{e}"
        );
        let e = check_layout(
            1,
            &set(),
            max,
            1 << 20,
            &Layout::linear(64, 32, fourcc(b"NV12"), 64),
        )
        .unwrap_err();
        assert!(
            matches!(e, KmsError::UnsupportedFormat { plane: 1, .. }),
            "{e}"
        );
        let mut tiled = Layout::linear(64, 32, XR24, 256);
        tiled.modifier = 0x0100_0000_0000_0002;
        let e = check_layout(1, &set(), max, 1 << 20, &tiled).unwrap_err();
        assert!(matches!(e, KmsError::UnsupportedModifier { .. }), "{e}");
        let e = check_layout(
            1,
            &set(),
            (32, 32),
            1 << 20,
            &Layout::linear(64, 32, XR24, 256),
        )
        .unwrap_err();
        assert!(matches!(e, KmsError::BadSize { .. }), "{e}");
        let mut two = Layout::linear(64, 32, XR24, 256);
        two.planes.push(two.planes[0]);
        assert!(matches!(
            check_layout(1, &set(), max, 1 << 20, &two),
            Err(KmsError::BadStride { index: 1, .. })
        ));
        assert_eq!(MOD_LINEAR, 0);
    }
}
