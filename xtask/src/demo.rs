//! `cargo xtask demo`: the README's main command.
//!
//! Builds `render_to_scanout` (release) and runs it: on a machine with a KMS
//! display (`/dev/dri`) it runs there; otherwise inside the test VM, where
//! vgem and lavapipe render and vkms scans out, captured through writeback.
//! The PNGs and the table land under `target/demo/`.

use crate::{layout, process, setup, vm};
use std::io;
use std::path::Path;
use std::process::Command;

/// Entry point of `cargo xtask demo`.
pub fn run(args: &[String]) -> io::Result<u8> {
    let extra: Vec<String> = match args.split_first() {
        Some((first, rest)) if first == "--" => rest.to_vec(),
        _ => args.to_vec(),
    };
    process::run(
        Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "bufsync-examples",
                "--bins",
            ])
            .current_dir(layout::workspace()),
    )?;
    let release = layout::target_dir().join("release");
    let demo_dir = layout::target_dir().join("demo");
    std::fs::create_dir_all(&demo_dir)?;
    let mut cmd = vec![release
        .join("render_to_scanout")
        .to_string_lossy()
        .into_owned()];
    if !extra.iter().any(|a| a == "--out") {
        cmd.extend(["--out".to_string(), demo_dir.to_string_lossy().into_owned()]);
    }
    cmd.extend(extra);
    if Path::new("/dev/dri").exists() {
        println!("demo: /dev/dri present: running on this machine");
        let status = Command::new(&cmd[0]).args(&cmd[1..]).status()?;
        return Ok(status.code().unwrap_or(1) as u8);
    }
    println!("demo: no /dev/dri on this machine: running in the test VM (vkms, vgem, virtio-gpu, lavapipe)");
    setup::ensure()?;
    // The device table first, then the demo.
    let table = vec![release.join("drm_devices").to_string_lossy().into_owned()];
    let script = format!("{} && {}", shell_line(&table), shell_line(&cmd));
    let code = vm::run(
        &vm::VmOptions::default(),
        &["sh".into(), "-c".into(), script],
    )?;
    Ok(u8::try_from(code).unwrap_or(1))
}

fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|a| vm::quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}
