//! `examples/c/vk_scanout.c`, the plain C Vulkan program, in the test VM:
//! built with `cc $(pkg-config --cflags --libs bufsync vulkan)` (and
//! -Wall -Wextra -Werror) against a staged install, run on lavapipe with
//! the vkms display, 120 frames, every flip captured through writeback and
//! checked against its frame's colour (the program exits non-zero when a
//! frame was not presented, not captured or did not match). A mode-setting
//! flip comes first: vkms cannot capture the flip that enables the CRTC.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn have_vulkan_pc() -> bool {
    Command::new("pkg-config")
        .args(["--exists", "vulkan"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The example built as a user would: flags from bufsync.pc and vulkan.pc
/// (once per test process).
fn build() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_once).clone()
}

fn build_once() -> PathBuf {
    let prefix = common::prefix();
    let pc_path = match std::env::var("PKG_CONFIG_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", prefix.join("lib/pkgconfig").display()),
        _ => prefix.join("lib/pkgconfig").display().to_string(),
    };
    let flags = common::run_ok(
        Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", &pc_path)
            .args(["--cflags", "--libs", "bufsync", "vulkan"]),
    );
    let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
    let out = prefix.join("vk_scanout");
    let src = common::capi_dir().join("../examples/c/vk_scanout.c");
    common::run_ok(
        Command::new("cc")
            .args(common::C_FLAGS)
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .args(flags.split_whitespace())
            .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display())),
    );
    out
}

#[test]
fn vk_scanout_builds_with_pkg_config() {
    bufsync_tests::require!(
        "vulkan.pc (libvulkan-dev, in the setup cache)",
        have_vulkan_pc()
    );
    build();
}

fn devices() -> bool {
    bufsync_tests::has_driver("vkms") && have_vulkan_pc() && bufsync_tests::lavapipe_icd().exists()
}

/// Runs the example with `--frames frames --check` and `extra`, and checks
/// that every frame was presented, shown, captured and matched.
fn run_checked(frames: u32, extra: &[&str]) -> String {
    let bin = build();
    let n = frames.to_string();
    let out = Command::new(&bin)
        .args(["--frames", &n, "--check"])
        .args(extra)
        .env("VK_ICD_FILENAMES", bufsync_tests::lavapipe_icd())
        .output()
        .expect("run vk_scanout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "vk_scanout failed ({})", out.status);
    // Frame 0 sets the mode (vkms cannot capture that flip); 1..=frames
    // are each captured and checked.
    let flips = frames + 1;
    assert!(
        stdout.contains(&format!("{flips} frames presented, {flips} shown")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "of frames 1..{frames}, {frames} captured through writeback, {frames} matched their frame's colour"
        )),
        "{stdout}"
    );
    stdout.into_owned()
}

#[test]
fn vk_scanout_presents_120_checked_frames_on_vkms() {
    bufsync_tests::require!("vkms, vulkan.pc and lavapipe", devices());
    let _serial = bufsync_tests::serial();
    run_checked(120, &[]);
}

/// The binary-semaphore form of present (the presenter bridges it to a
/// timeline point with a submission of its own, under the application's
/// queue-lock hooks).
#[test]
fn vk_scanout_binary_semaphores_on_vkms() {
    bufsync_tests::require!("vkms, vulkan.pc and lavapipe", devices());
    let _serial = bufsync_tests::serial();
    let stdout = run_checked(24, &["--binary"]);
    let locks: u64 = stdout
        .split("bufsync took the application's queue lock ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the queue-lock line");
    assert!(
        locks >= 24,
        "one bridge submission per frame at least: {stdout}"
    );
}
