//! Every report's text stays within 100 columns, on reports larger and
//! wordier than the VM's: a machine with an NVIDIA GPU (block-linear
//! modifiers), an Intel display with many planes and modifiers, three
//! Vulkan devices, long driver, timeline and error texts. The same
//! fixtures serialize to JSON that their schemas accept.

use std::collections::BTreeMap;

use bufsync_info::buffer::{BufferReport, Fence, WaitReport};
use bufsync_info::bufinfo::{Entry, ResvFence};
use bufsync_info::devices::{
    Connector, Crtc, DevicesReport, Kms, ModeInfo, Node, NodeCaps, Plane, Unopened,
};
use bufsync_info::negotiate::{NegotiateReport, Pair};
use bufsync_info::paths::{Cell, FenceRow, PathsReport, Verified, WaiterCol};
use bufsync_info::text::WIDTH;
use bufsync_info::vulkan::{
    Context, Device, Extension, FormatModifiers, Handle, Modifier, VulkanReport,
};
use bufsync_info::{names, schema};

const LONG: &str = "a reason that goes on for a while, naming an ioctl (DRM_IOCTL_MODE_ATOMIC), \
    an errno (EINVAL), a path (/sys/kernel/debug/dri/0/state) and what to do about it";

fn assert_narrow(what: &str, text: &str) {
    assert!(!text.is_empty());
    for l in text.lines() {
        assert!(
            l.chars().count() <= WIDTH,
            "{what}: {} columns:\n{l}\n\nin:\n{text}",
            l.chars().count()
        );
    }
}

fn assert_schema(command: &str, report: &impl serde::Serialize) {
    let v = serde_json::to_value(report).unwrap();
    let errors = schema::validate(&schema::schema(command).unwrap(), &v);
    assert!(errors.is_empty(), "{command}: {errors:#?}");
}

fn modifiers() -> Vec<u64> {
    let mut m = vec![
        0,
        0x0100_0000_0000_0001,
        0x0100_0000_0000_0002,
        0x0100_0000_0000_0009,
    ];
    for h in 0..6u64 {
        // DRM_FORMAT_MOD_NVIDIA_BLOCK_LINEAR_2D(c=0, s=1, g=2, k=0xfe, h)
        m.push(0x0300_0000_0000_0000 | 0x10 | h | (0xfe << 12) | (2 << 20) | (1 << 22));
    }
    m.push(0x0200_0000_1234_5678);
    m
}

fn plane(id: u32, kind: &'static str) -> Plane {
    let mut formats = Vec::new();
    for f in [
        b"XR24", b"AR24", b"XB24", b"AB24", b"XR30", b"AR30", b"NV12", b"P010",
    ] {
        for m in modifiers() {
            formats.push(names::pair(u32::from_le_bytes(*f), m));
        }
    }
    Plane {
        id,
        kind,
        possible_crtcs: vec![80, 131, 182, 233],
        crtc: Some(80),
        in_fence_fd: true,
        in_formats: true,
        hotspot_cursor: kind == "cursor",
        formats,
    }
}

fn devices() -> DevicesReport {
    let caps = NodeCaps {
        prime_import: true,
        prime_export: true,
        dumb_buffer: true,
        syncobj: true,
        syncobj_timeline: true,
        atomic: true,
        addfb2_modifiers: true,
    };
    let modes: Vec<ModeInfo> = (0..60)
        .map(|i| ModeInfo {
            name: format!("{}x{}@{}", 3840 - i * 16, 2160 - i * 9, 60 + i % 5),
            width: (3840 - i * 16) as u16,
            height: (2160 - i * 9) as u16,
            refresh: 60,
            preferred: i == 0,
        })
        .collect();
    let mut planes: Vec<Plane> = (0..4).map(|i| plane(31 + i * 51, "primary")).collect();
    planes.extend((0..12).map(|i| plane(300 + i, "overlay")));
    planes.push(plane(400, "cursor"));
    // Planes with distinct format lists, so none is shown "as plane N".
    planes[5].formats.truncate(17);
    planes[6].formats.truncate(3);
    DevicesReport {
        schema: "bufsync-info.devices",
        version: schema::VERSION,
        nodes: vec![
            Node {
                path: "/dev/dri/card0".into(),
                driver: "i915".into(),
                description: "Intel Graphics".into(),
                driver_version: "1.6.20201103".into(),
                kind: "primary",
                sysfs_device: Some("0000:00:02.0".into()),
                caps,
                kms: Some(Kms {
                    connectors: vec![
                        Connector {
                            id: 236,
                            name: "DP-MST-HDMI-A-10".into(),
                            state: "connected",
                            crtc: Some(80),
                            modes,
                            writeback: false,
                            writeback_formats: vec![],
                            writeback_out_fence_ptr: false,
                        },
                        Connector {
                            id: 240,
                            name: "Writeback-1".into(),
                            state: "unknown",
                            crtc: None,
                            modes: vec![],
                            writeback: true,
                            writeback_formats: (0..40).map(|i| format!("F{i:03}")).collect(),
                            writeback_out_fence_ptr: true,
                        },
                    ],
                    crtcs: vec![Crtc {
                        id: 80,
                        active: true,
                        mode: Some("3840x2160@60".into()),
                        out_fence_ptr: true,
                    }],
                    planes,
                }),
            },
            Node {
                path: "/dev/dri/renderD128".into(),
                driver: "nvidia-drm-long".into(),
                description: "NVIDIA DRM driver".into(),
                driver_version: "0.0.0".into(),
                kind: "render",
                sysfs_device: Some("0000:c1:00.0".into()),
                caps,
                kms: None,
            },
        ],
        unopened: vec![Unopened {
            path: "/dev/dri/renderD129".into(),
            error: LONG.into(),
        }],
        untested: vec![LONG.into()],
    }
}

fn vulkan() -> VulkanReport {
    let ctx = || Context {
        driver: "NVIDIA (575.57.08, with a long driver info string as some drivers give)".into(),
        device_uuid: "00112233445566778899aabbccddeeff".into(),
        extensions: [
            "VK_KHR_external_memory_fd",
            "VK_EXT_external_memory_dma_buf",
            "VK_EXT_image_drm_format_modifier",
            "VK_KHR_external_semaphore_fd",
            "VK_EXT_queue_family_foreign",
            "VK_KHR_image_format_list",
        ]
        .iter()
        .map(|n| Extension {
            name: n.to_string(),
            present: true,
        })
        .collect(),
        timeline_semaphores: true,
        external_memory: vec![Handle {
            object: "linear image",
            handle: "DMA_BUF",
            import: true,
            export: true,
        }],
        external_semaphores: vec![Handle {
            object: "timeline semaphore",
            handle: "OPAQUE_FD",
            import: true,
            export: true,
        }],
        drm_modifiers: vec![FormatModifiers {
            vk_format: "A2B10G10R10_UNORM_PACK32".into(),
            drm_formats: vec!["AB30".into(), "XB30".into()],
            modifiers: modifiers()
                .into_iter()
                .map(|m| Modifier {
                    name: names::modifier(m),
                    value: format!("{m:#x}"),
                    planes: 2,
                    features: vec![
                        "sampled",
                        "storage",
                        "color_attachment",
                        "transfer_src",
                        "transfer_dst",
                    ],
                    import: true,
                    export: m != 0,
                })
                .collect(),
        }],
        modifier_usage: "TRANSFER_SRC | TRANSFER_DST | STORAGE | COLOR_ATTACHMENT | SAMPLED".into(),
        sync_fd_export: "pending",
    };
    VulkanReport {
        schema: "bufsync-info.vulkan",
        version: schema::VERSION,
        devices: vec![
            Device {
                id: "vk0".into(),
                name: "NVIDIA H200 NVL with an unusually long marketing name".into(),
                kind: "discrete",
                api_version: "1.4.303".into(),
                unusable: None,
                context: Some(ctx()),
            },
            Device {
                id: "vk1".into(),
                name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
                kind: "cpu",
                api_version: "1.4.305".into(),
                unusable: Some(LONG.into()),
                context: None,
            },
        ],
        untested: vec![LONG.into()],
    }
}

fn paths(verified: bool) -> PathsReport {
    let fences: Vec<FenceRow> = [
        "software",
        "sync_file",
        "syncobj",
        "vk0",
        "vk1",
        "vk2",
        "vk3",
        "vk4",
        "seqno",
    ]
    .iter()
    .map(|id| FenceRow {
        id: id.to_string(),
        kind: "software",
        label: format!("{id}: {LONG}"),
        available: true,
        unavailable: None,
        sync_file_form: false,
    })
    .collect();
    let mut waiters = vec![WaiterCol {
        id: "cpu".into(),
        kind: "cpu",
        label: "cpu".into(),
        caps: String::new(),
        unavailable: None,
    }];
    for i in 0..3 {
        waiters.push(WaiterCol {
            id: format!("vk{i}"),
            kind: "vulkan",
            label: format!("vk{i} NVIDIA H200 NVL with an unusually long marketing name"),
            caps: "SYNC_FD semaphore import yes".into(),
            unavailable: None,
        });
    }
    for p in 0..20 {
        waiters.push(WaiterCol {
            id: format!("plane:card10:{}", 100 + p),
            kind: "kms_plane",
            label: format!("card10 i915 plane {} overlay", 100 + p),
            caps: "IN_FENCE_FD yes, implicit sync no (DMA_BUF_IOCTL_IMPORT_SYNC_FILE: ENOTTY)"
                .into(),
            unavailable: Some(LONG.into()),
        });
    }
    let mut cells = Vec::new();
    for f in &fences {
        for (i, w) in waiters.iter().enumerate() {
            cells.push(Cell {
                fence: f.id.clone(),
                waiter: w.id.clone(),
                class: "hardware",
                route: Some(bufsync_backends::wait_path::Route::ALL[i % 13].name()),
                why: LONG.into(),
                verify: verified.then(|| Verified {
                    result: ["pass", "fail", "skipped"][i % 3],
                    latency_us: Some(123_456.7 * i as f64),
                    latency_min_us: Some(1.0),
                    latency_max_us: Some(1e7),
                    samples: 3,
                    detail: LONG.into(),
                }),
            });
        }
    }
    PathsReport {
        schema: "bufsync-info.paths",
        version: schema::VERSION,
        verified,
        fences,
        waiters,
        cells,
        untested: vec![LONG.into()],
    }
}

fn buffer() -> BufferReport {
    let f = |status| Fence {
        driver: "amdgpu-with-long-name".into(),
        timeline: "gfx_0.0.0 ring with a long timeline name".into(),
        status,
        errno: (status == "error").then_some(62),
        timestamp_ns: Some(123_456_789_012_345),
    };
    BufferReport {
        schema: "bufsync-info.buffer",
        version: schema::VERSION,
        pid: 4_194_303,
        comm: Some("a-compositor-with-a-long-name".into()),
        fd: 1023,
        exporter: Some("drm".into()),
        name: Some("a buffer name set by DMA_BUF_SET_NAME".into()),
        size: 33_177_600,
        inode: 18_446_744_073,
        file_count: Some(3),
        fdinfo_source: "/proc/4194303/fdinfo/1023".into(),
        fdinfo: BTreeMap::from([("size".to_string(), "33177600".to_string())]),
        write_fences: vec![f("pending"), f("error")],
        read_fences: vec![f("signaled")],
        wait: Some(WaitReport {
            timeout_ms: 60_000,
            all_signaled: false,
            waited_ms: 60_000.5,
            write_fences: vec![f("signaled")],
            read_fences: vec![f("pending")],
        }),
        debugfs: Some(Entry {
            file_count: 7,
            fences: vec![ResvFence {
                usage: "bookkeep".into(),
                driver: "amdgpu-with-long-name".into(),
                timeline: "gfx_0.0.0 ring with a long timeline name".into(),
                seqno: u64::MAX,
                signaled: true,
            }],
            attached: (0..30).map(|i| format!("0000:{i:02x}:00.0")).collect(),
        }),
        debugfs_unavailable: None,
    }
}

fn negotiate() -> NegotiateReport {
    NegotiateReport {
        schema: "bufsync-info.negotiate",
        version: schema::VERSION,
        displays: vec!["/dev/dri/card0".into()],
        pairs: vec![Pair {
            renderer: "vk0 NVIDIA H200 NVL with an unusually long marketing name".into(),
            display: "/dev/dri/card0".into(),
            chosen: None,
            modifier: None,
            refusals: vec![LONG.into(), LONG.into()],
            error: Some(LONG.into()),
        }],
        untested: vec![LONG.into()],
    }
}

#[test]
fn devices_text_fits() {
    let r = devices();
    assert_narrow("devices", &bufsync_info::devices::render(&r));
    assert_schema("devices", &r);
}

#[test]
fn vulkan_text_fits() {
    let r = vulkan();
    assert_narrow("vulkan", &bufsync_info::vulkan::render(&r));
    assert_schema("vulkan", &r);
}

#[test]
fn paths_text_fits_with_and_without_verify() {
    for verified in [false, true] {
        let r = paths(verified);
        let text = bufsync_info::paths::render(&r);
        assert_narrow("paths", &text);
        assert_schema("paths", &r);
        // 9 fence kinds do not fit in one grid at 100 columns: split.
        assert!(text.matches("waiter \\ fence").count() >= if verified { 4 } else { 2 });
    }
}

#[test]
fn buffer_text_fits() {
    let r = buffer();
    assert_narrow("buffer", &bufsync_info::buffer::render(&r));
    assert_schema("buffer", &r);
}

#[test]
fn negotiate_text_fits() {
    let r = negotiate();
    assert_narrow("negotiate", &bufsync_info::negotiate::render(&r));
    assert_schema("negotiate", &r);
}

#[test]
fn usage_fits() {
    assert_narrow("usage", bufsync_info::USAGE);
}
