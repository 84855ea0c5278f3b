//! What every criterion bench of the agent shares: timing in CPU time of
//! the bench thread, so figures are per core on a busy, shared machine.
#![allow(dead_code, reason = "each bench uses a subset")]

use std::time::Duration;

/// This thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid pointer to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `f` run `iters` times, timed in CPU time of this thread rather than wall
/// time: the figure is per core, and other work on a busy machine does not count.
pub fn cpu_time(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        f();
    }
    thread_cpu() - start
}
