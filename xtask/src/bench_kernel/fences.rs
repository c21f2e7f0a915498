//! The fence half of `cargo xtask bench-kernel`: `fence_bench.ko`'s lines
//! and the fence bench's `summary` lines (`FENCE_BENCH=summary`), side by
//! side.

use super::{num, spread, summaries, tagged};
use std::collections::BTreeMap;

/// The rows both sides measure, in table order, with what each compares.
const ROWS: [(&str, &str); 5] = [
    ("signal", "signal, no waiters"),
    ("signal_timestamp", "signal with the batch's timestamp"),
    ("clock", "of which the clock read"),
    ("callback", "add_callback + signal"),
    (
        "callback_timestamp",
        "add_callback + signal with the batch's timestamp",
    ),
];

/// (side, row) -> (ns per fence, its baseline's ns), for one guest.
pub(crate) type Results = BTreeMap<(&'static str, String), (f64, f64)>;

/// The module's lines: `fence_bench: row=R ps=V baseline_ps=B`.
pub(crate) fn parse_kernel(text: &str) -> Results {
    let mut r = Results::new();
    for f in tagged(text, "fence_bench") {
        let ps = |k: &str| num(&f, k).map(|v| v / 1e3);
        if let (Some(row), Some(v), Some(b)) = (f.get("row"), ps("ps"), ps("baseline_ps")) {
            r.insert(("kernel", row.to_string()), (v, b));
        }
    }
    r
}

/// The bench's lines: `summary row=R ns=V baseline_ns=B`.
pub(crate) fn parse_summary(text: &str) -> Results {
    let mut r = Results::new();
    for f in summaries(text) {
        if let (Some(row), Some(v), Some(b)) = (f.get("row"), num(&f, "ns"), num(&f, "baseline_ns"))
        {
            r.insert(("bufsync", row.to_string()), (v, b));
        }
    }
    r
}

/// The side-by-side table over all boots.
pub(crate) fn table(boots: &[Results]) -> String {
    let pick = |side: &'static str, row: &str, f: fn(&(f64, f64)) -> f64| -> Vec<f64> {
        boots
            .iter()
            .filter_map(|r| r.get(&(side, row.to_string())))
            .map(f)
            .collect()
    };
    let mut s = format!(
        "\n## Fences: kernel dma_fence and bufsync in one guest ({} boots; ns per fence; median (min-max))\n\n\
         Baselines: signal rows, an uncontended lock + unlock (kernel: struct mutex; bufsync: std Mutex); \
         callback rows, a closure allocated, added to a list under that lock, taken and run \
         (kernel: kmalloc + list_head; bufsync: Box<dyn FnOnce> in a Mutex<Vec>).\n\n\
         | row | kernel, ns | kernel baseline, ns | kernel, time / baseline | bufsync, ns | bufsync baseline, ns | bufsync, time / baseline |\n\
         |---|---|---|---|---|---|---|\n",
        boots.len()
    );
    for (key, name) in ROWS {
        s += &format!(
            "| {name} | {} | {} | {} | {} | {} | {} |\n",
            spread(pick("kernel", key, |x| x.0), 1),
            spread(pick("kernel", key, |x| x.1), 1),
            spread(pick("kernel", key, |x| x.0 / x.1), 2),
            spread(pick("bufsync", key, |x| x.0), 1),
            spread(pick("bufsync", key, |x| x.1), 1),
            spread(pick("bufsync", key, |x| x.0 / x.1), 2),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_parse_into_one_table() {
        let mut r = parse_kernel(
            "[ 5.0] fence_bench: row=callback ps=120000 baseline_ps=60000\n[ 5.1] fence_bench: done\n",
        );
        r.extend(parse_summary(
            "summary row=callback ns=62.26 baseline_ns=34.97\nsummary objects=1 sorted_ns=1 same_ns=2 new_ns=3\n",
        ));
        assert_eq!(r.len(), 2);
        assert_eq!(r[&("kernel", "callback".to_string())], (120.0, 60.0));
        let t = table(&[r]);
        assert!(t.contains("| add_callback + signal | 120.0 | 60.0 | 2.00 | 62.3 | 35.0 | 1.78 |"));
        assert!(t.contains("| signal, no waiters | - | - | - | - | - | - |"));
    }
}
