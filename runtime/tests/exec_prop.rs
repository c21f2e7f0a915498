//! Property tests: random ticket programs against a reference model.
//! - Sequential frames (reserve a random list, maybe add a bookkeeping fence,
//!   commit or back off, signal random fences, some with an error) must leave
//!   every reservation holding exactly the fences the model predicts, with
//!   wait sets that follow the usage rules and keep failures, and waits that
//!   report the first failure (docs/fences.md, "Errors").
//! - Concurrent programs (3 threads, both algorithms, injected deadlocks) must
//!   finish (no deadlock) and lose no fence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use proptest::prelude::*;

use bufsync::fence::{Fence, FenceContext, FenceError, WaitError};
use bufsync::resv::{Access, Algorithm, Reservation, Ticket, Usage, WwClass};

const OBJS: usize = 5;
const CTXS: usize = 3;

#[derive(Debug, Clone)]
struct Frame {
    list: Vec<(usize, bool)>,
    ctx: usize,
    bookkeep: bool,
    commit: bool,
    /// Fences to signal after the frame, each maybe with an error.
    signal: Vec<(usize, Option<i32>)>,
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        prop::collection::vec((0..OBJS, any::<bool>()), 0..6),
        0..CTXS,
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::collection::vec((0..64usize, prop::option::weighted(0.3, 1..4i32)), 0..3),
    )
        .prop_map(|(list, ctx, bookkeep, commit, signal)| Frame {
            list,
            ctx,
            bookkeep,
            commit,
            signal,
        })
}

/// The model's view of one fence slot.
#[derive(Clone, Debug)]
struct Slot {
    id: usize,
    ctx: usize,
    seq: usize,
    usage: Usage,
}

/// What the model knows of each fence: when it signaled (an event count)
/// and with which error.
#[derive(Clone, Copy, Debug, Default)]
struct Ended {
    at: Option<usize>,
    err: Option<FenceError>,
}

/// Reference `add_fence`: the dma_resv rules, written plainly, with bufsync's
/// one change: a failed writer (`Kernel`/`Write`) is stale only for a new
/// writer.
fn model_add(slots: &mut Vec<Slot>, new: Slot, ended: &dyn Fn(usize) -> Ended) {
    let stale = |s: &Slot| {
        let e = ended(s.id);
        e.at.is_some() && (new.usage <= Usage::Write || s.usage > Usage::Write || e.err.is_none())
    };
    let pos = slots
        .iter()
        .position(|s| stale(s) || (s.ctx == new.ctx && s.usage >= new.usage && s.seq <= new.seq));
    match pos {
        Some(p) => {
            let keep: Vec<bool> = slots.iter().map(|s| !stale(s)).collect();
            slots[p] = new;
            let keep_id = slots[p].id;
            let mut k = 0;
            slots.retain(|s| {
                k += 1;
                s.id == keep_id || keep[k - 1]
            });
        }
        None => slots.push(new),
    }
}

/// Reference `FenceSet::add` over `(id, ctx, seq)` candidates: per context
/// the latest, plus the superseded fence that failed first (if any failed
/// before it was superseded).
fn model_set(cands: &[(usize, usize, usize)], ended: &dyn Fn(usize) -> Ended) -> BTreeSet<usize> {
    struct PerContext {
        ctx: usize,
        /// The latest fence: (id, seq).
        latest: (usize, usize),
        /// The failed predecessor: (id, when it failed).
        pred: Option<(usize, usize)>,
    }
    let mut per: Vec<PerContext> = Vec::new();
    for &(id, ctx, seq) in cands {
        let Some(e) = per.iter_mut().find(|e| e.ctx == ctx) else {
            per.push(PerContext {
                ctx,
                latest: (id, seq),
                pred: None,
            });
            continue;
        };
        if e.latest.0 == id || e.pred.is_some_and(|p| p.0 == id) {
            continue;
        }
        let gone = if seq > e.latest.1 {
            std::mem::replace(&mut e.latest, (id, seq)).0
        } else {
            id
        };
        let g = ended(gone);
        if let (Some(at), Some(_)) = (g.at, g.err) {
            if e.pred.map_or(true, |p| at < p.1) {
                e.pred = Some((gone, at));
            }
        }
    }
    per.iter()
        .flat_map(|e| std::iter::once(e.latest.0).chain(e.pred.map(|p| p.0)))
        .collect()
}

fn ids(fences: impl Iterator<Item = usize>) -> BTreeSet<usize> {
    fences.collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn sequential_frames_match_the_model(frames in prop::collection::vec(frame(), 1..24)) {
        let objs: Vec<Reservation> = (0..OBJS).map(|_| Reservation::new()).collect();
        let ctxs: Vec<FenceContext> = (0..CTXS).map(|_| FenceContext::new("prop", "ctx")).collect();
        let mut all: Vec<Fence> = Vec::new();
        let mut seqs = [0usize; CTXS];
        let mut model: Vec<Vec<Slot>> = vec![Vec::new(); OBJS];
        let mut t = Ticket::reservation();
        let id_of = |all: &Vec<Fence>, f: &Fence| all.iter().position(|g| g.ptr_eq(f)).unwrap();
        let mut ended: Vec<Ended> = Vec::new();
        let mut events = 0usize;
        for fr in &frames {
            let list: Vec<(&Reservation, Access)> = fr
                .list
                .iter()
                .map(|&(o, w)| (&objs[o], if w { Access::Write } else { Access::Read }))
                .collect();
            let mut r = t.reserve(&list, 2).unwrap();
            // Effective access per object: write if any entry writes.
            let mut access: Vec<Option<bool>> = vec![None; OBJS];
            for &(o, w) in &fr.list {
                access[o] = Some(access[o].unwrap_or(false) || w);
            }
            // Wait set: per object the usage rule (pending and failed fences),
            // then the set's rule (latest per context, failures kept).
            let ended_of = |id: usize| ended.get(id).copied().unwrap_or_default();
            let mut cands: Vec<(usize, usize, usize)> = Vec::new();
            for (o, a) in access.iter().enumerate() {
                let Some(w) = a else { continue };
                let max = Usage::for_access(*w);
                for s in model[o].iter().filter(|s| {
                    let e = ended_of(s.id);
                    s.usage <= max && (e.at.is_none() || e.err.is_some())
                }) {
                    cands.push((s.id, s.ctx, s.seq));
                }
            }
            let got = ids(r.wait_set().iter().map(|f| id_of(&all, f)));
            prop_assert_eq!(got, model_set(&cands, &ended_of));
            seqs[fr.ctx] += 1;
            let f = ctxs[fr.ctx].create_fence();
            all.push(f.clone());
            ended.push(Ended::default());
            let fid = all.len() - 1;
            let signaled = |id: usize| ended.get(id).copied().unwrap_or_default();
            if fr.commit {
                if fr.bookkeep && !fr.list.is_empty() {
                    let bk = FenceContext::new("prop", "bookkeep").create_fence();
                    r.add_fence(0, &bk, Usage::Bookkeep).unwrap();
                    all.push(bk.clone());
                    ended.push(Ended::default());
                    let bid = all.len() - 1;
                    let signaled = |id: usize| ended.get(id).copied().unwrap_or_default();
                    model_add(&mut model[fr.list[0].0], Slot { id: bid, ctx: CTXS + bid, seq: 0, usage: Usage::Bookkeep }, &signaled);
                }
                r.commit(&f);
                let signaled = |id: usize| ended.get(id).copied().unwrap_or_default();
                for (o, a) in access.iter().enumerate() {
                    if let Some(w) = a {
                        let usage = if *w { Usage::Write } else { Usage::Read };
                        model_add(&mut model[o], Slot { id: fid, ctx: fr.ctx, seq: seqs[fr.ctx], usage }, &signaled);
                    }
                }
            } else {
                let _ = signaled;
                r.backoff();
            }
            for &(s, err) in &fr.signal {
                if let Some(f) = all.get(s) {
                    let r = match err {
                        Some(e) => f.signal_with_error(FenceError::Errno(e)),
                        None => f.signal(),
                    };
                    if r.is_ok() {
                        ended[s] = Ended { at: Some(events), err: err.map(FenceError::Errno) };
                        events += 1;
                    }
                }
            }
            for (o, obj) in objs.iter().enumerate() {
                prop_assert!(!obj.ww_mutex().is_locked());
                for usage in Usage::ALL {
                    let got = ids(obj.fences(usage).iter().map(|f| id_of(&all, f)));
                    let mine: Vec<&Slot> = model[o].iter().filter(|s| s.usage <= usage).collect();
                    let want = ids(mine.iter().map(|s| s.id));
                    prop_assert_eq!(&got, &want, "object {} usage {:?}", o, usage);
                    // The wait: pending while any is; then the first failure.
                    let e: Vec<Ended> = mine.iter().map(|s| ended[s.id]).collect();
                    let want = if e.iter().any(|e| e.at.is_none()) {
                        Err(WaitError::TimedOut)
                    } else {
                        e.iter()
                            .filter(|e| e.err.is_some())
                            .min_by_key(|e| e.at)
                            .map_or(Ok(()), |e| Err(WaitError::Fence(e.err.unwrap())))
                    };
                    prop_assert_eq!(obj.wait(usage, Some(Duration::ZERO)).map_err(WaitError::from), want, "wait of object {} usage {:?}", o, usage);
                }
            }
        }
        for f in &all {
            let _ = f.signal();
        }
    }

    #[test]
    fn concurrent_programs_finish_and_lose_nothing(
        programs in prop::collection::vec(prop::collection::vec(prop::collection::vec((0..OBJS, any::<bool>()), 1..5), 1..12), 3),
        wound in any::<bool>(),
        inject in 0u64..4,
    ) {
        let algo = if wound { Algorithm::WoundWait } else { Algorithm::WaitDie };
        let class = WwClass::new("prop", algo);
        class.inject_deadlock_every(inject);
        let objs: Arc<Vec<Reservation>> = Arc::new((0..OBJS).map(|_| Reservation::with_class(&class)).collect());
        let workers: Vec<_> = programs
            .into_iter()
            .map(|prog| {
                let (objs, class) = (objs.clone(), class.clone());
                thread::spawn(move || {
                    let ctx = FenceContext::new("prop", "thread");
                    let mut t = Ticket::new(&class);
                    let mut last: Vec<Option<(Fence, bool)>> = vec![None; OBJS];
                    for list in prog {
                        let l: Vec<(&Reservation, Access)> = list
                            .iter()
                            .map(|&(o, w)| (&objs[o], if w { Access::Write } else { Access::Read }))
                            .collect();
                        let f = ctx.create_fence();
                        let r = t.reserve(&l, 1).unwrap();
                        for (resv, a) in r.locked() {
                            let o = objs.iter().position(|x| std::ptr::eq(x, resv)).unwrap();
                            last[o] = Some((f.clone(), a == Access::Write));
                        }
                        r.commit(&f);
                    }
                    last
                })
            })
            .collect();
        let lasts: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for (o, obj) in objs.iter().enumerate() {
            prop_assert!(!obj.ww_mutex().is_locked());
            let present: Vec<Fence> = obj.fences(Usage::Bookkeep).iter().cloned().collect();
            for last in &lasts {
                if let Some((f, _)) = &last[o] {
                    prop_assert!(present.iter().any(|p| p.ptr_eq(f)), "object {} lost its latest fence", o);
                }
            }
        }
    }
}
