//! `bufsync-info devices`: every DRM node, what its driver says it can do,
//! and for KMS nodes the outputs: connectors (state, modes), CRTCs, planes
//! (type, `IN_FORMATS` as `FOURCC:MODIFIER`, `IN_FENCE_FD`) and writeback.
//!
//! Everything comes from the kernel: `DRM_IOCTL_VERSION`, `GET_CAP`
//! (through bufsync's [`DrmDevice::caps`], the probe the runtime uses),
//! `SET_CLIENT_CAP(ATOMIC)` (accepted only by atomic drivers), and the KMS
//! object and property ioctls with the universal-plane, atomic and
//! writeback client caps set on the tool's own fd.

use std::path::Path;

use bufsync_backends::drm::{property_value, DrmDevice, NodeKind, ObjectProperty};
use bufsync_backends::kms::FormatSet;
use drm::control::{connector, Device as _, ModeTypeFlags, ResourceHandle};
use drm::{ClientCapability, Device as _, DriverCapability};
use schemars::JsonSchema;
use serde::Serialize;

use crate::names;
use crate::text::{wrap, yes, Table};

/// The `devices` report (JSON schema `bufsync-info.devices`, version 1).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DevicesReport {
    /// `bufsync-info.devices`.
    pub schema: &'static str,
    /// Schema version ([`crate::schema::VERSION`]).
    pub version: u32,
    /// Every node under `/dev/dri`, sorted by path.
    pub nodes: Vec<Node>,
    /// Nodes that could not be opened, with the reason.
    pub unopened: Vec<Unopened>,
    /// What could not be looked at here, and why.
    pub untested: Vec<String>,
}

/// A node that could not be opened.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Unopened {
    /// Its path.
    pub path: String,
    /// The error.
    pub error: String,
}

/// One DRM node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Node {
    /// `/dev/dri/card0`, `/dev/dri/renderD128`.
    pub path: String,
    /// The driver's name (`DRM_IOCTL_VERSION`).
    pub driver: String,
    /// The driver's description.
    pub description: String,
    /// `major.minor.patch`.
    pub driver_version: String,
    /// `primary` (card) or `render`.
    #[schemars(extend("enum" = ["primary", "render"]))]
    pub kind: &'static str,
    /// The sysfs device the node belongs to (`0000:00:02.0`, `vkms`):
    /// nodes with the same value are one device.
    pub sysfs_device: Option<String>,
    /// What the driver reports.
    pub caps: NodeCaps,
    /// The KMS objects (primary nodes of KMS drivers only).
    pub kms: Option<Kms>,
}

/// Driver capabilities of one node.
#[derive(Debug, Serialize, JsonSchema, Clone, Copy)]
pub struct NodeCaps {
    /// `DRM_PRIME_CAP_IMPORT`.
    pub prime_import: bool,
    /// `DRM_PRIME_CAP_EXPORT`.
    pub prime_export: bool,
    /// `DRM_CAP_DUMB_BUFFER`.
    pub dumb_buffer: bool,
    /// `DRM_CAP_SYNCOBJ`.
    pub syncobj: bool,
    /// `DRM_CAP_SYNCOBJ_TIMELINE`.
    pub syncobj_timeline: bool,
    /// `DRM_CLIENT_CAP_ATOMIC` accepted (an atomic KMS driver; render
    /// nodes never take it).
    pub atomic: bool,
    /// `DRM_CAP_ADDFB2_MODIFIERS`.
    pub addfb2_modifiers: bool,
}

/// The KMS objects of a primary node.
#[derive(Debug, Serialize, JsonSchema, Default)]
pub struct Kms {
    /// Connectors, writeback ones included.
    pub connectors: Vec<Connector>,
    /// CRTCs.
    pub crtcs: Vec<Crtc>,
    /// Planes (universal planes: primary, overlay, cursor).
    pub planes: Vec<Plane>,
}

/// One mode.
#[derive(Debug, Serialize, JsonSchema, Clone)]
pub struct ModeInfo {
    /// `WxH@HZ`.
    pub name: String,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Vertical refresh (Hz).
    pub refresh: u32,
    /// The connector's preferred mode.
    pub preferred: bool,
}

/// One connector.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Connector {
    /// KMS object id.
    pub id: u32,
    /// `Virtual-1`, `HDMI-A-1`, `Writeback-1`.
    pub name: String,
    /// `connected`, `disconnected` or `unknown`.
    #[schemars(extend("enum" = ["connected", "disconnected", "unknown"]))]
    pub state: &'static str,
    /// The CRTC driving it now (`CRTC_ID`), if any.
    pub crtc: Option<u32>,
    /// Its modes (empty for writeback connectors).
    pub modes: Vec<ModeInfo>,
    /// A writeback connector.
    pub writeback: bool,
    /// Writeback only: `WRITEBACK_PIXEL_FORMATS`.
    pub writeback_formats: Vec<String>,
    /// Writeback only: has `WRITEBACK_OUT_FENCE_PTR`.
    pub writeback_out_fence_ptr: bool,
}

/// One CRTC.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Crtc {
    /// KMS object id.
    pub id: u32,
    /// `ACTIVE`.
    pub active: bool,
    /// The current mode, if any.
    pub mode: Option<String>,
    /// Has `OUT_FENCE_PTR`.
    pub out_fence_ptr: bool,
}

/// One plane.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Plane {
    /// KMS object id.
    pub id: u32,
    /// `primary`, `overlay`, `cursor` or `unknown`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["primary", "overlay", "cursor", "unknown"]))]
    pub kind: &'static str,
    /// The CRTCs it can be on.
    pub possible_crtcs: Vec<u32>,
    /// The CRTC it is on now.
    pub crtc: Option<u32>,
    /// Has `IN_FENCE_FD`.
    pub in_fence_fd: bool,
    /// The formats came from `IN_FORMATS` (else the plain format list,
    /// LINEAR only).
    pub in_formats: bool,
    /// A cursor plane of a para-virtualized driver (virtio_gpu, vmwgfx,
    /// qxl...): the kernel shows it to an atomic client only after
    /// `DRM_CLIENT_CAP_CURSOR_PLANE_HOTSPOT`, which promises to set its
    /// hotspot; bufsync's displays do not, so they never use it.
    pub hotspot_cursor: bool,
    /// Every (format, modifier) pair, `FOURCC:MODIFIER`.
    pub formats: Vec<String>,
}

impl Plane {
    /// The plane's formats as a [`FormatSet`]-like list of pairs.
    pub fn pairs(set: &FormatSet) -> Vec<String> {
        let mut out = Vec::new();
        for &f in set.formats() {
            for &m in set.modifiers(f) {
                out.push(names::pair(f, m));
            }
        }
        out
    }
}

/// Collects the report (opens every node; sets client caps on its own fds
/// only).
pub fn collect() -> DevicesReport {
    let mut report = DevicesReport {
        schema: "bufsync-info.devices",
        version: crate::schema::VERSION,
        nodes: Vec::new(),
        unopened: Vec::new(),
        untested: Vec::new(),
    };
    let paths = DrmDevice::node_paths();
    if paths.is_empty() {
        report
            .untested
            .push("DRM nodes: no /dev/dri on this machine (no DRM driver loaded)".into());
    }
    for path in paths {
        match DrmDevice::open(&path) {
            Ok(dev) => report.nodes.push(node(&dev)),
            Err(e) => report.unopened.push(Unopened {
                path: path.display().to_string(),
                error: e.to_string(),
            }),
        }
    }
    if !report.nodes.iter().any(|n| n.kms.is_some()) {
        report
            .untested
            .push("KMS outputs: no KMS node here (no display driver)".into());
    }
    report
}

/// The sysfs device of node `path` (`/sys/class/drm/<name>/device`).
fn sysfs_device(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let link = std::fs::read_link(format!("/sys/class/drm/{name}/device")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// What the driver of `dev` reports.
pub fn caps(dev: &DrmDevice) -> NodeCaps {
    let c = dev.caps();
    NodeCaps {
        prime_import: c.prime_import,
        prime_export: c.prime_export,
        dumb_buffer: c.dumb_buffer,
        syncobj: c.syncobj,
        syncobj_timeline: c.syncobj_timeline,
        atomic: dev.kind() == NodeKind::Primary
            && dev
                .set_client_capability(ClientCapability::Atomic, true)
                .is_ok(),
        addfb2_modifiers: dev
            .get_driver_capability(DriverCapability::AddFB2Modifiers)
            .is_ok_and(|v| v != 0),
    }
}

fn node(dev: &DrmDevice) -> Node {
    let (description, driver_version) = match dev.get_driver() {
        Ok(d) => (
            d.description().to_string_lossy().into_owned(),
            format!("{}.{}.{}", d.version.0, d.version.1, d.version.2),
        ),
        Err(e) => (format!("DRM_IOCTL_VERSION failed: {e}"), String::new()),
    };
    let caps = caps(dev);
    let kms = if dev.kind() == NodeKind::Primary && caps.atomic {
        match kms(dev) {
            Ok(k) => Some(k),
            Err(e) => {
                log::warn!("{}: KMS objects: {e}", dev.path().display());
                None
            }
        }
    } else {
        None
    };
    Node {
        path: dev.path().display().to_string(),
        driver: dev.driver().to_owned(),
        description,
        driver_version,
        kind: match dev.kind() {
            NodeKind::Primary => "primary",
            NodeKind::Render => "render",
        },
        sysfs_device: sysfs_device(dev.path()),
        caps,
        kms,
    }
}

/// Every property of one KMS object (name, id, value).
fn props<H: ResourceHandle>(dev: &DrmDevice, h: H) -> std::io::Result<Vec<ObjectProperty>> {
    dev.properties(h).map_err(std::io::Error::other)
}

/// A plane's `type` property value as the report names it.
pub fn plane_type(value: Option<u64>) -> &'static str {
    match value {
        Some(0) => "overlay",
        Some(1) => "primary",
        Some(2) => "cursor",
        _ => "unknown",
    }
}

/// The formats a plane scans out: its `IN_FORMATS` blob, else its plain
/// list (LINEAR). Returns the set and whether it came from `IN_FORMATS`.
pub fn plane_formats(
    dev: &DrmDevice,
    plane: drm::control::plane::Handle,
) -> std::io::Result<(FormatSet, bool)> {
    let info = dev.get_plane(plane)?;
    let list = props(dev, plane)?;
    if let Some(blob) = property_value(&list, "IN_FORMATS").filter(|&b| b != 0) {
        let bytes = dev.get_property_blob(blob)?;
        match FormatSet::parse_in_formats(blob, &bytes) {
            Ok(set) => return Ok((set, true)),
            Err(e) => log::warn!("plane {}: {e}", u32::from(plane)),
        }
    }
    Ok((
        FormatSet::linear_only(info.formats().iter().copied()),
        false,
    ))
}

fn mode_name(m: &drm::control::Mode) -> String {
    format!("{}x{}@{}", m.size().0, m.size().1, m.vrefresh())
}

fn kms(dev: &DrmDevice) -> std::io::Result<Kms> {
    dev.set_client_capability(ClientCapability::UniversalPlanes, true)?;
    // Writeback connectors are listed only with this cap (atomic drivers).
    let _ = dev.set_client_capability(ClientCapability::WritebackConnectors, true);
    let res = dev.resource_handles()?;
    let mut kms = Kms::default();
    for &h in res.connectors() {
        let info = dev.get_connector(h, true)?;
        let list = props(dev, h)?;
        let writeback = info.interface() == connector::Interface::Writeback;
        let writeback_formats =
            match property_value(&list, "WRITEBACK_PIXEL_FORMATS").filter(|&b| b != 0) {
                Some(blob) => dev
                    .get_property_blob(blob)?
                    .chunks_exact(4)
                    .map(|c| names::fourcc(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
                None => Vec::new(),
            };
        let crtc = property_value(&list, "CRTC_ID")
            .filter(|&c| c != 0)
            .map(|c| c as u32)
            .or_else(|| {
                let enc = dev.get_encoder(info.current_encoder()?).ok()?;
                enc.crtc().map(u32::from)
            });
        kms.connectors.push(Connector {
            id: u32::from(h),
            name: format!("{}-{}", info.interface().as_str(), info.interface_id()),
            state: match info.state() {
                connector::State::Connected => "connected",
                connector::State::Disconnected => "disconnected",
                connector::State::Unknown => "unknown",
            },
            crtc,
            modes: info
                .modes()
                .iter()
                .map(|m| ModeInfo {
                    name: mode_name(m),
                    width: m.size().0,
                    height: m.size().1,
                    refresh: m.vrefresh(),
                    preferred: m.mode_type().contains(ModeTypeFlags::PREFERRED),
                })
                .collect(),
            writeback,
            writeback_formats,
            writeback_out_fence_ptr: property_value(&list, "WRITEBACK_OUT_FENCE_PTR").is_some(),
        });
    }
    for &h in res.crtcs() {
        let info = dev.get_crtc(h)?;
        let list = props(dev, h)?;
        kms.crtcs.push(Crtc {
            id: u32::from(h),
            active: property_value(&list, "ACTIVE").map_or(info.mode().is_some(), |v| v != 0),
            mode: info.mode().as_ref().map(mode_name),
            out_fence_ptr: property_value(&list, "OUT_FENCE_PTR").is_some(),
        });
    }
    // What an atomic client sees (bufsync's displays), then every plane:
    // para-virtualized drivers hide their cursor planes from the first.
    let atomic_view = dev.plane_handles()?;
    let hotspot = dev
        .set_client_capability(ClientCapability::CursorPlaneHotspot, true)
        .is_ok();
    let all = if hotspot {
        dev.plane_handles()?
    } else {
        atomic_view.clone()
    };
    for h in all {
        let info = dev.get_plane(h)?;
        let list = props(dev, h)?;
        let (set, in_formats) = plane_formats(dev, h)?;
        kms.planes.push(Plane {
            id: u32::from(h),
            kind: plane_type(property_value(&list, "type")),
            possible_crtcs: res
                .filter_crtcs(info.possible_crtcs())
                .into_iter()
                .map(u32::from)
                .collect(),
            crtc: info.crtc().map(u32::from),
            in_fence_fd: property_value(&list, "IN_FENCE_FD").is_some(),
            in_formats,
            hotspot_cursor: !atomic_view.contains(&h),
            formats: Plane::pairs(&set),
        });
    }
    Ok(kms)
}

fn ids(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The report as text (at most 100 columns).
pub fn render(r: &DevicesReport) -> String {
    let mut out = String::new();
    if r.nodes.is_empty() && r.unopened.is_empty() {
        out.push_str("no DRM nodes (no /dev/dri on this machine)\n");
    } else {
        out.push_str("DRM nodes (/dev/dri)\n");
        let mut t = Table::new([
            "node", "driver", "kind", "device", "import", "export", "dumb", "syncobj", "timeline",
            "atomic", "fb-mods",
        ]);
        for n in &r.nodes {
            let c = n.caps;
            t.row([
                n.path
                    .strip_prefix("/dev/dri/")
                    .unwrap_or(&n.path)
                    .to_string(),
                n.driver.clone(),
                n.kind.to_string(),
                n.sysfs_device.clone().unwrap_or_else(|| "?".into()),
                yes(c.prime_import).into(),
                yes(c.prime_export).into(),
                yes(c.dumb_buffer).into(),
                yes(c.syncobj).into(),
                yes(c.syncobj_timeline).into(),
                yes(c.atomic).into(),
                yes(c.addfb2_modifiers).into(),
            ]);
        }
        out.push_str(&t.render(2));
        for u in &r.unopened {
            out.push_str(&crate::text::para(
                &format!("  {}: cannot open: ", u.path),
                &u.error,
            ));
        }
    }
    for n in &r.nodes {
        let Some(k) = &n.kms else { continue };
        out.push_str(&format!(
            "\n{} ({}, {} {}): KMS\n",
            n.path, n.driver, n.description, n.driver_version
        ));
        out.push_str("  connectors\n");
        for c in &k.connectors {
            let mut line = format!("    {:<4} {:<14} {}", c.id, c.name, c.state);
            if let Some(crtc) = c.crtc {
                line.push_str(&format!(", on crtc {crtc}"));
            }
            if c.writeback {
                line.push_str(&format!(
                    ", writeback (WRITEBACK_OUT_FENCE_PTR: {})",
                    yes(c.writeback_out_fence_ptr)
                ));
            }
            out.push_str(&line);
            out.push('\n');
            if c.writeback {
                out.push_str(&wrap("         writes: ", &c.writeback_formats));
            }
            if !c.modes.is_empty() {
                let modes: Vec<String> = c
                    .modes
                    .iter()
                    .map(|m| {
                        if m.preferred {
                            format!("{}*", m.name)
                        } else {
                            m.name.clone()
                        }
                    })
                    .collect();
                out.push_str(&wrap("         modes: ", &modes));
            }
        }
        out.push_str("  crtcs\n");
        for c in &k.crtcs {
            out.push_str(&format!(
                "    {:<4} {:<8} mode {:<14} OUT_FENCE_PTR: {}\n",
                c.id,
                if c.active { "active" } else { "inactive" },
                c.mode.as_deref().unwrap_or("-"),
                yes(c.out_fence_ptr)
            ));
        }
        out.push_str("  planes\n");
        let mut shown: Vec<(u32, &Vec<String>)> = Vec::new();
        for p in &k.planes {
            out.push_str(&crate::text::fit(&format!(
                "    {:<4} {:<8} crtcs {:<6} on {:<5} IN_FENCE_FD: {:<4} formats from {}",
                p.id,
                p.kind,
                ids(&p.possible_crtcs),
                p.crtc.map_or("-".into(), |c| c.to_string()),
                yes(p.in_fence_fd),
                if p.in_formats {
                    "IN_FORMATS"
                } else {
                    "the format list (LINEAR)"
                }
            )));
            if p.hotspot_cursor {
                out.push_str(
                    "         hidden from atomic clients without CURSOR_PLANE_HOTSPOT \
                     (bufsync does not use it)\n",
                );
            }
            match shown.iter().find(|(_, f)| **f == p.formats) {
                Some((same, _)) => {
                    out.push_str(&format!("         formats: as plane {same}\n"));
                }
                None => {
                    out.push_str(&wrap("         formats: ", &p.formats));
                    shown.push((p.id, &p.formats));
                }
            }
        }
    }
    if !r.untested.is_empty() {
        out.push('\n');
    }
    for u in &r.untested {
        out.push_str(&crate::text::para("untested: ", u));
    }
    out
}
