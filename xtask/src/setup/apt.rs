//! A private apt: its own source list (bookworm, -updates, -security and
//! -backports from the mirror the machine already uses), package lists and
//! archive cache under the VM cache. The host's `/etc/apt` and
//! `/var/lib/apt` are never written: downloads need no root, and the one
//! thing run as root (installing the host's own packages) reads these lists.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::progress::Progress;
use crate::process::output;

/// Package lists older than this are refreshed before a download.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The private apt state.
pub struct Apt {
    dir: PathBuf,
    root: bool,
}

/// One .deb to fetch, as `apt-get download --print-uris` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    /// The file name apt saves it as.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One `Inst` line of a simulated install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inst {
    /// Package name.
    pub name: String,
    /// The installed version it would replace (an upgrade), if any.
    pub replaces: Option<String>,
    /// The version it would install.
    pub version: String,
    /// Where it comes from (`Debian:12.x/oldstable`, `Debian Backports:…`).
    pub origin: String,
}

impl Inst {
    /// `name=version`, for `apt-get download`.
    pub fn spec(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
}

impl Apt {
    /// The private apt under `dir`; writes its source list from the
    /// machine's mirror (or deb.debian.org).
    pub fn new(dir: PathBuf) -> io::Result<Apt> {
        for d in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let sources = sources_list(&machine_mirrors());
        let path = dir.join("sources.list");
        if fs::read_to_string(&path).ok().as_deref() != Some(sources.as_str()) {
            fs::write(&path, sources)?;
            // New sources: the lists must be fetched again.
            let _ = fs::remove_file(dir.join("lists.stamp"));
        }
        Ok(Apt {
            dir,
            root: rustix::process::geteuid().is_root(),
        })
    }

    /// The `-o` options that point apt at this state.
    pub fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        let mut o = vec![
            format!("Dir::Etc::SourceList={d}/sources.list"),
            "Dir::Etc::SourceParts=/nonexistent".into(),
            "Dir::Etc::Preferences=/nonexistent".into(),
            "Dir::Etc::PreferencesParts=/nonexistent".into(),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::Cache={d}/cache"),
            "APT::Get::List-Cleanup=0".into(),
        ];
        if self.root {
            // apt's _apt sandbox user cannot write into root's home.
            o.push("APT::Sandbox::User=root".into());
        }
        o.into_iter().flat_map(|v| ["-o".to_string(), v]).collect()
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.args(self.options())
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C");
        c
    }

    /// Fetches the package lists when they are missing or a day old.
    pub fn update(&self, p: &mut Progress) -> io::Result<()> {
        let stamp = self.dir.join("lists.stamp");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh {
            return Ok(());
        }
        p.run(self.cmd("apt-get").args(["update", "-q"]))?;
        fs::write(stamp, "")
    }

    /// Simulates `apt-get install <args>` against the host's dpkg status:
    /// what would be installed or upgraded.
    pub fn simulate(&self, args: &[String]) -> io::Result<Vec<Inst>> {
        let text = output(
            self.cmd("apt-get")
                .args(["-s", "-q", "install", "--no-install-recommends"])
                .args(args),
        )?;
        Ok(text.lines().filter_map(parse_inst).collect())
    }

    /// The command line (for a person to run as root, or for us) that
    /// installs `args` on the host from these lists.
    pub fn install_command(&self, args: &[String]) -> Vec<String> {
        let mut v = vec!["apt-get".to_string()];
        v.extend(self.options());
        v.extend(["install", "-y", "-q", "--no-install-recommends"].map(String::from));
        v.extend(args.iter().cloned());
        v
    }

    /// Installs `args` on the host (root only), output into the log.
    pub fn install(&self, args: &[String], p: &mut Progress) -> io::Result<()> {
        let line = self.install_command(args);
        p.run(
            Command::new(&line[0])
                .args(&line[1..])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LC_ALL", "C"),
        )
    }

    /// What `apt-get download <specs>` would fetch.
    pub fn uris(&self, specs: &[String]) -> io::Result<Vec<Deb>> {
        let text = output(
            self.cmd("apt-get")
                .args(["download", "--print-uris"])
                .args(specs),
        )?;
        Ok(text.lines().filter_map(parse_uri).collect())
    }

    /// Downloads `specs` into `dest`, skipping files already there, with
    /// progress. Files land in `dest` only once complete.
    pub fn download(
        &self,
        specs: &[String],
        dest: &Path,
        p: &mut Progress,
    ) -> io::Result<Vec<PathBuf>> {
        let debs = in_spec_order(specs, self.uris(specs)?)?;
        fs::create_dir_all(dest)?;
        let missing: Vec<(&String, &Deb)> = specs
            .iter()
            .zip(&debs)
            .filter(|(_, d)| fs::metadata(dest.join(&d.file)).map(|m| m.len()).ok() != Some(d.size))
            .collect();
        if !missing.is_empty() {
            let partial = dest.join(".partial");
            let _ = fs::remove_dir_all(&partial);
            fs::create_dir_all(&partial)?;
            let total: u64 = missing.iter().map(|(_, d)| d.size).sum();
            println!(
                "setup:   downloading {} package(s), {}",
                missing.len(),
                super::progress::mb(total)
            );
            p.run_with_download(
                self.cmd("apt-get")
                    .args(["download", "-q"])
                    .args(missing.iter().map(|(s, _)| s.as_str()))
                    .current_dir(&partial),
                &partial,
                total,
            )?;
            for (_, d) in &missing {
                fs::rename(partial.join(&d.file), dest.join(&d.file))?;
            }
            let _ = fs::remove_dir_all(&partial);
        }
        Ok(debs.iter().map(|d| dest.join(&d.file)).collect())
    }
}

/// The mirrors of the machine's own apt configuration for the release and
/// for security updates (deb.debian.org where none is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// The archive (`bookworm`, `-updates`, `-backports`).
    pub archive: String,
    /// The security archive.
    pub security: String,
}

fn sources_list(m: &Mirrors) -> String {
    let key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
    format!(
        "# written by cargo xtask setup (bufsync); used only with its own apt options\n\
         deb {key} {a} bookworm main\n\
         deb {key} {a} bookworm-updates main\n\
         deb {key} {a} bookworm-backports main\n\
         deb {key} {s} bookworm-security main\n",
        a = m.archive,
        s = m.security
    )
}

fn machine_mirrors() -> Mirrors {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let entries: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| Some((f, fs::read_to_string(f).ok()?)))
        .flat_map(|(f, text)| source_entries(&f.to_string_lossy(), &text))
        .collect();
    let find = |suite: &str, default: &str| {
        entries
            .iter()
            .find(|(_, s)| s == suite)
            .map(|(u, _)| u.clone())
            .unwrap_or_else(|| default.to_string())
    };
    Mirrors {
        archive: find("bookworm", "http://deb.debian.org/debian"),
        security: find("bookworm-security", "http://deb.debian.org/debian-security"),
    }
}

/// (uri, suite) pairs of one apt source file, deb822 `.sources` or
/// one-line `.list`.
fn source_entries(name: &str, text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if name.ends_with(".sources") {
        for stanza in text.split("\n\n") {
            let field = |key: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            };
            if field("Enabled:").as_deref() == Some("no") {
                continue;
            }
            let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
                continue;
            };
            let Some(uri) = uris.split_whitespace().next() else {
                continue;
            };
            for s in suites.split_whitespace() {
                out.push((uri.to_string(), s.to_string()));
            }
        }
    } else if name.ends_with(".list") {
        for l in text.lines() {
            let Some(rest) = l.trim().strip_prefix("deb ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let mut uri = words.next();
            if uri.is_some_and(|w| w.starts_with('[')) {
                // Options: skip to the word that closes them.
                let mut w = uri;
                while let Some(x) = w {
                    if x.ends_with(']') {
                        break;
                    }
                    w = words.next();
                }
                uri = words.next();
            }
            if let (Some(u), Some(s)) = (uri, words.next()) {
                out.push((u.to_string(), s.to_string()));
            }
        }
    }
    out
}

/// `Inst name [old] (version origin [arch])`.
fn parse_inst(line: &str) -> Option<Inst> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, rest) = rest.split_once(' ')?;
    let (replaces, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (old, r) = r.split_once("] ")?;
            (Some(old.to_string()), r)
        }
        None => (None, rest),
    };
    let inner = rest.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    let (version, origin) = inner.split_once(' ')?;
    let origin = match origin.rfind(" [") {
        Some(i) => &origin[..i],
        None => origin,
    };
    Some(Inst {
        name: name.to_string(),
        replaces,
        version: version.to_string(),
        origin: origin.to_string(),
    })
}

/// `'uri' file size hash`.
/// `debs` (in the order apt printed them, which need not be the order of
/// `specs`) matched to `specs` by package name, in the order of `specs`.
fn in_spec_order(specs: &[String], mut debs: Vec<Deb>) -> io::Result<Vec<Deb>> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let name = spec.split(['=', '/']).next().unwrap_or(spec);
        let i = debs
            .iter()
            .position(|d| d.file.split('_').next() == Some(name))
            .ok_or_else(|| io::Error::other(format!("apt gives no .deb for {spec}")))?;
        out.push(debs.swap_remove(i));
    }
    Ok(out)
}

fn parse_uri(line: &str) -> Option<Deb> {
    let rest = line.strip_prefix('\'')?;
    let (_uri, rest) = rest.split_once("' ")?;
    let mut w = rest.split_whitespace();
    Some(Deb {
        file: w.next()?.to_string(),
        size: w.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debs_are_matched_to_specs_by_name() {
        let deb = |f: &str| Deb {
            file: f.to_string(),
            size: 1,
        };
        let specs = vec![
            "libvulkan-dev=1.3.239.0-1".to_string(),
            "libdrm-common=2.4.123-1~bpo12+1".to_string(),
        ];
        let got = in_spec_order(
            &specs,
            vec![
                deb("libdrm-common_2.4.123-1~bpo12+1_all.deb"),
                deb("libvulkan-dev_1.3.239.0-1_amd64.deb"),
            ],
        )
        .unwrap();
        assert_eq!(got[0].file, "libvulkan-dev_1.3.239.0-1_amd64.deb");
        assert_eq!(got[1].file, "libdrm-common_2.4.123-1~bpo12+1_all.deb");
        assert!(in_spec_order(&specs, vec![deb("libdrm-common_2_all.deb")]).is_err());
    }

    #[test]
    fn inst_lines() {
        let i = parse_inst(
            "Inst libdrm2 [2.4.114-1+b1] (2.4.123-1~bpo12+1 Debian Backports:oldstable-backports [amd64])",
        )
        .unwrap();
        assert_eq!(i.name, "libdrm2");
        assert_eq!(i.replaces.as_deref(), Some("2.4.114-1+b1"));
        assert_eq!(i.version, "2.4.123-1~bpo12+1");
        assert_eq!(i.origin, "Debian Backports:oldstable-backports");
        let i = parse_inst("Inst glslc (2023.2-1 Debian:12.15/oldstable [amd64])").unwrap();
        assert_eq!(i.replaces, None);
        assert_eq!(i.spec(), "glslc=2023.2-1");
        let i = parse_inst("Inst libegl-mesa0 [22.3.6-1+deb12u1] (22.3.6-1+deb12u2 Debian:12.15/oldstable [amd64]) []").unwrap();
        assert_eq!(i.version, "22.3.6-1+deb12u2");
        assert!(parse_inst("Conf glslc (2023.2-1 Debian:12.15/oldstable [amd64])").is_none());
    }

    #[test]
    fn uri_lines() {
        let d = parse_uri("'http://deb.debian.org/debian/pool/main/m/mesa/mesa-vulkan-drivers_25.0.7-2%7ebpo12%2b1_amd64.deb' mesa-vulkan-drivers_25.0.7-2~bpo12+1_amd64.deb 11366132 SHA256:3899").unwrap();
        assert_eq!(d.file, "mesa-vulkan-drivers_25.0.7-2~bpo12+1_amd64.deb");
        assert_eq!(d.size, 11366132);
    }

    #[test]
    fn sources_of_both_formats() {
        let deb822 = "Types: deb\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://m/debian-security\nSuites: bookworm-security\nEnabled: no\n";
        assert_eq!(
            source_entries("x.sources", deb822),
            vec![
                ("http://m/debian".into(), "bookworm".into()),
                ("http://m/debian".into(), "bookworm-updates".into())
            ]
        );
        let list = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://l/debian bookworm main\ndeb http://s/sec bookworm-security main\n";
        assert_eq!(
            source_entries("sources.list", list),
            vec![
                ("http://l/debian".into(), "bookworm".into()),
                ("http://s/sec".into(), "bookworm-security".into())
            ]
        );
        let s = sources_list(&Mirrors {
            archive: "http://a".into(),
            security: "http://s".into(),
        });
        assert!(s.contains("http://a bookworm-backports main"));
        assert!(s.contains("http://s bookworm-security main"));
    }
}
