//! CLOCK_MONOTONIC conversions: kernel deadlines and timeouts (syncobj
//! waits, sync_file deadlines) are absolute CLOCK_MONOTONIC nanoseconds,
//! which is also the clock behind `std::time::Instant` on Linux.

use std::time::Instant;

/// CLOCK_MONOTONIC now, in ns.
pub fn monotonic_now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CLOCK_MONOTONIC time in ns of `at` (saturating at 0 and u64::MAX).
pub fn monotonic_ns_at(at: Instant) -> u64 {
    let (now_ns, now) = (monotonic_now_ns(), Instant::now());
    match at.checked_duration_since(now) {
        Some(ahead) => now_ns.saturating_add(ahead.as_nanos().min(u64::MAX as u128) as u64),
        None => {
            now_ns.saturating_sub(now.duration_since(at).as_nanos().min(u64::MAX as u128) as u64)
        }
    }
}
