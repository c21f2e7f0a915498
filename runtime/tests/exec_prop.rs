//! Property tests: random ticket programs against a reference model.
//! - Sequential frames (reserve a random list, maybe add a bookkeeping fence,
//!   commit or back off, signal random fences) must leave every reservation
//!   holding exactly the fences the model predicts, with wait sets that follow
//!   the usage rules.
//! - Concurrent programs (3 threads, both algorithms, injected deadlocks) must
//!   finish (no deadlock) and lose no fence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;

use proptest::prelude::*;

use bufsync::fence::{Fence, FenceContext};
use bufsync::resv::{Access, Algorithm, Reservation, Ticket, Usage, WwClass};

const OBJS: usize = 5;
const CTXS: usize = 3;

#[derive(Debug, Clone)]
struct Frame {
    list: Vec<(usize, bool)>,
    ctx: usize,
    bookkeep: bool,
    commit: bool,
    signal: Vec<usize>,
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        prop::collection::vec((0..OBJS, any::<bool>()), 0..6),
        0..CTXS,
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::collection::vec(0..64usize, 0..3),
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

/// Reference `add_fence`: the dma_resv rules, written plainly.
fn model_add(slots: &mut Vec<Slot>, new: Slot, signaled: &dyn Fn(usize) -> bool) {
    let pos = slots.iter().position(|s| {
        signaled(s.id) || (s.ctx == new.ctx && s.usage >= new.usage && s.seq <= new.seq)
    });
    match pos {
        Some(p) => {
            slots[p] = new;
            let keep_id = slots[p].id;
            slots.retain(|s| s.id == keep_id || !signaled(s.id));
        }
        None => slots.push(new),
    }
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
            // Wait set: per object the usage rule, then one fence per context (latest).
            let mut expect: Vec<(usize, usize, usize)> = Vec::new();
            for (o, a) in access.iter().enumerate() {
                let Some(w) = a else { continue };
                let max = Usage::for_access(*w);
                for s in model[o].iter().filter(|s| s.usage <= max && !all[s.id].is_signaled()) {
                    match expect.iter_mut().find(|e| e.0 == s.ctx) {
                        Some(e) if e.1 < s.seq => *e = (s.ctx, s.seq, s.id),
                        Some(_) => {}
                        None => expect.push((s.ctx, s.seq, s.id)),
                    }
                }
            }
            let got = ids(r.wait_set().iter().map(|f| id_of(&all, f)));
            prop_assert_eq!(got, ids(expect.iter().map(|e| e.2)));
            seqs[fr.ctx] += 1;
            let f = ctxs[fr.ctx].create_fence();
            all.push(f.clone());
            let fid = all.len() - 1;
            let signaled = |id: usize| all[id].is_signaled();
            if fr.commit {
                if fr.bookkeep && !fr.list.is_empty() {
                    let bk = FenceContext::new("prop", "bookkeep").create_fence();
                    r.add_fence(0, &bk, Usage::Bookkeep).unwrap();
                    all.push(bk.clone());
                    let bid = all.len() - 1;
                    let signaled = |id: usize| all[id].is_signaled();
                    model_add(&mut model[fr.list[0].0], Slot { id: bid, ctx: CTXS + bid, seq: 0, usage: Usage::Bookkeep }, &signaled);
                }
                r.commit(&f);
                let signaled = |id: usize| all[id].is_signaled();
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
            for &s in &fr.signal {
                if let Some(f) = all.get(s) {
                    let _ = f.signal();
                }
            }
            for (o, obj) in objs.iter().enumerate() {
                prop_assert!(!obj.ww_mutex().is_locked());
                for usage in Usage::ALL {
                    let got = ids(obj.fences(usage).iter().map(|f| id_of(&all, f)));
                    let want = ids(model[o].iter().filter(|s| s.usage <= usage).map(|s| s.id));
                    prop_assert_eq!(&got, &want, "object {} usage {:?}", o, usage);
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
