//! The atomic request builder and the `DRM_IOCTL_MODE_ATOMIC` call: plain
//! property values, `IN_FENCE_FD` (a borrowed, checked [`SyncFile`]) and out-fence
//! pointers (`OUT_FENCE_PTR`, `WRITEBACK_OUT_FENCE_PTR`) whose sync_files
//! come back owned.
//!
//! Locking: an [`AtomicRequest`] is plain data owned by its builder. The
//! ioctl is serialized by the kernel (the CRTC's commit queue); a second
//! non-blocking commit while one is pending gets EBUSY, which
//! `Display::commit` handles by waiting for the previous flip.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::error::KmsError;
use crate::sync_file::SyncFile;

/// `DRM_MODE_PAGE_FLIP_EVENT`.
const PAGE_FLIP_EVENT: u32 = 0x01;
/// `DRM_MODE_ATOMIC_TEST_ONLY`.
const ATOMIC_TEST_ONLY: u32 = 0x0100;
/// `DRM_MODE_ATOMIC_NONBLOCK`.
const ATOMIC_NONBLOCK: u32 = 0x0200;
/// `DRM_MODE_ATOMIC_ALLOW_MODESET`.
const ATOMIC_ALLOW_MODESET: u32 = 0x0400;

/// The flags of one atomic commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitFlags {
    /// `DRM_MODE_ATOMIC_NONBLOCK`: return at once; the flip completes later.
    pub nonblock: bool,
    /// `DRM_MODE_PAGE_FLIP_EVENT`: queue a flip-complete event on the fd.
    pub page_flip_event: bool,
    /// `DRM_MODE_ATOMIC_TEST_ONLY`: validate only; nothing changes and no
    /// out-fence is created.
    pub test_only: bool,
    /// `DRM_MODE_ATOMIC_ALLOW_MODESET`: the commit may change modes and
    /// routing (connectors, ACTIVE).
    pub allow_modeset: bool,
}

impl CommitFlags {
    /// The raw `flags` word of `struct drm_mode_atomic`.
    pub fn bits(self) -> u32 {
        let mut bits = 0;
        if self.nonblock {
            bits |= ATOMIC_NONBLOCK;
        }
        if self.page_flip_event {
            bits |= PAGE_FLIP_EVENT;
        }
        if self.test_only {
            bits |= ATOMIC_TEST_ONLY;
        }
        if self.allow_modeset {
            bits |= ATOMIC_ALLOW_MODESET;
        }
        bits
    }
}

/// Where an out-fence is asked for: the object and its pointer property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutFenceSlot {
    object: u32,
    prop: u32,
}

/// One atomic request: (object, property) -> value, plus the in-fences it
/// borrows (for `'f`) and the out-fences it asks for.
#[derive(Debug, Clone, Default)]
pub struct AtomicRequest<'f> {
    values: BTreeMap<u32, BTreeMap<u32, u64>>,
    out_fences: Vec<OutFenceSlot>,
    _in_fences: PhantomData<&'f SyncFile>,
}

/// What a successful commit gave back.
#[derive(Debug, Default)]
pub struct CommitOutcome {
    /// (object id, sync_file) for every out-fence asked for; empty after a
    /// TEST_ONLY commit (the kernel creates none).
    pub out_fences: Vec<(u32, SyncFile)>,
}

impl CommitOutcome {
    /// Takes the out-fence of `object`, if one came back.
    pub fn take(&mut self, object: u32) -> Option<SyncFile> {
        let i = self.out_fences.iter().position(|(o, _)| *o == object)?;
        Some(self.out_fences.swap_remove(i).1)
    }
}

impl<'f> AtomicRequest<'f> {
    /// An empty request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `prop` of `object` to `value` (a later call for the same pair
    /// replaces the value).
    pub fn set(&mut self, object: u32, prop: u32, value: u64) -> &mut Self {
        self.values.entry(object).or_default().insert(prop, value);
        self
    }

    /// The value set for (`object`, `prop`), if any.
    pub fn get(&self, object: u32, prop: u32) -> Option<u64> {
        self.values.get(&object).and_then(|m| m.get(&prop)).copied()
    }

    /// Removes (`object`, `prop`) from the request (and any out-fence slot
    /// on it).
    pub fn unset(&mut self, object: u32, prop: u32) -> &mut Self {
        if let Some(m) = self.values.get_mut(&object) {
            m.remove(&prop);
            if m.is_empty() {
                self.values.remove(&object);
            }
        }
        self.out_fences
            .retain(|s| !(s.object == object && s.prop == prop));
        self
    }

    /// Sets the plane's `IN_FENCE_FD` property (`prop`) to `fence`: the
    /// scanout waits for it. The sync_file is only borrowed (for the
    /// request's lifetime); the kernel takes its own reference at commit.
    /// (A raw value, e.g. to see the kernel refuse a non-sync_file, can be
    /// put with [`set`](Self::set).)
    pub fn in_fence(&mut self, plane: u32, prop: u32, fence: &'f SyncFile) -> &mut Self {
        // IN_FENCE_FD is a signed range property: the fd number as an i64.
        self.set(plane, prop, fence.fd().as_raw_fd() as i64 as u64)
    }

    /// Asks for an out-fence through pointer property `prop` of `object`
    /// (`OUT_FENCE_PTR` on a CRTC, `WRITEBACK_OUT_FENCE_PTR` on a
    /// writeback connector). The pointer is filled in at commit time.
    pub fn out_fence(&mut self, object: u32, prop: u32) -> &mut Self {
        self.set(object, prop, 0);
        let slot = OutFenceSlot { object, prop };
        if !self.out_fences.contains(&slot) {
            self.out_fences.push(slot);
        }
        self
    }

    /// Whether the request sets nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Issues `DRM_IOCTL_MODE_ATOMIC` on `dev` (a primary node with the
    /// atomic client cap). Kernel refusals are [`KmsError::Commit`]
    /// (EBUSY included: retrying is the caller's choice) or, for a
    /// TEST_ONLY request, [`KmsError::TestFailed`]. Out-fences are owned
    /// sync_files; on failure the kernel has already closed any it made.
    pub fn commit(
        &self,
        dev: BorrowedFd<'_>,
        flags: CommitFlags,
    ) -> Result<CommitOutcome, KmsError> {
        // The kernel writes each out-fence fd through a user pointer: one
        // i32 per slot, -1 until it does. The slots outlive the ioctl.
        let mut fence_fds: Vec<i32> = vec![-1; self.out_fences.len()];
        let mut objs = Vec::with_capacity(self.values.len());
        let mut counts = Vec::with_capacity(self.values.len());
        let mut props = Vec::new();
        let mut values = Vec::new();
        for (&obj, map) in &self.values {
            objs.push(obj);
            counts.push(map.len() as u32);
            for (&prop, &value) in map {
                let value = match self
                    .out_fences
                    .iter()
                    .position(|s| s.object == obj && s.prop == prop)
                {
                    Some(i) => (&mut fence_fds[i] as *mut i32) as u64,
                    None => value,
                };
                props.push(prop);
                values.push(value);
            }
        }
        let bits = flags.bits();
        log::trace!(
            "atomic commit flags {bits:#x}: {} objects, {} properties",
            objs.len(),
            props.len()
        );
        let result = drm_ffi::mode::atomic_commit(
            dev,
            bits,
            &mut objs,
            &mut counts,
            &mut props,
            &mut values,
        );
        if let Err(source) = result {
            log::debug!("atomic commit (flags {bits:#x}) failed: {source}");
            return Err(if flags.test_only {
                KmsError::TestFailed { source }
            } else {
                KmsError::Commit {
                    flags: bits,
                    source,
                }
            });
        }
        let mut outcome = CommitOutcome::default();
        for (slot, &raw) in self.out_fences.iter().zip(&fence_fds) {
            if raw < 0 {
                continue;
            }
            // SAFETY: after a successful DRM_IOCTL_MODE_ATOMIC the kernel
            // has installed a new sync_file fd in this process and written
            // its number to our slot (it writes nothing for TEST_ONLY, and
            // the slot started at -1); nothing else owns that fd.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            outcome
                .out_fences
                .push((slot.object, SyncFile::from_fd_unchecked(fd)));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_bits_match_uapi() {
        assert_eq!(CommitFlags::default().bits(), 0);
        let all = CommitFlags {
            nonblock: true,
            page_flip_event: true,
            test_only: true,
            allow_modeset: true,
        };
        assert_eq!(all.bits(), 0x0701);
    }

    #[test]
    fn request_set_replace_unset() {
        let mut req = AtomicRequest::new();
        req.set(31, 5, 1)
            .set(31, 5, 2)
            .set(40, 1, 9)
            .out_fence(40, 7);
        assert_eq!(req.get(31, 5), Some(2));
        req.unset(40, 7);
        assert!(req.out_fences.is_empty());
        req.unset(40, 1).unset(31, 5);
        assert!(req.is_empty());
    }
}
