//! Bad input that needs no device: typed errors, never a panic.

use std::os::fd::{AsRawFd, OwnedFd};

use bufsync_backends::dmabuf::DmaBuf;
use bufsync_backends::sync_file::SyncFile;
use bufsync_backends::Error;

fn memfd() -> OwnedFd {
    rustix::fs::memfd_create("bad-input", rustix::fs::MemfdFlags::CLOEXEC).unwrap()
}

#[test]
fn memfd_is_not_a_dmabuf() {
    let fd = memfd();
    let raw = fd.as_raw_fd();
    match DmaBuf::from_fd(fd) {
        Err(Error::NotADmaBuf { fd }) => assert_eq!(fd, raw),
        other => panic!("expected NotADmaBuf, got {other:?}"),
    }
}

#[test]
fn pipe_is_not_a_dmabuf_nor_a_sync_file() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    assert!(matches!(DmaBuf::from_fd(r), Err(Error::NotADmaBuf { .. })));
    assert!(matches!(
        SyncFile::from_fd(w),
        Err(Error::NotASyncFile { .. })
    ));
}

#[test]
fn memfd_is_not_a_sync_file() {
    assert!(matches!(
        SyncFile::from_fd(memfd()),
        Err(Error::NotASyncFile { .. })
    ));
}

#[test]
fn closed_fd_is_a_bad_fd() {
    // Far above any RLIMIT_NOFILE: surely closed, and no other thread of
    // the test binary can be handed this number meanwhile.
    // SAFETY: the number is not an open fd; the checks only issue syscalls
    // that fail with EBADF, and the BorrowedFd never closes anything.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(1 << 30) };
    assert!(matches!(DmaBuf::check(fd), Err(Error::BadFd { .. })));
    assert!(matches!(SyncFile::check(fd), Err(Error::BadFd { .. })));
}

#[test]
fn missing_driver_is_device_not_found() {
    assert!(matches!(
        bufsync_backends::drm::DrmDevice::find("no-such-driver"),
        Err(Error::DeviceNotFound { .. })
    ));
}
