//! Map and global names shared by both sides, and map sizes.

/// Ring buffer of [`crate::event`] records, kernel -> user.
pub const EVENTS: &str = "EVENTS";
/// Per-CPU drop and activity counters, indexed by [`Counter`].
pub const COUNTERS: &str = "COUNTERS";
/// Read-only global holding [`crate::config::ProbeConfig`].
pub const PROBE_CONFIG: &str = "PROBE_CONFIG";

/// LRU map struct sock -> verdict (`VERDICT_*`), written by the agent: what
/// the data probe ships for a socket's syscalls. Absent: payload up to the
/// capture size. Taken out by the kernel at connect, accept and close, so a
/// reused socket address starts over.
pub const SOCK_VERDICT: &str = "SOCK_VERDICT";
pub const SOCK_VERDICT_MAX: u32 = 65536;
/// Bytes and sequence numbers only: no parser reads this socket (its
/// protocol is not one the agent knows).
pub const VERDICT_COUNT_ONLY: u8 = 1;
/// Payload up to `MAX_CAPTURE` whatever the capture size: the socket's
/// parser loses its framing when a syscall's bytes past the capture hold
/// message starts (HTTP/2: many frames per read or write).
pub const VERDICT_WIDE: u8 = 2;

/// Ring buffer size in bytes (power of two, multiple of the page size).
pub const EVENTS_BYTES: u32 = 8 << 20;

/// Kernel-side counters. Every place the kernel side gives up on an event
/// has its own index, so `/metrics` can say why data was lost.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Records written to the ring buffer.
    EventsSubmitted = 0,
    /// Ring buffer full: record lost.
    RingbufFull = 1,
    /// The task's saved syscall registers could not be read: the event
    /// carries bytes and sequence number but no payload.
    RegsReadFailed = 2,
    /// Payload copy from user memory failed (page not resident, bad pointer).
    PayloadReadFailed = 3,
    /// Socket fields could not be read from kernel memory.
    SockReadFailed = 4,
    /// A Go process's goroutine id could not be read (TLS or g unreadable):
    /// its data event carries none.
    GoGoidReadFailed = 5,
    /// A net/http writeLoop wrote for a connection with no caller in
    /// `GO_CALLERS` (evicted, or its request sent before the agent
    /// attached): the write is credited to the writeLoop itself.
    GoHandoffMissed = 6,
    /// A TLS library call returned plaintext with no socket known for its
    /// SSL object (no syscall inside the call, none learned before): the
    /// plaintext is not reported.
    TlsNoSocket = 7,
    /// A TLS library call's plaintext could not be copied or its length
    /// read (`*_ex` out-parameter): not reported.
    TlsReadFailed = 8,
    /// Data events shipped without payload because the agent said the
    /// socket needs none (`SOCK_VERDICT`).
    PayloadSkipped = 9,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::EventsSubmitted,
        Counter::RingbufFull,
        Counter::RegsReadFailed,
        Counter::PayloadReadFailed,
        Counter::SockReadFailed,
        Counter::GoGoidReadFailed,
        Counter::GoHandoffMissed,
        Counter::TlsNoSocket,
        Counter::TlsReadFailed,
        Counter::PayloadSkipped,
    ];
    pub const COUNT: u32 = Self::ALL.len() as u32;

    pub const fn name(self) -> &'static str {
        match self {
            Counter::EventsSubmitted => "events_submitted",
            Counter::RingbufFull => "ringbuf_full",
            Counter::RegsReadFailed => "regs_read_failed",
            Counter::PayloadReadFailed => "payload_read_failed",
            Counter::SockReadFailed => "sock_read_failed",
            Counter::GoGoidReadFailed => "go_goid_read_failed",
            Counter::GoHandoffMissed => "go_handoff_missed",
            Counter::TlsNoSocket => "tls_no_socket",
            Counter::TlsReadFailed => "tls_read_failed",
            Counter::PayloadSkipped => "payload_skipped",
        }
    }
}
