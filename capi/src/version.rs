//! The library's version: `BUFSYNC_VERSION_*` for the header a program was
//! built against, `bufsync_version()` for the library it runs with.
//!
//! Locking: none.

use std::ffi::c_char;

/// Major version of the header (the crate's version; 0.x: the minor
/// version is the ABI's, as the soname `libbufsync.so.0.<minor>` says).
pub const BUFSYNC_VERSION_MAJOR: u32 = 0;
/// Minor version of the header.
pub const BUFSYNC_VERSION_MINOR: u32 = 1;
/// Patch version of the header.
pub const BUFSYNC_VERSION_PATCH: u32 = 0;
/// The header's version as one number, `BUFSYNC_MAKE_VERSION(major, minor, patch)`.
pub const BUFSYNC_VERSION: u32 =
    (BUFSYNC_VERSION_MAJOR << 16) | (BUFSYNC_VERSION_MINOR << 8) | BUFSYNC_VERSION_PATCH;

/// The running library's version, encoded as `BUFSYNC_VERSION` is: compare
/// `bufsync_version() >> 8` with `BUFSYNC_VERSION >> 8` to check that the
/// library matches the header's ABI (0.x: major and minor must match).
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn bufsync_version() -> u32 {
    BUFSYNC_VERSION
}

/// The running library's version as text ("0.1.0"); static, never NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn bufsync_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_version_is_the_crate_version() {
        assert_eq!(
            (
                BUFSYNC_VERSION_MAJOR.to_string(),
                BUFSYNC_VERSION_MINOR.to_string(),
                BUFSYNC_VERSION_PATCH.to_string()
            ),
            (
                env!("CARGO_PKG_VERSION_MAJOR").to_owned(),
                env!("CARGO_PKG_VERSION_MINOR").to_owned(),
                env!("CARGO_PKG_VERSION_PATCH").to_owned()
            ),
            "bump the BUFSYNC_VERSION_* constants with the crate version"
        );
    }
}
