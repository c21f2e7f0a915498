//! The probes behind the matrix: the Vulkan devices (and their SYNC_FD
//! export probe), the KMS planes, a device with drm_syncobjs, and the
//! `IMPORT_SYNC_FILE` probe on a real dma-buf.
//!
//! The KMS nodes are opened once and kept: the first fd of a card is the
//! one that can become DRM master, and `--verify` commits through it.

use std::any::Any;
use std::sync::Arc;

use bufsync_backends::dmabuf::{fourcc, DmaBuf, DmaHeap, Udmabuf};
use bufsync_backends::drm::{property_value, DrmDevice, DumbBuffer, NodeKind};
use bufsync_backends::kms::FormatSet;
use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::ExternalBuffer;
use bufsync_backends::wait_path::{FenceForm, Waiter};
use drm::control::Device as _;

use super::{ColDef, FenceRow, RowDef, Target, WaiterCol};
use crate::devices;
use crate::vulkan::{sync_fd_name, VkDevice};

/// One plane of a KMS node.
#[derive(Debug)]
pub struct PlaneInfo {
    /// KMS object id.
    pub id: u32,
    /// `primary`, `overlay`, `cursor`.
    pub kind: &'static str,
    /// Has `IN_FENCE_FD`.
    pub in_fence_fd: bool,
    /// The CRTCs it can be on.
    pub possible_crtcs: Vec<u32>,
    /// What it scans out.
    pub formats: FormatSet,
}

/// A KMS (primary, atomic) node.
pub struct KmsNode {
    /// The node, kept open (`None` once `--verify` took it for a display).
    pub dev: Option<Arc<DrmDevice>>,
    /// `/dev/dri/card0`.
    pub path: String,
    /// `card0`.
    pub name: String,
    /// Driver name.
    pub driver: String,
    /// Its planes.
    pub planes: Vec<PlaneInfo>,
    /// `IMPORT_SYNC_FILE` on a buffer of this device: `Err` with why not.
    pub implicit: Result<(), String>,
}

/// A dma-buf to probe (and, for `--verify`, to wait through).
pub struct DmaBufProbe {
    /// Where it came from (`dma_heap system`, `udmabuf`, `vgem dumb buffer`...).
    pub source: String,
    /// The buffer.
    pub buf: DmaBuf,
    /// `IMPORT_SYNC_FILE` on it: `Err` with why not.
    pub import: Result<(), String>,
    /// What keeps its memory (a Vulkan buffer).
    _keep: Option<Box<dyn Any>>,
}

/// Everything the matrix is computed from.
pub struct Env {
    /// The Vulkan devices (`Err`: no loader / instance).
    pub vk: Result<Vec<VkDevice>, String>,
    /// The KMS nodes.
    pub kms: Vec<KmsNode>,
    /// A node with drm_syncobjs (a render node first, timelines first).
    pub syncobj: Option<Arc<DrmDevice>>,
    /// A dma-buf, or why there is none.
    pub dmabuf: Result<DmaBufProbe, String>,
    /// What could not be looked at.
    pub untested: Vec<String>,
}

fn kms_node(dev: DrmDevice) -> Option<KmsNode> {
    let caps = devices::caps(&dev);
    if dev.kind() != NodeKind::Primary || !caps.atomic {
        return None;
    }
    dev.enable_kms_caps().ok()?;
    let res = dev.resource_handles().ok()?;
    let mut planes = Vec::new();
    for h in dev.plane_handles().ok()? {
        let Ok(info) = dev.get_plane(h) else { continue };
        let Ok((formats, _)) = devices::plane_formats(&dev, h) else {
            continue;
        };
        let Ok(props) = dev.properties(h) else {
            continue;
        };
        let kind = devices::plane_type(property_value(&props, "type"));
        let in_fence_fd = property_value(&props, "IN_FENCE_FD").is_some();
        planes.push(PlaneInfo {
            id: u32::from(h),
            kind,
            in_fence_fd,
            possible_crtcs: res
                .filter_crtcs(info.possible_crtcs())
                .into_iter()
                .map(u32::from)
                .collect(),
            formats,
        });
    }
    let dev = Arc::new(dev);
    // The presenter's probe, on a buffer of this device.
    let implicit = DumbBuffer::create(&dev, 16, 16, 32)
        .and_then(|b| b.export(fourcc(b"XR24")))
        .and_then(|b| b.probe_sync_file_import())
        .map_err(|e| e.to_string());
    Some(KmsNode {
        path: dev.path().display().to_string(),
        name: dev
            .path()
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        driver: dev.driver().to_owned(),
        dev: Some(dev),
        planes,
        implicit,
    })
}

impl DmaBufProbe {
    /// Probes `IMPORT_SYNC_FILE` on `buf` (from `source`; `keep` holds its
    /// memory).
    fn new(source: String, buf: DmaBuf, keep: Option<Box<dyn Any>>) -> DmaBufProbe {
        let import = buf.probe_sync_file_import().map_err(|e| e.to_string());
        DmaBufProbe {
            source,
            buf,
            import,
            _keep: keep,
        }
    }
}

/// A dma-buf from the first source that gives one.
fn dmabuf(
    vk: &Result<Vec<VkDevice>, String>,
    nodes: &[Arc<DrmDevice>],
) -> Result<DmaBufProbe, String> {
    let page = rustix::param::page_size() as u64;
    let mut tried = Vec::new();
    match DmaHeap::open("system").and_then(|h| h.alloc(page)) {
        Ok(b) => return Ok(DmaBufProbe::new("dma_heap system".into(), b, None)),
        Err(e) => tried.push(format!("DMA heap: {e}")),
    }
    match Udmabuf::create(page) {
        Ok(b) => return Ok(DmaBufProbe::new("udmabuf".into(), b, None)),
        Err(e) => tried.push(format!("udmabuf: {e}")),
    }
    for n in nodes.iter().filter(|n| n.caps().prime_export) {
        match DumbBuffer::create(n, 16, 16, 32).and_then(|b| b.export(fourcc(b"XR24"))) {
            Ok(b) => {
                return Ok(DmaBufProbe::new(
                    format!("{} dumb buffer", n.driver()),
                    b,
                    None,
                ))
            }
            Err(e) => tried.push(format!("{} dumb buffer: {e}", n.driver())),
        }
    }
    for d in vk.iter().flatten() {
        let Ok(ctx) = &d.ctx else { continue };
        if !ctx.caps().dmabuf_buffer.export {
            continue;
        }
        match ExternalBuffer::export_dmabuf(ctx, page, vk::BufferUsageFlags::TRANSFER_DST, None) {
            Ok((keep, b)) => {
                return Ok(DmaBufProbe::new(
                    format!("{} Vulkan export", d.id()),
                    b,
                    Some(Box::new(keep)),
                ))
            }
            Err(e) => tried.push(format!("{} Vulkan export: {e}", d.id())),
        }
    }
    Err(format!("no dma-buf source here ({})", tried.join("; ")))
}

impl Env {
    /// Probes this machine (opens Vulkan contexts and DRM nodes; makes one
    /// small dma-buf and dumb buffers for the IMPORT_SYNC_FILE probes).
    pub fn probe(vk: Result<Vec<VkDevice>, String>) -> Env {
        let mut untested = Vec::new();
        let mut kms = Vec::new();
        let mut others = Vec::new();
        let paths = DrmDevice::node_paths();
        if paths.is_empty() {
            untested
                .push("KMS planes, drm_syncobj points: no /dev/dri on this machine".to_string());
        }
        for p in paths {
            match DrmDevice::open(&p) {
                Ok(d) if d.kind() == NodeKind::Primary && devices::caps(&d).atomic => {
                    match kms_node(d) {
                        Some(n) => kms.push(n),
                        None => untested.push(format!("{}: KMS objects unreadable", p.display())),
                    }
                }
                Ok(d) => others.push(Arc::new(d)),
                Err(e) => untested.push(format!("{}: {e}", p.display())),
            }
        }
        // A syncobj device: render nodes first, timelines first.
        let mut syncobj_nodes: Vec<&Arc<DrmDevice>> =
            others.iter().filter(|d| d.caps().syncobj).collect();
        syncobj_nodes.sort_by_key(|d| (!d.caps().syncobj_timeline, d.kind() != NodeKind::Render));
        let syncobj = syncobj_nodes.first().map(|d| Arc::clone(d)).or_else(|| {
            kms.iter()
                .filter_map(|k| k.dev.as_ref())
                .find(|d| d.caps().syncobj)
                .and_then(|d| DrmDevice::open(d.path()).ok())
                .map(Arc::new)
        });
        let dmabuf = dmabuf(&vk, &others);
        if let Err(e) = &dmabuf {
            untested.push(format!("dma-buf implicit sync: {e}"));
        }
        if let Err(e) = &vk {
            untested.push(format!("Vulkan: {e}"));
        }
        Env {
            vk,
            kms,
            syncobj,
            dmabuf,
            untested,
        }
    }

    /// The usable Vulkan devices: (index in `vk`, device).
    pub(crate) fn vk_usable(&self) -> Vec<(usize, &VkDevice)> {
        match &self.vk {
            Ok(l) => l
                .iter()
                .enumerate()
                .filter(|(_, d)| d.ctx.is_ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn rows(&self) -> Vec<RowDef> {
        let row = |id: &str, form: Option<FenceForm>, label: String, why: Option<String>| RowDef {
            report: FenceRow {
                id: id.into(),
                kind: form.map_or("unavailable", FenceForm::name),
                label,
                available: form.is_some(),
                unavailable: why,
                sync_file_form: form.is_some_and(FenceForm::has_sync_file),
            },
            form,
            vk: None,
        };
        let mut rows = vec![
            row(
                "software",
                Some(FenceForm::Software),
                "a runtime fence (bufsync::fence) its producer signals".into(),
                None,
            ),
            row(
                "sync_file",
                Some(FenceForm::SyncFile),
                "a kernel dma_fence behind a sync_file fd".into(),
                None,
            ),
        ];
        rows.push(match &self.syncobj {
            Some(d) => row(
                "syncobj",
                Some(FenceForm::SyncobjPoint),
                format!(
                    "a drm_syncobj {} point ({} {})",
                    if d.caps().syncobj_timeline {
                        "timeline"
                    } else {
                        "binary"
                    },
                    d.driver(),
                    d.path().display()
                ),
                None,
            ),
            None => row(
                "syncobj",
                None,
                "a drm_syncobj point".into(),
                Some("no DRM device with DRM_CAP_SYNCOBJ here".into()),
            ),
        });
        let usable = self.vk_usable();
        if usable.is_empty() {
            let why = match &self.vk {
                Err(e) => format!("no Vulkan ({e})"),
                Ok(_) => "no usable Vulkan device here".into(),
            };
            rows.push(row("vk", None, "a Vulkan timeline point".into(), Some(why)));
        }
        for (i, d) in usable {
            let Ok(ctx) = &d.ctx else { continue };
            let mut r = row(
                &d.id(),
                Some(FenceForm::render_point(ctx)),
                format!(
                    "a render-done timeline point of {} (SYNC_FD export {})",
                    d.id(),
                    sync_fd_name(ctx.sync_fd_export())
                ),
                None,
            );
            r.vk = Some(i);
            rows.push(r);
        }
        rows.push(row(
            "seqno",
            Some(FenceForm::Seqno),
            "a seqno word in mapped memory, written by a device".into(),
            None,
        ));
        rows
    }

    pub(crate) fn cols(&self) -> Vec<ColDef> {
        let mut cols = vec![ColDef {
            report: WaiterCol {
                id: "cpu".into(),
                kind: "cpu",
                label: "cpu".into(),
                caps: String::new(),
                unavailable: None,
            },
            waiter: Some(Waiter::Cpu),
            target: Target::Cpu,
        }];
        for (i, d) in self.vk_usable() {
            let Ok(ctx) = &d.ctx else { continue };
            cols.push(ColDef {
                report: WaiterCol {
                    id: d.id(),
                    kind: "vulkan",
                    label: format!("{} {}", d.id(), d.info.name),
                    caps: format!(
                        "SYNC_FD semaphore import {}",
                        if ctx.caps().sync_file_in() {
                            "yes"
                        } else {
                            "no"
                        }
                    ),
                    unavailable: None,
                },
                waiter: Some(Waiter::vulkan(ctx)),
                target: Target::Vulkan(i),
            });
        }
        for (n, node) in self.kms.iter().enumerate() {
            for (p, plane) in node.planes.iter().enumerate() {
                cols.push(ColDef {
                    report: WaiterCol {
                        id: format!("plane:{}:{}", node.name, plane.id),
                        kind: "kms_plane",
                        label: format!(
                            "{} {} plane {} {}",
                            node.name, node.driver, plane.id, plane.kind
                        ),
                        caps: format!(
                            "IN_FENCE_FD {}, implicit sync {}",
                            if plane.in_fence_fd { "yes" } else { "no" },
                            match &node.implicit {
                                Ok(()) => "yes".to_string(),
                                Err(e) => format!("no ({e})"),
                            }
                        ),
                        unavailable: None,
                    },
                    waiter: Some(Waiter::KmsPlane {
                        in_fence_fd: plane.in_fence_fd,
                        implicit: node.implicit.is_ok(),
                        prefer_implicit: false,
                    }),
                    target: Target::Plane(n, p),
                });
            }
        }
        let (label, caps, waiter, unavailable) = match &self.dmabuf {
            Ok(p) => (
                format!("dma-buf implicit sync ({})", p.source),
                match &p.import {
                    Ok(()) => "IMPORT_SYNC_FILE yes".to_string(),
                    Err(e) => format!("IMPORT_SYNC_FILE no ({e})"),
                },
                Some(Waiter::DmaBuf {
                    import_sync_file: p.import.is_ok(),
                }),
                None,
            ),
            Err(e) => (
                "dma-buf implicit sync".to_string(),
                String::new(),
                None,
                Some(e.clone()),
            ),
        };
        cols.push(ColDef {
            report: WaiterCol {
                id: "dmabuf".into(),
                kind: "dmabuf",
                label,
                caps,
                unavailable,
            },
            waiter,
            target: Target::DmaBuf,
        });
        cols
    }
}
