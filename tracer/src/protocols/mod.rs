//! Application protocols over a TCP connection's two byte streams. Each
//! protocol implements [`ProtocolParser`]: it is fed one syscall's worth of
//! a direction at a time ([`Segment`]: how many bytes moved, and the captured
//! prefix of them), frames messages, pairs requests with responses and
//! returns finished [`Exchange`]s. Parsers are pure (bytes in, exchanges out)
//! and bounded; bytes that are not the protocol are classified, never fatal.

pub mod dns;
#[cfg(test)]
pub(crate) mod fixture;
pub mod http1;
pub mod http2;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod registry;
pub mod sql;

pub use registry::{Info, detect};

use std::sync::Arc;

/// A run of bytes one syscall moved in one direction.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// Monotonic ns when the syscall returned.
    pub ts_ns: u64,
    /// Bytes the syscall moved.
    pub bytes: u32,
    /// The captured prefix of those bytes (may be shorter than `bytes`).
    pub payload: &'a [u8],
    /// TCP sequence number of the first byte.
    pub seq: Option<u32>,
    /// Thread that moved the bytes.
    pub tid: u32,
}

/// Which half of an exchange a direction carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// When and by which thread one message crossed the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Return of the syscall that moved the first byte.
    pub first_ns: u64,
    /// Return of the syscall that moved the last byte (0: not seen).
    pub last_ns: u64,
    /// TCP sequence number of the first byte.
    pub seq: Option<u32>,
    /// Thread that moved the first byte.
    pub tid: u32,
}

/// A request and (when seen) its response: what a span is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub request: Timing,
    pub response: Option<Timing>,
    pub info: Info,
}

pub trait ProtocolParser: Send {
    fn name(&self) -> &'static str;
    /// One segment of the request or response direction.
    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>);
    /// The connection closed: finish what EOF completes, flush the rest.
    fn close(&mut self, out: &mut Vec<Exchange>);
    /// Why parsing stopped for good on this connection (upgrade, tunnel).
    fn stopped(&self) -> Option<&'static str>;
    /// The connection's bytes are TLS plaintext from now on (a library
    /// probe reported some). True: this parser reads them on, as the rest
    /// of a protocol that negotiated TLS in-band (MySQL's SSLRequest: its
    /// handshake goes on inside TLS). False (the default): the connection's
    /// protocol is detected afresh from the plaintext.
    fn tls_started(&mut self) -> bool {
        false
    }
    /// The parser loses its framing when a syscall's bytes past the capture
    /// size hold message starts (HTTP/2's frames): the kernel is asked to
    /// copy up to `MAX_CAPTURE` of this connection's syscalls.
    fn wide_capture(&self) -> bool {
        false
    }
    /// What was dropped since the last call (the counts restart at zero).
    fn take_counts(&mut self) -> ParserCounts {
        ParserCounts::default()
    }
}

/// What a parser dropped or could not read, by reason; summed per protocol
/// by the connection table and exported on /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParserCounts {
    /// Responses that no request was waiting for.
    pub unpaired: u64,
    /// Requests dropped past the per-connection pending cap.
    pub overflow: u64,
    /// Messages or segments that were not the protocol (framing lost).
    pub malformed: u64,
    /// Entries evicted from a bounded per-connection cache (prepared statements).
    pub evicted: u64,
    /// Messages that answer no request (pub/sub deliveries, RESP3 pushes):
    /// counted, not spans.
    pub pushed: u64,
}

impl ParserCounts {
    pub fn add(&mut self, o: ParserCounts) {
        self.unpaired += o.unpaired;
        self.overflow += o.overflow;
        self.malformed += o.malformed;
        self.evicted += o.evicted;
        self.pushed += o.pushed;
    }

    /// Each count with its `reason` label.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("unpaired", self.unpaired),
            ("overflow", self.overflow),
            ("malformed", self.malformed),
            ("evicted", self.evicted),
            ("pushed", self.pushed),
        ]
    }
}

/// Protocol settings shared by every connection's parser.
#[derive(Clone, Debug, Default)]
pub struct ProtocolConfig {
    pub http: Arc<http1::HttpConfig>,
    /// Database parsers reduce each statement to its literal-free text
    /// (`db.query.text`, off by default); off, they read only as much of
    /// it as operation and table need.
    pub db_query_text: bool,
}

/// What is known of a connection when its protocol is detected.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnHints {
    /// Seen from its handshake (every byte it carried was reported).
    pub from_start: bool,
    /// The server's port (the remote one on a client socket).
    pub server_port: Option<u16>,
    /// The bytes are TLS plaintext from a library uprobe.
    pub tls: bool,
    /// A UDP flow: each segment is one datagram.
    pub udp: bool,
}
