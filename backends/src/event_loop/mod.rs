//! Event-loop integration: bufsync's waits driven by the application's own
//! loop (calloop, a raw epoll loop, a game loop), so that bufsync starts no
//! thread of its own.
//!
//! By default two threads start lazily: the reactor's (`bufsync-reactor`,
//! fd-based fences: sync_files, syncobj eventfds) and the runtime fence
//! engine's (`bufsync-fence-engine`, polled fences such as seqno words and
//! Vulkan timeline points, and stuck-fence reports). An application that
//! calls [`drive_from_event_loop`] before anything else of bufsync gets one
//! [`Dispatcher`] instead: a pollable fd (readable when a registered fence
//! fd is ready or the engine has work due, through a timerfd) and
//! [`Dispatcher::dispatch`], which does that work without blocking. With
//! the `calloop` feature, [`calloop::FenceSource`] is the same as a calloop
//! `EventSource` (as Smithay does for its DRM sync points).
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! let d = bufsync_backends::event_loop::drive_from_event_loop()?;
//! // ... register d.as_fd() for reading in the application's loop, then on
//! // every wake-up:
//! d.dispatch()?;
//! # Ok::<(), bufsync_backends::Error>(())
//! ```
//!
//! In this mode a runtime fence of an fd or polled kind signals only from
//! `dispatch`: the loop's own thread must not block in `Fence::wait_timeout`
//! on one (it would time out); it adds a callback instead, or waits on the
//! kernel object itself (`SyncFile::wait`, `vulkan::wait_fence`).
//!
//! Kernel counterpart: none; the kernel signals `dma_fence` callbacks from
//! interrupt context. This is user space's version of "who runs the
//! callbacks": the application's loop.
//!
//! Locking: the dispatcher holds no lock of its own; the reactor's and the
//! engine's locks are taken inside their own calls, never across a
//! callback. `dispatch` may be called from any thread, also concurrently
//! (each fired registration runs once).

#[cfg(feature = "calloop")]
pub mod calloop;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bufsync::fence::engine::{self, Engine};
use rustix::event::epoll;
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

use crate::error::{Error, Result};
use crate::reactor::{self, Reactor};

/// epoll data of the reactor's epoll fd in the dispatcher's set.
const REACTOR: u64 = 1;
/// epoll data of the engine's timerfd.
const TIMER: u64 = 2;

/// The application's handle on bufsync's waits: poll [`as_fd`](Self::as_fd)
/// for reading, call [`dispatch`](Self::dispatch) when it is readable.
#[derive(Debug)]
pub struct Dispatcher {
    poll: OwnedFd,
    timer: Arc<OwnedFd>,
    reactor: &'static Reactor,
    engine: &'static Engine,
}

static DISPATCHER: OnceLock<Dispatcher> = OnceLock::new();

/// Arms `timer` for the earlier of the engine's and the reactor's next
/// wake-up (disarms it when neither has one). No lock held across.
fn arm(timer: &OwnedFd, engine: &Engine, reactor: &Reactor) {
    let next = match (engine.next_wakeup(), reactor.next_deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // A zero it_value disarms a timerfd: "now" is 1 ns.
    let value = match next {
        None => Duration::ZERO,
        Some(at) => at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1)),
    };
    let spec = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: value.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: value.subsec_nanos() as _,
        },
    };
    if let Err(e) = timerfd_settime(timer, TimerfdTimerFlags::empty(), &spec) {
        log::error!("event loop: timerfd_settime: {e}");
    }
}

/// Makes the reactor and the fence engine thread-less and returns the one
/// [`Dispatcher`] that drives them. Must come before anything of bufsync
/// uses either ([`Error::AlreadyRunning`] otherwise; bufsync then keeps its
/// threads). A second call returns the same dispatcher.
pub fn drive_from_event_loop() -> Result<&'static Dispatcher> {
    if let Some(d) = DISPATCHER.get() {
        return Ok(d);
    }
    let timer = Arc::new(
        timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )
        .map_err(|e| Error::io("timerfd_create", e.into()))?,
    );
    let poll = epoll::create(epoll::CreateFlags::CLOEXEC)
        .map_err(|e| Error::io("epoll_create1", e.into()))?;
    epoll::add(
        &poll,
        &*timer,
        epoll::EventData::new_u64(TIMER),
        epoll::EventFlags::IN,
    )
    .map_err(|e| Error::io("EPOLL_CTL_ADD(timerfd)", e.into()))?;
    let reactor = reactor::drive_externally()?;
    epoll::add(
        &poll,
        reactor.epoll_fd(),
        epoll::EventData::new_u64(REACTOR),
        epoll::EventFlags::IN,
    )
    .map_err(|e| Error::io("EPOLL_CTL_ADD(reactor)", e.into()))?;
    let waker_timer = Arc::clone(&timer);
    let engine = match engine::drive_externally(move || {
        arm(&waker_timer, engine::global(), reactor);
    }) {
        Ok(e) => e,
        Err(_) => {
            // The engine runs on its own thread already; the reactor must
            // not be left without a driver.
            reactor.spawn_thread();
            return Err(Error::AlreadyRunning {
                what: "the fence engine",
            });
        }
    };
    Ok(DISPATCHER.get_or_init(|| Dispatcher {
        poll,
        timer,
        reactor,
        engine,
    }))
}

/// The dispatcher, if [`drive_from_event_loop`] made one.
pub fn dispatcher() -> Option<&'static Dispatcher> {
    DISPATCHER.get()
}

impl Dispatcher {
    /// Does the work that is due, without blocking: runs the callbacks of
    /// fence fds that became ready (signaling their fences), polls the
    /// engine's polled fences that are due and reports stuck ones, then
    /// re-arms the timer. Returns how many fd registrations fired.
    pub fn dispatch(&self) -> Result<usize> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&*self.timer, &mut buf) {
            Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(Error::io("read(timerfd)", e.into())),
        }
        let fired = self.reactor.run_once(Duration::ZERO)?;
        self.engine.run_once(Instant::now());
        arm(&self.timer, self.engine, self.reactor);
        Ok(fired)
    }

    /// How long the loop may sleep before work is due (`None`: until the
    /// fd says so), for loops that sleep with a timeout rather than poll
    /// the fd's timer.
    pub fn next_timeout(&self) -> Option<Duration> {
        let next = match (self.engine.next_wakeup(), self.reactor.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The reactor it drives.
    pub fn reactor(&self) -> &'static Reactor {
        self.reactor
    }

    /// The fence engine it drives.
    pub fn engine(&self) -> &'static Engine {
        self.engine
    }
}

impl AsFd for Dispatcher {
    /// Readable when [`dispatch`](Dispatcher::dispatch) has work: an epoll
    /// set of the reactor's epoll fd and the engine's timerfd.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poll.as_fd()
    }
}
