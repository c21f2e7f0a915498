//! Port of the kernel's drivers/dma-buf/st-dma-fence-chain.c, one test per case.

mod common;
use common::mock_fence;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use bufsync::fence::{ChainError, Fence, FenceChain, FenceTimeline};

/// The kernel's CHAIN_SZ (4 << 10).
const CHAIN_SZ: usize = 4 << 10;

fn mock_chain(prev: Option<&Fence>, fence: &Fence, seqno: u64) -> Fence {
    FenceChain::create(prev, fence.clone(), seqno)
}

struct FenceChains {
    fences: Vec<Fence>,
    chains: Vec<Fence>,
    tail: Fence,
}

impl FenceChains {
    fn new(count: usize, seqno_fn: fn(usize) -> u64) -> FenceChains {
        let mut fences = Vec::with_capacity(count);
        let mut chains: Vec<Fence> = Vec::with_capacity(count);
        for i in 0..count {
            let f = mock_fence();
            let c = mock_chain(chains.last(), &f, seqno_fn(i));
            fences.push(f);
            chains.push(c);
        }
        let tail = chains.last().cloned().expect("count > 0");
        FenceChains {
            fences,
            chains,
            tail,
        }
    }
}

impl Drop for FenceChains {
    fn drop(&mut self) {
        for f in &self.fences {
            let _ = f.signal();
        }
    }
}

fn seqno_inc(i: usize) -> u64 {
    i as u64 + 1
}

fn seqno_inc2(i: usize) -> u64 {
    2 * i as u64 + 2
}

fn same(a: &Option<Fence>, b: &Fence) -> bool {
    a.as_ref().is_some_and(|a| a.ptr_eq(b))
}

/// A tiny xorshift PRNG: the tests need no cryptographic randomness.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn sanitycheck() {
    let f = mock_fence();
    let chain = mock_chain(None, &f, 1);
    f.signal().unwrap();
    assert!(chain.is_signaled());
}

#[test]
fn find_seqno() {
    let fc = FenceChains::new(64, seqno_inc);

    let found = FenceChain::find_seqno(&fc.tail, 0).expect("find_seqno(0)");
    assert!(
        same(&found, &fc.tail),
        "find_seqno(0) must leave the fence as is"
    );

    for i in 0..fc.chains.len() {
        let p = i as u64 + 1;
        let fence =
            FenceChain::find_seqno(&fc.tail, p).unwrap_or_else(|e| panic!("find_seqno({p}): {e}"));
        assert!(
            same(&fence, &fc.chains[i]),
            "Incorrect fence reported by find_seqno({p})"
        );
        let fence = fence.unwrap();

        let again = FenceChain::find_seqno(&fence, p).expect("Error reported for finding self");
        assert!(
            same(&again, &fc.chains[i]),
            "Incorrect fence reported by find self"
        );

        assert!(
            matches!(
                FenceChain::find_seqno(&fence, p + 1),
                Err(ChainError::BeyondHead { .. })
            ),
            "Error not reported for future fence: find_seqno({}:{})",
            p,
            p + 1
        );

        let prev =
            FenceChain::find_seqno(&fence, p - 1).expect("Error reported for previous fence!");
        if i > 0 {
            assert!(
                same(&prev, &fc.chains[i - 1]),
                "Incorrect fence reported by find_seqno({}:{})",
                p,
                p - 1
            );
        }
    }
}

#[test]
fn find_signaled() {
    let fc = FenceChains::new(2, seqno_inc);
    fc.fences[0].signal().unwrap();
    let fence = FenceChain::find_seqno(&fc.tail, 1).expect("find_seqno()");
    if let Some(f) = &fence {
        assert!(
            f.ptr_eq(&fc.chains[0]),
            "Incorrect chain-fence.seqno:{} reported for completed seqno:1",
            f.seqno()
        );
    }
}

#[test]
fn find_out_of_order() {
    let fc = FenceChains::new(3, seqno_inc);
    fc.fences[1].signal().unwrap();
    let fence = FenceChain::find_seqno(&fc.tail, 2).expect("find_seqno()");
    // Point 1 is still pending, so it is what we must wait on for point 2
    // (point 2's link is collected during the walk).
    assert!(
        same(&fence, &fc.chains[0]),
        "Incorrect chain-fence.seqno:{} reported for completed seqno:2",
        fence.as_ref().map_or(0, Fence::seqno)
    );
}

#[test]
fn find_gap() {
    let fc = FenceChains::new(64, seqno_inc2);
    for i in 0..fc.chains.len() {
        let p = 2 * i as u64 + 1;
        let fence =
            FenceChain::find_seqno(&fc.tail, p).unwrap_or_else(|e| panic!("find_seqno({p}): {e}"));
        assert!(
            same(&fence, &fc.chains[i]),
            "Incorrect fence reported by find_seqno({p})"
        );
        let again = FenceChain::find_seqno(fence.as_ref().unwrap(), p + 1)
            .expect("Error reported for finding self");
        assert!(
            same(&again, &fc.chains[i]),
            "Incorrect fence reported by find self"
        );
    }
}

#[test]
fn find_race() {
    let fc = Arc::new(FenceChains::new(CHAIN_SZ, seqno_inc));
    let stop = Arc::new(AtomicBool::new(false));
    let nthreads = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    // The kernel runs for up to 5 s; a fixed number of rounds keeps it bounded.
    const ROUNDS: usize = 1000;
    let handles: Vec<_> = (0..nthreads)
        .map(|t| {
            let fc = fc.clone();
            let stop = stop.clone();
            thread::spawn(move || -> Result<(), String> {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                for _ in 0..ROUNDS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let seqno = rng.below(fc.chains.len()) as u64 + 1;
                    let found = FenceChain::find_seqno(&fc.tail, seqno)
                        .map_err(|e| format!("Failed to find fence seqno:{seqno}: {e}"))?;
                    if let Some(fence) = found {
                        // We can only find ourselves if we are on the fence we were looking for.
                        if fence.seqno() == seqno {
                            FenceChain::find_seqno(&fence, seqno).map_err(|e| {
                                format!("Reported an invalid fence for find-self:{seqno}: {e}")
                            })?;
                        }
                    }
                    let i = rng.below(fc.chains.len() - 1);
                    let _ = fc.fences[i].signal();
                }
                Ok(())
            })
        })
        .collect();
    let mut result = Ok(());
    for h in handles {
        let r = h.join().unwrap();
        if r.is_err() {
            stop.store(true, Ordering::Relaxed);
            result = result.and(r);
        }
    }
    result.unwrap();
}

#[test]
fn signal_forward() {
    let fc = FenceChains::new(64, seqno_inc);
    for i in 0..fc.chains.len() {
        fc.fences[i].signal().unwrap();
        assert!(fc.chains[i].is_signaled(), "chain[{i}] not signaled!");
        if i + 1 < fc.chains.len() {
            assert!(!fc.chains[i + 1].is_signaled(), "chain[{i}] is signaled!");
        }
    }
}

#[test]
fn signal_backward() {
    let fc = FenceChains::new(64, seqno_inc);
    for i in (0..fc.chains.len()).rev() {
        fc.fences[i].signal().unwrap();
        if i > 0 {
            assert!(!fc.chains[i].is_signaled(), "chain[{i}] is signaled!");
        }
    }
    for (i, c) in fc.chains.iter().enumerate() {
        assert!(c.is_signaled(), "chain[{i}] was not signaled!");
    }
}

fn wait_with(order: &[usize], fc: FenceChains) {
    let tail = fc.tail.clone();
    let waiter = thread::spawn(move || tail.wait());
    thread::yield_now();
    for &i in order {
        fc.fences[i].signal().unwrap();
    }
    assert_eq!(waiter.join().unwrap(), Ok(()));
}

#[test]
fn wait_forward() {
    let order: Vec<usize> = (0..CHAIN_SZ).collect();
    wait_with(&order, FenceChains::new(CHAIN_SZ, seqno_inc));
}

#[test]
fn wait_backward() {
    let order: Vec<usize> = (0..CHAIN_SZ).rev().collect();
    wait_with(&order, FenceChains::new(CHAIN_SZ, seqno_inc));
}

#[test]
fn wait_random() {
    let mut order: Vec<usize> = (0..CHAIN_SZ).collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Fisher-Yates shuffle, as randomise_fences() does.
    for count in (1..order.len()).rev() {
        let swp = rng.below(count + 1);
        order.swap(count, swp);
    }
    wait_with(&order, FenceChains::new(CHAIN_SZ, seqno_inc));
}

#[test]
fn timeline_push_and_find() {
    let mut tl = FenceTimeline::new();
    assert_eq!(tl.find(0).unwrap(), None);
    assert!(tl.find(1).is_err());
    let f1 = mock_fence();
    let f2 = mock_fence();
    let p1 = tl.push(f1.clone(), 1).unwrap();
    let p2 = tl.push(f2.clone(), 5).unwrap();
    assert!(matches!(
        tl.push(mock_fence(), 5),
        Err(ChainError::NotLater { .. })
    ));
    assert_eq!(p1.context(), p2.context());
    assert!(p2.is_later(&p1));
    assert!(same(&tl.find(3).unwrap(), &p2));
    assert!(same(&tl.find(1).unwrap(), &p1));
    f1.signal().unwrap();
    assert_eq!(tl.find(1).unwrap(), None);
    f2.signal().unwrap();
    assert!(p2.is_signaled());
}

#[test]
fn chain_keeps_contained_error() {
    let f1 = mock_fence();
    let f2 = mock_fence();
    let c1 = mock_chain(None, &f1, 1);
    let c2 = mock_chain(Some(&c1), &f2, 2);
    c2.enable_signaling();
    f1.signal_with_error(bufsync::fence::FenceError::DeviceLost)
        .unwrap();
    f2.signal().unwrap();
    assert_eq!(c2.wait(), Err(bufsync::fence::FenceError::DeviceLost));
}

#[test]
fn drop_long_chain_does_not_recurse() {
    let fc = FenceChains::new(64 * 1024, seqno_inc);
    drop(fc);
}
