//! Shared by the C tests: a staged prefix with libbufsync under its C names
//! (the build's `libbufsync_capi.so` / `.a`, the checked-in header and a
//! bufsync.pc from `capi/bufsync.pc.in`), compiling C and C++ against it,
//! and running one case of a C test program.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The crate's directory.
pub fn capi_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the library this test was built with: the test binary's
/// own directory, `target/<profile>/deps` (the copy cargo uplifts to
/// `target/<profile>` is refreshed only by builds of the library itself).
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The soname cargo-c's naming gives 0.x versions (build.rs sets it).
pub fn soname() -> String {
    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    if major == "0" {
        format!("libbufsync.so.0.{minor}")
    } else {
        format!("libbufsync.so.{major}")
    }
}

/// A prefix laid out as `cargo xtask capi` installs one (lib/, lib/pkgconfig,
/// include/bufsync/), with links to this build's library and the header.
/// Made once per test process.
pub fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("capi-prefix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let lib = root.join("lib");
        let inc = root.join("include/bufsync");
        std::fs::create_dir_all(lib.join("pkgconfig")).expect("mkdir lib/pkgconfig");
        std::fs::create_dir_all(&inc).expect("mkdir include/bufsync");
        let built = deps_dir();
        let so = built.join("libbufsync_capi.so");
        let a = built.join("libbufsync_capi.a");
        assert!(
            so.exists(),
            "{} is missing: cargo builds the cdylib with the tests",
            so.display()
        );
        let link = |from: &Path, to: PathBuf| {
            std::os::unix::fs::symlink(from, &to)
                .unwrap_or_else(|e| panic!("symlink {}: {e}", to.display()))
        };
        link(&so, lib.join(soname()));
        link(&so, lib.join("libbufsync.so"));
        link(&a, lib.join("libbufsync.a"));
        link(&capi_dir().join("include/bufsync.h"), inc.join("bufsync.h"));
        let pc = std::fs::read_to_string(capi_dir().join("bufsync.pc.in"))
            .expect("bufsync.pc.in")
            .replace("@PREFIX@", &root.to_string_lossy())
            .replace("@LIBDIR@", "${exec_prefix}/lib")
            .replace("@INCLUDEDIR@", "${prefix}/include")
            .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
            .replace(
                "@LIBS_PRIVATE@",
                "-lgbm -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc",
            );
        std::fs::write(lib.join("pkgconfig/bufsync.pc"), pc).expect("write bufsync.pc");
        root
    })
}

/// The warnings every C test is built with.
pub const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"];

/// AddressSanitizer with LeakSanitizer (on by default with ASan on Linux).
pub const SANITIZE: &[&str] = &["-fsanitize=address", "-fno-omit-frame-pointer"];

/// Runs `cmd`, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Compiles `sources` (paths under capi/tests/c) into the executable
/// `name` under the test's temp dir, with [`C_FLAGS`], ASan, and the staged
/// libbufsync (shared, found at run time through an rpath).
pub fn build_c_test(name: &str, sources: &[&str]) -> PathBuf {
    let prefix = prefix();
    let out = prefix.join(name);
    let mut cc = Command::new("cc");
    cc.args(C_FLAGS)
        .args(SANITIZE)
        .arg(format!("-I{}", prefix.join("include/bufsync").display()))
        .arg(format!("-I{}", capi_dir().join("tests/c").display()));
    for s in sources {
        cc.arg(capi_dir().join("tests/c").join(s));
    }
    cc.arg("-o")
        .arg(&out)
        .arg(format!("-L{}", prefix.join("lib").display()))
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .args(["-lbufsync", "-pthread"]);
    run_ok(&mut cc);
    out
}

/// The case names a C test program lists (`--list`).
pub fn list_cases(bin: &Path) -> Vec<String> {
    let out = run_ok(Command::new(bin).arg("--list"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs case `case` of `bin` in its own process; panics with its output
/// unless it passed (ASan and LSan reports make it fail).
pub fn run_case(bin: &Path, case: &str) {
    let out = run_case_output(bin, case);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        eprintln!("{stderr}");
    }
    assert!(
        out.status.success() && stdout.contains(&format!("ok {case}")),
        "C test {case} failed ({}):\n{stdout}{stderr}",
        out.status
    );
}

/// Runs case `case` of `bin` and returns its exit status and output.
pub fn run_case_output(bin: &Path, case: &str) -> Output {
    Command::new(bin)
        .arg(case)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=99",
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

/// Declares one `#[test]` per C case of `$bin()` (a function returning the
/// built program), plus a test that the list matches the program's own.
#[macro_export]
macro_rules! c_cases {
    ($bin:ident: $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::common::run_case(&$bin(), stringify!($case));
            }
        )*

        #[test]
        fn every_c_case_has_a_rust_test() {
            let listed: Vec<String> = $crate::common::list_cases(&$bin())
                .into_iter()
                .filter(|c| !c.starts_with("selftest_"))
                .collect();
            let declared: Vec<String> = vec![$(stringify!($case).to_owned()),*];
            assert_eq!(listed, declared, "declare each C case in c_cases!");
        }
    };
}
