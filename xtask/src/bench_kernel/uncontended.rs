//! The uncontended half of `cargo xtask bench-kernel`: `resv_bench.ko`'s
//! lines and the reserve bench's uncontended `summary` lines, side by side.

use super::{num, spread, summaries, tagged};
use std::collections::BTreeMap;

/// What one side measured for one object count, ns per object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Frame {
    /// Sorted plain mutexes, lock + unlock (the side's baseline).
    pub(crate) sorted: f64,
    /// Reserve + commit of the same fence every frame + unreserve.
    pub(crate) same: f64,
    /// The same with a new fence every frame.
    pub(crate) new: f64,
}

/// One figure of a [`Frame`].
type Figure = fn(&Frame) -> f64;

/// (side, objects) -> figures, for one guest.
pub(crate) type Results = BTreeMap<(&'static str, usize), Frame>;

/// The module's lines: `resv_bench: objects=N frames=F sorted_ps=A
/// same_ps=B new_ps=C` (picoseconds per object).
pub(crate) fn parse_kernel(text: &str) -> Results {
    let mut r = Results::new();
    for f in tagged(text, "resv_bench") {
        let ps = |k: &str| num(&f, k).map(|v| v / 1e3);
        if let (Some(n), Some(sorted), Some(same), Some(new)) = (
            f.get("objects").and_then(|v| v.parse().ok()),
            ps("sorted_ps"),
            ps("same_ps"),
            ps("new_ps"),
        ) {
            r.insert(("kernel", n), Frame { sorted, same, new });
        }
    }
    r
}

/// The bench's lines: `summary objects=N sorted_ns=A same_ns=B new_ns=C`.
pub(crate) fn parse_summary(text: &str) -> Results {
    let mut r = Results::new();
    for f in summaries(text) {
        if let (Some(n), Some(sorted), Some(same), Some(new)) = (
            f.get("objects").and_then(|v| v.parse().ok()),
            num(&f, "sorted_ns"),
            num(&f, "same_ns"),
            num(&f, "new_ns"),
        ) {
            r.insert(("bufsync", n), Frame { sorted, same, new });
        }
    }
    r
}

/// The side-by-side table over all boots.
pub(crate) fn table(boots: &[Results]) -> String {
    let pick = |side: &'static str, n: usize, f: Figure| -> Vec<f64> {
        boots
            .iter()
            .filter_map(|r| r.get(&(side, n)))
            .map(f)
            .collect()
    };
    let mut s = format!(
        "\n## Uncontended reserve + commit + unreserve: kernel dma_resv and bufsync in one guest \
         ({} boots; ns per object, best of 31 rounds; median (min-max))\n\n\
         Each side's ratio is to its own sorted plain mutexes, locked and unlocked, of the same guest \
         (kernel: struct mutex and dma_resv_lock / dma_resv_reserve_fences / dma_resv_add_fence in \
         module init; bufsync: std Mutex and Ticket::reserve / Reserved::commit).\n\n\
         | objects | measure | kernel dma_resv | bufsync |\n|---|---|---|---|\n",
        boots.len()
    );
    for n in [1usize, 8, 64] {
        s += &format!(
            "| {n} | sorted mutexes, ns | {} | {} |\n",
            spread(pick("kernel", n, |f| f.sorted), 1),
            spread(pick("bufsync", n, |f| f.sorted), 1)
        );
        let rows: [(&str, Figure, Figure); 2] = [
            ("same fence", |f| f.same, |f| f.same / f.sorted),
            ("new fence per frame", |f| f.new, |f| f.new / f.sorted),
        ];
        for (what, ns, ratio) in rows {
            s += &format!(
                "| {n} | {what}, ns | {} | {} |\n| {n} | {what}, ratio to sorted mutexes | {} | {} |\n",
                spread(pick("kernel", n, ns), 1),
                spread(pick("bufsync", n, ns), 1),
                spread(pick("kernel", n, ratio), 2),
                spread(pick("bufsync", n, ratio), 2)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lines_give_ns_per_object() {
        let r = parse_kernel(
            "[ 3.1] resv_bench: objects=8 frames=2500 sorted_ps=4500 same_ps=9000 new_ps=13500\n\
             [ 3.2] resv_bench: done\n",
        );
        assert_eq!(
            r[&("kernel", 8)],
            Frame {
                sorted: 4.5,
                same: 9.0,
                new: 13.5
            }
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn summary_lines_and_the_table() {
        let mut r = parse_summary(
            "| 1 | 9.9 |\nsummary objects=1 sorted_ns=4.50 same_ns=9.90 new_ns=19.30\n\
             summary threads=4 mode=sorted ops_per_s=1 ratio=1 backoffs_per_op=0\n",
        );
        assert_eq!(r.len(), 1);
        r.insert(
            ("kernel", 1),
            Frame {
                sorted: 10.0,
                same: 20.0,
                new: 30.0,
            },
        );
        let t = table(&[r]);
        assert!(t.contains("| 1 | new fence per frame, ratio to sorted mutexes | 3.00 | 4.29 |"));
        assert!(t.contains("| 8 | sorted mutexes, ns | - | - |"));
    }
}
