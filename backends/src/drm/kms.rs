//! A KMS resource summary: CRTCs, planes and connectors with the fence
//! properties bufsync cares about.

use drm::control::{connector, Device as _, ResourceHandle};

use super::DrmDevice;
use crate::error::{Error, Result};

/// One CRTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrtcSummary {
    /// KMS object id.
    pub id: u32,
    /// Has the `OUT_FENCE_PTR` property.
    pub out_fence_ptr: bool,
}

/// A plane's `type` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneKind {
    /// `Overlay`.
    Overlay,
    /// `Primary`.
    Primary,
    /// `Cursor`.
    Cursor,
    /// No or unknown `type` property.
    Unknown,
}

/// One plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneSummary {
    /// KMS object id.
    pub id: u32,
    /// Primary, overlay or cursor.
    pub kind: PlaneKind,
    /// Has the `IN_FENCE_FD` property.
    pub in_fence_fd: bool,
    /// Number of formats it scans out.
    pub formats: usize,
}

/// One connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorSummary {
    /// KMS object id.
    pub id: u32,
    /// Interface and index, e.g. `Virtual-1`, `Writeback-1`.
    pub name: String,
    /// A writeback connector (captures the composed frame).
    pub writeback: bool,
    /// A display is connected.
    pub connected: bool,
    /// Has `WRITEBACK_OUT_FENCE_PTR`.
    pub writeback_out_fence_ptr: bool,
}

/// The KMS resources of a primary node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsSummary {
    /// All CRTCs.
    pub crtcs: Vec<CrtcSummary>,
    /// All planes (universal planes enabled).
    pub planes: Vec<PlaneSummary>,
    /// All connectors (writeback connectors enabled).
    pub connectors: Vec<ConnectorSummary>,
}

/// One property of a KMS object, as `DRM_IOCTL_MODE_OBJ_GETPROPERTIES`
/// and `DRM_IOCTL_MODE_GETPROPERTY` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectProperty {
    /// Its name (`IN_FENCE_FD`, `type`, `IN_FORMATS`...).
    pub name: String,
    /// The property id (for an atomic request).
    pub id: u32,
    /// Its current value (a blob id for blob properties).
    pub value: u64,
}

/// The value of the property called `name` in `props`, if it has one.
pub fn property_value(props: &[ObjectProperty], name: &str) -> Option<u64> {
    props.iter().find(|p| p.name == name).map(|p| p.value)
}

impl DrmDevice {
    /// Every property of the KMS object `handle` with its id and current
    /// value (as this fd's client caps show them).
    pub fn properties<H: ResourceHandle>(&self, handle: H) -> Result<Vec<ObjectProperty>> {
        let props = self
            .get_properties(handle)
            .map_err(|e| Error::io("DRM_IOCTL_MODE_OBJ_GETPROPERTIES", e))?;
        let mut out = Vec::new();
        for (id, value) in props.iter() {
            let info = self
                .get_property(*id)
                .map_err(|e| Error::io("DRM_IOCTL_MODE_GETPROPERTY", e))?;
            out.push(ObjectProperty {
                name: info.name().to_string_lossy().into_owned(),
                id: u32::from(*id),
                value: *value,
            });
        }
        Ok(out)
    }

    /// Lists CRTCs, planes and connectors. Enables the atomic, universal
    /// plane and writeback client caps on this fd first (KMS nodes only;
    /// a node without KMS gives [`Error::Unsupported`]).
    pub fn kms_summary(&self) -> Result<KmsSummary> {
        self.enable_kms_caps()?;
        let res = self
            .resource_handles()
            .map_err(|e| Error::io("DRM_IOCTL_MODE_GETRESOURCES", e))?;
        let mut summary = KmsSummary::default();
        for &crtc in res.crtcs() {
            let props = self.properties(crtc)?;
            summary.crtcs.push(CrtcSummary {
                id: u32::from(crtc),
                out_fence_ptr: property_value(&props, "OUT_FENCE_PTR").is_some(),
            });
        }
        let planes = self
            .plane_handles()
            .map_err(|e| Error::io("DRM_IOCTL_MODE_GETPLANERESOURCES", e))?;
        for plane in planes {
            let info = self
                .get_plane(plane)
                .map_err(|e| Error::io("DRM_IOCTL_MODE_GETPLANE", e))?;
            let props = self.properties(plane)?;
            let kind = match property_value(&props, "type") {
                Some(0) => PlaneKind::Overlay,
                Some(1) => PlaneKind::Primary,
                Some(2) => PlaneKind::Cursor,
                _ => PlaneKind::Unknown,
            };
            summary.planes.push(PlaneSummary {
                id: u32::from(plane),
                kind,
                in_fence_fd: property_value(&props, "IN_FENCE_FD").is_some(),
                formats: info.formats().len(),
            });
        }
        for &conn in res.connectors() {
            let info = self
                .get_connector(conn, false)
                .map_err(|e| Error::io("DRM_IOCTL_MODE_GETCONNECTOR", e))?;
            let props = self.properties(conn)?;
            let writeback = info.interface() == connector::Interface::Writeback;
            summary.connectors.push(ConnectorSummary {
                id: u32::from(conn),
                name: format!("{}-{}", info.interface().as_str(), info.interface_id()),
                writeback,
                connected: info.state() == connector::State::Connected,
                writeback_out_fence_ptr: property_value(&props, "WRITEBACK_OUT_FENCE_PTR")
                    .is_some(),
            });
        }
        Ok(summary)
    }
}
