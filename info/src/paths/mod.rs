//! `bufsync-info paths`: for each fence kind and each waiter of this
//! machine, how bufsync would do the wait (hardware, software, or
//! impossible) and why, computed by the runtime's own rule
//! ([`bufsync_backends::wait_path::decide`]) from the probes:
//! - the fences: a software fence, a sync_file, a drm_syncobj point (where
//!   a DRM device has syncobjs), each Vulkan device's render-done point
//!   ([`FenceForm::render_point`]: with a pending sync_file where the
//!   SYNC_FD export probe says so), a seqno word;
//! - the waiters: the CPU, each Vulkan device ([`Waiter::vulkan`]), each
//!   KMS plane (its `IN_FENCE_FD`; implicit sync where its device's buffers
//!   take `IMPORT_SYNC_FILE`), a dma-buf's implicit sync (the
//!   `IMPORT_SYNC_FILE` probe on a real dma-buf).
//!
//! With `--verify` every possible cell is tried (`verify.rs`).

mod env;
mod kms;
mod verify;

use bufsync_backends::wait_path::{decide, FenceForm, Route, Waiter};
use schemars::JsonSchema;
use serde::Serialize;

pub use env::Env;

use crate::text::{Table, WIDTH};

/// The `paths` report (JSON schema `bufsync-info.paths`, version 1).
#[derive(Debug, Serialize, JsonSchema)]
pub struct PathsReport {
    /// `bufsync-info.paths`.
    pub schema: &'static str,
    /// Schema version ([`crate::schema::VERSION`]).
    pub version: u32,
    /// Whether `--verify` ran.
    pub verified: bool,
    /// The rows: one per fence kind (one per Vulkan device for points).
    pub fences: Vec<FenceRow>,
    /// The columns: the waiters.
    pub waiters: Vec<WaiterCol>,
    /// One per (fence, waiter), row by row.
    pub cells: Vec<Cell>,
    /// What could not be looked at here, and why.
    pub untested: Vec<String>,
}

/// One fence kind.
#[derive(Debug, Serialize, JsonSchema, Clone)]
pub struct FenceRow {
    /// `software`, `sync_file`, `syncobj`, `vk0`..., `seqno`.
    pub id: String,
    /// The form's name ([`FenceForm::name`]), `unavailable` when there is none.
    #[schemars(schema_with = "crate::schema::fence_kinds")]
    pub kind: &'static str,
    /// What it is here (e.g. which device makes it).
    pub label: String,
    /// Such a fence can exist on this machine.
    pub available: bool,
    /// Why not, when it cannot.
    pub unavailable: Option<String>,
    /// A pending one has a sync_file form.
    pub sync_file_form: bool,
}

/// One waiter.
#[derive(Debug, Serialize, JsonSchema, Clone)]
pub struct WaiterCol {
    /// `cpu`, `vk0`..., `plane:card0:31`..., `dmabuf`.
    pub id: String,
    /// The waiter's kind ([`Waiter::name`]).
    #[schemars(schema_with = "crate::schema::waiter_kinds")]
    pub kind: &'static str,
    /// What it is (device, plane type, ...).
    pub label: String,
    /// The capabilities the decision used, in words.
    pub caps: String,
    /// Why it cannot wait at all here, if so.
    pub unavailable: Option<String>,
}

/// One (fence, waiter) cell.
#[derive(Debug, Serialize, JsonSchema, Clone)]
pub struct Cell {
    /// The row's id.
    pub fence: String,
    /// The column's id.
    pub waiter: String,
    /// `hardware`, `software` or `impossible`.
    #[schemars(extend("enum" = ["hardware", "software", "impossible"]))]
    pub class: &'static str,
    /// The route ([`Route::name`]); `null` when impossible.
    #[schemars(schema_with = "crate::schema::routes")]
    pub route: Option<&'static str>,
    /// Why.
    pub why: String,
    /// What `--verify` found (absent without it).
    pub verify: Option<Verified>,
}

/// The outcome of one verified cell.
#[derive(Debug, Serialize, JsonSchema, Clone)]
pub struct Verified {
    /// `pass`, `fail` or `skipped`.
    #[schemars(extend("enum" = ["pass", "fail", "skipped"]))]
    pub result: &'static str,
    /// From the producer's signal to the waiter done, in microseconds: the
    /// median of the trials.
    pub latency_us: Option<f64>,
    /// The lowest latency of the trials.
    pub latency_min_us: Option<f64>,
    /// The highest latency of the trials.
    pub latency_max_us: Option<f64>,
    /// Trials that passed (all of them for `pass`; those before the
    /// failing one for `fail`).
    pub samples: u32,
    /// What was done, or why it failed or was skipped.
    pub detail: String,
}

/// A row as the decision sees it.
pub(crate) struct RowDef {
    pub report: FenceRow,
    pub form: Option<FenceForm>,
    /// Index of the Vulkan device whose points these are.
    pub vk: Option<usize>,
}

/// What a column is, for running it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    Cpu,
    Vulkan(usize),
    /// (KMS node index, plane index) in [`Env::kms`].
    Plane(usize, usize),
    DmaBuf,
}

/// A column as the decision sees it.
pub(crate) struct ColDef {
    pub report: WaiterCol,
    pub waiter: Option<Waiter>,
    pub target: Target,
}

/// The matrix of `env`: rows, columns and the decided cells.
pub(crate) fn matrix(env: &Env) -> (Vec<RowDef>, Vec<ColDef>, Vec<Cell>) {
    let rows = env.rows();
    let cols = env.cols();
    let mut cells = Vec::new();
    for r in &rows {
        for c in &cols {
            let (class, route, why) = match (&r.form, &c.waiter) {
                (None, _) => (
                    "impossible",
                    None,
                    r.report.unavailable.clone().unwrap_or_default(),
                ),
                (_, None) => (
                    "impossible",
                    None,
                    c.report.unavailable.clone().unwrap_or_default(),
                ),
                (Some(form), Some(w)) => {
                    let d = decide(*form, w);
                    (d.class().name(), Some(d.route.name()), d.why.to_string())
                }
            };
            cells.push(Cell {
                fence: r.report.id.clone(),
                waiter: c.report.id.clone(),
                class,
                route,
                why,
                verify: None,
            });
        }
    }
    (rows, cols, cells)
}

/// Collects the report; with `verify`, tries every possible cell (holding
/// each fence `hold` before its signal, every wait bounded by `bound`).
pub fn collect(env: &mut Env, verify: Option<verify::Options>) -> PathsReport {
    let (rows, cols, mut cells) = matrix(env);
    let verified = verify.is_some();
    if let Some(opts) = verify {
        verify::run(env, &rows, &cols, &mut cells, opts);
    }
    PathsReport {
        schema: "bufsync-info.paths",
        version: crate::schema::VERSION,
        verified,
        fences: rows.into_iter().map(|r| r.report).collect(),
        waiters: cols.into_iter().map(|c| c.report).collect(),
        cells,
        untested: env.untested.clone(),
    }
}

pub use verify::Options as VerifyOptions;

/// The matrix's short cell text for a route.
fn code(route: Option<&str>) -> &'static str {
    let Some(name) = route else { return "--" };
    match Route::from_name(name) {
        Some(Route::CpuSyncFilePoll) => "hw poll",
        Some(Route::CpuSyncobjEventfd) => "hw eventfd",
        Some(Route::CpuVkWaitSemaphores) => "hw vkwait",
        Some(Route::CpuRuntimeWait) => "sw wait",
        Some(Route::CpuPolled) => "sw poll",
        Some(Route::GpuTimeline) => "hw tlsem",
        Some(Route::GpuSyncFile) => "hw syncfd",
        Some(Route::InFenceFd) => "hw infence",
        Some(Route::ImplicitFlip) => "hw implic",
        Some(Route::ImportSyncFile) => "hw import",
        Some(Route::CpuBeforeSubmit | Route::CpuBeforeCommit | Route::CpuBeforeHandoff) => "sw cpu",
        None => "?",
    }
}

fn latency(v: &Option<Verified>) -> String {
    match v {
        None => "--".into(),
        Some(v) if v.result == "fail" => "FAIL".into(),
        Some(v) if v.result == "skipped" => "skip".into(),
        Some(Verified {
            latency_us: Some(us),
            ..
        }) => {
            if *us >= 1000.0 {
                format!("{:.1}ms", us / 1000.0)
            } else {
                format!("{us:.0}us")
            }
        }
        Some(_) => "pass".into(),
    }
}

/// Width of a waiter's id in the grids and the legend.
const ID: usize = 16;
/// Width of a grid cell, its separator included.
const CELL: usize = 11;

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('~');
        t
    }
}

/// One table (waiters as rows, fences as columns), split into chunks of
/// columns that fit in [`WIDTH`].
fn grid(r: &PathsReport, cell: &dyn Fn(&Cell) -> String) -> String {
    let per = ((WIDTH - 2 - ID - 1) / CELL).max(1);
    let mut out = String::new();
    for chunk in r.fences.chunks(per) {
        let mut t = Table::new(
            std::iter::once("waiter \\ fence".to_string())
                .chain(chunk.iter().map(|f| short(&f.id, CELL - 1))),
        );
        for w in &r.waiters {
            let mut row = vec![short(&w.id, ID)];
            for f in chunk {
                let c = r.cells.iter().find(|c| c.fence == f.id && c.waiter == w.id);
                row.push(c.map_or(String::new(), cell));
            }
            t.row(row);
        }
        out.push_str(&t.render(2));
    }
    out
}

/// The report as text (at most 100 columns).
pub fn render(r: &PathsReport) -> String {
    let mut out = String::from(
        "wait paths (bufsync_backends::wait_path::decide over this machine's probes)\n",
    );
    out.push_str("fences\n");
    for f in &r.fences {
        let state = match &f.unavailable {
            Some(why) => format!("impossible here: {why}"),
            None if f.sync_file_form => "has a sync_file form".into(),
            None => "no sync_file form".into(),
        };
        out.push_str(&crate::text::para(
            &format!("  {:<10} ", f.id),
            &format!("{} ({state})", f.label),
        ));
    }
    out.push_str("waiters\n");
    for w in &r.waiters {
        let mut what = w.label.clone();
        if !w.caps.is_empty() {
            what = format!("{what}: {}", w.caps);
        }
        if let Some(why) = &w.unavailable {
            what = format!("{what} (impossible here: {why})");
        }
        out.push_str(&crate::text::para(
            &format!("  {:<ID$} ", short(&w.id, ID)),
            &what,
        ));
    }
    out.push_str(
        "\npaths: rows are the waiters, columns the fence kinds \
         (hw = hardware, sw = software, -- = impossible)\n",
    );
    out.push_str(&grid(r, &|c| code(c.route).to_string()));
    if r.verified {
        let n = r
            .cells
            .iter()
            .filter_map(|c| c.verify.as_ref())
            .map(|v| v.samples)
            .max()
            .unwrap_or(0);
        out.push_str(&crate::text::para(
            "\nverify: ",
            &format!(
                "latency from the producer's signal to the waiter done (median of {n} trial{})",
                if n == 1 { "" } else { "s" }
            ),
        ));
        out.push_str(&grid(r, &|c| latency(&c.verify)));
    }
    out.push_str("\nwhy\n");
    let mut seen: Vec<(Option<&str>, &str)> = Vec::new();
    for c in &r.cells {
        if c.route.is_none() || seen.contains(&(c.route, c.why.as_str())) {
            continue;
        }
        seen.push((c.route, &c.why));
        out.push_str(&crate::text::para(
            &format!("  {:<10} {:<24} ", code(c.route), c.route.unwrap_or("")),
            &c.why,
        ));
    }
    let mut impossible: Vec<&str> = Vec::new();
    for c in r.cells.iter().filter(|c| c.route.is_none()) {
        if !impossible.contains(&c.why.as_str()) {
            impossible.push(&c.why);
            out.push_str(&crate::text::para(
                &format!("  {:<35} ", "-- impossible"),
                &c.why,
            ));
        }
    }
    if r.verified {
        let (mut pass, mut fail, mut skip) = (0, 0, 0);
        let mut skips: Vec<&str> = Vec::new();
        for c in &r.cells {
            match c.verify.as_ref().map(|v| v.result) {
                Some("pass") => pass += 1,
                Some("fail") => fail += 1,
                Some("skipped") => skip += 1,
                _ => {}
            }
        }
        out.push_str(&format!(
            "\nverify: {pass} passed, {fail} failed, {skip} skipped\n"
        ));
        for c in &r.cells {
            let Some(v) = &c.verify else { continue };
            if v.result == "fail" {
                out.push_str(&crate::text::para(
                    &format!("  FAIL {} by {}: ", c.fence, c.waiter),
                    &v.detail,
                ));
            } else if v.result == "skipped" && !skips.contains(&v.detail.as_str()) {
                skips.push(&v.detail);
                out.push_str(&crate::text::para(
                    &format!("  skipped ({} by {}): ", c.fence, c.waiter),
                    &v.detail,
                ));
            }
        }
    }
    if !r.untested.is_empty() {
        out.push('\n');
    }
    for u in &r.untested {
        out.push_str(&crate::text::para("untested: ", u));
    }
    out
}

/// Whether every verified cell passed (or was skipped).
pub fn all_passed(r: &PathsReport) -> bool {
    r.cells
        .iter()
        .all(|c| c.verify.as_ref().map_or(true, |v| v.result != "fail"))
}
