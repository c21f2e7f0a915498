//! The dispatcher as a calloop `EventSource` (feature `calloop`), as
//! Smithay wraps its DRM sync points: insert a [`FenceSource`] into the
//! application's `calloop::EventLoop` and bufsync's waits run from that
//! loop. Each wake-up dispatches; the callback is told how many fence fds
//! fired.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bufsync_backends::event_loop::calloop::FenceSource;
//! let mut event_loop: calloop::EventLoop<()> = calloop::EventLoop::try_new()?;
//! let source = FenceSource::new()?; // drive_from_event_loop() underneath
//! event_loop
//!     .handle()
//!     .insert_source(source, |_fired, _, _| {})
//!     .map_err(|e| e.error)?;
//! event_loop.dispatch(Some(std::time::Duration::from_millis(16)), &mut ())?;
//! # Ok(()) }
//! ```
//!
//! Locking: none of its own (see the parent module).

use calloop::generic::Generic;
use calloop::{EventSource, Interest, Mode, Poll, PostAction, Readiness, Token, TokenFactory};

use super::{drive_from_event_loop, Dispatcher};
use crate::error::Result;

/// bufsync's fence waits as one calloop event source.
#[derive(Debug)]
pub struct FenceSource {
    inner: Generic<&'static Dispatcher, crate::Error>,
    dispatcher: &'static Dispatcher,
}

impl FenceSource {
    /// The source over the process's [`Dispatcher`] (made by
    /// [`drive_from_event_loop`] if it was not yet).
    pub fn new() -> Result<FenceSource> {
        let dispatcher = drive_from_event_loop()?;
        Ok(FenceSource {
            inner: Generic::new_with_error(dispatcher, Interest::READ, Mode::Level),
            dispatcher,
        })
    }
}

impl EventSource for FenceSource {
    /// How many fence fd registrations fired in this dispatch.
    type Event = usize;
    type Metadata = ();
    type Ret = ();
    type Error = crate::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> std::result::Result<PostAction, Self::Error>
    where
        F: FnMut(usize, &mut ()),
    {
        let dispatcher = self.dispatcher;
        self.inner.process_events(readiness, token, |_, _| {
            let fired = dispatcher.dispatch()?;
            callback(fired, &mut ());
            Ok(PostAction::Continue)
        })
    }

    fn register(&mut self, poll: &mut Poll, tokens: &mut TokenFactory) -> calloop::Result<()> {
        self.inner.register(poll, tokens)
    }

    fn reregister(&mut self, poll: &mut Poll, tokens: &mut TokenFactory) -> calloop::Result<()> {
        self.inner.reregister(poll, tokens)
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.inner.unregister(poll)
    }
}
