//! How the agent's threads ask the CPU scheduler to treat them: as work that
//! can wait for the applications it traces.
//!
//! The agent drains the ring buffer every few ms and then works through the
//! batch. With the kernel's default slice (~3 ms) a thread that wakes with
//! work preempts the application running on its CPU, and the application's
//! request waits behind the agent's batch: on a 2-core machine at ~16 k
//! req/s that raised nginx's p99 latency 3 to 9 times (`cargo xtask bench
//! --rate 20000`). A longer slice (sched_setattr's
//! sched_runtime for SCHED_OTHER, EEVDF, Linux 6.12+) puts the agent's
//! virtual deadline later, so a waking application preempts the agent and
//! not the reverse, while the agent keeps its fair share of CPU (unlike
//! SCHED_IDLE, which starves it on a busy node). Measured: p99 1.6-1.7 x
//! untraced instead of 3-9 x, same agent CPU.

use serde::Deserialize;

/// `[scheduler]` config section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedConfig {
    /// Slice the agent's threads ask for, in ms (0.1 to 100; 0 leaves the
    /// kernel's default). Default 10.
    pub slice_ms: f64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig { slice_ms: 10.0 }
    }
}

/// struct sched_attr (include/uapi/linux/sched/types.h), first version: 48
/// bytes up to sched_period, 56 with the utilisation clamps.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Ask for a `slice_ns` slice for the calling thread (SCHED_OTHER, nice 0).
/// Threads it creates afterwards inherit it; tokio's threads also call it
/// when they start. Kernels before 6.12 ignore the slice of fair tasks.
pub fn set_thread_slice(slice_ns: u64) -> std::io::Result<()> {
    if slice_ns == 0 {
        return Ok(());
    }
    let attr = SchedAttr {
        size: size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: 0,
        priority: 0,
        runtime: slice_ns,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: pid 0 is the calling thread; attr is a valid sched_attr of the size it states.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

impl SchedConfig {
    /// The slice in ns, clamped to what the kernel accepts (0.1..100 ms).
    pub fn slice_ns(&self) -> u64 {
        if self.slice_ms.is_nan() || self.slice_ms <= 0.0 {
            return 0;
        }
        (self.slice_ms.clamp(0.1, 100.0) * 1e6) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_is_clamped_and_zero_means_default() {
        assert_eq!(SchedConfig { slice_ms: 0.0 }.slice_ns(), 0);
        assert_eq!(SchedConfig { slice_ms: f64::NAN }.slice_ns(), 0);
        assert_eq!(SchedConfig { slice_ms: 10.0 }.slice_ns(), 10_000_000);
        assert_eq!(SchedConfig { slice_ms: 1000.0 }.slice_ns(), 100_000_000);
        assert_eq!(SchedConfig { slice_ms: 0.01 }.slice_ns(), 100_000);
    }

    /// The running kernel takes the slice for this thread (/proc shows it).
    #[test]
    fn the_kernel_takes_the_slice() {
        std::thread::spawn(|| {
            set_thread_slice(7_000_000).expect("sched_setattr");
            let tid = unsafe { libc::gettid() };
            let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).expect("sched file");
            let slice = sched.lines().find(|l| l.starts_with("se.slice")).expect("se.slice line");
            assert!(slice.trim_end().ends_with(" 7000000"), "{slice}");
        })
        .join()
        .unwrap();
    }
}
