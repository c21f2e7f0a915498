//! `bufsync-info vulkan`: each Vulkan physical device as bufsync sees it:
//! the device extensions it uses, external memory and semaphore handle
//! types, the DRM format modifiers it can import and export per format, the
//! SYNC_FD export probe and timeline semaphores.
//!
//! Everything comes from bufsync's own probes ([`VulkanCaps`](bufsync_backends::vulkan::VulkanCaps), the lazy
//! SYNC_FD export probe, [`VulkanContext::dmabuf_image_support`]) on a
//! context created on each device; the modifier support is asked for the
//! presenter's image usage (`PresenterConfig::default().image_usage`).

use std::sync::Arc;

use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::{
    HandleSupport, PhysicalDeviceInfo, SyncFdExport, VulkanContext, DRM_FORMAT_ABGR8888,
    DRM_FORMAT_ARGB8888, DRM_FORMAT_XBGR8888, DRM_FORMAT_XRGB8888, WANTED_DEVICE_EXTENSIONS,
};
use schemars::JsonSchema;
use serde::Serialize;

use crate::names;
use crate::text::{wrap, yes, Table};

/// A physical device and, where bufsync could make one, its context.
pub struct VkDevice {
    /// What the loader lists.
    pub info: PhysicalDeviceInfo,
    /// The context, or why none was made.
    pub ctx: Result<Arc<VulkanContext>, String>,
}

impl VkDevice {
    /// `vk0`, `vk1`... (the loader's order).
    pub fn id(&self) -> String {
        format!("vk{}", self.info.index)
    }
}

/// Opens a context on every physical device. `Err` (the reason) when no
/// Vulkan loader or instance is available.
pub fn open_all() -> Result<Vec<VkDevice>, String> {
    let list = VulkanContext::physical_devices().map_err(|e| e.to_string())?;
    Ok(list
        .into_iter()
        .map(|info| {
            let ctx = match &info.unusable {
                Some(why) => Err(why.clone()),
                None => VulkanContext::new_on_device(info.index).map_err(|e| e.to_string()),
            };
            VkDevice { info, ctx }
        })
        .collect())
}

/// The `vulkan` report (JSON schema `bufsync-info.vulkan`, version 1).
#[derive(Debug, Serialize, JsonSchema)]
pub struct VulkanReport {
    /// `bufsync-info.vulkan`.
    pub schema: &'static str,
    /// Schema version ([`crate::schema::VERSION`]).
    pub version: u32,
    /// Each physical device, in the loader's order.
    pub devices: Vec<Device>,
    /// What could not be looked at here, and why.
    pub untested: Vec<String>,
}

/// One physical device.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Device {
    /// `vk0`, `vk1`... (the loader's order; `paths` uses the same ids).
    pub id: String,
    /// `deviceName`.
    pub name: String,
    /// `discrete`, `integrated`, `virtual`, `cpu`, `other`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["discrete", "integrated", "virtual", "cpu", "other"]))]
    pub kind: &'static str,
    /// `major.minor.patch`.
    pub api_version: String,
    /// Why bufsync cannot use it (no context made); `null` when it can.
    pub unusable: Option<String>,
    /// What the context says (absent when unusable).
    pub context: Option<Context>,
}

/// What a context on the device says.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Context {
    /// `driverName (driverInfo)`.
    pub driver: String,
    /// `deviceUUID`, hex.
    pub device_uuid: String,
    /// The device extensions bufsync uses, present (enabled) or absent.
    pub extensions: Vec<Extension>,
    /// Timeline semaphores (the context requires them).
    pub timeline_semaphores: bool,
    /// External memory handle types.
    pub external_memory: Vec<Handle>,
    /// External semaphore handle types.
    pub external_semaphores: Vec<Handle>,
    /// The DRM format modifiers per format.
    pub drm_modifiers: Vec<FormatModifiers>,
    /// The image usage the modifier import/export support was asked for.
    pub modifier_usage: String,
    /// The SYNC_FD export probe: `pending` (render-done fences get a
    /// pending sync_file), `blocks` (the export waits for the work and
    /// returns a signaled fd: useless for a display) or `unsupported`.
    #[schemars(extend("enum" = ["pending", "blocks", "unsupported"]))]
    pub sync_fd_export: &'static str,
}

/// One extension.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Extension {
    /// `VK_KHR_external_memory_fd`...
    pub name: String,
    /// Present on the device (and enabled by bufsync).
    pub present: bool,
}

/// Import/export support of one handle type for one object.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Handle {
    /// `buffer`, `linear image`, `binary semaphore`, `timeline semaphore`.
    pub object: &'static str,
    /// `DMA_BUF`, `OPAQUE_FD`, `SYNC_FD`.
    pub handle: &'static str,
    /// Importable.
    pub import: bool,
    /// Exportable.
    pub export: bool,
}

/// The modifiers of one Vulkan format.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FormatModifiers {
    /// `B8G8R8A8_UNORM`, `R8G8B8A8_UNORM`.
    pub vk_format: String,
    /// The DRM formats it stands for (`AR24`, `XR24`).
    pub drm_formats: Vec<String>,
    /// Each modifier the format lists.
    pub modifiers: Vec<Modifier>,
}

/// One modifier of a format.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Modifier {
    /// Its name (`LINEAR`, `X_TILED`...).
    pub name: String,
    /// Its value, hex.
    pub value: String,
    /// Memory planes.
    pub planes: u32,
    /// Tiling features: `sampled`, `storage`, `color_attachment`,
    /// `transfer_src`, `transfer_dst`.
    pub features: Vec<&'static str>,
    /// DMA_BUF import with the modifier usage.
    pub import: bool,
    /// DMA_BUF export with the modifier usage.
    pub export: bool,
}

fn handle(object: &'static str, handle: &'static str, s: HandleSupport) -> Handle {
    Handle {
        object,
        handle,
        import: s.import,
        export: s.export,
    }
}

fn features(f: vk::FormatFeatureFlags) -> Vec<&'static str> {
    [
        (vk::FormatFeatureFlags::SAMPLED_IMAGE, "sampled"),
        (vk::FormatFeatureFlags::STORAGE_IMAGE, "storage"),
        (vk::FormatFeatureFlags::COLOR_ATTACHMENT, "color_attachment"),
        (vk::FormatFeatureFlags::TRANSFER_SRC, "transfer_src"),
        (vk::FormatFeatureFlags::TRANSFER_DST, "transfer_dst"),
    ]
    .into_iter()
    .filter(|(bit, _)| f.contains(*bit))
    .map(|(_, n)| n)
    .collect()
}

fn drm_formats(f: vk::Format) -> Vec<u32> {
    match f {
        vk::Format::B8G8R8A8_UNORM => vec![DRM_FORMAT_ARGB8888, DRM_FORMAT_XRGB8888],
        vk::Format::R8G8B8A8_UNORM => vec![DRM_FORMAT_ABGR8888, DRM_FORMAT_XBGR8888],
        _ => Vec::new(),
    }
}

/// The SYNC_FD probe's verdict as the report names it.
pub fn sync_fd_name(v: SyncFdExport) -> &'static str {
    match v {
        SyncFdExport::Pending => "pending",
        SyncFdExport::BlocksUntilSignaled => "blocks",
        SyncFdExport::Unsupported => "unsupported",
    }
}

fn context(ctx: &VulkanContext) -> Context {
    let caps = ctx.caps();
    let usage = bufsync_present::PresenterConfig::default().image_usage;
    let drm_modifiers = caps
        .drm_modifiers
        .iter()
        .map(|fm| FormatModifiers {
            vk_format: format!("{:?}", fm.format),
            drm_formats: drm_formats(fm.format)
                .into_iter()
                .map(names::fourcc)
                .collect(),
            modifiers: fm
                .modifiers
                .iter()
                .map(|m| {
                    let s = ctx.dmabuf_image_support(fm.format, m.modifier, usage);
                    Modifier {
                        name: names::modifier(m.modifier),
                        value: format!("{:#x}", m.modifier),
                        planes: m.planes,
                        features: features(m.features),
                        import: s.import,
                        export: s.export,
                    }
                })
                .collect(),
        })
        .collect();
    Context {
        driver: caps.driver.clone(),
        device_uuid: caps
            .device_uuid
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        extensions: WANTED_DEVICE_EXTENSIONS
            .iter()
            .map(|e| Extension {
                name: e.to_string_lossy().into_owned(),
                present: ctx.has_extension(e),
            })
            .collect(),
        timeline_semaphores: caps.timeline_semaphore,
        external_memory: vec![
            handle("buffer", "DMA_BUF", caps.dmabuf_buffer),
            handle("buffer", "OPAQUE_FD", caps.opaque_fd_buffer),
            handle("linear image", "DMA_BUF", caps.dmabuf_linear_image),
        ],
        external_semaphores: vec![
            handle("binary semaphore", "SYNC_FD", caps.sync_fd_semaphore),
            handle("timeline semaphore", "OPAQUE_FD", caps.opaque_fd_timeline),
        ],
        drm_modifiers,
        modifier_usage: format!("{usage:?}"),
        sync_fd_export: sync_fd_name(ctx.sync_fd_export()),
    }
}

/// Collects the report over `devices` (`Err`: why there are none).
pub fn collect(devices: &Result<Vec<VkDevice>, String>) -> VulkanReport {
    let mut r = VulkanReport {
        schema: "bufsync-info.vulkan",
        version: crate::schema::VERSION,
        devices: Vec::new(),
        untested: Vec::new(),
    };
    let list = match devices {
        Ok(l) => l,
        Err(e) => {
            r.untested.push(format!("Vulkan: {e}"));
            return r;
        }
    };
    if list.is_empty() {
        r.untested
            .push("Vulkan: the loader lists no physical device (no ICD)".into());
    }
    for d in list {
        let (ma, mi, pa) = d.info.api_version;
        let context = d.ctx.as_ref().ok().map(|c| context(c));
        if let Some(c) = &context {
            if c.drm_modifiers.iter().all(|f| f.modifiers.is_empty()) {
                r.untested.push(format!(
                    "DRM modifiers on {} ({}): no VK_EXT_image_drm_format_modifier",
                    d.id(),
                    d.info.name
                ));
            }
        }
        if let Err(e) = &d.ctx {
            r.untested
                .push(format!("{} ({}): no context: {e}", d.id(), d.info.name));
        }
        r.devices.push(Device {
            id: d.id(),
            name: d.info.name.clone(),
            kind: d.info.device_type,
            api_version: format!("{ma}.{mi}.{pa}"),
            unusable: d.ctx.as_ref().err().cloned(),
            context,
        });
    }
    r
}

fn support(import: bool, export: bool) -> &'static str {
    match (import, export) {
        (true, true) => "import+export",
        (true, false) => "import",
        (false, true) => "export",
        (false, false) => "-",
    }
}

/// The report as text (at most 100 columns).
pub fn render(r: &VulkanReport) -> String {
    let mut out = String::new();
    if r.devices.is_empty() {
        out.push_str("no Vulkan devices\n");
    }
    for d in &r.devices {
        out.push_str(&crate::text::fit(&format!(
            "{}: {} ({}, Vulkan {})",
            d.id, d.name, d.kind, d.api_version
        )));
        let Some(c) = &d.context else {
            out.push_str(&crate::text::para(
                "  unusable: ",
                d.unusable.as_deref().unwrap_or("?"),
            ));
            out.push('\n');
            continue;
        };
        out.push_str(&crate::text::fit(&format!(
            "  driver          {}",
            c.driver
        )));
        out.push_str(&format!("  device uuid     {}\n", c.device_uuid));
        out.push_str(&format!(
            "  timeline semaphores {}\n",
            yes(c.timeline_semaphores)
        ));
        out.push_str(&crate::text::para(
            "  SYNC_FD export probe: ",
            match c.sync_fd_export {
                "pending" => "pending (render fences get a pending sync_file)",
                "blocks" => "blocks (the export waits for the work: no pending sync_file)",
                _ => "unsupported",
            },
        ));
        out.push_str("  extensions\n");
        let mut t = Table::new(["", ""]);
        for e in &c.extensions {
            t.row([
                e.name.clone(),
                if e.present { "present" } else { "absent" }.to_string(),
            ]);
        }
        out.push_str(t.render(4).split_once('\n').map_or("", |x| x.1));
        out.push_str("  external handles\n");
        let mut t = Table::new(["", "", ""]);
        for h in c.external_memory.iter().chain(&c.external_semaphores) {
            t.row([
                h.object.to_string(),
                h.handle.to_string(),
                support(h.import, h.export).to_string(),
            ]);
        }
        out.push_str(t.render(4).split_once('\n').map_or("", |x| x.1));
        out.push_str(&crate::text::para(
            "  DRM modifiers ",
            &format!("(DMA_BUF import/export for usage {})", c.modifier_usage),
        ));
        for f in &c.drm_modifiers {
            out.push_str(&crate::text::fit(&format!(
                "    {} ({}): {} modifiers",
                f.vk_format,
                f.drm_formats.join(", "),
                f.modifiers.len()
            )));
            let pairs = |pick: &dyn Fn(&Modifier) -> bool| -> Vec<String> {
                let mut v = Vec::new();
                for m in f.modifiers.iter().filter(|m| pick(m)) {
                    for df in &f.drm_formats {
                        v.push(format!("{df}:{}", m.name));
                    }
                }
                if v.is_empty() {
                    v.push("none".into());
                }
                v
            };
            out.push_str(&wrap("      export: ", &pairs(&|m| m.export)));
            out.push_str(&wrap("      import: ", &pairs(&|m| m.import)));
            for m in &f.modifiers {
                out.push_str(&crate::text::para(
                    &format!("      {} ({}): ", m.name, m.value),
                    &format!("{} plane(s), {}", m.planes, m.features.join(" ")),
                ));
            }
        }
        out.push('\n');
    }
    for u in &r.untested {
        out.push_str(&crate::text::para("untested: ", u));
    }
    out
}
