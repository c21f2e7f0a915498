//! `cargo xtask demo`: the README's main command.
//!
//! Builds the example programs and runs the demo: on a machine with a KMS
//! display and a render node it runs there; otherwise inside the test VM.

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
            .args(["build", "--quiet", "-p", "bufsync-examples", "--bins"])
            .current_dir(layout::workspace()),
    )?;
    let bin = layout::target_dir().join("debug").join("drm_devices");
    let mut cmd = vec![bin.to_string_lossy().into_owned()];
    cmd.extend(extra);
    if Path::new("/dev/dri").exists() {
        println!("demo: /dev/dri present: running on this machine");
        let status = Command::new(&cmd[0]).args(&cmd[1..]).status()?;
        return Ok(status.code().unwrap_or(1) as u8);
    }
    println!("demo: no /dev/dri on this machine: running in the test VM (vkms, vgem, virtio-gpu, lavapipe)");
    setup::ensure()?;
    let code = vm::run(&vm::VmOptions::default(), &cmd)?;
    Ok(u8::try_from(code).unwrap_or(1))
}
