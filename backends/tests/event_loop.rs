//! The dispatcher on any machine (no device): an eventfd registered with
//! the reactor and a polled fence of the engine both run from the caller's
//! loop, and no bufsync thread starts. Its own test binary: the choice is
//! made once per process.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync_backends::event_loop;
use bufsync_backends::seqno::{SeqnoMemory, SeqnoWidth};
use rustix::event::PollFlags;

fn bufsync_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("bufsync"))
        })
        .count()
}

#[test]
fn reactor_and_engine_run_from_the_callers_loop() {
    let d = event_loop::drive_from_event_loop().unwrap();
    assert!(std::ptr::eq(
        d,
        event_loop::drive_from_event_loop().unwrap()
    ));
    let efd: Arc<OwnedFd> =
        Arc::new(rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap());
    let fired = Arc::new(AtomicBool::new(false));
    let f2 = fired.clone();
    bufsync_backends::reactor::global()
        .unwrap()
        .register(efd.clone(), None, move |_| f2.store(true, Ordering::SeqCst))
        .unwrap();
    // A seqno fence needs polling: the engine's work.
    let mem = SeqnoMemory::anonymous(64).unwrap();
    let word = mem.word(0, SeqnoWidth::U32).unwrap();
    let fence = word.fence(1);
    fence.enable_signaling();
    rustix::io::write(&*efd, &1u64.to_ne_bytes()).unwrap();
    word.store(1); // a silent write: only the engine's poll sees it
    let until = Instant::now() + Duration::from_secs(10);
    while !(fired.load(Ordering::SeqCst) && fence.test_signaled_flag()) {
        assert!(Instant::now() < until, "nothing ran from the loop");
        bufsync_backends::sys::poll::poll_one(
            d.as_fd(),
            PollFlags::IN,
            Some(Duration::from_secs(1)),
        )
        .unwrap();
        d.dispatch().unwrap();
    }
    assert_eq!(d.next_timeout(), None, "idle");
    assert_eq!(bufsync_threads(), 0);
}
