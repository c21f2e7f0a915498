//! CPU access through a mapping, bracketed as the kernel wants: first wait
//! for the fences the access must respect (readers wait for writers,
//! writers for everyone), then `DMA_BUF_IOCTL_SYNC` START; at the end,
//! SYNC END. Waits come before cache maintenance, never after (the 2012
//! review's rule for synchronous importers).
//!
//! Locking: none here (the runtime reservation is read as a lock-free
//! snapshot); the guard borrows the buffer. The kernel's own SYNC
//! START also waits for implicit fences, but without a bound: the bounded
//! poll first makes a foreign fence that never signals a timeout error
//! instead of a hung thread.

use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::{Access, DmaBuf};
use crate::error::{ioctl_err, Error, Result};
use crate::sys;

/// An open CPU-access session; ended by [`CpuAccess::end`] or on drop.
#[derive(Debug)]
#[must_use = "dropping the guard ends the CPU access at once"]
pub struct CpuAccess<'a> {
    buf: &'a DmaBuf,
    access: Access,
    open: bool,
}

impl DmaBuf {
    /// Waits (at most `timeout`) for the kernel fences `access` must
    /// respect: POLLIN (the writers) for reading, POLLOUT (all) for writing.
    /// [`Error::TimedOut`] when they do not signal in time.
    pub fn wait_idle(&self, access: Access, timeout: Duration) -> Result<()> {
        use std::os::fd::AsRawFd;
        let events = match access {
            Access::Read => PollFlags::IN,
            Access::Write => PollFlags::OUT,
        };
        match crate::sys::poll::poll_one(std::os::fd::AsFd::as_fd(self), events, Some(timeout)) {
            Ok(Some(r)) if r.contains(PollFlags::NVAL) => Err(Error::BadFd {
                fd: self.fd().as_raw_fd(),
            }),
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::TimedOut {
                what: "dma-buf implicit fences",
            }),
            Err(e) => Err(Error::io("poll(dma-buf)", e)),
        }
    }

    /// Begins CPU access: waits (bounded by `timeout` in all) for the
    /// fences the direction must respect, first the runtime reservation's
    /// (`dma_resv_usage_rw`), then the kernel's (poll), then
    /// `DMA_BUF_IOCTL_SYNC` START. A runtime fence that signaled with an
    /// error gives [`Error::Fence`].
    pub fn begin_cpu_access(&self, access: Access, timeout: Duration) -> Result<CpuAccess<'_>> {
        use std::os::fd::AsRawFd;
        let deadline = Instant::now() + timeout;
        let usage = bufsync::resv::Usage::for_access(access == Access::Write);
        self.reservation()
            .wait(usage, Some(timeout))
            .map_err(|e| match e {
                bufsync::resv::ResvWaitError::Fence(f) => Error::Fence(f),
                bufsync::resv::ResvWaitError::Pending { fence, waited } => Error::Pending {
                    what: "dma-buf runtime fences",
                    fence,
                    waited,
                },
            })?;
        self.wait_idle(access, deadline.saturating_duration_since(Instant::now()))?;
        let flags = sys::dma_buf::SYNC_START | access.sync_flags();
        loop {
            match sys::dma_buf::sync(self.fd(), flags) {
                Ok(()) => {
                    return Ok(CpuAccess {
                        buf: self,
                        access,
                        open: true,
                    })
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => {
                    continue
                }
                Err(e) => {
                    return Err(ioctl_err(
                        "DMA_BUF_IOCTL_SYNC(START)",
                        self.fd().as_raw_fd(),
                    )(e))
                }
            }
        }
    }
}

impl CpuAccess<'_> {
    /// The direction of this session.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Ends the session: `DMA_BUF_IOCTL_SYNC` END.
    pub fn end(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        use std::os::fd::AsRawFd;
        if !std::mem::replace(&mut self.open, false) {
            return Ok(());
        }
        let flags = sys::dma_buf::SYNC_END | self.access.sync_flags();
        sys::dma_buf::sync(self.buf.fd(), flags).map_err(ioctl_err(
            "DMA_BUF_IOCTL_SYNC(END)",
            self.buf.fd().as_raw_fd(),
        ))
    }
}

impl Drop for CpuAccess<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("ending CPU access on dma-buf failed: {e}");
        }
    }
}
