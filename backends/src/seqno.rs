//! `SeqnoFence`: a fence kind over a 32- or 64-bit seqno word in mapped
//! memory (a dma-buf mapping, or any mapping), signaled when
//! `(iN)(word - seqno) >= 0` (wrap-correct: the old kernel `seqno_fence`
//! rule). A GPU (the Vulkan backend) or a CPU producer writes the word.
//!
//! Waiting: [`SeqnoWord::wait`] spins briefly, then sleeps with exponential
//! back-off, bounded by a timeout; a CPU producer that advances the word
//! with [`SeqnoWord::advance`] also signals the runtime fences waiting on it
//! at once. Runtime fences of this kind need polling (`needs_polling`), so
//! the runtime's engine polls them with back-off when the GPU writes.
//!
//! Locking: the word is read and written with atomics only. Each word's
//! registered waiters live in one mutex (`waiters`), taken briefly by
//! `enable_signaling` and `advance`; fences are signaled after it is
//! released.

use std::any::Any;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bufsync::fence::{alloc_contexts, Fence, FenceError, FenceKind};
use memmap2::{MmapMut, MmapRaw};

use crate::dmabuf::DmaBuf;
use crate::error::{Error, Result};

/// Width of a seqno word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqnoWidth {
    /// A `u32` word; comparisons wrap at 2^32.
    U32,
    /// A `u64` word.
    U64,
}

impl SeqnoWidth {
    fn bytes(self) -> usize {
        match self {
            SeqnoWidth::U32 => 4,
            SeqnoWidth::U64 => 8,
        }
    }
}

/// `(iN)(value - seqno) >= 0` for the width: has `value` reached `seqno`?
pub fn seqno_passed(width: SeqnoWidth, value: u64, seqno: u64) -> bool {
    match width {
        SeqnoWidth::U32 => (value as u32).wrapping_sub(seqno as u32) as i32 >= 0,
        SeqnoWidth::U64 => value.wrapping_sub(seqno) as i64 >= 0,
    }
}

/// Mapped memory holding seqno words; kept alive by every word in it.
#[derive(Debug)]
pub struct SeqnoMemory {
    map: Mapping,
}

#[derive(Debug)]
enum Mapping {
    Raw(MmapRaw),
    Anon(MmapMut),
}

impl SeqnoMemory {
    /// `len` bytes of anonymous shared memory (zeroed).
    pub fn anonymous(len: usize) -> Result<Arc<Self>> {
        let map = memmap2::MmapOptions::new()
            .len(len.max(8))
            .map_anon()
            .map_err(|e| Error::io("mmap(anonymous)", e))?;
        Ok(Arc::new(Self {
            map: Mapping::Anon(map),
        }))
    }

    /// A writable shared mapping of a whole dma-buf.
    pub fn from_dmabuf(buf: &DmaBuf) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            map: Mapping::Raw(buf.map(true)?),
        }))
    }

    /// Any writable raw mapping.
    pub fn from_mmap(map: MmapRaw) -> Arc<Self> {
        Arc::new(Self {
            map: Mapping::Raw(map),
        })
    }

    fn base_len(&self) -> (*mut u8, usize) {
        match &self.map {
            Mapping::Raw(m) => (m.as_mut_ptr(), m.len()),
            Mapping::Anon(m) => (m.as_ptr() as *mut u8, m.len()),
        }
    }

    /// The word of `width` at byte `offset` (naturally aligned, inside the
    /// mapping; [`Error::InvalidArgument`] otherwise).
    pub fn word(self: &Arc<Self>, offset: usize, width: SeqnoWidth) -> Result<Arc<SeqnoWord>> {
        let (base, len) = self.base_len();
        let n = width.bytes();
        if offset % n != 0
            || offset.checked_add(n).map_or(true, |end| end > len)
            || (base as usize + offset) % n != 0
        {
            return Err(Error::InvalidArgument {
                what: format!("seqno word of {n} bytes at offset {offset} in {len} bytes"),
            });
        }
        Ok(Arc::new(SeqnoWord {
            mem: Arc::clone(self),
            offset,
            width,
            context: alloc_contexts(1),
            waiters: Mutex::new(Vec::new()),
        }))
    }
}

// SAFETY: the mapping is plain shared memory; all access to words goes
// through atomics (`SeqnoWord::load` / `store`).
unsafe impl Send for SeqnoMemory {}
// SAFETY: as above: concurrent access is only atomic loads and stores.
unsafe impl Sync for SeqnoMemory {}

/// One seqno word: a timeline whose value lives in memory.
#[derive(Debug)]
pub struct SeqnoWord {
    mem: Arc<SeqnoMemory>,
    offset: usize,
    width: SeqnoWidth,
    context: u64,
    waiters: Mutex<Vec<Fence>>,
}

impl SeqnoWord {
    /// The word's width.
    pub fn width(&self) -> SeqnoWidth {
        self.width
    }

    /// Byte offset in its memory.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The runtime fence context of this word's fences.
    pub fn context(&self) -> u64 {
        self.context
    }

    /// Reads the word (Acquire).
    pub fn load(&self) -> u64 {
        let (base, _) = self.mem.base_len();
        // SAFETY: `word()` checked that offset..offset+width lies inside
        // the mapping, which `self.mem` keeps alive, and is aligned; other
        // writers (CPU or device) only store whole words.
        unsafe {
            let p = base.add(self.offset);
            match self.width {
                SeqnoWidth::U32 => (*(p as *const AtomicU32)).load(Ordering::Acquire) as u64,
                SeqnoWidth::U64 => (*(p as *const AtomicU64)).load(Ordering::Acquire),
            }
        }
    }

    /// Writes the word (Release) without waking anyone.
    pub fn store(&self, value: u64) {
        let (base, _) = self.mem.base_len();
        // SAFETY: as in `load`.
        unsafe {
            let p = base.add(self.offset);
            match self.width {
                SeqnoWidth::U32 => {
                    (*(p as *const AtomicU32)).store(value as u32, Ordering::Release)
                }
                SeqnoWidth::U64 => (*(p as *const AtomicU64)).store(value, Ordering::Release),
            }
        }
    }

    /// Has the word reached `seqno`?
    pub fn passed(&self, seqno: u64) -> bool {
        seqno_passed(self.width, self.load(), seqno)
    }

    /// Producer side: stores `value` and signals every registered runtime
    /// fence it completes. Lock: `waiters`, released before signaling.
    pub fn advance(&self, value: u64) {
        self.store(value);
        let done: Vec<Fence> = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let (done, pending) = w
                .drain(..)
                .partition(|f| seqno_passed(self.width, value, f.seqno()));
            *w = pending;
            done
        };
        for f in done {
            let _ = f.signal();
        }
    }

    /// A runtime fence signaled when the word reaches `seqno`.
    pub fn fence(self: &Arc<Self>, seqno: u64) -> Fence {
        let seqno = match self.width {
            SeqnoWidth::U32 => seqno & 0xffff_ffff,
            SeqnoWidth::U64 => seqno,
        };
        Fence::new(
            Arc::new(SeqnoFence {
                word: Arc::clone(self),
            }),
            self.context,
            seqno,
        )
    }

    /// CPU wait for `seqno`: spins briefly, then sleeps with exponential
    /// back-off (up to 1 ms). [`Error::TimedOut`] after `timeout`.
    pub fn wait(&self, seqno: u64, timeout: Duration) -> Result<()> {
        const SPINS: u32 = 200;
        for _ in 0..SPINS {
            if self.passed(seqno) {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        let deadline = Instant::now() + timeout;
        let mut nap = Duration::from_micros(1);
        loop {
            if self.passed(seqno) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::TimedOut { what: "seqno word" });
            }
            std::thread::sleep(nap.min(deadline - now));
            nap = (nap * 2).min(Duration::from_millis(1));
        }
    }
}

/// The fence kind over a seqno word.
#[derive(Debug)]
pub struct SeqnoFence {
    word: Arc<SeqnoWord>,
}

impl SeqnoFence {
    /// The word.
    pub fn word(&self) -> &Arc<SeqnoWord> {
        &self.word
    }
}

impl FenceKind for SeqnoFence {
    fn driver_name(&self) -> &str {
        "seqno"
    }

    fn timeline_name(&self) -> &str {
        match self.word.width {
            SeqnoWidth::U32 => "seqno32",
            SeqnoWidth::U64 => "seqno64",
        }
    }

    fn enable_signaling(&self, fence: &Fence) -> std::result::Result<(), FenceError> {
        {
            let mut w = self.word.waiters.lock().unwrap_or_else(|e| e.into_inner());
            // Fences the GPU completed (found by polling) leave here.
            w.retain(|f| !f.test_signaled_flag());
            w.push(fence.clone());
        }
        // A producer may have advanced between the caller's check and the
        // push: re-check so the wake-up is not lost.
        if self.word.passed(fence.seqno()) {
            let _ = fence.signal();
        }
        Ok(())
    }

    fn poll_signaled(&self, fence: &Fence) -> bool {
        self.word.passed(fence.seqno())
    }

    fn needs_polling(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn is_64bit(&self) -> bool {
        self.word.width == SeqnoWidth::U64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_correct_32bit() {
        assert!(seqno_passed(SeqnoWidth::U32, 5, 5));
        assert!(!seqno_passed(SeqnoWidth::U32, 4, 5));
        assert!(seqno_passed(SeqnoWidth::U32, 2, 0xffff_fff0));
        assert!(!seqno_passed(SeqnoWidth::U32, 0xffff_fff0, 2));
        assert!(seqno_passed(SeqnoWidth::U64, u64::MAX, u64::MAX - 1));
    }

    #[test]
    fn fence_signals_on_advance_and_poll() {
        let mem = SeqnoMemory::anonymous(64).unwrap();
        let word = mem.word(8, SeqnoWidth::U32).unwrap();
        word.store(0xffff_fffe);
        let f = word.fence(1);
        assert!(!f.is_signaled());
        let cb = f.add_callback(|_| {});
        assert!(cb.is_ok());
        word.advance(1);
        assert!(f.is_signaled());
        let g = word.fence(3);
        word.store(3); // a GPU write: no wake, found by polling
        assert!(g.is_signaled());
        assert!(word.wait(3, Duration::from_millis(10)).is_ok());
        assert!(matches!(
            word.wait(4, Duration::from_millis(1)),
            Err(Error::TimedOut { .. })
        ));
    }

    #[test]
    fn bad_words_are_typed_errors() {
        let mem = SeqnoMemory::anonymous(16).unwrap();
        assert!(matches!(
            mem.word(3, SeqnoWidth::U32),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            mem.word(16, SeqnoWidth::U64),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(mem.word(8, SeqnoWidth::U64).is_ok());
    }
}
