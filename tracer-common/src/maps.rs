//! Map and global names shared by both sides, and map sizes.

/// Ring buffer of [`crate::event`] records, kernel -> user.
pub const EVENTS: &str = "EVENTS";
/// Per-CPU drop and activity counters, indexed by [`Counter`].
pub const COUNTERS: &str = "COUNTERS";
/// Syscall arguments saved at enter, keyed by pid_tgid, consumed at exit.
pub const ACTIVE_IO: &str = "ACTIVE_IO";
/// Read-only global holding [`crate::config::ProbeConfig`].
pub const PROBE_CONFIG: &str = "PROBE_CONFIG";

/// Ring buffer size in bytes (power of two, multiple of the page size).
pub const EVENTS_BYTES: u32 = 8 << 20;
/// Threads that may be inside a traced read/write syscall at once.
pub const ACTIVE_IO_ENTRIES: u32 = 16384;

/// Kernel-side counters. Every place the kernel side gives up on an event
/// has its own index, so `/metrics` can say why data was lost.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Records written to the ring buffer.
    EventsSubmitted = 0,
    /// Ring buffer full: record lost.
    RingbufFull = 1,
    /// ACTIVE_IO update failed at syscall enter: that syscall's payload is lost
    /// (its bytes are still counted through sock_*_length).
    ActiveIoFull = 2,
    /// Payload copy from user memory failed (page not resident, bad pointer).
    PayloadReadFailed = 3,
    /// Socket fields could not be read from kernel memory.
    SockReadFailed = 4,
    /// Data syscalls on TCP sockets seen by sock_*_length.
    SocketIo = 5,
}

impl Counter {
    pub const ALL: [Counter; 6] = [
        Counter::EventsSubmitted,
        Counter::RingbufFull,
        Counter::ActiveIoFull,
        Counter::PayloadReadFailed,
        Counter::SockReadFailed,
        Counter::SocketIo,
    ];
    pub const COUNT: u32 = Self::ALL.len() as u32;

    pub const fn name(self) -> &'static str {
        match self {
            Counter::EventsSubmitted => "events_submitted",
            Counter::RingbufFull => "ringbuf_full",
            Counter::ActiveIoFull => "active_io_full",
            Counter::PayloadReadFailed => "payload_read_failed",
            Counter::SockReadFailed => "sock_read_failed",
            Counter::SocketIo => "socket_io",
        }
    }
}
