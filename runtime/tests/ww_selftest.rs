//! Port of the kernel's kernel/locking/test-ww_mutex.c, run for both
//! algorithms: mutex, AA, ABBA x4, cycle 2..=ncpus+1, stress in-order,
//! re-order and one. Stresses are bounded in time and iterations; every
//! assertion is about outcomes (mutual exclusion, results), never timing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bufsync::resv::{Algorithm, Ticket, WwClass, WwError, WwGuard, WwMutex};

const ALGOS: [Algorithm; 2] = [Algorithm::WoundWait, Algorithm::WaitDie];

fn ncpus() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn order(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            v.swap(i, self.below(i + 1));
        }
        v
    }
}

// test_mutex: a second thread must not get a lock the first holds.
#[test]
fn mutex() {
    for algo in ALGOS {
        let class = WwClass::new("test_mutex", algo);
        for flags in 0..4 {
            let (use_try, use_ctx) = (flags & 1 != 0, flags & 2 != 0);
            let m = Arc::new(WwMutex::new(&class));
            let done = Arc::new(AtomicBool::new(false));
            let t = Ticket::new(&class);
            let g = t.lock(&m).unwrap();
            let worker = {
                let (m, done, class) = (m.clone(), done.clone(), class.clone());
                thread::spawn(move || {
                    if use_ctx {
                        let t = Ticket::new(&class);
                        let _g = if use_try {
                            loop {
                                if let Some(g) = t.try_lock(&m).unwrap() {
                                    break g;
                                }
                                thread::yield_now();
                            }
                        } else {
                            t.lock(&m).unwrap()
                        };
                        done.store(true, Ordering::SeqCst);
                    } else {
                        let _g = if use_try {
                            loop {
                                if let Some(g) = m.try_lock() {
                                    break g;
                                }
                                thread::yield_now();
                            }
                        } else {
                            m.lock()
                        };
                        done.store(true, Ordering::SeqCst);
                    }
                })
            };
            thread::sleep(Duration::from_millis(5));
            assert!(
                !done.load(Ordering::SeqCst),
                "mutual exclusion failed ({algo:?}, flags {flags})"
            );
            drop(g);
            worker.join().unwrap();
            assert!(done.load(Ordering::SeqCst));
        }
    }
}

// test_aa: relocking with the same ticket gives AlreadyHeld; trylocks fail.
#[test]
fn aa() {
    for algo in ALGOS {
        let class = WwClass::new("test_aa", algo);
        for use_try in [false, true] {
            let m = WwMutex::new(&class);
            let t = Ticket::new(&class);
            let _g = if use_try {
                t.try_lock(&m).unwrap().expect("trylock of a free mutex")
            } else {
                t.lock(&m).unwrap()
            };
            assert!(
                m.try_lock().is_none(),
                "trylock without ticket succeeded on a held lock"
            );
            assert!(
                t.try_lock(&m).unwrap().is_none(),
                "trylock with ticket succeeded on a held lock"
            );
            let err = t.lock(&m).unwrap_err();
            assert_eq!(err, WwError::AlreadyHeld { object: m.id() });
        }
    }
}

/// Locks `second` while holding `first_guard`; with `resolve`, backs off and
/// retries until both are held. Returns the first error seen when not resolving.
fn lock_pair<'m>(
    t: &'m Ticket,
    first: &'m WwMutex,
    mut first_guard: WwGuard<'m, 'm>,
    second: &'m WwMutex,
    resolve: bool,
) -> Result<(WwGuard<'m, 'm>, WwGuard<'m, 'm>), WwError> {
    match t.lock(second) {
        Ok(g) => Ok((first_guard, g)),
        Err(WwError::Deadlock { .. }) if resolve => {
            let mut contended = second;
            let mut other = first;
            loop {
                drop(first_guard);
                let slow = t.lock_slow(contended).unwrap();
                match t.lock(other) {
                    Ok(g) => {
                        return Ok(if std::ptr::eq(contended, second) {
                            (g, slow)
                        } else {
                            (slow, g)
                        });
                    }
                    Err(WwError::Deadlock { .. }) => {
                        first_guard = slow;
                        std::mem::swap(&mut contended, &mut other);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(e) => Err(e),
    }
}

// test_abba: two tickets lock A,B and B,A; unresolved, one must see Deadlock;
// resolved, both must end up holding both.
#[test]
fn abba() {
    for algo in ALGOS {
        let class = WwClass::new("test_abba", algo);
        for i in 0..4 {
            let (use_try, resolve) = (i & 1 != 0, i & 2 != 0);
            let a = Arc::new(WwMutex::new(&class));
            let b = Arc::new(WwMutex::new(&class));
            let barrier = Arc::new(Barrier::new(2));
            let run = move |first: Arc<WwMutex>,
                            second: Arc<WwMutex>,
                            class: Arc<WwClass>,
                            barrier: Arc<Barrier>| {
                let t = Ticket::new(&class);
                let g = if use_try {
                    t.try_lock(&first).unwrap().expect("first lock is free")
                } else {
                    t.lock(&first).unwrap()
                };
                barrier.wait();
                lock_pair(&t, &first, g, &second, resolve).map(drop)
            };
            let worker = {
                let (a, b, class, barrier) = (a.clone(), b.clone(), class.clone(), barrier.clone());
                thread::spawn(move || run(b, a, class, barrier))
            };
            let mine = run(a, b, class.clone(), barrier);
            let theirs = worker.join().unwrap();
            if resolve {
                assert_eq!(
                    (mine, theirs),
                    (Ok(()), Ok(())),
                    "{algo:?} resolved ABBA failed"
                );
            } else {
                assert!(
                    mine.is_err() || theirs.is_err(),
                    "{algo:?}: missed ABBA deadlock (try {use_try})"
                );
                for r in [mine, theirs] {
                    assert!(matches!(r, Ok(()) | Err(WwError::Deadlock { .. })), "{r:?}");
                }
            }
        }
    }
}

// test_cycle: n threads each hold their own lock and want the next one's.
#[test]
fn cycle() {
    for algo in ALGOS {
        let class = WwClass::new("test_cycle", algo);
        for n in 2..=ncpus() + 1 {
            let locks: Arc<Vec<WwMutex>> = Arc::new((0..n).map(|_| WwMutex::new(&class)).collect());
            let barrier = Arc::new(Barrier::new(n));
            let workers: Vec<_> = (0..n)
                .map(|i| {
                    let (locks, barrier, class) = (locks.clone(), barrier.clone(), class.clone());
                    thread::spawn(move || {
                        let t = Ticket::new(&class);
                        let (a, b) = (&locks[i], &locks[(i + 1) % n]);
                        let g = t.lock(a).unwrap();
                        barrier.wait();
                        lock_pair(&t, a, g, b, true).map(drop)
                    })
                })
                .collect();
            for w in workers {
                assert_eq!(w.join().unwrap(), Ok(()), "{algo:?} cycle of {n}");
            }
        }
    }
}

/// A lock plus a flag that proves mutual exclusion.
struct Guarded {
    lock: WwMutex,
    busy: AtomicBool,
    uses: AtomicU64,
}

impl Guarded {
    fn enter(&self) {
        assert!(
            !self.busy.swap(true, Ordering::SeqCst),
            "two holders of one ww_mutex"
        );
        self.uses.fetch_add(1, Ordering::Relaxed);
    }
    fn leave(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }
}

const STRESS_INORDER: u32 = 1;
const STRESS_REORDER: u32 = 2;
const STRESS_ONE: u32 = 4;
const STRESS_ALL: u32 = 7;
const STRESS_TIME: Duration = Duration::from_millis(800);
const STRESS_MAX_LOOPS: u64 = 20_000;

/// Locks `order` (indices into `locks`) with back-off; `reorder` moves the
/// contended lock to the front of the order (stress_reorder_work).
fn lock_list<'m>(
    t: &'m Ticket,
    locks: &'m [Guarded],
    order: &mut Vec<usize>,
    reorder: bool,
) -> Vec<WwGuard<'m, 'm>> {
    let mut held: Vec<WwGuard<'m, 'm>> = Vec::with_capacity(order.len());
    let mut slow: Option<usize> = None;
    'retry: loop {
        for &i in order.iter() {
            if Some(i) == slow {
                continue;
            }
            match t.lock(&locks[i].lock) {
                Ok(g) => held.push(g),
                Err(WwError::Deadlock { .. }) => {
                    while let Some(g) = held.pop() {
                        drop(g);
                    }
                    held.push(t.lock_slow(&locks[i].lock).unwrap());
                    slow = Some(i);
                    if reorder {
                        let at = order.iter().position(|&x| x == i).unwrap();
                        let c = order.remove(at);
                        order.insert(0, c);
                    }
                    continue 'retry;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        return held;
    }
}

fn stress(algo: Algorithm, nlocks: usize, nthreads: usize, flags: u32) {
    let class = WwClass::new("stress", algo);
    let locks: Arc<Vec<Guarded>> = Arc::new(
        (0..nlocks)
            .map(|_| Guarded {
                lock: WwMutex::new(&class),
                busy: AtomicBool::new(false),
                uses: AtomicU64::new(0),
            })
            .collect(),
    );
    let kinds: Vec<u32> = [STRESS_INORDER, STRESS_REORDER, STRESS_ONE]
        .into_iter()
        .filter(|k| flags & k != 0)
        .collect();
    let start = Instant::now();
    let workers: Vec<_> = (0..nthreads)
        .map(|n| {
            let kind = kinds[n % kinds.len()];
            let (locks, class) = (locks.clone(), class.clone());
            thread::spawn(move || {
                let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ ((n as u64 + 1) * 0x9E37_79B9));
                let mut order = rng.order(nlocks);
                if kind == STRESS_REORDER {
                    order.truncate(16.min(nlocks));
                }
                let mut loops = 0u64;
                while loops == 0 || (loops < STRESS_MAX_LOOPS && start.elapsed() < STRESS_TIME) {
                    match kind {
                        STRESS_ONE => {
                            let l = &locks[rng.below(nlocks)];
                            let _g = l.lock.lock();
                            l.enter();
                            l.leave();
                        }
                        _ => {
                            let t = Ticket::new(&class);
                            let held = lock_list(&t, &locks, &mut order, kind == STRESS_REORDER);
                            for &i in &order {
                                locks[i].enter();
                            }
                            for &i in &order {
                                locks[i].leave();
                            }
                            drop(held);
                        }
                    }
                    loops += 1;
                }
                loops
            })
        })
        .collect();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total >= nthreads as u64);
    for l in locks.iter() {
        assert!(!l.lock.is_locked(), "a lock was left held");
    }
}

#[test]
fn stress_inorder() {
    for algo in ALGOS {
        stress(algo, 16, 2 * ncpus(), STRESS_INORDER);
    }
}

#[test]
fn stress_reorder() {
    for algo in ALGOS {
        stress(algo, 16, 2 * ncpus(), STRESS_REORDER);
    }
}

#[test]
fn stress_all() {
    for algo in ALGOS {
        stress(
            algo,
            2046,
            STRESS_ALL.count_ones() as usize * ncpus(),
            STRESS_ALL,
        );
    }
}
