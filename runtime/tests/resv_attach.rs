//! Attachments: synchronous waits before cache hooks, async fences,
//! eviction rules and `Evicted` back-off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bufsync::fence::{Fence, FenceContext};
use bufsync::resv::{Access, AttachError, AttachMode, Exported, Ticket};

fn commit(buf: &Exported, access: Access) -> Fence {
    let f = FenceContext::new("attach", "job").create_fence();
    let mut t = Ticket::reservation();
    t.reserve(&[(buf, access)], 1).unwrap().commit(&f);
    f
}

#[test]
fn synchronous_map_waits_before_the_cache_hook() {
    let buf = Arc::new(Exported::new());
    let writer = commit(&buf, Access::Write);
    let signaled = Arc::new(AtomicBool::new(false));
    let signaler = {
        let (writer, signaled) = (writer.clone(), signaled.clone());
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            signaled.store(true, Ordering::SeqCst);
            writer.signal().unwrap();
        })
    };
    let att = buf.attach(AttachMode::Synchronous);
    let mut hook_saw_signal = false;
    att.map(Access::Read, None, || {
        hook_saw_signal = signaled.load(Ordering::SeqCst) && writer.is_signaled()
    })
    .unwrap();
    assert!(
        hook_saw_signal,
        "the cache hook ran before the writer's fence signaled"
    );
    signaler.join().unwrap();
}

#[test]
fn readers_wait_for_writers_writers_for_everyone() {
    let buf = Exported::new();
    let reader = commit(&buf, Access::Read);
    let att = buf.attach(AttachMode::Synchronous);
    // A reader does not wait for a reader.
    att.map(Access::Read, Some(Duration::from_millis(1)), || {})
        .unwrap();
    // A writer does: bounded wait times out.
    assert!(matches!(
        att.begin_cpu_access(Access::Write, Some(Duration::from_millis(1)), || {}),
        Err(AttachError::Wait(_))
    ));
    reader.signal().unwrap();
    att.begin_cpu_access(Access::Write, None, || {}).unwrap();
}

#[test]
fn async_map_hands_out_fences() {
    let buf = Exported::new();
    let writer = commit(&buf, Access::Write);
    let att = buf.attach(AttachMode::Async);
    let fences = att.map(Access::Read, None, || {}).unwrap();
    let got: Vec<Fence> = fences.iter().cloned().collect();
    assert_eq!(got.len(), 1);
    assert!(got[0].ptr_eq(&writer));
    assert!(!writer.is_signaled(), "async map must not wait");
    writer.signal().unwrap();
}

#[test]
fn eviction_needs_idle_fences_and_consent() {
    let buf = Exported::new();
    let evictable = buf.attach(AttachMode::Evictable);
    let pinned = buf.attach(AttachMode::Async);
    let f = commit(&buf, Access::Write);
    assert!(matches!(buf.try_evict(), Err(AttachError::Pending { .. })));
    f.signal().unwrap();
    assert!(
        matches!(buf.try_evict(), Err(AttachError::Pinned { attachment, .. }) if attachment == pinned.id())
    );
    drop(pinned);
    {
        // Reserved by someone: busy.
        let mut t = Ticket::reservation();
        let list = [(&buf, Access::Read)];
        let _r = t.reserve(&list, 1).unwrap();
        assert!(matches!(buf.try_evict(), Err(AttachError::Busy { .. })));
    }
    buf.try_evict().unwrap();
    assert!(buf.is_evicted());
    // The importer's map reports Evicted; it backs off and retries later.
    let object = buf.reservation().id();
    assert_eq!(
        evictable.map(Access::Read, None, || {}).unwrap_err(),
        AttachError::Evicted { object }
    );
    buf.restore();
    evictable.map(Access::Read, None, || {}).unwrap();
    // An evictable attachment can pin the buffer too.
    evictable.set_allow_evict(false);
    assert!(matches!(buf.try_evict(), Err(AttachError::Pinned { .. })));
}
