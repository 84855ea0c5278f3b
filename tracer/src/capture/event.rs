//! The agent's view of kernel events: owned, typed, addresses resolved.

use std::{fmt, net::SocketAddr};

use bytes::Bytes;
use tracer_common::event::Syscall;

/// A socket's identity: the kernel address of its struct sock. Unique while
/// the socket lives; reused after close, so the table also checks the tuple.
pub type SockId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// A 16-byte task name, kept as bytes to stay cheap to copy.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Comm(pub [u8; 16]);

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(16);
        f.write_str(&String::from_utf8_lossy(&self.0[..end]))
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The process sent these bytes (write, send...).
    Egress,
    /// The process received these bytes (read, recv...).
    Ingress,
}

/// A TCP state change the probes keep (see tracer-ebpf probes::lifecycle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub ts_ns: u64,
    pub sk: SockId,
    pub tuple: Tuple,
    pub old_state: u8,
    pub new_state: u8,
    /// Set only for connect() (CLOSE -> SYN_SENT), which runs in the caller.
    pub task: Option<Task>,
    pub sk_err: i32,
    pub tcp: TcpStats,
}

/// Kernel TCP counters, read at ESTABLISHED and CLOSE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    pub srtt_us: u32,
    pub total_retrans: u32,
    pub bytes_received: u64,
    pub bytes_acked: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    pub ts_ns: u64,
    pub sk: SockId,
    pub task: Task,
    pub fd: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub ts_ns: u64,
    pub sk: SockId,
    pub tuple: Tuple,
    pub task: Task,
    pub fd: i32,
    pub syscall: Syscall,
    pub direction: Direction,
    /// Bytes the syscall moved.
    pub bytes: u32,
    /// TCP sequence number of the first byte.
    pub seq: Option<u32>,
    /// Smoothed RTT in microseconds.
    pub srtt_us: u32,
    /// The first bytes of the data (up to the capture size).
    pub payload: Bytes,
    /// Some of the payload could not be copied.
    pub partial: bool,
    /// In a probed Go process: the goroutine the bytes belong to (the
    /// running one, or the one it works for after a net/http hand-off);
    /// 0 otherwise.
    pub goid: u64,
    /// Whether these bytes are TLS, and which layer of it.
    pub tls: Tls,
    /// One UDP datagram (to or from a DNS server), not TCP stream bytes.
    pub udp: bool,
}

/// The TLS layer a data event shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// Not inside a probed TLS library call (cleartext, or ciphertext the
    /// library moved outside its read/write calls: the handshake).
    #[default]
    No,
    /// Plaintext a TLS library call returned or accepted (`seq`, when set,
    /// is the first ciphertext byte's: a key for linking, not a position).
    Plain,
    /// Ciphertext moved inside a TLS library call: counted, no payload.
    Cipher,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    State(StateChange),
    Accept(Accept),
    Data(Data),
}

impl Event {
    /// Monotonic ns the kernel stamped the event with.
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::State(s) => s.ts_ns,
            Event::Accept(a) => a.ts_ns,
            Event::Data(d) => d.ts_ns,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Event::State(_) => "state",
            Event::Accept(_) => "accept",
            Event::Data(_) => "data",
        }
    }
}
