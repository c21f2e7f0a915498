//! Property tests of the error rule (docs/fences.md, "Errors") over random
//! combinator trees: arrays (all / any), merges, chains, and for each
//! container also a `FenceSet` and a `Reservation` of its children. Leaves
//! fail at random; some end before the tree is built, the rest in a random
//! order after. A reference model says when each node ends and with which
//! error; every node is checked after every signal.
//!
//! The model, event by event (pre-signals, then one build event per
//! container, in the order they are made and enabled, then the other
//! signals):
//! - all-array, set, reservation: ends at the last child's end (not before
//!   it was made); error of the child that ended first among the failed;
//! - any-array: ends with its first child (not before it was made), with
//!   that child's status;
//! - merge: flattens to its leaves: ends with the last leaf; error of the
//!   leaf that failed first; with nothing pending it is a stub made at its
//!   build event, or (a leaf failed) an error fence timestamped when that
//!   leaf failed;
//! - chain (of leaves, as points 1..n): ends with the last; error of the
//!   earliest failed point;
//! - reservation of the children (each added as a reader): every add prunes
//!   the signaled fences (a failed reader too: only failed writers survive a
//!   reader's add, see `resv_errors`), so it holds the children still
//!   pending when it was filled plus the last one; its wait ends with them,
//!   with the first error among them.

use std::time::Duration;

use proptest::prelude::*;

use bufsync::fence::{
    alloc_contexts, unwrap_merge, Fence, FenceArray, FenceChain, FenceError, FenceSet, FenceStatus,
    FenceTimeline, WaitError,
};
use bufsync::resv::{Reservation, Usage};

#[derive(Debug, Clone)]
enum Tree {
    Leaf {
        err: Option<i32>,
        pre: bool,
    },
    All(Vec<Tree>),
    Any(Vec<Tree>),
    Merge(Vec<Tree>),
    /// Chains hold leaves (timeline points of real fences).
    Chain(Vec<(Option<i32>, bool)>),
}

fn leaf() -> impl Strategy<Value = (Option<i32>, bool)> {
    (
        prop::option::weighted(0.4, 1..6i32),
        prop::bool::weighted(0.3),
    )
}

fn tree() -> impl Strategy<Value = Tree> {
    let base = leaf().prop_map(|(err, pre)| Tree::Leaf { err, pre });
    base.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Tree::All),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Tree::Any),
            prop::collection::vec(inner, 1..4).prop_map(Tree::Merge),
            prop::collection::vec(leaf(), 1..5).prop_map(Tree::Chain),
        ]
    })
}

/// When something ends: an event index.
type Time = usize;

/// A leaf as the model knows it.
struct Leaf {
    fence: Fence,
    err: Option<FenceError>,
    /// Event index of its signal.
    at: Time,
}

/// What the model says about a node.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Expect {
    end: Time,
    err: Option<FenceError>,
}

/// Where `on_all_signaled` leaves its result.
type Outcome = std::sync::Arc<std::sync::Mutex<Option<Result<(), FenceError>>>>;

/// One checked node: its fence, its model, and (for containers) a set and a
/// reservation of its children, which follow the all-array model.
struct Node {
    fence: Fence,
    expect: Expect,
    set: Option<(FenceSet, Expect)>,
    resv: Option<(Reservation, Expect)>,
    all_ended: Option<Outcome>,
}

struct World {
    leaves: Vec<Leaf>,
    nodes: Vec<Node>,
    /// Next build event.
    clock: Time,
    /// Events before this one are the pre-signals.
    pre_count: usize,
    /// The leaves' fences (made, and the pre-signaled ones signaled, before
    /// any container) and their signal events, in build order.
    pool: std::vec::IntoIter<(Fence, Time)>,
}

fn error(code: i32) -> FenceError {
    FenceError::Errno(code)
}

/// The first failed of `members` (end, err) by end time.
fn first_failed(members: &[Expect]) -> Option<FenceError> {
    members
        .iter()
        .filter(|m| m.err.is_some())
        .min_by_key(|m| m.end)
        .and_then(|m| m.err)
}

impl World {
    /// Builds `t`; returns its fence, its model and its leaves (for merges).
    fn build(&mut self, t: &Tree) -> (Fence, Expect, Vec<usize>) {
        match t {
            Tree::Leaf { err, .. } => {
                let i = self.add_leaf(err.map(error));
                let l = &self.leaves[i];
                (
                    l.fence.clone(),
                    Expect {
                        end: l.at,
                        err: l.err,
                    },
                    vec![i],
                )
            }
            Tree::Chain(points) => {
                let ids: Vec<usize> = points
                    .iter()
                    .map(|(err, _)| self.add_leaf(err.map(error)))
                    .collect();
                let mut head: Option<Fence> = None;
                for (k, &i) in ids.iter().enumerate() {
                    let f = self.leaves[i].fence.clone();
                    head = Some(FenceChain::create(head.as_ref(), f, k as u64 + 1));
                }
                let head = head.unwrap();
                let b = self.tick();
                head.enable_signaling();
                let end = ids.iter().map(|&i| self.leaves[i].at).max().unwrap().max(b);
                let err = ids.iter().find_map(|&i| self.leaves[i].err);
                self.record(head.clone(), Expect { end, err }, &[], b);
                (head, Expect { end, err }, ids)
            }
            Tree::All(children) | Tree::Any(children) => {
                let built: Vec<(Fence, Expect, Vec<usize>)> =
                    children.iter().map(|c| self.build(c)).collect();
                let any = matches!(t, Tree::Any(_));
                let fences: Vec<Fence> = built.iter().map(|b| b.0.clone()).collect();
                let members: Vec<Expect> = built.iter().map(|b| b.1).collect();
                let f = FenceArray::create(fences.clone(), alloc_contexts(1), 1, any);
                let b = self.tick();
                f.enable_signaling();
                let expect = if any {
                    let first = members.iter().min_by_key(|m| m.end).unwrap();
                    Expect {
                        end: first.end.max(b),
                        err: first.err,
                    }
                } else {
                    Expect {
                        end: members.iter().map(|m| m.end).max().unwrap().max(b),
                        err: first_failed(&members),
                    }
                };
                self.record(f.clone(), expect, &built, b);
                (f, expect, built.into_iter().flat_map(|b| b.2).collect())
            }
            Tree::Merge(children) => {
                let built: Vec<(Fence, Expect, Vec<usize>)> =
                    children.iter().map(|c| self.build(c)).collect();
                let fences: Vec<Fence> = built.iter().map(|b| b.0.clone()).collect();
                let ids: Vec<usize> = built.iter().flat_map(|b| b.2.clone()).collect();
                let f = unwrap_merge(&fences);
                let b = self.tick();
                f.enable_signaling();
                let pre = self.pre_count;
                let pending = ids.iter().filter(|&&i| self.leaves[i].at >= pre).count();
                let failed = ids
                    .iter()
                    .map(|&i| &self.leaves[i])
                    .filter(|l| l.err.is_some())
                    .min_by_key(|l| l.at);
                let end = if pending > 0 {
                    ids.iter().map(|&i| self.leaves[i].at).max().unwrap()
                } else if let Some(l) = failed {
                    l.at
                } else {
                    b
                };
                let expect = Expect {
                    end,
                    err: failed.and_then(|l| l.err),
                };
                self.record(f.clone(), expect, &built, b);
                (f, expect, ids)
            }
        }
    }

    fn add_leaf(&mut self, err: Option<FenceError>) -> usize {
        let (fence, at) = self.pool.next().expect("one pooled fence per leaf");
        self.leaves.push(Leaf { fence, err, at });
        self.leaves.len() - 1
    }

    fn tick(&mut self) -> Time {
        self.clock += 1;
        self.clock - 1
    }

    /// Records a node; for containers also a set and a reservation of its
    /// children (member-level: the all-array model).
    fn record(
        &mut self,
        fence: Fence,
        expect: Expect,
        children: &[(Fence, Expect, Vec<usize>)],
        filled: Time,
    ) {
        let (set, resv, all_ended) = if children.is_empty() {
            (None, None, None)
        } else {
            let members: Vec<Expect> = children.iter().map(|c| c.1).collect();
            let e = Expect {
                end: members.iter().map(|m| m.end).max().unwrap(),
                err: first_failed(&members),
            };
            let kept: Vec<Expect> = members
                .iter()
                .enumerate()
                .filter(|(i, m)| m.end > filled || *i == members.len() - 1)
                .map(|(_, m)| *m)
                .collect();
            let in_resv = Expect {
                end: e.end,
                err: first_failed(&kept),
            };
            let mut set = FenceSet::new();
            let resv = Reservation::new();
            for (f, _, _) in children {
                set.add(f);
                let mut g = resv.lock_alone();
                g.reserve_fences(1).unwrap();
                g.add_fence(f, Usage::Read);
            }
            let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
            let s = slot.clone();
            set.on_all_signaled(move |r| *s.lock().unwrap() = Some(r));
            (Some((set, e)), Some((resv, in_resv)), Some(slot))
        };
        self.nodes.push(Node {
            fence,
            expect,
            set,
            resv,
            all_ended,
        });
    }
}

fn status_of(e: &Expect, now: Time) -> FenceStatus {
    if e.end >= now {
        FenceStatus::Pending
    } else {
        e.err.map_or(FenceStatus::Signaled, FenceStatus::Error)
    }
}

/// Checks every node once events `< now` have happened.
fn check(w: &World, now: Time) -> Result<(), TestCaseError> {
    for (i, n) in w.nodes.iter().enumerate() {
        prop_assert_eq!(
            n.fence.status(),
            status_of(&n.expect, now),
            "node {} {:?}",
            i,
            n.fence
        );
        if let Some((set, e)) = &n.set {
            match status_of(e, now) {
                FenceStatus::Pending => {
                    prop_assert_eq!(set.wait_all(Some(Duration::ZERO)), Err(WaitError::TimedOut));
                    prop_assert_eq!(*n.all_ended.as_ref().unwrap().lock().unwrap(), None);
                }
                _ => {
                    let want = e.err.map_or(Ok(()), Err);
                    prop_assert_eq!(
                        set.wait_all(None),
                        want.map_err(WaitError::Fence),
                        "set of node {}",
                        i
                    );
                    prop_assert_eq!(set.first_error(), e.err);
                    prop_assert_eq!(*n.all_ended.as_ref().unwrap().lock().unwrap(), Some(want));
                }
            }
        }
        if let Some((resv, e)) = &n.resv {
            let got = resv
                .wait(Usage::Read, Some(Duration::ZERO))
                .map_err(WaitError::from);
            let want = match status_of(e, now) {
                FenceStatus::Pending => Err(WaitError::TimedOut),
                _ => e.err.map_or(Ok(()), |e| Err(WaitError::Fence(e))),
            };
            prop_assert_eq!(got, want, "reservation of node {}", i);
        }
    }
    Ok(())
}

/// Every leaf of `t`, in build order: (error, pre-signaled).
fn leaves_of(t: &Tree, out: &mut Vec<(Option<i32>, bool)>) {
    match t {
        Tree::Leaf { err, pre } => out.push((*err, *pre)),
        Tree::Chain(points) => out.extend(points.iter().copied()),
        Tree::All(c) | Tree::Any(c) | Tree::Merge(c) => c.iter().for_each(|c| leaves_of(c, out)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn combinator_trees_follow_the_rule(t in tree(), seed in any::<u64>()) {
        let mut spec = Vec::new();
        leaves_of(&t, &mut spec);
        // Signal order: pre-signaled leaves first, the rest later, each group
        // shuffled by `seed`.
        let mut rng = seed | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut pre: Vec<usize> = (0..spec.len()).filter(|&i| spec[i].1).collect();
        let mut post: Vec<usize> = (0..spec.len()).filter(|&i| !spec[i].1).collect();
        for v in [&mut pre, &mut post] {
            for i in (1..v.len()).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
        }
        // Event times: pre-signals 0.., builds after, post-signals after that
        // (offset by a bound on the number of builds).
        let builds = 64;
        let mut at = vec![0; spec.len()];
        for (k, &i) in pre.iter().enumerate() {
            at[i] = k;
        }
        for (k, &i) in post.iter().enumerate() {
            at[i] = pre.len() + builds + k;
        }
        // The leaves' fences, made and pre-signaled (in order) before the build.
        let pool: Vec<(Fence, Time)> = at
            .iter()
            .map(|&a| (Fence::software(alloc_contexts(1), 1), a))
            .collect();
        for &i in &pre {
            match spec[i].0 {
                Some(e) => pool[i].0.signal_with_error(error(e)).unwrap(),
                None => pool[i].0.signal().unwrap(),
            }
        }
        let mut w = World {
            leaves: Vec::new(),
            nodes: Vec::new(),
            clock: pre.len(),
            pre_count: pre.len(),
            pool: pool.into_iter(),
        };
        w.build(&t);
        prop_assert!(w.clock <= pre.len() + builds);
        check(&w, pre.len() + builds)?;
        for (k, &i) in post.iter().enumerate() {
            let f = &w.leaves[i].fence;
            match spec[i].0 {
                Some(e) => f.signal_with_error(error(e)).unwrap(),
                None => f.signal().unwrap(),
            }
            check(&w, pre.len() + builds + k + 1)?;
        }
    }

    #[test]
    fn timeline_lookups_follow_the_rule(
        points in prop::collection::vec(prop::option::weighted(0.3, 1..6i32), 1..8),
        order in any::<u64>(),
        queries in prop::collection::vec((0usize..8, 0usize..9), 0..12),
    ) {
        let n = points.len();
        let fences: Vec<Fence> = (0..n).map(|_| Fence::software(alloc_contexts(1), 1)).collect();
        let mut tl = FenceTimeline::new();
        for (k, f) in fences.iter().enumerate() {
            tl.push(f.clone(), k as u64 + 1).unwrap();
        }
        let mut perm: Vec<usize> = (0..n).collect();
        let mut rng = order | 1;
        for i in (1..n).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            perm.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        // Point s's outcome: the earliest failed point <= s.
        let want = |s: usize| points[..s].iter().find_map(|e| e.map(error));
        let mut found: Vec<(usize, Fence)> = Vec::new();
        let mut done = vec![false; n];
        for (step, &i) in perm.iter().enumerate() {
            match points[i] {
                Some(e) => fences[i].signal_with_error(error(e)).unwrap(),
                None => fences[i].signal().unwrap(),
            }
            done[i] = true;
            for &(when, s) in &queries {
                if when != step || s > n {
                    continue;
                }
                let s = s.max(1);
                let r = tl.find(s as u64).unwrap();
                let all_done = done[..s].iter().all(|d| *d);
                match (r, all_done, want(s)) {
                    (None, true, None) => {}
                    (None, _, w) => prop_assert!(false, "find({}) = None, all done {}, want {:?}", s, all_done, w),
                    (Some(f), _, _) => found.push((s, f)),
                }
            }
        }
        for (s, f) in found {
            prop_assert_eq!(f.wait(), want(s).map_or(Ok(()), Err), "find({})", s);
        }
        prop_assert_eq!(tl.head().unwrap().wait(), want(n).map_or(Ok(()), Err));
        // Everything signaled: the timeline keeps only its head.
        prop_assert_eq!(tl.link_count(), 1);
    }
}
