//! One shared epoll reactor for every fd-based fence (sync_files, syncobj
//! eventfds): software signaling without a thread per fence.
//!
//! The reactor thread starts lazily on first registration. Each
//! registration is one-shot (`EPOLLONESHOT`): when its fd becomes ready the
//! entry is removed and its callback runs on the reactor thread. The entry
//! owns a reference to the fd's owner, so the fd stays open while
//! registered. Waits are bounded: `epoll_wait` wakes at least every
//! [`TICK`] so the thread notices shutdown-free idle periods cheaply, and
//! fences bound their own lives through the runtime's engine deadlines
//! (cancelling their entry when the deadline signals them).
//!
//! Locking: `entries` (one mutex) guards the token -> entry map. It is
//! never held while a callback runs or while an epoll syscall blocks;
//! `register`/`cancel` take it briefly. Callbacks may call `register` or
//! `cancel` again.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustix::event::epoll;

use crate::error::{Error, Result};

/// Longest single `epoll_wait`.
pub const TICK: Duration = Duration::from_secs(1);

/// Identifies one registration (for [`Reactor::cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

type Callback = Box<dyn FnOnce() + Send>;

struct Entry {
    source: Arc<dyn AsFd + Send + Sync>,
    callback: Callback,
}

/// The epoll reactor.
pub struct Reactor {
    epoll: OwnedFd,
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("pending", &self.pending())
            .finish()
    }
}

impl Reactor {
    fn new() -> Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| Error::io("epoll_create1", e.into()))?;
        Ok(Self {
            epoll,
            entries: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `callback` once on the reactor thread when `source`'s fd is
    /// readable (POLLIN, or an error/hang-up). `source` is kept alive until
    /// then or until [`cancel`](Reactor::cancel). Lock: `entries`, briefly.
    pub fn register(
        &self,
        source: Arc<dyn AsFd + Send + Sync>,
        callback: impl FnOnce() + Send + 'static,
    ) -> Result<Token> {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        // Insert first: the event may fire before `add` returns.
        let fd_source = Arc::clone(&source);
        self.lock().insert(
            token,
            Entry {
                source,
                callback: Box::new(callback),
            },
        );
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ONESHOT;
        if let Err(e) = epoll::add(
            &self.epoll,
            fd_source.as_fd(),
            epoll::EventData::new_u64(token),
            flags,
        ) {
            self.lock().remove(&token);
            return Err(Error::io("EPOLL_CTL_ADD", e.into()));
        }
        Ok(Token(token))
    }

    /// Removes a registration that has not fired; false if it already fired
    /// (or is firing). The callback is dropped unrun. Lock: `entries`.
    pub fn cancel(&self, token: Token) -> bool {
        let entry = self.lock().remove(&token.0);
        match entry {
            Some(e) => {
                let _ = epoll::delete(&self.epoll, e.source.as_fd());
                true
            }
            None => false,
        }
    }

    /// Number of registrations waiting to fire. Lock: `entries`.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// One round: waits at most `timeout` and runs the ready callbacks.
    /// Returns how many ran. Lock: `entries`, not held while callbacks run.
    pub fn run_once(&self, timeout: Duration) -> Result<usize> {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            Some(&ts),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("epoll_wait", e.into())),
        }
        let mut ready = Vec::with_capacity(events.len());
        {
            let mut entries = self.lock();
            for ev in &events {
                let data = ev.data;
                if let Some(entry) = entries.remove(&data.u64()) {
                    ready.push(entry);
                }
            }
        }
        let n = ready.len();
        for entry in ready {
            let _ = epoll::delete(&self.epoll, entry.source.as_fd());
            (entry.callback)();
        }
        Ok(n)
    }

    fn thread_main(&self) {
        loop {
            if let Err(e) = self.run_once(TICK) {
                log::error!("reactor: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
}

/// The process-wide reactor; its thread starts on first use.
pub fn global() -> Result<&'static Reactor> {
    static GLOBAL: OnceLock<std::result::Result<&'static Reactor, String>> = OnceLock::new();
    let r = GLOBAL.get_or_init(|| {
        let reactor: &'static Reactor =
            Box::leak(Box::new(Reactor::new().map_err(|e| e.to_string())?));
        std::thread::Builder::new()
            .name("bufsync-reactor".into())
            .spawn(move || reactor.thread_main())
            .map_err(|e| format!("cannot start the reactor thread: {e}"))?;
        Ok(reactor)
    });
    r.as_ref()
        .copied()
        .map_err(|what| Error::InvalidArgument { what: what.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn eventfd() -> Arc<OwnedFd> {
        Arc::new(rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap())
    }

    #[test]
    fn fires_once_when_readable() {
        let r = global().unwrap();
        let efd = eventfd();
        let (tx, rx) = mpsc::channel();
        r.register(efd.clone(), move || tx.send(()).unwrap())
            .unwrap();
        rustix::io::write(&*efd, &1u64.to_ne_bytes()).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // One-shot: the callback was consumed.
        assert!(rx.recv_timeout(Duration::from_millis(20)).is_err());
    }

    #[test]
    fn cancel_drops_the_callback_unrun() {
        let r = Reactor::new().unwrap(); // private, not driven by a thread
        let efd = eventfd();
        let token = r
            .register(efd.clone(), || panic!("cancelled callback ran"))
            .unwrap();
        assert_eq!(r.pending(), 1);
        assert!(r.cancel(token));
        assert!(!r.cancel(token));
        rustix::io::write(&*efd, &1u64.to_ne_bytes()).unwrap();
        assert_eq!(r.run_once(Duration::ZERO).unwrap(), 0);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn run_once_runs_ready_callbacks() {
        let r = Reactor::new().unwrap();
        let (a, b) = (eventfd(), eventfd());
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        r.register(a.clone(), move || tx.send('a').unwrap())
            .unwrap();
        r.register(b.clone(), move || tx2.send('b').unwrap())
            .unwrap();
        rustix::io::write(&*b, &1u64.to_ne_bytes()).unwrap();
        assert_eq!(r.run_once(Duration::from_secs(1)).unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap(), 'b');
        assert_eq!(r.pending(), 1);
    }
}
