//! `cargo xtask bench-kernel`: the kernel's own ww_mutex and dma_resv on the
//! reserve bench's workloads, beside bufsync's, in one guest.
//!
//! 1. Builds `ww_bench.ko` and `resv_bench.ko` (`tests/harness/kmod/`) out
//!    of tree against the cached guest kernel headers, with setup's module
//!    build (output in setup's log).
//! 2. Builds bufsync's reserve bench (`cargo bench -p bufsync --bench
//!    reserve --no-run`).
//! 3. Boots a guest (no virtio-gpu) that loads the module, whose runs print
//!    one line each to the kernel log (sorted plain mutexes, wait-die,
//!    wound-wait; 16 locks, random subsets of 4 in random order), then runs
//!    the bench's contended tables with the same thread counts and run
//!    length (`RESERVE_BENCH=contended`). Then `resv_bench.ko` (reserve +
//!    commit + unreserve of 1, 8 and 64 uncontended objects, the same fence
//!    or a new one every frame, against sorted plain mutexes) and the bench's
//!    uncontended table (`RESERVE_BENCH=uncontended`).
//! 4. Prints both side by side: each side's throughput as a ratio to its own
//!    sorted-mutex baseline of the same guest, and back-offs per op; then
//!    ns per object and the ratio to each side's sorted mutexes. With
//!    `--boots N`, N guests, and the median (min-max) of each figure.
//!
//! The guest writes its results into `target/xtask/bench-kernel/` of the
//! workspace (shared with it); the raw lines are printed too.

mod fences;
mod uncontended;

use crate::layout::{self, KERNEL_VERSION};
use crate::process;
use crate::setup::{self, progress::Progress};
use crate::vm::{self, quote, VmOptions};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Options {
    boots: usize,
    ms: u64,
    threads: Vec<usize>,
    timeout: Duration,
}

fn parse_args(args: &[String]) -> io::Result<Options> {
    let mut o = Options {
        boots: 3,
        ms: 2000,
        threads: vec![4, 2],
        timeout: Duration::from_secs(600),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| io::Error::other(format!("{name} needs a value")))
        };
        let bad = |v: &str| io::Error::other(format!("bad value `{v}` for {a}"));
        match a.as_str() {
            "--boots" => {
                let v = value(a)?;
                o.boots = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(&v))?;
            }
            "--ms" => {
                let v = value(a)?;
                o.ms = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(&v))?;
            }
            "--threads" => {
                let v = value(a)?;
                let t: Option<Vec<usize>> = v
                    .split(',')
                    .map(|x| {
                        x.trim()
                            .parse()
                            .ok()
                            .filter(|&n: &usize| (1..=64).contains(&n))
                    })
                    .collect();
                o.threads = t
                    .filter(|t| !t.is_empty() && t.len() <= 8)
                    .ok_or_else(|| bad(&v))?;
            }
            "--timeout" => {
                let v = value(a)?;
                let s: f64 = v.parse().map_err(|_| bad(&v))?;
                o.timeout = Duration::from_secs_f64(s);
            }
            other => return Err(io::Error::other(format!("unknown option `{other}`"))),
        }
    }
    Ok(o)
}

/// Entry point of `cargo xtask bench-kernel`.
pub fn run(args: &[String]) -> io::Result<u8> {
    let o = parse_args(args)?;
    setup::ensure(&setup::Options::default())?;
    let [module, resv_module, fence_module] = MODULES.map(bench_module);
    let (module, resv_module, fence_module) = (module?, resv_module?, fence_module?);
    let bench = bench_executable("reserve")?;
    let fence_bench = bench_executable("fence")?;
    let out_base = layout::workspace()
        .join("target")
        .join("xtask")
        .join("bench-kernel");
    let threads = o
        .threads
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut boots: Vec<Results> = Vec::new();
    let mut frames: Vec<uncontended::Results> = Vec::new();
    let mut fence_rows: Vec<fences::Results> = Vec::new();
    for boot in 0..o.boots {
        let dir = out_base.join(format!("boot-{boot}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let script = format!(
            "set -e\n\
             insmod {ko} threads={threads} ms={ms}\n\
             rmmod ww_bench\n\
             dmesg | grep 'ww_bench:' > {dir}/kernel.txt\n\
             RESERVE_BENCH=contended RESERVE_THREADS={threads} RESERVE_RUN_MS={ms} {bench} > {dir}/bufsync.txt 2>&1\n\
             insmod {resv_ko}\n\
             rmmod resv_bench\n\
             dmesg | grep 'resv_bench:' > {dir}/kernel-uncontended.txt\n\
             RESERVE_BENCH=uncontended {bench} > {dir}/bufsync-uncontended.txt 2>&1\n\
             insmod {fence_ko}\n\
             rmmod fence_bench\n\
             dmesg | grep 'fence_bench:' > {dir}/kernel-fence.txt\n\
             FENCE_BENCH=summary {fence_bench} > {dir}/bufsync-fence.txt 2>&1\n",
            ko = quote(&module.to_string_lossy()),
            resv_ko = quote(&resv_module.to_string_lossy()),
            fence_ko = quote(&fence_module.to_string_lossy()),
            fence_bench = quote(&fence_bench.to_string_lossy()),
            ms = o.ms,
            dir = quote(&dir.to_string_lossy()),
            bench = quote(&bench.to_string_lossy()),
        );
        println!(
            "bench-kernel: guest {}/{}: ww_bench.ko, resv_bench.ko, fence_bench.ko and the reserve and fence benches, threads {threads}, {} ms runs",
            boot + 1,
            o.boots,
            o.ms
        );
        let opts = VmOptions {
            timeout: o.timeout,
            virtio_gpu: false,
            ..VmOptions::default()
        };
        let code = vm::run(&opts, &["sh".into(), "-c".into(), script])?;
        if code != 0 {
            return Err(io::Error::other(format!(
                "guest {} exited with {code} (output in {})",
                boot + 1,
                dir.display()
            )));
        }
        let (kernel, ours) = read_pair(&dir, "kernel.txt", "bufsync.txt", "ww_bench")?;
        let mut r = parse_kernel(&kernel);
        r.extend(parse_summary(&ours));
        boots.push(r);
        let (kernel, ours) = read_pair(
            &dir,
            "kernel-uncontended.txt",
            "bufsync-uncontended.txt",
            "resv_bench",
        )?;
        let mut u = uncontended::parse_kernel(&kernel);
        u.extend(uncontended::parse_summary(&ours));
        frames.push(u);
        let (kernel, ours) =
            read_pair(&dir, "kernel-fence.txt", "bufsync-fence.txt", "fence_bench")?;
        let mut f = fences::parse_kernel(&kernel);
        f.extend(fences::parse_summary(&ours));
        fence_rows.push(f);
    }
    print!("{}", table(&boots, &o));
    print!("{}", uncontended::table(&frames));
    print!("{}", fences::table(&fence_rows));
    Ok(0)
}

/// Reads one module's kernel log lines and the bench's output from `dir`,
/// and prints the module's result lines (`{tag}: ` with fields) and the
/// bench's `summary` lines.
fn read_pair(dir: &Path, kernel: &str, ours: &str, tag: &str) -> io::Result<(String, String)> {
    let kernel = fs::read_to_string(dir.join(kernel))?;
    let ours = fs::read_to_string(dir.join(ours))?;
    let mark = format!("{tag}: ");
    for l in kernel
        .lines()
        .filter(|l| l.split(&mark).nth(1).is_some_and(|r| r.contains('=')))
    {
        println!("  kernel  {}", l.trim());
    }
    for l in ours.lines().filter(|l| l.starts_with("summary ")) {
        println!("  bufsync {l}");
    }
    Ok((kernel, ours))
}

/// The fields (`key=value`) of each line of `text` that carries `{tag}: `
/// (a module's kernel log line).
pub(crate) fn tagged<'a>(
    text: &'a str,
    tag: &'a str,
) -> impl Iterator<Item = BTreeMap<&'a str, &'a str>> + 'a {
    text.lines().filter_map(move |l| {
        let rest = l.split_once(tag)?.1.strip_prefix(": ")?;
        Some(fields(rest))
    })
}

/// The fields of each `summary` line of a bench's output.
pub(crate) fn summaries(text: &str) -> impl Iterator<Item = BTreeMap<&str, &str>> {
    text.lines()
        .filter_map(|l| l.strip_prefix("summary "))
        .map(fields)
}

/// Field `k` of `f` as a number.
pub(crate) fn num(f: &BTreeMap<&str, &str>, k: &str) -> Option<f64> {
    f.get(k).and_then(|v| v.parse().ok())
}

/// (side, threads, mode) -> (ops/s, ratio to the side's sorted baseline,
/// back-offs per op), for one guest.
type Results = BTreeMap<(&'static str, usize, String), (f64, f64, f64)>;

/// The module's lines: `ww_bench: threads=T mode=M ops=N ns=D backoffs=B`.
fn parse_kernel(text: &str) -> Results {
    let mut raw: Vec<(usize, String, f64, f64)> = Vec::new();
    for f in tagged(text, "ww_bench") {
        let (Some(t), Some(m), Some(ops), Some(ns), Some(b)) = (
            f.get("threads").and_then(|v| v.parse().ok()),
            f.get("mode"),
            num(&f, "ops"),
            num(&f, "ns"),
            num(&f, "backoffs"),
        ) else {
            continue;
        };
        if ns > 0.0 {
            raw.push((t, m.to_string(), ops / (ns / 1e9), b / ops.max(1.0)));
        }
    }
    let mut r = Results::new();
    for (t, m, tput, per_op) in &raw {
        let base = raw
            .iter()
            .find(|(bt, bm, _, _)| bt == t && bm == "sorted")
            .map_or(f64::NAN, |x| x.2);
        r.insert(("kernel", *t, m.clone()), (*tput, tput / base, *per_op));
    }
    r
}

/// The bench's lines: `summary threads=T mode=M ops_per_s=X ratio=R
/// backoffs_per_op=B`.
fn parse_summary(text: &str) -> Results {
    let mut r = Results::new();
    for f in summaries(text) {
        if let (Some(t), Some(m), Some(tput), Some(ratio), Some(b)) = (
            f.get("threads").and_then(|v| v.parse().ok()),
            f.get("mode"),
            num(&f, "ops_per_s"),
            num(&f, "ratio"),
            num(&f, "backoffs_per_op"),
        ) {
            r.insert(("bufsync", t, m.to_string()), (tput, ratio, b));
        }
    }
    r
}

fn fields(s: &str) -> BTreeMap<&str, &str> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

/// "median (min-max)" of the values, `-` if none.
pub(crate) fn spread(mut v: Vec<f64>, digits: usize) -> String {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    if v.len() == 1 {
        format!("{median:.digits$}")
    } else {
        format!(
            "{median:.digits$} ({:.digits$}-{:.digits$})",
            v[0],
            v[v.len() - 1]
        )
    }
}

fn table(boots: &[Results], o: &Options) -> String {
    let pick = |side: &'static str, t: usize, mode: &str, i: usize| -> Vec<f64> {
        boots
            .iter()
            .filter_map(|r| r.get(&(side, t, mode.to_string())))
            .map(|x| match i {
                0 => x.0,
                1 => x.1,
                _ => x.2,
            })
            .collect()
    };
    let mut s = format!(
        "\n## Kernel ww_mutex and bufsync in one guest ({} boots of {KERNEL_VERSION}, {} ms runs; median (min-max))\n\n\
         16 locks, random subsets of 4 in random order; each side's ratio is to its own sorted-mutex \
         baseline of the same guest (kernel: struct mutex in kthreads; bufsync: std Mutex in threads).\n\n\
         | threads | measure | kernel ww_mutex | bufsync |\n|---|---|---|---|\n",
        boots.len(),
        o.ms
    );
    for &t in &o.threads {
        let mops = |v: Vec<f64>| v.into_iter().map(|x| x / 1e6).collect::<Vec<_>>();
        s += &format!(
            "| {t} | sorted mutexes, M ops/s | {} | {} |\n",
            spread(mops(pick("kernel", t, "sorted", 0)), 3),
            spread(mops(pick("bufsync", t, "sorted", 0)), 3)
        );
        for mode in ["wait-die", "wound-wait"] {
            s += &format!(
                "| {t} | {mode}, M ops/s | {} | {} |\n",
                spread(mops(pick("kernel", t, mode, 0)), 3),
                spread(mops(pick("bufsync", t, mode, 0)), 3)
            );
        }
        for mode in ["wait-die", "wound-wait"] {
            s += &format!(
                "| {t} | {mode}, ratio to sorted mutexes | {} | {} |\n",
                spread(pick("kernel", t, mode, 1), 3),
                spread(pick("bufsync", t, mode, 1), 3)
            );
        }
        for mode in ["wait-die", "wound-wait"] {
            s += &format!(
                "| {t} | {mode}, back-offs per op | {} | {} |\n",
                spread(pick("kernel", t, mode, 2), 4),
                spread(pick("bufsync", t, mode, 2), 4)
            );
        }
    }
    s
}

/// The modules `bench-kernel` loads, in `tests/harness/kmod/`.
pub const MODULES: [&str; 3] = ["ww_bench", "resv_bench", "fence_bench"];

/// The test command's check that a bench module still builds against the
/// guest kernel (none may rot between two `bench-kernel` runs).
pub fn module_builds(name: &str) -> Result<String, String> {
    bench_module(name)
        .map(|ko| format!("{}", ko.display()))
        .map_err(|e| format!("building {name}.ko: {e}"))
}

/// Builds `{name}.ko` from `tests/harness/kmod/{name}.c` for the guest
/// kernel (cached until its sources or the kernel change); returns its path.
fn bench_module(name: &str) -> io::Result<PathBuf> {
    let kmod = layout::harness_dir().join("kmod");
    let source = fs::read_to_string(kmod.join(format!("{name}.c")))?;
    let kbuild = fs::read_to_string(kmod.join(format!("{name}.Kbuild")))?;
    let cache = layout::cache_dir();
    let ko = cache.join(format!("{name}.ko"));
    let stamp = cache.join(format!("{name}.stamp"));
    let want = format!("{KERNEL_VERSION}\n{kbuild}\n{source}");
    if ko.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(ko);
    }
    let dir = cache.join("build").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(format!("{name}.c")), &source)?;
    fs::write(dir.join("Kbuild"), &kbuild)?;
    let mut p = Progress::new(layout::cache_base().join("setup.log"));
    p.step(&format!("build {name}.ko"), |p| {
        setup::build::build_module(p, &dir, &[])
    })?;
    fs::copy(dir.join(format!("{name}.ko")), &ko)?;
    fs::write(&stamp, want)?;
    println!("bench-kernel: built {}", ko.display());
    Ok(ko)
}

/// Builds bufsync's bench `name` (`runtime/benches/{name}.rs`) and returns
/// its executable.
fn bench_executable(name: &str) -> io::Result<PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(layout::workspace())
        .args([
            "bench",
            "-p",
            "bufsync",
            "--bench",
            name,
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit());
    let out = process::output(&mut cmd)?;
    out.lines()
        .filter(|l| {
            l.contains("\"reason\":\"compiler-artifact\"")
                && l.contains(&format!("\"name\":\"{name}\""))
        })
        .find_map(|l| json_string(l, "executable"))
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other(format!("cargo named no {name} bench executable")))
}

/// The string value of `"key":"..."` in one line of cargo's JSON (no
/// escapes other than `\\` and `\"` expected in paths).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_lines_give_ratios_to_the_sorted_run() {
        let log = "[   12.5] ww_bench: threads=4 mode=sorted ops=4000 ns=2000000000 backoffs=0\n\
                   [   14.5] ww_bench: threads=4 mode=wait-die ops=1000 ns=2000000000 backoffs=40\n\
                   [   16.5] ww_bench: done\n";
        let r = parse_kernel(log);
        let wd = r[&("kernel", 4, "wait-die".to_string())];
        assert_eq!(wd.0, 500.0);
        assert!((wd.1 - 0.25).abs() < 1e-9);
        assert!((wd.2 - 0.04).abs() < 1e-9);
    }

    #[test]
    fn summary_lines_parse() {
        let r = parse_summary(
            "| table |\nsummary threads=2 mode=wound-wait ops_per_s=1000 ratio=0.5 backoffs_per_op=0.01\n",
        );
        assert_eq!(
            r[&("bufsync", 2, "wound-wait".to_string())],
            (1000.0, 0.5, 0.01)
        );
    }

    #[test]
    fn spreads_and_json() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0], 1), "2.0 (1.0-3.0)");
        assert_eq!(spread(vec![], 1), "-");
        assert_eq!(
            json_string(r#"{"a":1,"executable":"/t/r\"x","b":2}"#, "executable").as_deref(),
            Some("/t/r\"x")
        );
    }

    #[test]
    fn options() {
        let o = parse_args(&[
            "--boots".into(),
            "5".into(),
            "--threads".into(),
            "4,8".into(),
        ])
        .unwrap();
        assert_eq!((o.boots, o.threads), (5, vec![4, 8]));
        assert!(parse_args(&["--threads".into(), "0".into()]).is_err());
    }
}
