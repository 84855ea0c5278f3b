//! The application protocol of one connection: detected from the first
//! captured bytes of either direction, then fed every segment. Which
//! direction carries requests comes from the content (a request line), so
//! connections first seen mid-stream and peers that do not follow the
//! client/server role of the socket are still read the right way round.
//!
//! A message's first bytes can arrive over several syscalls: a client that
//! reads a 4-byte packet header and then the body (mysql-connector reads the
//! MySQL greeting so) shows nothing recognisable in any one of them. Until a
//! protocol is found, the first few small segments are kept
//! ([`MAX_HELD_SEGMENTS`], [`MAX_HELD_BYTES`]); detection looks at a
//! direction's held bytes and the new ones together, and the parser is then
//! fed the held segments first, in the order they came.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::{
    capture::event::{Data, Direction},
    protocols::{self, ConnHints, Exchange, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side},
};

/// Segments with payload looked at before a connection is classified as
/// not speaking a known protocol.
const DETECT_TRIES: u8 = 8;
/// Segments kept while undetected, and their payload bytes at most.
pub const MAX_HELD_SEGMENTS: usize = 4;
pub const MAX_HELD_BYTES: usize = 256;

/// A segment seen before the protocol was known.
pub struct Held {
    direction: Direction,
    ts_ns: u64,
    bytes: u32,
    payload: Bytes,
    seq: Option<u32>,
    tid: u32,
}

impl Held {
    fn of(d: &Data) -> Held {
        Held {
            direction: d.direction,
            ts_ns: d.ts_ns,
            bytes: d.bytes,
            payload: d.payload.clone(),
            seq: d.seq,
            tid: d.task.tid,
        }
    }

    fn segment(&self) -> Segment<'_> {
        Segment { ts_ns: self.ts_ns, bytes: self.bytes, payload: &self.payload, seq: self.seq, tid: self.tid }
    }
}

pub enum L7 {
    /// Nothing recognised yet: tries so far, and the first small segments.
    Undetected(u8, Vec<Held>),
    Parsing {
        /// The direction that carries requests.
        request_dir: Direction,
        parser: Box<dyn ProtocolParser>,
    },
    /// Not a protocol the agent knows; nothing more is parsed.
    Unknown,
}

impl fmt::Debug for L7 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L7::Undetected(n, held) => write!(f, "Undetected({n}, {} held)", held.len()),
            L7::Parsing { request_dir, parser } => write!(f, "Parsing({}, requests {request_dir:?})", parser.name()),
            L7::Unknown => f.write_str("Unknown"),
        }
    }
}

/// What happened to the protocol state on one event, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L7Change {
    None,
    Detected(&'static str),
    GaveUp,
}

impl L7 {
    pub fn new() -> Self {
        L7::Undetected(0, Vec::new())
    }

    pub fn protocol(&self) -> Option<&'static str> {
        match self {
            L7::Parsing { parser, .. } => Some(parser.name()),
            _ => None,
        }
    }

    pub fn request_dir(&self) -> Option<Direction> {
        match self {
            L7::Parsing { request_dir, .. } => Some(*request_dir),
            _ => None,
        }
    }

    /// The parser asks the kernel for up to `MAX_CAPTURE` bytes per syscall.
    pub fn wide_capture(&self) -> bool {
        match self {
            L7::Parsing { parser, .. } => parser.wide_capture(),
            _ => false,
        }
    }

    pub fn stopped(&self) -> Option<&'static str> {
        match self {
            L7::Parsing { parser, .. } => parser.stopped(),
            _ => None,
        }
    }

    pub fn on_data(&mut self, d: &Data, cfg: &ProtocolConfig, hints: ConnHints, out: &mut Vec<Exchange>) -> L7Change {
        let mut change = L7Change::None;
        if let L7::Undetected(tries, held) = self {
            if d.payload.is_empty() {
                return L7Change::None;
            }
            if is_tls_record(&d.payload) {
                // A TLS handshake or record: no parser is tried on it (its
                // bytes could pass for another protocol's); the plaintext,
                // when a library probe reports it, starts afresh.
                *tries += 1;
                if *tries >= DETECT_TRIES {
                    *self = L7::Unknown;
                    return L7Change::GaveUp;
                }
                return L7Change::None;
            }
            let (found, replay) = match Self::detect_joined(held, d, cfg, hints) {
                Some(found) => (Some(found), std::mem::take(held)),
                None => (protocols::detect(&d.payload, cfg, hints), Vec::new()),
            };
            match found {
                Some((side, parser)) => {
                    let request_dir = match (side, d.direction) {
                        (Side::Request, dir) => dir,
                        (Side::Response, Direction::Egress) => Direction::Ingress,
                        (Side::Response, Direction::Ingress) => Direction::Egress,
                    };
                    change = L7Change::Detected(parser.name());
                    *self = L7::Parsing { request_dir, parser };
                    for h in &replay {
                        self.feed(h.direction, &h.segment(), out);
                    }
                }
                None => {
                    *tries += 1;
                    if *tries >= DETECT_TRIES {
                        *self = L7::Unknown;
                        return L7Change::GaveUp;
                    }
                    let held_bytes: usize = held.iter().map(|h| h.payload.len()).sum();
                    if held.len() < MAX_HELD_SEGMENTS && held_bytes + d.payload.len() <= MAX_HELD_BYTES {
                        held.push(Held::of(d));
                    } else {
                        // Past the bound the start is lost: a later message
                        // start is detected on its own, as mid-stream.
                        held.clear();
                    }
                    return L7Change::None;
                }
            }
        }
        let seg = Segment { ts_ns: d.ts_ns, bytes: d.bytes, payload: &d.payload, seq: d.seq, tid: d.task.tid };
        self.feed(d.direction, &seg, out);
        change
    }

    /// Detection over this direction's held bytes followed by `d`'s, when
    /// some are held and every one of them was captured whole (a cut one
    /// would join bytes that are not adjacent).
    fn detect_joined(
        held: &[Held],
        d: &Data,
        cfg: &ProtocolConfig,
        hints: ConnHints,
    ) -> Option<(Side, Box<dyn ProtocolParser>)> {
        let mine = || held.iter().filter(|h| h.direction == d.direction);
        if mine().next().is_none() || mine().any(|h| h.payload.len() != h.bytes as usize) {
            return None;
        }
        let mut joined = BytesMut::with_capacity(MAX_HELD_BYTES + d.payload.len());
        for h in mine() {
            joined.extend_from_slice(&h.payload);
        }
        joined.extend_from_slice(&d.payload);
        protocols::detect(&joined, cfg, hints)
    }

    fn feed(&mut self, direction: Direction, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        if let L7::Parsing { request_dir, parser } = self {
            let side = if direction == *request_dir { Side::Request } else { Side::Response };
            parser.feed(side, seg, out);
        }
    }

    /// The bytes are TLS plaintext from now on: the parser goes on with
    /// them (true), or the caller starts afresh.
    pub fn tls_started(&mut self) -> bool {
        match self {
            L7::Parsing { parser, .. } => parser.tls_started(),
            _ => false,
        }
    }

    /// The parser's drops since the last call, with its protocol.
    pub fn take_counts(&mut self) -> Option<(&'static str, ParserCounts)> {
        match self {
            L7::Parsing { parser, .. } => Some((parser.name(), parser.take_counts())),
            _ => None,
        }
    }

    pub fn close(&mut self, out: &mut Vec<Exchange>) {
        if let L7::Parsing { parser, .. } = self {
            parser.close(out);
        }
    }
}

/// A TLS record header: content type (change_cipher_spec, alert,
/// handshake, application_data), version 3.x (SSL 3.0 .. TLS 1.3's legacy
/// 3.3), a length of at most 2^14 + 2048.
fn is_tls_record(p: &[u8]) -> bool {
    matches!(p, [20..=23, 3, 0..=4, hi, lo, ..] if u16::from_be_bytes([*hi, *lo]) <= 18432)
}

impl Default for L7 {
    fn default() -> Self {
        Self::new()
    }
}
