//! One shared epoll reactor for every fd-based fence (sync_files, syncobj
//! eventfds): software signaling without a thread per fence, with bounded
//! lives.
//!
//! The reactor thread starts lazily on first use, unless the application
//! drives the reactor from its own event loop
//! ([`crate::event_loop::drive_from_event_loop`]); then no thread starts and
//! [`Reactor::run_once`] runs from the application's dispatch. Each
//! registration is
//! one-shot (`EPOLLONESHOT`) and may carry a deadline: its callback runs
//! once on the reactor thread with [`Outcome::Ready`] when the fd becomes
//! readable, or [`Outcome::Expired`] when the deadline passes first. The
//! entry owns a reference to the fd's owner, so the fd stays open exactly
//! as long as it is registered: a fired, expired or cancelled entry lets
//! it go at once (no fd outlives its fence's completion).
//!
//! Locking: `state` (one mutex) guards the token -> entry map and the
//! earliest deadline. It is never held while a callback runs or while
//! `epoll_wait` blocks; `register`/`cancel` take it briefly. Callbacks may
//! call `register` or `cancel` again.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::epoll;

use crate::error::{Error, Result};

/// Longest single `epoll_wait` of the reactor thread.
pub const TICK: Duration = Duration::from_secs(1);

/// The epoll data of the internal wake-up eventfd (tokens start at 1).
const WAKE: u64 = 0;

/// Identifies one registration (for [`Reactor::cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

/// Why a registration's callback runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The fd became readable (or reported an error / hang-up).
    Ready,
    /// The deadline passed first.
    Expired,
}

type Callback = Box<dyn FnOnce(Outcome) + Send>;

struct Entry {
    source: Arc<dyn AsFd + Send + Sync>,
    deadline: Option<Instant>,
    callback: Callback,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    next_deadline: Option<Instant>,
}

/// The epoll reactor.
pub struct Reactor {
    epoll: OwnedFd,
    wake: OwnedFd,
    state: Mutex<State>,
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
    /// A reactor not driven by any thread (drive it with
    /// [`run_once`](Reactor::run_once)); most users want [`global`].
    pub fn new() -> Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| Error::io("epoll_create1", e.into()))?;
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| Error::io("eventfd", e.into()))?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )
        .map_err(|e| Error::io("EPOLL_CTL_ADD", e.into()))?;
        Ok(Self {
            epoll,
            wake,
            state: Mutex::new(State::default()),
            next: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `callback` once on the reactor thread: with
    /// [`Outcome::Ready`] when `source`'s fd is readable, or with
    /// [`Outcome::Expired`] once `deadline` passes first. `source` is kept
    /// alive until then or until [`cancel`](Reactor::cancel). Lock: `state`,
    /// briefly.
    pub fn register(
        &self,
        source: Arc<dyn AsFd + Send + Sync>,
        deadline: Option<Instant>,
        callback: impl FnOnce(Outcome) + Send + 'static,
    ) -> Result<Token> {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let fd_source = Arc::clone(&source);
        let earlier = {
            // Insert first: the event may fire before `add` returns.
            let mut s = self.lock();
            s.entries.insert(
                token,
                Entry {
                    source,
                    deadline,
                    callback: Box::new(callback),
                },
            );
            match (deadline, s.next_deadline) {
                (Some(d), Some(n)) if d >= n => false,
                (Some(d), _) => {
                    s.next_deadline = Some(d);
                    true
                }
                (None, _) => false,
            }
        };
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ONESHOT;
        if let Err(e) = epoll::add(
            &self.epoll,
            fd_source.as_fd(),
            epoll::EventData::new_u64(token),
            flags,
        ) {
            self.lock().entries.remove(&token);
            return Err(Error::io("EPOLL_CTL_ADD", e.into()));
        }
        if earlier {
            // The thread may sleep past this deadline: wake it.
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
        Ok(Token(token))
    }

    /// Removes a registration that has not fired; false if it already fired
    /// (or is firing). The callback is dropped unrun and the source let go.
    /// Lock: `state`, briefly.
    pub fn cancel(&self, token: Token) -> bool {
        let entry = self.lock().entries.remove(&token.0);
        match entry {
            Some(e) => {
                let _ = epoll::delete(&self.epoll, e.source.as_fd());
                true
            }
            None => false,
        }
    }

    /// Number of registrations waiting to fire. Lock: `state`, briefly.
    pub fn pending(&self) -> usize {
        self.lock().entries.len()
    }

    /// The earliest deadline of a registration, if any. Lock: `state`,
    /// briefly.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().next_deadline
    }

    /// The epoll fd: readable when a registered fd is ready or an earlier
    /// deadline was registered (what an event loop polls).
    pub fn epoll_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.epoll.as_fd()
    }

    /// One round: waits at most `timeout` (less when a deadline is due),
    /// runs the callbacks of ready and expired entries and returns how many
    /// ran. Lock: `state`, not held while waiting or running callbacks.
    pub fn run_once(&self, timeout: Duration) -> Result<usize> {
        let now = Instant::now();
        let timeout = match self.lock().next_deadline {
            Some(d) => timeout.min(d.saturating_duration_since(now)),
            None => timeout,
        };
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
        let mut fired: Vec<(Entry, Outcome)> = Vec::with_capacity(events.len());
        {
            let mut s = self.lock();
            for ev in &events {
                let data = ev.data;
                let token = data.u64();
                if token == WAKE {
                    let mut buf = [0u8; 8];
                    let _ = rustix::io::read(&self.wake, &mut buf);
                } else if let Some(entry) = s.entries.remove(&token) {
                    fired.push((entry, Outcome::Ready));
                }
            }
            let now = Instant::now();
            if s.next_deadline.is_some_and(|d| d <= now) {
                let expired: Vec<u64> = s
                    .entries
                    .iter()
                    .filter(|(_, e)| e.deadline.is_some_and(|d| d <= now))
                    .map(|(t, _)| *t)
                    .collect();
                for t in expired {
                    if let Some(entry) = s.entries.remove(&t) {
                        fired.push((entry, Outcome::Expired));
                    }
                }
                s.next_deadline = s.entries.values().filter_map(|e| e.deadline).min();
            }
        }
        let n = fired.len();
        for (entry, outcome) in fired {
            let _ = epoll::delete(&self.epoll, entry.source.as_fd());
            (entry.callback)(outcome);
        }
        Ok(n)
    }

    /// Starts a thread that drives this reactor (`bufsync-reactor`).
    pub(crate) fn spawn_thread(&'static self) {
        if let Err(e) = std::thread::Builder::new()
            .name("bufsync-reactor".into())
            .spawn(move || self.thread_main())
        {
            log::error!("cannot start the reactor thread: {e}");
        }
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

static GLOBAL: OnceLock<std::result::Result<&'static Reactor, String>> = OnceLock::new();

/// The process-wide reactor; its thread (`bufsync-reactor`) starts on first
/// use, unless [`drive_externally`] came first.
pub fn global() -> Result<&'static Reactor> {
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
        .map_err(|what| Error::ReactorUnavailable { what: what.clone() })
}

/// Makes the process-wide reactor thread-less: the caller runs
/// [`Reactor::run_once`] when its [`epoll_fd`](Reactor::epoll_fd) is
/// readable. Must come before anything uses the reactor
/// ([`Error::AlreadyRunning`] otherwise).
pub fn drive_externally() -> Result<&'static Reactor> {
    let mut made = None;
    let r = GLOBAL.get_or_init(|| {
        made = Some(());
        Reactor::new()
            .map(|r| &*Box::leak(Box::new(r)))
            .map_err(|e| e.to_string())
    });
    if made.is_none() {
        return Err(Error::AlreadyRunning {
            what: "the reactor",
        });
    }
    r.as_ref()
        .copied()
        .map_err(|what| Error::ReactorUnavailable { what: what.clone() })
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
        r.register(efd.clone(), None, move |o| tx.send(o).unwrap())
            .unwrap();
        rustix::io::write(&*efd, &1u64.to_ne_bytes()).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Outcome::Ready
        );
        // One-shot: the callback was consumed.
        assert!(rx.recv_timeout(Duration::from_millis(20)).is_err());
    }

    #[test]
    fn cancel_drops_the_callback_unrun() {
        let r = Reactor::new().unwrap(); // private, not driven by a thread
        let efd = eventfd();
        let token = r
            .register(efd.clone(), None, |_| panic!("cancelled callback ran"))
            .unwrap();
        assert_eq!(r.pending(), 1);
        assert_eq!(Arc::strong_count(&efd), 2);
        assert!(r.cancel(token));
        assert!(!r.cancel(token));
        assert_eq!(Arc::strong_count(&efd), 1, "the source is let go");
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
        r.register(a.clone(), None, move |_| tx.send('a').unwrap())
            .unwrap();
        r.register(b.clone(), None, move |_| tx2.send('b').unwrap())
            .unwrap();
        rustix::io::write(&*b, &1u64.to_ne_bytes()).unwrap();
        assert_eq!(r.run_once(Duration::from_secs(1)).unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap(), 'b');
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn deadline_expires_unready_entries() {
        let r = Reactor::new().unwrap();
        let (never, later) = (eventfd(), eventfd());
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        r.register(never.clone(), Some(Instant::now()), move |o| {
            tx.send(("never", o)).unwrap()
        })
        .unwrap();
        r.register(
            later.clone(),
            Some(Instant::now() + Duration::from_secs(3600)),
            move |o| tx2.send(("later", o)).unwrap(),
        )
        .unwrap();
        assert_eq!(r.run_once(Duration::from_secs(1)).unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap(), ("never", Outcome::Expired));
        assert_eq!(Arc::strong_count(&never), 1);
        assert_eq!(r.pending(), 1);
    }
}
