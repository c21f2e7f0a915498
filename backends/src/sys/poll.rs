//! poll(2) on one fd with a time limit: the wait behind sync_files, a
//! dma-buf's implicit fences and the DRM event queue. No `unsafe`, no state.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

/// Polls `fd` for `events` until it is ready or `timeout` has passed
/// (`None`: no limit), retrying `EINTR` and early returns with the time
/// left. Returns the ready `revents` (`NVAL`, `ERR` and `HUP` included: the
/// caller decides what they mean), or `None` at the timeout.
pub fn poll_one(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> io::Result<Option<PollFlags>> {
    // A limit too far to represent is no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = left.map(|l| rustix::time::Timespec {
            tv_sec: l.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: l.subsec_nanos() as _,
        });
        let mut fds = [PollFd::new(&fd, events)];
        let expired = left.is_some_and(|l| l.is_zero());
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(n) if n > 0 => return Ok(Some(fds[0].revents())),
            Ok(_) | Err(rustix::io::Errno::INTR) if expired => return Ok(None),
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn ready_pipe_and_timeout() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let t = Instant::now();
        let got = poll_one(r.as_fd(), PollFlags::IN, Some(Duration::from_millis(20))).unwrap();
        assert_eq!(got, None);
        assert!(t.elapsed() >= Duration::from_millis(20));
        rustix::io::write(&w, b"x").unwrap();
        let got = poll_one(r.as_fd(), PollFlags::IN, None).unwrap();
        assert!(got.unwrap().contains(PollFlags::IN));
        let got = poll_one(r.as_fd(), PollFlags::IN, Some(Duration::ZERO)).unwrap();
        assert!(got.unwrap().contains(PollFlags::IN));
    }
}
