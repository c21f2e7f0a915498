//! Gives libbufsync.so the versioned soname cargo-c would:
//! `libbufsync.so.<major>` from 1.0 on, `libbufsync.so.0.<minor>` before.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let sover = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbufsync.so.{sover}");
    println!("cargo:rerun-if-changed=build.rs");
}
