//! `cargo xtask demo [--vm] [-- ARGS]`: the README's main command.
//!
//! Builds `render_to_scanout` (release) and runs it: on a machine with a KMS
//! display (`/dev/dri`) it runs there, on the devices it finds (the demo's
//! defaults: the first connected display, its preferred mode); otherwise,
//! or with `--vm`, inside the test VM on both of its displays: vkms
//! (checked through writeback) and virtio_gpu (checked by screendumps qemu
//! takes from outside the guest), with vgem and lavapipe rendering. Per
//! display the demo prints the buffer strategy chosen and why the others
//! were refused. The PNGs and the table land under `target/demo/`.

use crate::{layout, process, setup, vm};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Entry point of `cargo xtask demo`.
pub fn run(args: &[String]) -> io::Result<u8> {
    let mut force_vm = false;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--vm" => force_vm = true,
            "--" => extra.extend(it.by_ref().cloned()),
            _ => extra.push(a.clone()),
        }
    }
    let on_host = !force_vm && Path::new("/dev/dri").exists();
    if !on_host {
        // The VM's pieces first, so that the plan comes before the build.
        setup::ensure(&setup::Options::default())?;
    }
    println!(
        "demo: building render_to_scanout and drm_devices (release; the first build takes a few minutes)"
    );
    process::run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "bufsync-examples", "--bins"])
            .current_dir(layout::workspace()),
    )?;
    let release = layout::target_dir().join("release");
    let demo_dir = layout::target_dir().join("demo");
    fs::create_dir_all(&demo_dir)?;
    let mut cmd = vec![release
        .join("render_to_scanout")
        .to_string_lossy()
        .into_owned()];
    if !extra.iter().any(|a| a == "--out") {
        cmd.extend(["--out".to_string(), demo_dir.to_string_lossy().into_owned()]);
    }
    let chose_display = extra.iter().any(|a| a == "--display");
    cmd.extend(extra);
    if on_host {
        println!("demo: /dev/dri present: running on this machine's devices (`cargo xtask demo --vm` runs in the test VM instead)");
        for node in drm_nodes() {
            println!("demo:   {}", describe_node(&node));
        }
        let status = Command::new(&cmd[0]).args(&cmd[1..]).status()?;
        if !status.success() {
            explain_master(&drm_nodes());
        }
        return Ok(status.code().unwrap_or(1) as u8);
    }
    if force_vm {
        println!("demo: --vm: running in the test VM (vkms, vgem, virtio-gpu, lavapipe)");
    } else {
        println!("demo: no /dev/dri on this machine: running in the test VM (vkms, vgem, virtio-gpu, lavapipe)");
    }
    if !chose_display {
        cmd.extend(["--display".to_string(), "vkms,virtio_gpu".to_string()]);
    }
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

/// The primary (KMS) nodes under /dev/dri.
fn drm_nodes() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir("/dev/dri")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("card"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `card0 (i915): held open by 1234 (gnome-shell)`.
fn describe_node(node: &Path) -> String {
    let name = node
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let driver = fs::read_link(format!("/sys/class/drm/{name}/device/driver"))
        .ok()
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown driver".into());
    let holders = holders_of(node, Path::new("/proc"));
    if holders.is_empty() {
        format!(
            "{} ({driver}): not open in any other process",
            node.display()
        )
    } else {
        format!("{} ({driver}): open in {}", node.display(), list(&holders))
    }
}

fn list(holders: &[(u32, String)]) -> String {
    holders
        .iter()
        .map(|(pid, comm)| format!("{pid} ({comm})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// After a failed run on the host: who may hold DRM master, and what to do.
fn explain_master(nodes: &[PathBuf]) {
    let held: Vec<(PathBuf, Vec<(u32, String)>)> = nodes
        .iter()
        .map(|n| (n.clone(), holders_of(n, Path::new("/proc"))))
        .filter(|(_, h)| !h.is_empty())
        .collect();
    if held.is_empty() {
        return;
    }
    for (node, h) in &held {
        eprintln!("demo: {} is open in {}", node.display(), list(h));
    }
    eprintln!(
        "demo: if the demo could not become DRM master, one of them (a compositor or display \
         server) holds the display. Run the demo from a text console with no compositor on that \
         device (Ctrl+Alt+F3, log in, stop the display manager), or run `cargo xtask demo --vm`."
    );
}

/// The processes (other than this one) with `node` open, found through
/// `<proc>/<pid>/fd` (only those this user may read).
fn holders_of(node: &Path, proc_root: &Path) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        if fds
            .filter_map(|f| f.ok())
            .any(|f| fs::read_link(f.path()).is_ok_and(|t| t == node))
        {
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_processes_holding_a_file() {
        let path = std::env::temp_dir().join(format!("xtask-holder-{}", std::process::id()));
        fs::write(&path, "x").unwrap();
        // A child holds the file open; this process is left out by design.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<{}; exec sleep 30", path.display()))
            .spawn()
            .unwrap();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = holders_of(&path, Path::new("/proc"));
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_file(&path);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, child.id());
        assert!(!found[0].1.is_empty(), "names its command");
    }
}
