//! The C API from C and C++ on any machine: `tests/c/api.c` (fences,
//! reservations, tickets, the logging hook, fd ownership, NULL and bad
//! arguments, the panic boundary) built with -Wall -Wextra -Werror and run
//! under AddressSanitizer + LeakSanitizer, one process per case; and the
//! header compiled as C++17 with -Wall -Werror.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn api() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::build_c_test("api", &["api.c"]))
        .clone()
}

c_cases!(api:
    version,
    fence_signal_status,
    fence_signal_error,
    fence_wait_timeout,
    fence_callbacks,
    fence_merge,
    sync_file_fd_ownership,
    dmabuf_fd_ownership,
    ticket_frame_flow,
    ticket_misuse,
    ticket_contention,
    ticket_cancel,
    null_arguments,
    panic_is_an_error_code,
    last_error_is_per_thread,
    log_hook,
);

/// The harness catches leaks: a case that leaks one fence handle fails
/// with LeakSanitizer's report (its stack names the C function; the
/// library's frames have no frame pointers to unwind through).
#[test]
fn leak_sanitizer_catches_a_leaked_handle() {
    let out = common::run_case_output(&api(), "selftest_leak_is_caught");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "LSan's exit code:\n{stderr}");
    assert!(
        stderr.contains("LeakSanitizer: detected memory leaks")
            && stderr.contains("in selftest_leak_is_caught"),
        "{stderr}"
    );
}

/// The header compiles as C++17 with every warning an error, and links:
/// `extern "C"` guards, no C-only constructs.
#[test]
fn header_compiles_as_cpp17() {
    let prefix = common::prefix();
    let out = prefix.join("cpp_header");
    common::run_ok(
        Command::new("g++")
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(format!("-I{}", prefix.join("include/bufsync").display()))
            .arg(common::capi_dir().join("tests/c/header.cpp"))
            .arg("-o")
            .arg(&out)
            .arg(format!("-L{}", prefix.join("lib").display()))
            .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
            .arg("-lbufsync"),
    );
    common::run_ok(&mut Command::new(&out));
}

/// A program links with what bufsync.pc says, shared and static.
#[test]
fn pkg_config_links_shared_and_static() {
    let prefix = common::prefix();
    let pc = |args: &[&str]| {
        let o = common::run_ok(
            Command::new("pkg-config")
                .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
                .args(args)
                .arg("bufsync"),
        );
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let cflags = pc(&["--cflags"]);
    let src = common::capi_dir().join("tests/c/link.c");
    let shared = prefix.join("link_shared");
    common::run_ok(
        Command::new("cc")
            .args(&cflags)
            .arg(&src)
            .arg("-o")
            .arg(&shared)
            .args(pc(&["--libs"]))
            .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display())),
    );
    let o = common::run_ok(&mut Command::new(&shared));
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
    let needed = common::run_ok(Command::new("readelf").arg("-d").arg(&shared));
    assert!(
        String::from_utf8_lossy(&needed.stdout).contains(&common::soname()),
        "the program needs the versioned soname"
    );
    let stat = prefix.join("link_static");
    common::run_ok(
        Command::new("cc")
            .args(&cflags)
            .arg(&src)
            .arg("-o")
            .arg(&stat)
            .arg("-static-libgcc")
            .args(pc(&["--libs", "--static"]).iter().map(|a| {
                if a == "-lbufsync" {
                    prefix
                        .join("lib/libbufsync.a")
                        .to_string_lossy()
                        .into_owned()
                } else {
                    a.clone()
                }
            })),
    );
    let o = common::run_ok(&mut Command::new(&stat));
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
}
