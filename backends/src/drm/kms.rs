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

impl DrmDevice {
    fn prop_names<H: ResourceHandle>(&self, handle: H) -> Result<Vec<(String, u64)>> {
        let props = self
            .get_properties(handle)
            .map_err(|e| Error::io("DRM_IOCTL_MODE_OBJ_GETPROPERTIES", e))?;
        let mut out = Vec::new();
        for (id, value) in props.iter() {
            let info = self
                .get_property(*id)
                .map_err(|e| Error::io("DRM_IOCTL_MODE_GETPROPERTY", e))?;
            out.push((info.name().to_string_lossy().into_owned(), *value));
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
            let props = self.prop_names(crtc)?;
            summary.crtcs.push(CrtcSummary {
                id: u32::from(crtc),
                out_fence_ptr: props.iter().any(|(n, _)| n == "OUT_FENCE_PTR"),
            });
        }
        let planes = self
            .plane_handles()
            .map_err(|e| Error::io("DRM_IOCTL_MODE_GETPLANERESOURCES", e))?;
        for plane in planes {
            let info = self
                .get_plane(plane)
                .map_err(|e| Error::io("DRM_IOCTL_MODE_GETPLANE", e))?;
            let props = self.prop_names(plane)?;
            let kind = match props.iter().find(|(n, _)| n == "type").map(|(_, v)| *v) {
                Some(0) => PlaneKind::Overlay,
                Some(1) => PlaneKind::Primary,
                Some(2) => PlaneKind::Cursor,
                _ => PlaneKind::Unknown,
            };
            summary.planes.push(PlaneSummary {
                id: u32::from(plane),
                kind,
                in_fence_fd: props.iter().any(|(n, _)| n == "IN_FENCE_FD"),
                formats: info.formats().len(),
            });
        }
        for &conn in res.connectors() {
            let info = self
                .get_connector(conn, false)
                .map_err(|e| Error::io("DRM_IOCTL_MODE_GETCONNECTOR", e))?;
            let props = self.prop_names(conn)?;
            let writeback = info.interface() == connector::Interface::Writeback;
            summary.connectors.push(ConnectorSummary {
                id: u32::from(conn),
                name: format!("{}-{}", info.interface().as_str(), info.interface_id()),
                writeback,
                connected: info.state() == connector::State::Connected,
                writeback_out_fence_ptr: props.iter().any(|(n, _)| n == "WRITEBACK_OUT_FENCE_PTR"),
            });
        }
        Ok(summary)
    }
}
