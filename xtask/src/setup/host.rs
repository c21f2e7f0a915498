//! What setup installs on the host: only programs that run there (qemu,
//! busybox for the initramfs, the module build tools, glslc) and the one
//! library a feature builds against (libgbm-dev), from the release's own
//! archive. The guest's kernel and Mesa never come here (see `guest`).
//!
//! Also the record that proves it: the first setup notes `/boot` and the
//! installed kernels, every install notes its packages, and
//! [`check_unchanged`] (run by `cargo xtask test`) compares.

use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::apt::{Apt, Inst};
use super::progress::Progress;

/// Host packages, each with why it is there.
pub const HOST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "runs the test VM"),
    ("busybox-static", "the initramfs's /init"),
    (
        "kmod",
        "depmod for the cached modules, modinfo, the guest's modprobe",
    ),
    ("xz-utils", "unpacks the initramfs modules"),
    ("cpio", "packs the initramfs"),
    ("gzip", "packs the initramfs"),
    ("make", "builds vkms.ko and sw_sync.ko"),
    ("gcc-12", "the compiler the guest kernel was built with"),
    ("patch", "applies the vkms fix"),
    ("glslc", "compiles the shaders"),
    ("spirv-tools", "validates the shaders"),
    (
        "libgbm-dev",
        "the gbm feature of bufsync-backends links libgbm",
    ),
    (
        "pkg-config",
        "libbufsync's .pc file: `cargo xtask capi` and the C tests",
    ),
    ("g++", "the C API's header test compiles it as C++17"),
];

/// The installed version of each package, `None` where it is not installed.
pub fn installed_versions(pkgs: &[&str]) -> Vec<Option<String>> {
    let text = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev} ${Version}\n"])
        .args(pkgs)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    pkgs.iter()
        .map(|p| {
            text.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next()?.split(':').next()?;
                let status = it.next()?;
                let version = it.next()?;
                (name == *p && status.starts_with("ii")).then(|| version.to_string())
            })
        })
        .collect()
}

/// The host packages not installed yet.
pub fn missing() -> Vec<&'static str> {
    let names: Vec<&str> = HOST_PACKAGES.iter().map(|(n, _)| *n).collect();
    names
        .iter()
        .zip(installed_versions(&names))
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect()
}

/// One apt invocation of the host install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// apt-get arguments after `install`.
    pub args: Vec<String>,
}

/// The apt requests that install `missing`. qemu comes from the archive
/// the host's qemu-utils came from: a backports qemu-utils breaks the
/// release's qemu-system (`qemu_utils` is its installed version).
pub fn requests(missing: &[&str], qemu_utils: Option<&str>) -> Vec<Request> {
    let mut main: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for m in missing {
        if *m == "qemu-system-x86" && qemu_utils.is_some_and(|v| v.contains("~bpo")) {
            out.push(Request {
                args: vec!["-t".into(), "bookworm-backports".into(), (*m).into()],
            });
        } else {
            main.push((*m).into());
        }
    }
    if !main.is_empty() {
        out.insert(0, Request { args: main });
    }
    out
}

/// What the host install would do, from apt's simulation.
pub fn plan(apt: &Apt, reqs: &[Request]) -> io::Result<Vec<Inst>> {
    let mut all = Vec::new();
    for r in reqs {
        for i in apt.simulate(&r.args)? {
            if !all.iter().any(|a: &Inst| a.name == i.name) {
                all.push(i);
            }
        }
    }
    Ok(all)
}

/// The plan as lines for a person: new packages, then upgrades.
pub fn describe_plan(plan: &[Inst]) -> String {
    let mut s = String::new();
    let new: Vec<&Inst> = plan.iter().filter(|i| i.replaces.is_none()).collect();
    let up: Vec<&Inst> = plan.iter().filter(|i| i.replaces.is_some()).collect();
    if !new.is_empty() {
        s += &format!("  install ({}):\n", new.len());
        for i in new {
            s += &format!("    {} {} ({})\n", i.name, i.version, i.origin);
        }
    }
    if !up.is_empty() {
        s += &format!("  upgrade, as apt requires for the above ({}):\n", up.len());
        for i in up {
            s += &format!(
                "    {} {} -> {} ({})\n",
                i.name,
                i.replaces.as_deref().unwrap_or("?"),
                i.version,
                i.origin
            );
        }
    }
    s
}

/// Whether to go ahead: `--yes` or `CI` say yes; on a terminal the person
/// is asked; a script without a terminal goes ahead (it asked for setup).
pub fn confirm(yes: bool, question: &str) -> bool {
    if yes || std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    if !rustix::termios::isatty(rustix::stdio::stdin()) {
        return true;
    }
    print!("{question} [y/N] ");
    let _ = io::stdout().flush();
    let mut answer = String::new();
    let _ = io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

/// Installs the requests (root), recording what was installed.
pub fn install(apt: &Apt, reqs: &[Request], plan: &[Inst], p: &mut Progress) -> io::Result<()> {
    let record = installed_record();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&record)?;
    for i in plan {
        writeln!(f, "{} {}", i.name, i.version)?;
    }
    apt.update(p)?;
    for r in reqs {
        apt.install(&r.args, p)?;
    }
    Ok(())
}

/// The shell commands a person runs as root to do the same.
pub fn commands_for_root(apt: &Apt, reqs: &[Request]) -> String {
    let mut s = String::new();
    let update = {
        let mut v = vec!["apt-get".to_string()];
        v.extend(apt.options());
        v.push("update".into());
        v
    };
    s += &shell(&update);
    s.push('\n');
    for r in reqs {
        s += &shell(&apt.install_command(&r.args));
        s.push('\n');
    }
    s
}

fn shell(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=./:+~".contains(c))
            {
                w.clone()
            } else {
                crate::vm::quote(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------- the host record

fn snapshot_path() -> PathBuf {
    crate::layout::cache_base().join("host-before-setup.txt")
}

fn installed_record() -> PathBuf {
    crate::layout::cache_base().join("host-installed.txt")
}

/// `/boot`'s entries and the installed kernel packages, one per line.
fn host_state() -> String {
    let mut boot: Vec<String> = fs::read_dir("/boot")
        .map(|rd| {
            rd.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    boot.sort();
    let kernels = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev} ${Package}\n",
            "linux-image-*",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut kernels: Vec<String> = kernels
        .lines()
        .filter_map(|l| l.strip_prefix("ii "))
        .map(|p| p.trim().to_string())
        .collect();
    kernels.sort();
    let mut s = String::new();
    for b in boot {
        s += &format!("boot {b}\n");
    }
    for k in kernels {
        s += &format!("kernel {k}\n");
    }
    s
}

/// Notes the host's `/boot` and kernels before setup's first change.
pub fn snapshot_once() -> io::Result<()> {
    let path = snapshot_path();
    if path.exists() {
        return Ok(());
    }
    fs::create_dir_all(path.parent().expect("has a parent"))?;
    fs::write(path, host_state())
}

/// Checks that setup put no kernel on the host: `/boot` has nothing its
/// snapshot lacked, no kernel package is installed that was not, and no
/// package setup installed is a kernel. Returns what it saw, or why not.
pub fn check_unchanged() -> Result<String, String> {
    let before = fs::read_to_string(snapshot_path())
        .map_err(|e| format!("no snapshot {}: {e}", snapshot_path().display()))?;
    let now = host_state();
    let added: Vec<&str> = now
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    let installed = fs::read_to_string(installed_record()).unwrap_or_default();
    let kernels: Vec<&str> = installed
        .lines()
        .filter(|l| l.starts_with("linux-image") || l.starts_with("linux-headers"))
        .collect();
    if !added.is_empty() || !kernels.is_empty() {
        return Err(format!(
            "the host changed: new {added:?}; kernel packages setup installed: {kernels:?}"
        ));
    }
    let boot: Vec<&str> = now
        .lines()
        .filter_map(|l| l.strip_prefix("boot "))
        .collect();
    Ok(format!(
        "/boot: {}",
        if boot.is_empty() {
            "(empty)".to_string()
        } else {
            boot.join(" ")
        }
    ))
}

/// The host root path setup would need (for messages).
pub fn is_debian_12() -> bool {
    fs::read_to_string(Path::new("/etc/os-release"))
        .map(|s| s.lines().any(|l| l.trim() == "VERSION_CODENAME=bookworm"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_follows_the_archive_of_qemu_utils() {
        let r = requests(
            &["cpio", "qemu-system-x86"],
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1"),
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].args, vec!["cpio"]);
        assert_eq!(
            r[1].args,
            vec!["-t", "bookworm-backports", "qemu-system-x86"]
        );
        let r = requests(&["cpio", "qemu-system-x86"], None);
        assert_eq!(
            r,
            vec![Request {
                args: vec!["cpio".into(), "qemu-system-x86".into()]
            }]
        );
        assert!(requests(&[], None).is_empty());
    }

    #[test]
    fn no_guest_piece_is_a_host_package() {
        for (name, why) in HOST_PACKAGES {
            assert!(
                !name.starts_with("linux-")
                    && !name.starts_with("mesa-")
                    && !name.starts_with("libvulkan"),
                "{name} belongs in the cache, not on the host"
            );
            assert!(!why.is_empty());
        }
    }

    #[test]
    fn plan_shows_installs_and_upgrades() {
        let plan = vec![
            Inst {
                name: "glslc".into(),
                replaces: None,
                version: "2023.2-1".into(),
                origin: "Debian:12.15/oldstable".into(),
            },
            Inst {
                name: "libgbm1".into(),
                replaces: Some("22.3.6-1+deb12u1".into()),
                version: "22.3.6-1+deb12u2".into(),
                origin: "Debian:12.15/oldstable".into(),
            },
        ];
        let s = describe_plan(&plan);
        assert!(
            s.contains("install (1):\n    glslc 2023.2-1 (Debian:12.15/oldstable)"),
            "{s}"
        );
        assert!(
            s.contains("libgbm1 22.3.6-1+deb12u1 -> 22.3.6-1+deb12u2"),
            "{s}"
        );
    }

    #[test]
    fn root_commands_are_copyable() {
        let words = vec!["apt-get".to_string(), "-o".into(), "Dir::Cache=/a b".into()];
        assert_eq!(shell(&words), "apt-get -o 'Dir::Cache=/a b'");
    }
}
