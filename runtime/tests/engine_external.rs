//! The process-wide engine driven by the caller's event loop: no thread is
//! started, the waker is told when work comes due, `run_once` does it.
//! (Its own test binary: the choice must come before any use of the engine.)

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::{alloc_contexts, engine, Fence, FenceKind};

struct Word(Arc<AtomicU64>);

impl FenceKind for Word {
    fn driver_name(&self) -> &str {
        "test"
    }
    fn timeline_name(&self) -> &str {
        "word"
    }
    fn poll_signaled(&self, fence: &Fence) -> bool {
        self.0.load(Ordering::Acquire) >= fence.seqno()
    }
    fn needs_polling(&self) -> bool {
        true
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim_end().starts_with(name))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn global_engine_driven_by_the_callers_loop_starts_no_thread() {
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    let tasks_before = std::fs::read_dir("/proc/self/task").unwrap().count();
    let e = engine::drive_externally(move || {
        w.fetch_add(1, Ordering::SeqCst);
    })
    .expect("first use");
    assert!(std::ptr::eq(e, engine::global()));
    assert!(engine::drive_externally(|| {}).is_err(), "only once");

    let word = Arc::new(AtomicU64::new(0));
    let f = Fence::new(Arc::new(Word(word.clone())), alloc_contexts(1), 1);
    // Enabling signaling hands a polled kind to the global engine.
    f.enable_signaling();
    assert_eq!(e.watched(), 1);
    assert!(wakes.load(Ordering::SeqCst) >= 1, "the loop was told");
    word.store(1, Ordering::Release);
    // Nothing happens until the loop runs the engine.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(e.watched(), 1);
    let due = e.next_wakeup().expect("a poll is due");
    e.run_once(due.max(Instant::now()));
    assert!(f.test_signaled_flag());
    assert_eq!(e.watched(), 0);
    assert_eq!(threads_named("bufsync-fence"), 0);
    let tasks_after = std::fs::read_dir("/proc/self/task").unwrap().count();
    assert!(
        tasks_after <= tasks_before,
        "threads: {tasks_before} -> {tasks_after}"
    );
}
