//! The display: one KMS device, one output (connector + CRTC + primary
//! plane + mode) chosen at open, the property ids bufsync sets, and the
//! state found at open, restored on drop.
//!
//! Locking: a [`Display`] owns its DRM fd. Commits, flip-event reads and
//! writeback captures take `&mut self` (the pending-flip state and the
//! event stream belong to one user); imports and queries take `&self`.
//! The kernel serializes commits per CRTC.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use drm::control::{connector, Device as _, Mode, ModeTypeFlags, ResourceHandle};

use super::commit::{AtomicRequest, CommitFlags};
use super::error::KmsError;
use super::formats::FormatSet;
use crate::drm::{DrmDevice, NodeKind};

/// Properties of one KMS object: name -> (property id, current value).
#[derive(Debug, Clone, Default)]
pub(super) struct PropTable {
    object: u32,
    props: HashMap<String, (u32, u64)>,
}

impl PropTable {
    /// Reads every property of `handle`.
    pub(super) fn read<H: ResourceHandle>(dev: &DrmDevice, handle: H) -> Result<Self, KmsError> {
        let set = dev
            .get_properties(handle)
            .map_err(|e| KmsError::io("DRM_IOCTL_MODE_OBJ_GETPROPERTIES", e))?;
        let mut props = HashMap::new();
        for (id, value) in set.iter() {
            let info = dev
                .get_property(*id)
                .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETPROPERTY", e))?;
            props.insert(
                info.name().to_string_lossy().into_owned(),
                (u32::from(*id), *value),
            );
        }
        let raw: drm::control::RawResourceHandle = handle.into();
        Ok(Self {
            object: u32::from(raw),
            props,
        })
    }

    /// The id of property `name`, or [`KmsError::MissingProperty`].
    pub(super) fn id(&self, name: &'static str) -> Result<u32, KmsError> {
        self.props
            .get(name)
            .map(|p| p.0)
            .ok_or(KmsError::MissingProperty {
                object: self.object,
                name,
            })
    }

    /// The id of property `name`, if the object has it.
    pub(super) fn opt(&self, name: &str) -> Option<u32> {
        self.props.get(name).map(|p| p.0)
    }

    /// The value property `name` had when read.
    pub(super) fn value(&self, name: &str) -> Option<u64> {
        self.props.get(name).map(|p| p.1)
    }
}

/// The KMS objects of the chosen output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Connector id.
    pub connector: u32,
    /// Connector name, e.g. `Virtual-1`.
    pub connector_name: String,
    /// CRTC id.
    pub crtc: u32,
    /// Primary plane id.
    pub plane: u32,
    /// A writeback connector that can take this CRTC, if any.
    pub writeback: Option<u32>,
}

/// Which output [`Display::with_device_spec`] picks: a connector by name
/// (`Virtual-1`, `HDMI-A-1`...) and a mode; `None` is the default (the
/// first connected connector, its preferred mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSpec {
    /// The connector's name, as in [`Output::connector_name`].
    pub connector: Option<String>,
    /// The mode.
    pub mode: Option<ModeSpec>,
}

/// A mode asked for by size and, optionally, refresh rate (`WxH[@HZ]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSpec {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Vertical refresh in Hz (any when `None`).
    pub refresh: Option<u32>,
}

impl ModeSpec {
    /// Parses `WxH` or `WxH@HZ`, e.g. `1024x768@60`.
    pub fn parse(s: &str) -> Option<ModeSpec> {
        let (size, hz) = match s.split_once('@') {
            Some((size, hz)) => (size, Some(hz.parse().ok()?)),
            None => (s, None),
        };
        let (w, h) = size.split_once('x')?;
        Some(ModeSpec {
            width: w.parse().ok()?,
            height: h.parse().ok()?,
            refresh: hz,
        })
    }

    /// Whether `mode` is this one.
    pub fn matches(&self, mode: &Mode) -> bool {
        mode.size() == (self.width, self.height)
            && self.refresh.map_or(true, |hz| mode.vrefresh() == hz)
    }

    /// `WxH@HZ` of a mode.
    pub fn describe(mode: &Mode) -> String {
        format!("{}x{}@{}", mode.size().0, mode.size().1, mode.vrefresh())
    }
}

impl std::fmt::Display for ModeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)?;
        if let Some(hz) = self.refresh {
            write!(f, "@{hz}")?;
        }
        Ok(())
    }
}

/// Property ids of the primary plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneProps {
    /// `FB_ID`.
    pub fb_id: u32,
    /// `CRTC_ID`.
    pub crtc_id: u32,
    /// `SRC_X`, `SRC_Y`, `SRC_W`, `SRC_H` (16.16 fixed point).
    pub src: [u32; 4],
    /// `CRTC_X`, `CRTC_Y`, `CRTC_W`, `CRTC_H`.
    pub dst: [u32; 4],
    /// `IN_FENCE_FD`, when the driver has it.
    pub in_fence_fd: Option<u32>,
}

/// Property ids of the CRTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrtcProps {
    /// `ACTIVE`.
    pub active: u32,
    /// `MODE_ID`.
    pub mode_id: u32,
    /// `OUT_FENCE_PTR`, when the driver has it.
    pub out_fence_ptr: Option<u32>,
}

/// Property ids of the writeback connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritebackProps {
    /// `CRTC_ID`.
    pub crtc_id: u32,
    /// `WRITEBACK_FB_ID`.
    pub fb_id: u32,
    /// `WRITEBACK_OUT_FENCE_PTR`.
    pub out_fence_ptr: u32,
    /// `WRITEBACK_PIXEL_FORMATS` (the formats it can write).
    pub formats: Vec<u32>,
}

/// Every property id a [`Display`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropIds {
    /// The primary plane's.
    pub plane: PlaneProps,
    /// The CRTC's.
    pub crtc: CrtcProps,
    /// The connector's `CRTC_ID`.
    pub connector_crtc_id: u32,
    /// The writeback connector's, if there is one.
    pub writeback: Option<WritebackProps>,
}

/// What was on the output when it was opened.
#[derive(Debug, Clone, Default)]
struct Saved {
    active: bool,
    mode: Option<Vec<u8>>,
    connector_crtc: u64,
    plane: Vec<(u32, u64)>,
}

/// A KMS display output driven through atomic commits. See the module
/// docs of [`crate::kms`].
#[derive(Debug)]
pub struct Display {
    pub(super) dev: Arc<DrmDevice>,
    pub(super) output: Output,
    pub(super) props: PropIds,
    pub(super) formats: FormatSet,
    pub(super) mode: Mode,
    /// Our MODE_ID blob for `mode`.
    pub(super) mode_blob: u64,
    /// The largest framebuffer the device takes.
    pub(super) max_fb: (u32, u32),
    /// Our mode and connector routing are in place.
    pub(super) configured: bool,
    /// A non-blocking commit's flip event has not been read yet.
    pub(super) pending_flip: bool,
    /// Commits that met EBUSY and were tried again.
    pub(super) busy_retries: u64,
    saved: Saved,
    /// Something was committed since open or the last restore.
    pub(super) dirty: bool,
}

fn range_end(r: impl std::ops::RangeBounds<u32>) -> u32 {
    match r.end_bound() {
        std::ops::Bound::Included(&x) => x,
        std::ops::Bound::Excluded(&x) => x.saturating_sub(1),
        std::ops::Bound::Unbounded => u32::MAX,
    }
}

impl Display {
    /// Opens the primary node of the first device whose driver is
    /// `driver` (`DRM_IOCTL_VERSION`), e.g. `"vkms"`, and picks an output.
    pub fn open_by_driver(driver: &str) -> Result<Self, KmsError> {
        Self::with_device(DrmDevice::find_node(driver, NodeKind::Primary)?)
    }

    /// Opens the KMS node at `path` and picks an output.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self, KmsError> {
        Self::with_device(DrmDevice::open(path)?)
    }

    /// Opens `display` (a path when it starts with `/`, else a driver name)
    /// and picks the output `spec` asks for.
    pub fn open(display: &str, spec: &OutputSpec) -> Result<Self, KmsError> {
        let dev = if display.starts_with('/') {
            DrmDevice::open(display)?
        } else {
            DrmDevice::find_node(display, NodeKind::Primary)?
        };
        Self::with_device_spec(dev, spec)
    }

    /// [`Display::with_device_spec`] with the default choice: the first
    /// connected connector and its preferred mode.
    pub fn with_device(dev: DrmDevice) -> Result<Self, KmsError> {
        Self::with_device_spec(dev, &OutputSpec::default())
    }

    /// Takes an open primary node: enables the universal-plane, atomic and
    /// writeback client caps, picks the connector `spec` names (default:
    /// the first connected one with a mode), a CRTC its encoders can drive,
    /// that CRTC's primary plane and the mode `spec` names (default: the
    /// preferred one), reads their property ids and the plane's
    /// `IN_FORMATS`, and records the current state for [`Display::restore`].
    /// A connector or mode that is not there is [`KmsError::NoOutput`]
    /// naming the ones that are.
    pub fn with_device_spec(dev: DrmDevice, spec: &OutputSpec) -> Result<Self, KmsError> {
        dev.enable_kms_caps()?;
        let dev = Arc::new(dev);
        let res = dev
            .resource_handles()
            .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETRESOURCES", e))?;
        let max_fb = (
            range_end(res.supported_fb_width()),
            range_end(res.supported_fb_height()),
        );

        // Connector, mode and CRTC.
        let mut chosen = None;
        let mut writebacks = Vec::new();
        let mut seen = Vec::new();
        for &conn in res.connectors() {
            let info = dev
                .get_connector(conn, true)
                .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETCONNECTOR", e))?;
            if info.interface() == connector::Interface::Writeback {
                writebacks.push(info);
                continue;
            }
            let name = format!("{}-{}", info.interface().as_str(), info.interface_id());
            let connected = info.state() == connector::State::Connected;
            seen.push(format!(
                "{name} ({})",
                if connected {
                    "connected"
                } else {
                    "disconnected"
                }
            ));
            if chosen.is_some() || !connected || info.modes().is_empty() {
                continue;
            }
            if spec.connector.as_deref().is_some_and(|want| want != name) {
                continue;
            }
            let mode = match &spec.mode {
                Some(want) => match info.modes().iter().find(|m| want.matches(m)) {
                    Some(m) => *m,
                    None => {
                        let modes: Vec<String> =
                            info.modes().iter().map(ModeSpec::describe).collect();
                        return Err(KmsError::NoOutput {
                            what: format!(
                                "{name} on {} has no mode {want}; it has {}",
                                dev.driver(),
                                modes.join(", ")
                            ),
                        });
                    }
                },
                None => info
                    .modes()
                    .iter()
                    .find(|m| m.mode_type().contains(ModeTypeFlags::PREFERRED))
                    .copied()
                    .unwrap_or(info.modes()[0]),
            };
            let mut crtcs = Vec::new();
            for &enc in info.encoders() {
                let e = dev
                    .get_encoder(enc)
                    .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETENCODER", e))?;
                // Prefer the CRTC already driving this connector.
                if Some(enc) == info.current_encoder() {
                    if let Some(c) = e.crtc() {
                        crtcs.insert(0, c);
                    }
                }
                crtcs.extend(res.filter_crtcs(e.possible_crtcs()));
            }
            if let Some(&crtc) = crtcs.first() {
                chosen = Some((info, mode, crtc));
            }
        }
        let Some((conn, mode, crtc)) = chosen else {
            let what = match &spec.connector {
                Some(want) => format!(
                    "no connected connector `{want}` with a mode and a CRTC on {}; connectors: {}",
                    dev.driver(),
                    seen.join(", ")
                ),
                None => format!(
                    "no connected connector with a mode and a CRTC on {}; connectors: {}",
                    dev.driver(),
                    seen.join(", ")
                ),
            };
            return Err(KmsError::NoOutput { what });
        };
        let crtc_index = res.crtcs().iter().position(|&c| c == crtc).unwrap_or(0);

        // Primary plane of that CRTC.
        let planes = dev
            .plane_handles()
            .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETPLANERESOURCES", e))?;
        let mut primary = None;
        for p in planes {
            let info = dev
                .get_plane(p)
                .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETPLANE", e))?;
            if !res.filter_crtcs(info.possible_crtcs()).contains(&crtc) {
                continue;
            }
            let table = PropTable::read(&dev, p)?;
            // `type` 1 is DRM_PLANE_TYPE_PRIMARY.
            if table.value("type") == Some(1) {
                primary = Some((p, info, table));
                break;
            }
        }
        let Some((plane, plane_info, plane_table)) = primary else {
            return Err(KmsError::NoOutput {
                what: format!(
                    "no primary plane for CRTC {} (index {crtc_index})",
                    u32::from(crtc)
                ),
            });
        };
        let formats = match plane_table.value("IN_FORMATS") {
            Some(blob) if blob != 0 => {
                let bytes = dev
                    .get_property_blob(blob)
                    .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETPROPBLOB", e))?;
                FormatSet::parse_in_formats(blob, &bytes)?
            }
            _ => FormatSet::linear_only(plane_info.formats().iter().copied()),
        };

        let crtc_table = PropTable::read(&dev, crtc)?;
        let conn_table = PropTable::read(&dev, conn.handle())?;
        let plane_props = PlaneProps {
            fb_id: plane_table.id("FB_ID")?,
            crtc_id: plane_table.id("CRTC_ID")?,
            src: [
                plane_table.id("SRC_X")?,
                plane_table.id("SRC_Y")?,
                plane_table.id("SRC_W")?,
                plane_table.id("SRC_H")?,
            ],
            dst: [
                plane_table.id("CRTC_X")?,
                plane_table.id("CRTC_Y")?,
                plane_table.id("CRTC_W")?,
                plane_table.id("CRTC_H")?,
            ],
            in_fence_fd: plane_table.opt("IN_FENCE_FD"),
        };
        let crtc_props = CrtcProps {
            active: crtc_table.id("ACTIVE")?,
            mode_id: crtc_table.id("MODE_ID")?,
            out_fence_ptr: crtc_table.opt("OUT_FENCE_PTR"),
        };
        let connector_crtc_id = conn_table.id("CRTC_ID")?;

        // A writeback connector whose encoder can take our CRTC.
        let mut writeback = None;
        for wb in writebacks {
            let can = wb.encoders().iter().any(|&enc| {
                dev.get_encoder(enc)
                    .is_ok_and(|e| res.filter_crtcs(e.possible_crtcs()).contains(&crtc))
            });
            if !can {
                continue;
            }
            let t = PropTable::read(&dev, wb.handle())?;
            let formats = match t.value("WRITEBACK_PIXEL_FORMATS") {
                Some(blob) if blob != 0 => {
                    let bytes = dev
                        .get_property_blob(blob)
                        .map_err(|e| KmsError::io("DRM_IOCTL_MODE_GETPROPBLOB", e))?;
                    bytes
                        .chunks_exact(4)
                        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                }
                _ => Vec::new(),
            };
            writeback = Some((
                u32::from(wb.handle()),
                WritebackProps {
                    crtc_id: t.id("CRTC_ID")?,
                    fb_id: t.id("WRITEBACK_FB_ID")?,
                    out_fence_ptr: t.id("WRITEBACK_OUT_FENCE_PTR")?,
                    formats,
                },
            ));
            break;
        }

        // What is there now, to put back on restore.
        let active = crtc_table.value("ACTIVE").unwrap_or(0) != 0;
        let mode_now = match crtc_table.value("MODE_ID") {
            Some(blob) if blob != 0 => dev.get_property_blob(blob).ok(),
            _ => None,
        };
        let mut saved_plane = Vec::new();
        for name in [
            "FB_ID", "CRTC_ID", "SRC_X", "SRC_Y", "SRC_W", "SRC_H", "CRTC_X", "CRTC_Y", "CRTC_W",
            "CRTC_H",
        ] {
            if let (Some(id), Some(v)) = (plane_table.opt(name), plane_table.value(name)) {
                saved_plane.push((id, v));
            }
        }
        let saved = Saved {
            active,
            mode: mode_now,
            connector_crtc: conn_table.value("CRTC_ID").unwrap_or(0),
            plane: saved_plane,
        };

        let raw_mode: drm_ffi::drm_mode_modeinfo = mode.into();
        let mode_blob = match dev.create_property_blob(&raw_mode) {
            Ok(drm::control::property::Value::Blob(id)) => id,
            Ok(other) => {
                return Err(KmsError::BadBlob {
                    blob: 0,
                    what: format!("CREATEPROPBLOB gave {other:?}"),
                })
            }
            Err(e) => return Err(KmsError::io("DRM_IOCTL_MODE_CREATEPROPBLOB", e)),
        };

        let output = Output {
            connector: u32::from(conn.handle()),
            connector_name: format!("{}-{}", conn.interface().as_str(), conn.interface_id()),
            crtc: u32::from(crtc),
            plane: u32::from(plane),
            writeback: writeback.as_ref().map(|w| w.0),
        };
        log::info!(
            "display on {} ({}): {} CRTC {} plane {} mode {}x{}@{} writeback {:?}",
            dev.driver(),
            dev.path().display(),
            output.connector_name,
            output.crtc,
            output.plane,
            mode.size().0,
            mode.size().1,
            mode.vrefresh(),
            output.writeback
        );
        Ok(Self {
            dev,
            output,
            props: PropIds {
                plane: plane_props,
                crtc: crtc_props,
                connector_crtc_id,
                writeback: writeback.map(|w| w.1),
            },
            formats,
            mode,
            mode_blob,
            max_fb,
            configured: false,
            pending_flip: false,
            busy_retries: 0,
            saved,
            dirty: false,
        })
    }

    /// The device's driver name.
    pub fn driver(&self) -> &str {
        self.dev.driver()
    }

    /// The chosen output.
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// The property ids used in commits (for building raw requests).
    pub fn props(&self) -> &PropIds {
        &self.props
    }

    /// The mode the output is driven with.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The mode's size in pixels.
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = self.mode.size();
        (u32::from(w), u32::from(h))
    }

    /// What the primary plane scans out (from `IN_FORMATS`).
    pub fn formats(&self) -> &FormatSet {
        &self.formats
    }

    /// The MODE_ID blob id of [`Display::mode`] (owned by the display).
    pub fn mode_blob(&self) -> u64 {
        self.mode_blob
    }

    /// Whether the display's mode and routing have been committed.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// Puts back what was on the output at open (mode, routing and primary
    /// plane), after waiting (bounded) for a pending flip; if that is
    /// refused, turns the output off. Also called on drop when anything
    /// was committed since open or the last restore.
    pub fn restore(&mut self) -> Result<(), KmsError> {
        if self.pending_flip {
            if let Err(e) = self.wait_flip(Duration::from_secs(1)) {
                log::warn!("restore: pending flip did not complete: {e}");
            }
        }
        self.dirty = false;
        self.configured = false;
        let crtc = self.output.crtc;
        let mut req = AtomicRequest::new();
        if let (Some(wb), Some(wb_conn)) = (&self.props.writeback, self.output.writeback) {
            req.set(wb_conn, wb.crtc_id, 0);
        }
        let mut temp_blob = None;
        if let (true, Some(mode)) = (self.saved.active, &self.saved.mode) {
            let mut bytes = mode.clone();
            match drm_ffi::mode::create_property_blob(self.dev.as_fd(), &mut bytes) {
                Ok(b) => {
                    temp_blob = Some(b.blob_id);
                    req.set(crtc, self.props.crtc.active, 1);
                    req.set(crtc, self.props.crtc.mode_id, u64::from(b.blob_id));
                    req.set(
                        self.output.connector,
                        self.props.connector_crtc_id,
                        self.saved.connector_crtc,
                    );
                    for &(prop, value) in &self.saved.plane {
                        req.set(self.output.plane, prop, value);
                    }
                }
                Err(e) => log::warn!("restore: cannot re-create the saved mode blob: {e}"),
            }
        }
        let flags = CommitFlags {
            allow_modeset: true,
            ..Default::default()
        };
        let mut result = Ok(());
        if temp_blob.is_some() {
            result = req.commit(self.dev.as_fd(), flags).map(drop);
            if let Err(e) = &result {
                log::warn!(
                    "restore: putting back the saved state failed ({e}); turning the output off"
                );
            }
        }
        if temp_blob.is_none() || result.is_err() {
            let mut off = AtomicRequest::new();
            if let (Some(wb), Some(wb_conn)) = (&self.props.writeback, self.output.writeback) {
                off.set(wb_conn, wb.crtc_id, 0);
            }
            off.set(self.output.plane, self.props.plane.fb_id, 0)
                .set(self.output.plane, self.props.plane.crtc_id, 0)
                .set(self.output.connector, self.props.connector_crtc_id, 0)
                .set(crtc, self.props.crtc.active, 0)
                .set(crtc, self.props.crtc.mode_id, 0);
            result = off.commit(self.dev.as_fd(), flags).map(drop);
        }
        if let Some(id) = temp_blob {
            let _ = drm_ffi::mode::destroy_property_blob(self.dev.as_fd(), id);
        }
        result
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if self.dirty {
            if let Err(e) = self.restore() {
                log::warn!("restoring the display on drop failed: {e}");
            }
        }
        if let Err(e) =
            drm_ffi::mode::destroy_property_blob(self.dev.as_fd(), self.mode_blob as u32)
        {
            log::debug!("destroying mode blob {} failed: {e}", self.mode_blob);
        }
    }
}
