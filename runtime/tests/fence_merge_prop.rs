//! Property tests of `unwrap_merge`: one fence per context (the latest
//! pending one), signaled fences dropped, errors kept, context order.

use std::collections::BTreeMap;

use proptest::prelude::*;

use bufsync::fence::{
    alloc_contexts, unwrap, unwrap_merge, unwrap_merge_into, Fence, FenceArray, FenceChain,
    FenceError, FenceStatus,
};

#[derive(Debug, Clone, Copy)]
enum State {
    Pending,
    Signaled,
    Failed,
}

#[derive(Debug, Clone)]
struct Leaf {
    ctx: u64,
    seqno: u64,
    state: State,
}

#[derive(Debug, Clone)]
enum Input {
    Plain(Leaf),
    Array(Vec<Leaf>),
    Chain(Vec<Leaf>),
}

fn leaf() -> impl Strategy<Value = Leaf> {
    (0u64..4, 1u64..6, prop_oneof![3 => Just(State::Pending), 2 => Just(State::Signaled), 1 => Just(State::Failed)])
        .prop_map(|(ctx, seqno, state)| Leaf { ctx, seqno, state })
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        leaf().prop_map(Input::Plain),
        prop::collection::vec(leaf(), 1..4).prop_map(Input::Array),
        prop::collection::vec(leaf(), 1..4).prop_map(Input::Chain),
    ]
}

struct Built {
    inputs: Vec<Fence>,
    leaves: Vec<(Leaf, Fence)>,
}

fn build(spec: &[Input]) -> Built {
    let base = alloc_contexts(4);
    let mut leaves = Vec::new();
    let mut make = |l: &Leaf| {
        let f = Fence::software(base + l.ctx, l.seqno);
        match l.state {
            State::Pending => {}
            State::Signaled => f.signal().unwrap(),
            State::Failed => f.signal_with_error(FenceError::Errno(5)).unwrap(),
        }
        leaves.push((l.clone(), f.clone()));
        f
    };
    let mut inputs = Vec::new();
    for i in spec {
        inputs.push(match i {
            Input::Plain(l) => make(l),
            Input::Array(ls) => {
                let fences = ls.iter().map(&mut make).collect();
                FenceArray::create(fences, alloc_contexts(1), 1, false)
            }
            Input::Chain(ls) => {
                let mut head: Option<Fence> = None;
                for (n, l) in ls.iter().enumerate() {
                    let f = make(l);
                    head = Some(FenceChain::create(head.as_ref(), f, n as u64 + 1));
                }
                head.expect("non-empty chain")
            }
        });
    }
    Built { inputs, leaves }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn merge_invariants(spec in prop::collection::vec(input(), 0..6)) {
        let b = build(&spec);
        let mut out = Vec::new();
        let error = unwrap_merge_into(&b.inputs, &mut out);

        // Context order, one per context, nothing signaled.
        for w in out.windows(2) {
            prop_assert!(w[0].context() < w[1].context());
        }
        prop_assert!(out.iter().all(|f| !f.is_signaled()));

        // Per context, the latest pending leaf is kept.
        let mut latest: BTreeMap<u64, u64> = BTreeMap::new();
        for (l, f) in &b.leaves {
            if matches!(l.state, State::Pending) {
                let e = latest.entry(f.context()).or_insert(0);
                *e = (*e).max(l.seqno);
            }
        }
        prop_assert_eq!(out.len(), latest.len());
        for f in &out {
            prop_assert_eq!(Some(&f.seqno()), latest.get(&f.context()));
        }

        // Errors are kept.
        let any_error = b.leaves.iter().any(|(l, _)| matches!(l.state, State::Failed));
        prop_assert_eq!(error.is_some(), any_error);

        // The merged fence: unwraps to the survivors (and, if a dropped leaf
        // failed, one signaled leaf carrying that error), signals when they
        // all have, and carries the error.
        let merged = unwrap_merge(&b.inputs);
        if out.len() > 1 || (error.is_some() && !out.is_empty()) {
            let mut leaves = unwrap(&merged);
            if error.is_some() {
                let carrier = leaves.pop().unwrap();
                prop_assert_eq!(carrier.status(), FenceStatus::Error(error.unwrap()));
            }
            prop_assert_eq!(leaves.len(), out.len());
            for (a, c) in leaves.iter().zip(&out) {
                prop_assert_eq!(a.context(), c.context());
                prop_assert_eq!(a.seqno(), c.seqno());
            }
        }
        for (l, f) in &b.leaves {
            if matches!(l.state, State::Pending) {
                let _ = f.signal();
            }
        }
        prop_assert!(merged.is_signaled());
        match merged.status() {
            FenceStatus::Error(_) => prop_assert!(any_error),
            FenceStatus::Signaled => prop_assert!(!any_error),
            FenceStatus::Pending => prop_assert!(false, "merged fence still pending"),
        }
    }
}
