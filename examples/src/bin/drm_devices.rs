//! `drm_devices`: a table of the DRM devices this machine (or the test VM)
//! offers: driver, node, PRIME / dumb / syncobj capabilities, and for KMS
//! nodes the CRTCs, planes and connectors with their fence properties.
//!
//! Run it in the VM with `cargo xtask vm -- target/debug/drm_devices`.
#![forbid(unsafe_code)]

use bufsync_backends::drm::{DrmDevice, NodeKind, PlaneKind};
use std::process::ExitCode;

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "-"
    }
}

fn main() -> ExitCode {
    env_logger::init();
    let devices = DrmDevice::enumerate();
    if devices.is_empty() {
        println!(
            "no DRM devices (no /dev/dri on this machine): try `cargo xtask vm -- {}`",
            std::env::args().next().unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    println!(
        "{:<18} {:<12} {:<7} {:<6} {:<6} {:<5} {:<8} {:<8}",
        "node", "driver", "kind", "import", "export", "dumb", "syncobj", "timeline"
    );
    for d in &devices {
        let c = d.caps();
        println!(
            "{:<18} {:<12} {:<7} {:<6} {:<6} {:<5} {:<8} {:<8}",
            d.path().display(),
            d.driver(),
            match d.kind() {
                NodeKind::Primary => "primary",
                NodeKind::Render => "render",
            },
            yes(c.prime_import),
            yes(c.prime_export),
            yes(c.dumb_buffer),
            yes(c.syncobj),
            yes(c.syncobj_timeline)
        );
    }
    println!();
    for d in devices.iter().filter(|d| d.kind() == NodeKind::Primary) {
        let Ok(k) = d.kms_summary() else { continue };
        if k.crtcs.is_empty() {
            continue;
        }
        println!("{} ({}): KMS", d.path().display(), d.driver());
        for c in &k.crtcs {
            println!("  crtc {:<4} OUT_FENCE_PTR: {}", c.id, yes(c.out_fence_ptr));
        }
        for p in &k.planes {
            let kind = match p.kind {
                PlaneKind::Primary => "primary",
                PlaneKind::Overlay => "overlay",
                PlaneKind::Cursor => "cursor",
                PlaneKind::Unknown => "?",
            };
            println!(
                "  plane {:<3} {:<8} IN_FENCE_FD: {:<4} formats: {}",
                p.id,
                kind,
                yes(p.in_fence_fd),
                p.formats
            );
        }
        for c in &k.connectors {
            println!(
                "  connector {:<3} {:<12} {}{}",
                c.id,
                c.name,
                if c.connected {
                    "connected"
                } else {
                    "disconnected"
                },
                if c.writeback {
                    format!(
                        ", writeback (WRITEBACK_OUT_FENCE_PTR: {})",
                        yes(c.writeback_out_fence_ptr)
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    ExitCode::SUCCESS
}
