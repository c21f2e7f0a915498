//! `cargo xtask capi`: builds libbufsync (crate `bufsync-capi`, release)
//! and installs it the way cargo-c's `cargo cinstall` lays out a C library:
//!
//! ```text
//! PREFIX/LIBDIR/libbufsync.so.0.1.0          the shared library (soname libbufsync.so.0.1)
//! PREFIX/LIBDIR/libbufsync.so.0.1 -> libbufsync.so.0.1.0
//! PREFIX/LIBDIR/libbufsync.so     -> libbufsync.so.0.1.0
//! PREFIX/LIBDIR/libbufsync.a                 the static library
//! PREFIX/LIBDIR/pkgconfig/bufsync.pc
//! PREFIX/INCLUDEDIR/bufsync/bufsync.h        the checked-in header
//! ```
//!
//! Defaults as cargo-c's: prefix `/usr/local`, libdir `lib`, includedir
//! `include`; `--destdir` stages the tree for a package (the .pc still
//! names PREFIX). The .pc's `Libs.private` is what rustc reports the
//! static library needs (`--print native-static-libs`). `--header`
//! regenerates `capi/include/bufsync.h` instead (cbindgen, through the
//! crate's staleness test).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{layout, process};

const USAGE: &str =
    "usage: cargo xtask capi [--prefix DIR] [--libdir DIR] [--includedir DIR] [--destdir DIR]
       cargo xtask capi --header";

/// Where to install, resolved against the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The prefix the .pc file names.
    pub prefix: PathBuf,
    /// The library directory, relative to the prefix or absolute.
    pub libdir: PathBuf,
    /// The include directory, relative to the prefix or absolute.
    pub includedir: PathBuf,
    /// Prepended to every path written (`DESTDIR`), not to the .pc's.
    pub destdir: Option<PathBuf>,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            prefix: PathBuf::from("/usr/local"),
            libdir: PathBuf::from("lib"),
            includedir: PathBuf::from("include"),
            destdir: None,
        }
    }
}

impl Paths {
    fn under_prefix(&self, p: &Path) -> PathBuf {
        self.prefix.join(p)
    }

    /// Where a path under the prefix is written (DESTDIR applied).
    fn staged(&self, p: &Path) -> PathBuf {
        let full = self.under_prefix(p);
        match &self.destdir {
            Some(d) => d.join(full.strip_prefix("/").unwrap_or(&full)),
            None => full,
        }
    }

    /// A .pc variable for `p`: `${base}/p` when relative, else `p`.
    fn pc_var(base: &str, p: &Path) -> String {
        if p.is_absolute() {
            p.display().to_string()
        } else {
            format!("${{{base}}}/{}", p.display())
        }
    }
}

/// The ABI suffix of the soname (cargo-c's rule): `0.<minor>` before 1.0,
/// else `<major>`.
pub fn sover(version: &str) -> String {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    if major == "0" {
        format!("0.{minor}")
    } else {
        major.to_owned()
    }
}

/// bufsync.pc from `capi/bufsync.pc.in`.
pub fn render_pc(template: &str, paths: &Paths, version: &str, libs_private: &str) -> String {
    template
        .replace("@PREFIX@", &paths.prefix.display().to_string())
        .replace("@LIBDIR@", &Paths::pc_var("exec_prefix", &paths.libdir))
        .replace("@INCLUDEDIR@", &Paths::pc_var("prefix", &paths.includedir))
        .replace("@VERSION@", version)
        .replace("@LIBS_PRIVATE@", libs_private)
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Install(Paths),
    Header,
    Help,
}

fn parse(args: &[String]) -> io::Result<Cmd> {
    let mut p = Paths::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| io::Error::other(format!("{name} needs a directory\n{USAGE}")))
        };
        match a.as_str() {
            "--prefix" => p.prefix = std::path::absolute(value("--prefix")?)?,
            "--libdir" => p.libdir = value("--libdir")?,
            "--includedir" => p.includedir = value("--includedir")?,
            "--destdir" => p.destdir = Some(std::path::absolute(value("--destdir")?)?),
            "--header" => return Ok(Cmd::Header),
            "-h" | "--help" => return Ok(Cmd::Help),
            other => {
                return Err(io::Error::other(format!(
                    "unknown option `{other}`\n{USAGE}"
                )))
            }
        }
    }
    Ok(Cmd::Install(p))
}

/// Entry point of `cargo xtask capi`.
pub fn run(args: &[String]) -> io::Result<u8> {
    match parse(args)? {
        Cmd::Install(p) => install(&p),
        Cmd::Header => regenerate_header(),
        Cmd::Help => {
            println!("{USAGE}");
            Ok(0)
        }
    }
}

/// Builds libbufsync and installs it under `paths`.
fn install(paths: &Paths) -> io::Result<u8> {
    let ws = layout::workspace();
    let version = env!("CARGO_PKG_VERSION");
    println!("capi: building libbufsync {version} (release)");
    let libs_private = build(&ws)?;
    let built = layout::target_dir().join("release");
    let sover = sover(version);
    let real = format!("libbufsync.so.{version}");
    let soname = format!("libbufsync.so.{sover}");

    let libdir = paths.staged(&paths.libdir);
    let incdir = paths.staged(&paths.includedir).join("bufsync");
    fs::create_dir_all(libdir.join("pkgconfig"))?;
    fs::create_dir_all(&incdir)?;
    let mut installed = Vec::new();
    let mut copy = |from: PathBuf, to: PathBuf| -> io::Result<()> {
        let tmp = to.with_extension("xtask-tmp");
        fs::copy(&from, &tmp).map_err(|e| {
            io::Error::other(format!("copy {} -> {}: {e}", from.display(), to.display()))
        })?;
        fs::rename(&tmp, &to)?;
        installed.push(to);
        Ok(())
    };
    copy(built.join("libbufsync_capi.so"), libdir.join(&real))?;
    copy(built.join("libbufsync_capi.a"), libdir.join("libbufsync.a"))?;
    copy(ws.join("capi/include/bufsync.h"), incdir.join("bufsync.h"))?;
    for link in [soname.as_str(), "libbufsync.so"] {
        let at = libdir.join(link);
        let _ = fs::remove_file(&at);
        std::os::unix::fs::symlink(&real, &at)?;
        installed.push(at);
    }
    let template = fs::read_to_string(ws.join("capi/bufsync.pc.in"))?;
    let pc = libdir.join("pkgconfig/bufsync.pc");
    fs::write(&pc, render_pc(&template, paths, version, &libs_private))?;
    installed.push(pc);
    for f in &installed {
        println!("capi: installed {}", f.display());
    }
    if let Some(n) = exported_functions(&libdir.join(&real)) {
        let header = fs::metadata(incdir.join("bufsync.h")).map_or(0, |m| m.len());
        println!(
            "capi: {real}: soname {soname}, {n} exported functions; bufsync.h: {header} bytes"
        );
    }
    println!(
        "capi: done; try `PKG_CONFIG_PATH={} pkg-config --cflags --libs bufsync`",
        paths
            .under_prefix(&paths.libdir)
            .join("pkgconfig")
            .display()
    );
    Ok(0)
}

/// Builds the release cdylib and staticlib (with GBM where libgbm's
/// development files are installed); returns the native libraries the
/// static library needs, as rustc reports them.
fn build(ws: &Path) -> io::Result<String> {
    let gbm = Command::new("pkg-config")
        .args(["--exists", "gbm"])
        .status()
        .is_ok_and(|s| s.success());
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(ws)
        .args(["rustc", "--release", "-p", "bufsync-capi", "--lib"]);
    if gbm {
        println!("capi: with GBM (the presenter's display-allocated buffers)");
    } else {
        println!(
            "capi: without GBM (no libgbm-dev here): display-allocated buffers are dumb buffers"
        );
        cargo.arg("--no-default-features");
    }
    let out = cargo
        .args(["--", "--print", "native-static-libs"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "building bufsync-capi failed:\n{stderr}"
        )));
    }
    let libs = stderr
        .lines()
        .find_map(|l| l.split("native-static-libs:").nth(1))
        .map(|s| dedup_libs(s.trim()))
        // Cargo replays the note from its cache; should it ever not, these
        // are what std on Linux (and GBM) need.
        .unwrap_or_else(|| {
            let std = "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc";
            if gbm {
                format!("-lgbm {std}")
            } else {
                std.to_owned()
            }
        });
    Ok(libs)
}

/// `-ldl -lgcc_s -ldl -lc` -> `-ldl -lgcc_s -lc`: the first of each, in order.
fn dedup_libs(s: &str) -> String {
    let mut seen = Vec::new();
    for w in s.split_whitespace() {
        if !seen.contains(&w) {
            seen.push(w);
        }
    }
    seen.join(" ")
}

/// The number of functions the shared library exports (`nm -D`), if nm is
/// there.
fn exported_functions(so: &Path) -> Option<usize> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(so)
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("T"))
            .count()
    })
}

/// `--header`: cbindgen rewrites the checked-in header (the crate's
/// staleness test with `BUFSYNC_BLESS=1`).
fn regenerate_header() -> io::Result<u8> {
    process::run(
        Command::new(env!("CARGO"))
            .current_dir(layout::workspace())
            .env("BUFSYNC_BLESS", "1")
            .args(["test", "-p", "bufsync-capi", "--test", "header"]),
    )?;
    println!("capi: wrote capi/include/bufsync.h");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soname_follows_cargo_c() {
        assert_eq!(sover("0.1.0"), "0.1");
        assert_eq!(sover("0.0.3"), "0.0");
        assert_eq!(sover("2.4.1"), "2");
    }

    #[test]
    fn pc_names_prefix_relative_dirs() {
        let paths = Paths {
            prefix: "/opt/b".into(),
            destdir: Some("/tmp/stage".into()),
            ..Paths::default()
        };
        let pc = render_pc(
            "prefix=@PREFIX@\nlibdir=@LIBDIR@\nincludedir=@INCLUDEDIR@\nVersion: @VERSION@\nLibs.private: @LIBS_PRIVATE@\n",
            &paths,
            "0.1.0",
            "-lm",
        );
        assert_eq!(
            pc,
            "prefix=/opt/b\nlibdir=${exec_prefix}/lib\nincludedir=${prefix}/include\nVersion: 0.1.0\nLibs.private: -lm\n"
        );
        assert_eq!(
            paths.staged(Path::new("lib")),
            PathBuf::from("/tmp/stage/opt/b/lib")
        );
        let abs = Paths {
            libdir: "/usr/lib/x86_64-linux-gnu".into(),
            ..Paths::default()
        };
        assert!(render_pc("@LIBDIR@", &abs, "0", "").starts_with("/usr/lib/x86_64"));
        assert_eq!(
            abs.staged(&abs.libdir),
            PathBuf::from("/usr/lib/x86_64-linux-gnu")
        );
    }

    #[test]
    fn static_libs_are_deduplicated_in_order() {
        assert_eq!(dedup_libs("-ldl -lgcc_s -ldl -lc"), "-ldl -lgcc_s -lc");
    }
}
