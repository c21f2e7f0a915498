//! bufsync's fence waits driven by the application's own loop: after
//! `event_loop::drive_from_event_loop`, a sync_file fence (reactor) and a
//! polled seqno fence (fence engine) signal from a raw epoll loop and from a
//! calloop `EventLoop`, and no bufsync thread is ever started
//! (`/proc/self/task` before and after). Its own test binary: the choice is
//! made once per process, before any other use of bufsync.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bufsync::fence::Fence;
use bufsync_backends::event_loop::{self, calloop::FenceSource};
use bufsync_backends::seqno::{SeqnoMemory, SeqnoWidth};
use bufsync_backends::sync_file::SyncFileFence;
use bufsync_backends::testing::SwSyncTimeline;
use bufsync_tests::require;

/// The names of this process's threads.
fn threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim_end().to_owned())
        .collect()
}

fn flag_on_signal(f: &Fence) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    f.add_callback(move |_| d.store(true, Ordering::SeqCst))
        .unwrap();
    done
}

#[test]
fn fences_signal_from_the_applications_loop_with_no_bufsync_thread() {
    bufsync_tests::init_log();
    require!("sw_sync", SwSyncTimeline::is_available());
    let before = threads();
    let d = event_loop::drive_from_event_loop().expect("first use");
    let mem = SeqnoMemory::anonymous(64).unwrap();
    let word = mem.word(0, SeqnoWidth::U32).unwrap();
    let tl = SwSyncTimeline::new().unwrap();

    // A raw epoll loop of the application's own.
    let ep = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).unwrap();
    rustix::event::epoll::add(
        &ep,
        d.as_fd(),
        rustix::event::epoll::EventData::new_u64(7),
        rustix::event::epoll::EventFlags::IN,
    )
    .unwrap();
    let sync = SyncFileFence::fence(tl.create_fence(1, "epoll").unwrap()).unwrap();
    let polled = word.fence(1);
    let (sync_done, polled_done) = (flag_on_signal(&sync), flag_on_signal(&polled));
    tl.inc(1).unwrap();
    word.store(1); // a silent write (as a GPU's): only the engine's poll sees it
    let until = Instant::now() + Duration::from_secs(10);
    let mut wakeups = 0;
    while !(sync_done.load(Ordering::SeqCst) && polled_done.load(Ordering::SeqCst)) {
        assert!(Instant::now() < until, "not signaled from the loop");
        let mut events = Vec::with_capacity(4);
        let ts = rustix::time::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        rustix::event::epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), Some(&ts))
            .unwrap();
        if !events.is_empty() {
            wakeups += 1;
            d.dispatch().unwrap();
        }
    }
    assert!(wakeups >= 1);

    // The same from calloop.
    let mut ev: calloop::EventLoop<'_, usize> = calloop::EventLoop::try_new().unwrap();
    ev.handle()
        .insert_source(
            FenceSource::new().unwrap(),
            |fired, _, total: &mut usize| *total += fired,
        )
        .map_err(|e| e.error)
        .unwrap();
    let sync = SyncFileFence::fence(tl.create_fence(2, "calloop").unwrap()).unwrap();
    let polled = word.fence(2);
    let (sync_done, polled_done) = (flag_on_signal(&sync), flag_on_signal(&polled));
    tl.inc(1).unwrap();
    word.store(2);
    let mut fired = 0usize;
    let until = Instant::now() + Duration::from_secs(10);
    while !(sync_done.load(Ordering::SeqCst) && polled_done.load(Ordering::SeqCst)) {
        assert!(Instant::now() < until, "not signaled from calloop");
        ev.dispatch(Some(Duration::from_millis(200)), &mut fired)
            .unwrap();
    }
    assert!(fired >= 1, "the sync_file fired through calloop");

    let after = threads();
    log::info!("threads before {before:?}, after {after:?}");
    assert!(
        after.iter().all(|t| !t.starts_with("bufsync")),
        "a bufsync thread was started: {after:?}"
    );
    assert_eq!(
        before.len(),
        after.len(),
        "threads: {before:?} -> {after:?}"
    );
}
