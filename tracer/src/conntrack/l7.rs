//! The application protocol of one connection: detected from the first
//! captured bytes of either direction, then fed every segment. Which
//! direction carries requests comes from the content (a request line), so
//! connections first seen mid-stream and peers that do not follow the
//! client/server role of the socket are still read the right way round.

use std::fmt;

use crate::{
    capture::event::{Data, Direction},
    protocols::{self, ConnHints, Exchange, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side},
};

/// Segments with payload looked at before a connection is classified as
/// not speaking a known protocol.
const DETECT_TRIES: u8 = 8;

pub enum L7 {
    /// Nothing recognised yet (tries so far).
    Undetected(u8),
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
            L7::Undetected(n) => write!(f, "Undetected({n})"),
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
        L7::Undetected(0)
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

    pub fn stopped(&self) -> Option<&'static str> {
        match self {
            L7::Parsing { parser, .. } => parser.stopped(),
            _ => None,
        }
    }

    pub fn on_data(&mut self, d: &Data, cfg: &ProtocolConfig, hints: ConnHints, out: &mut Vec<Exchange>) -> L7Change {
        let mut change = L7Change::None;
        if let L7::Undetected(tries) = self {
            if d.payload.is_empty() {
                return L7Change::None;
            }
            match protocols::detect(&d.payload, cfg, hints) {
                Some((side, parser)) => {
                    let request_dir = match (side, d.direction) {
                        (Side::Request, dir) => dir,
                        (Side::Response, Direction::Egress) => Direction::Ingress,
                        (Side::Response, Direction::Ingress) => Direction::Egress,
                    };
                    change = L7Change::Detected(parser.name());
                    *self = L7::Parsing { request_dir, parser };
                }
                None => {
                    *tries += 1;
                    if *tries >= DETECT_TRIES {
                        *self = L7::Unknown;
                        return L7Change::GaveUp;
                    }
                    return L7Change::None;
                }
            }
        }
        if let L7::Parsing { request_dir, parser } = self {
            let side = if d.direction == *request_dir { Side::Request } else { Side::Response };
            let seg = Segment { ts_ns: d.ts_ns, bytes: d.bytes, payload: &d.payload, seq: d.seq, tid: d.task.tid };
            parser.feed(side, &seg, out);
        }
        change
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

impl Default for L7 {
    fn default() -> Self {
        Self::new()
    }
}
