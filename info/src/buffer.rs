//! `bufsync-info buffer PID FD`: a dma-buf another process holds, taken
//! with `pidfd_getfd(2)`; its exporter, size and inode from
//! `/proc/PID/fdinfo/FD`; the fences in its `dma_resv` that are still
//! pending, from `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` and `SYNC_IOC_FILE_INFO`.
//!
//! Write fences are those a reader must wait for (the export with
//! `DMA_BUF_SYNC_READ`, the kernel's `DMA_RESV_USAGE_WRITE`); read fences
//! are the rest of what a writer must wait for (the export with
//! `DMA_BUF_SYNC_WRITE`, minus the write fences). The kernel's snapshot
//! leaves out fences that have already signaled (an idle buffer gives the
//! signaled stub fence, shown as none), so `--wait SECS` keeps the
//! snapshots and reports how each fence in them ended: status and
//! CLOCK_MONOTONIC timestamp.
//!
//! Taking another process's fd needs ptrace access to it
//! (`PTRACE_MODE_ATTACH_REALCREDS`): the same user under Yama
//! `ptrace_scope` 0, or `CAP_SYS_PTRACE`. The fd taken is a new reference
//! to the same file, closed when the tool exits; the process is not
//! otherwise touched.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use bufsync_backends::dmabuf::{Access, DmaBuf};
use bufsync_backends::sync_file::{FenceInfo, SyncFile};
use rustix::io::Errno;
use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};
use schemars::JsonSchema;
use serde::Serialize;

/// The `buffer` report (JSON schema `bufsync-info.buffer`, version 1).
#[derive(Debug, Serialize, JsonSchema)]
pub struct BufferReport {
    /// `bufsync-info.buffer`.
    pub schema: &'static str,
    /// Schema version ([`crate::schema::VERSION`]).
    pub version: u32,
    /// The process.
    pub pid: i32,
    /// Its command name (`/proc/PID/comm`).
    pub comm: Option<String>,
    /// The fd number in that process.
    pub fd: i32,
    /// `exp_name` from fdinfo: the exporting driver (`vgem`, `udmabuf`,
    /// `drm`...).
    pub exporter: Option<String>,
    /// `name` from fdinfo (`DMA_BUF_SET_NAME`), when set.
    pub name: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// The dma-buf's inode number (its identity across processes).
    pub inode: u64,
    /// `count` from fdinfo: references to the dma-buf's file (fds in
    /// every process, mappings, importers), less procfs' own.
    pub file_count: Option<u64>,
    /// Where the fdinfo lines came from (`/proc/PID/fdinfo/FD`, or the
    /// tool's own copy of the fd when that is not readable).
    pub fdinfo_source: String,
    /// Every fdinfo line, key -> value.
    pub fdinfo: BTreeMap<String, String>,
    /// Pending fences a reader waits for (writers).
    pub write_fences: Vec<Fence>,
    /// Pending fences only a writer waits for (readers).
    pub read_fences: Vec<Fence>,
    /// Set with `--wait`: how the fences above ended.
    pub wait: Option<WaitReport>,
    /// The buffer as debugfs `dma_buf/bufinfo` lists it: every fence of
    /// its reservation, signaled ones included, with seqnos, and the
    /// attached devices. `null` when that file cannot be read here.
    pub debugfs: Option<crate::bufinfo::Entry>,
    /// Why `debugfs` is `null`.
    pub debugfs_unavailable: Option<String>,
}

/// One fence.
#[derive(Debug, Serialize, JsonSchema, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The driver's name (`vgem`, `sw_sync`, `i915`...).
    pub driver: String,
    /// The timeline's name.
    pub timeline: String,
    /// `pending`, `signaled` or `error`.
    #[schemars(extend("enum" = ["pending", "signaled", "error"]))]
    pub status: &'static str,
    /// The errno of an error status.
    pub errno: Option<i32>,
    /// CLOCK_MONOTONIC ns of the signal (`null` while pending).
    pub timestamp_ns: Option<u64>,
}

/// What `--wait` saw.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WaitReport {
    /// The bound, in milliseconds.
    pub timeout_ms: u64,
    /// Every fence of the snapshots ended within it.
    pub all_signaled: bool,
    /// How long it waited, in milliseconds.
    pub waited_ms: f64,
    /// The write fences, as they ended (or are).
    pub write_fences: Vec<Fence>,
    /// The read fences, likewise.
    pub read_fences: Vec<Fence>,
}

fn fence(f: &FenceInfo) -> Fence {
    Fence {
        driver: f.driver_name.clone(),
        timeline: f.timeline_name.clone(),
        status: match f.status {
            0 => "pending",
            s if s > 0 => "signaled",
            _ => "error",
        },
        errno: (f.status < 0).then_some(-f.status),
        timestamp_ns: (f.status != 0 && f.timestamp_ns > 0).then_some(f.timestamp_ns),
    }
}

/// The fences of a snapshot, without the stub an idle buffer gives.
fn fences(s: &SyncFile) -> Result<Vec<FenceInfo>, String> {
    let info = s.info().map_err(|e| e.to_string())?;
    Ok(info
        .fences
        .into_iter()
        .filter(|f| !(f.driver_name == "stub" && f.timeline_name == "stub"))
        .collect())
}

/// `all` minus the entries of `writers` (matched by driver and timeline
/// name, once each: FILE_INFO gives no seqno).
fn minus(all: Vec<FenceInfo>, writers: &[FenceInfo]) -> Vec<FenceInfo> {
    let mut left: Vec<&FenceInfo> = writers.iter().collect();
    all.into_iter()
        .filter(|f| {
            match left
                .iter()
                .position(|w| w.driver_name == f.driver_name && w.timeline_name == f.timeline_name)
            {
                Some(i) => {
                    left.swap_remove(i);
                    false
                }
                None => true,
            }
        })
        .collect()
}

/// Takes fd `fd` of process `pid`; the error says why not, plainly.
pub fn take_fd(pid: i32, fd: i32) -> Result<OwnedFd, String> {
    let p = Pid::from_raw(pid).ok_or_else(|| format!("bad PID {pid}"))?;
    let pidfd = pidfd_open(p, PidfdFlags::empty()).map_err(|e| match e {
        Errno::SRCH => format!("no process {pid}"),
        Errno::NOSYS => "pidfd_open needs Linux 5.3 or later".to_string(),
        e => format!("pidfd_open({pid}): {e}"),
    })?;
    pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()).map_err(|e| match e {
        Errno::PERM | Errno::ACCESS => not_permitted(pid, fd),
        Errno::BADF => format!("process {pid} has no fd {fd}"),
        Errno::NOSYS => "pidfd_getfd needs Linux 5.6 or later".to_string(),
        Errno::SRCH => format!("process {pid} has exited"),
        e => format!("pidfd_getfd({pid}, {fd}): {e}"),
    })
}

/// Why `pidfd_getfd` refused: who owns the process, who we are, and what
/// Yama's `ptrace_scope` allows here.
fn not_permitted(pid: i32, fd: i32) -> String {
    let owner = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(String::from))
        });
    let me = rustix::process::getuid().as_raw();
    let who = match owner {
        Some(uid) => format!(" (it runs as uid {uid}, this tool as uid {me})"),
        None => String::new(),
    };
    let yama = match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .map(|s| s.trim().to_string())
        .as_deref()
    {
        Ok("0") => "; Yama ptrace_scope is 0 here: the same user may".to_string(),
        Ok("1") => "; Yama ptrace_scope is 1 here: only its parent or declared tracer, \
                    or CAP_SYS_PTRACE"
            .to_string(),
        Ok("2") => "; Yama ptrace_scope is 2 here: CAP_SYS_PTRACE only".to_string(),
        Ok("3") => "; Yama ptrace_scope is 3 here: no process may".to_string(),
        Ok(other) => format!("; Yama ptrace_scope is {other} here"),
        Err(_) => String::new(),
    };
    format!(
        "not permitted to take fd {fd} of process {pid}{who}: pidfd_getfd needs ptrace access \
         to it (CAP_SYS_PTRACE, e.g. root, or the same user{yama})"
    )
}

fn read_fdinfo(path: &str) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// Collects the report; with `wait`, waits (at most that long) for the
/// pending fences and reports how they ended.
pub fn collect(pid: i32, fd: i32, wait: Option<Duration>) -> Result<BufferReport, String> {
    let owned = take_fd(pid, fd)?;
    let what = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "another kind of file".into());
    let buf = DmaBuf::from_fd(owned).map_err(|e| match e {
        bufsync_backends::Error::NotADmaBuf { .. } => {
            format!("fd {fd} of process {pid} is not a dma-buf (it is {what})")
        }
        e => format!("fd {fd} of process {pid}: {e}"),
    })?;
    let theirs = format!("/proc/{pid}/fdinfo/{fd}");
    let (fdinfo_source, fdinfo) = match read_fdinfo(&theirs) {
        Some(m) => (theirs, m),
        None => {
            let ours = format!("/proc/self/fdinfo/{}", buf.fd().as_raw_fd());
            (ours.clone(), read_fdinfo(&ours).unwrap_or_default())
        }
    };
    let inode = fdinfo
        .get("ino")
        .and_then(|v| v.parse().ok())
        .or_else(|| rustix::fs::fstat(buf.fd()).ok().map(|s| s.st_ino))
        .unwrap_or(0);
    let snapshot = |access| {
        buf.export_sync_file(access).map_err(|e| match e {
            bufsync_backends::Error::Unsupported { .. } => {
                "this kernel lacks DMA_BUF_IOCTL_EXPORT_SYNC_FILE (before 6.0): the fences \
                 cannot be listed"
                    .to_string()
            }
            e => e.to_string(),
        })
    };
    let readers_wait = snapshot(Access::Read)?;
    let writers_wait = snapshot(Access::Write)?;
    let write = fences(&readers_wait)?;
    let read = minus(fences(&writers_wait)?, &write);
    let mut report = BufferReport {
        schema: "bufsync-info.buffer",
        version: crate::schema::VERSION,
        pid,
        comm: std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim().to_string()),
        fd,
        exporter: fdinfo.get("exp_name").cloned(),
        name: fdinfo.get("name").filter(|n| !n.is_empty()).cloned(),
        size: buf.size(),
        inode,
        file_count: fdinfo.get("count").and_then(|v| v.parse().ok()),
        fdinfo_source,
        fdinfo: fdinfo.clone(),
        write_fences: write.iter().map(fence).collect(),
        read_fences: read.iter().map(fence).collect(),
        wait: None,
        debugfs: None,
        debugfs_unavailable: None,
    };
    if let Some(timeout) = wait {
        let t = Instant::now();
        let all_signaled =
            writers_wait.wait(timeout).is_ok() || writers_wait.is_signaled().unwrap_or(false);
        let waited_ms = t.elapsed().as_secs_f64() * 1e3;
        let write_after = fences(&readers_wait)?;
        let read_after = minus(fences(&writers_wait)?, &write_after);
        report.wait = Some(WaitReport {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            all_signaled,
            waited_ms,
            write_fences: write_after.iter().map(fence).collect(),
            read_fences: read_after.iter().map(fence).collect(),
        });
    }
    // After the wait: the kernel's view as it ends.
    match crate::bufinfo::read(inode) {
        Ok(Some(e)) => report.debugfs = Some(e),
        Ok(None) => {
            report.debugfs_unavailable =
                Some(format!("inode {inode} is not in {}", crate::bufinfo::PATH))
        }
        Err(e) => report.debugfs_unavailable = Some(e),
    }
    // The snapshots and our reference to the buffer close here.
    drop((readers_wait, writers_wait, buf));
    Ok(report)
}

fn fence_lines(out: &mut String, title: &str, list: &[Fence]) {
    if list.is_empty() {
        out.push_str(&format!("  {title}: none pending\n"));
        return;
    }
    out.push_str(&format!("  {title}: {}\n", list.len()));
    for f in list {
        let when = match (f.status, f.timestamp_ns) {
            (_, Some(ns)) => format!(" at {}.{:09} s", ns / 1_000_000_000, ns % 1_000_000_000),
            _ => String::new(),
        };
        let err = f.errno.map(|e| format!(" (errno {e})")).unwrap_or_default();
        out.push_str(&crate::text::fit(&format!(
            "    {:<12} {:<28} {}{err}{when}",
            f.driver, f.timeline, f.status
        )));
    }
}

/// The report as text (at most 100 columns).
pub fn render(r: &BufferReport) -> String {
    let mut out = crate::text::fit(&format!(
        "dma-buf: fd {} of process {} ({})",
        r.fd,
        r.pid,
        r.comm.as_deref().unwrap_or("?")
    ));
    out.push_str(&crate::text::wrap(
        "  ",
        &[
            format!("exporter {}", r.exporter.as_deref().unwrap_or("?")),
            format!("size {}", r.size),
            format!("inode {}", r.inode),
            format!(
                "file count {}",
                r.file_count.map_or("?".into(), |c| c.to_string())
            ),
            format!("name {}", r.name.as_deref().unwrap_or("-")),
        ],
    ));
    out.push_str(&crate::text::fit(&format!(
        "  (fdinfo from {})",
        r.fdinfo_source
    )));
    fence_lines(
        &mut out,
        "write fences (a reader waits for them)",
        &r.write_fences,
    );
    fence_lines(
        &mut out,
        "read fences (a writer also waits for them)",
        &r.read_fences,
    );
    if let Some(w) = &r.wait {
        out.push_str(&format!(
            "after waiting up to {} ms: {} ({:.1} ms)\n",
            w.timeout_ms,
            if w.all_signaled {
                "all signaled"
            } else {
                "still pending"
            },
            w.waited_ms
        ));
        fence_lines(&mut out, "write fences", &w.write_fences);
        fence_lines(&mut out, "read fences", &w.read_fences);
    }
    match (&r.debugfs, &r.debugfs_unavailable) {
        (Some(e), _) => {
            let none = if e.fences.is_empty() { " none" } else { "" };
            out.push_str(&format!(
                "  reservation (debugfs dma_buf/bufinfo, file count {}, signaled fences too):{none}\n",
                e.file_count
            ));
            for f in &e.fences {
                out.push_str(&crate::text::fit(&format!(
                    "    {:<6} {:<12} {:<24} seq {:<8} {}",
                    f.usage,
                    f.driver,
                    f.timeline,
                    f.seqno,
                    if f.signaled { "signaled" } else { "pending" }
                )));
            }
            let attached = if e.attached.is_empty() {
                vec!["none".to_string()]
            } else {
                e.attached.clone()
            };
            out.push_str(&crate::text::wrap("  attached devices: ", &attached));
        }
        (None, Some(why)) => out.push_str(&crate::text::para("  reservation: ", why)),
        (None, None) => {}
    }
    out
}
