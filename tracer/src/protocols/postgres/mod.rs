//! PostgreSQL (frontend/backend protocol 3): two [`frame::Stream`]s and the
//! pairing of calls with their answers. A call is a simple Query (one span
//! however many statements its text holds: the first one's summary, the
//! count as `db.operation.batch.size`) or an Execute of the extended
//! protocol (pipelined: several before one Sync); its answer runs to its
//! CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse
//! (Execute) or to ReadyForQuery (Query). After an error the server skips
//! the rest of the Sync batch: those Executes are no spans. Named prepared
//! statements are kept per connection ([`cache::Cache`], bounded) so an
//! Execute knows its SQL; Bind values are never read. The startup and
//! authentication are no span (the startup's `database` is kept); an
//! SSLRequest answered `S` or a GSSENCRequest answered `G` stops parsing:
//! the rest is encrypted.
//!
//! Framing lost on the response side (a long result: message headers past
//! the captured prefix of each write) ends the calls waiting when the next
//! call is sent (the client read their answers: clients wait for
//! ReadyForQuery), marked incomplete; the response side then resumes at the
//! next write that starts with a message.

mod cache;
pub mod frame;
pub mod message;
mod pairing;
pub mod span;

use std::sync::Arc;

use self::{
    frame::{Expect, Stream, be32},
    pairing::Pairing,
};
use super::{ConnHints, Exchange, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side, Timing, sql::Statement};

/// Startup-phase request codes.
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol 3.0 (major 3 in the high half; minor versions 3.x accepted).
pub const PROTOCOL_3: u32 = 196_608;

/// SQL bytes of a Query or Parse read (the capture limit is usually lower).
pub const MAX_SQL: usize = 8192;
/// Longest statement or portal name cached.
pub const MAX_NAME: usize = 128;
/// Named prepared statements kept per connection.
pub const MAX_STATEMENTS: usize = 256;
/// Named portals kept per connection (most drivers use the unnamed one).
const MAX_PORTALS: usize = 16;
/// Calls waiting for their answer per connection (pipelining depth).
pub const MAX_PENDING: usize = 64;

/// Why parsing stopped: the connection is encrypted from here on.
pub const STOP_TLS: &str = "tls";
pub const STOP_GSSENC: &str = "gssenc";

/// What one PostgreSQL call carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PgExchange {
    /// None: an Execute of a statement prepared before the agent saw the
    /// connection (or evicted from the cache).
    pub statement: Option<Arc<Statement>>,
    /// The startup's `database`.
    pub database: Option<Arc<str>>,
    /// Rows returned (SELECT/FETCH tags, or DataRows after a RowDescription).
    pub returned_rows: Option<u64>,
    /// ErrorResponse's SQLSTATE.
    pub sqlstate: Option<[u8; 5]>,
    /// COPY data bytes (either direction), when the call was a COPY.
    pub copy_bytes: Option<u64>,
    /// An Execute of the extended protocol (else a simple Query).
    pub extended: bool,
    /// The answer's end was not seen (framing lost, or connection closed).
    pub response_incomplete: bool,
    /// The connection closed with the call still waiting.
    pub no_response: bool,
}

/// Detection (the registry's): a startup message (protocol 3), SSLRequest,
/// GSSENCRequest or CancelRequest; on the PostgreSQL port also a Query,
/// Parse or Bind of a connection seen mid-stream.
pub fn detect(p: &[u8], port_hint: bool) -> Option<Side> {
    if looks_like_startup(p) {
        return Some(Side::Request);
    }
    if !port_hint {
        return None;
    }
    let (&tag, rest) = p.split_first()?;
    let len = be32(rest.get(..4)?);
    let sane = (4..1 << 24).contains(&len);
    let body = &rest[4..];
    // Only types no backend message has: the first bytes seen of a
    // connection may be the server's (DataRow 'D', ErrorResponse 'E', ...).
    let ok = match tag {
        // The SQL starts with printable text.
        b'Q' | b'P' => {
            sane && body.iter().take(16).all(|&b| b == 0 || b == b'\t' || b == b'\n' || (b' '..0x7f).contains(&b))
        }
        b'B' => sane && len <= 1 << 20,
        _ => false,
    };
    ok.then_some(Side::Request)
}

/// A startup-phase message: length, then a known code (and for a startup
/// message, a first parameter name).
fn looks_like_startup(p: &[u8]) -> bool {
    if p.len() < 8 {
        return false;
    }
    let (len, code) = (be32(p), be32(&p[4..]));
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        c if c >> 16 == 3 && c & 0xffff < 16 => {
            let key = &p[8..];
            let name_len = key.iter().take_while(|b| b.is_ascii_lowercase() || **b == b'_').count();
            (9..=10_000).contains(&len) && name_len > 0 && (key.get(name_len) == Some(&0) || name_len == key.len())
        }
        _ => false,
    }
}

pub fn parser(cfg: &ProtocolConfig, _hints: ConnHints) -> Box<dyn ProtocolParser> {
    Box::new(Postgres::new(cfg.db_query_text))
}

pub struct Postgres {
    req: Stream,
    resp: Stream,
    /// The request direction's first bytes were not seen yet: whether it
    /// starts with the startup phase is decided by them.
    first_request: bool,
    pairing: Pairing,
}

impl Postgres {
    /// `query_text`: reduce statements to their literal-free text for
    /// `db.query.text` (else only operation, table and summary are read).
    pub fn new(query_text: bool) -> Self {
        Postgres {
            req: Stream::new(Side::Request, Expect::Typed),
            resp: Stream::new(Side::Response, Expect::Typed),
            first_request: true,
            pairing: Pairing::new(query_text),
        }
    }
}

impl ProtocolParser for Postgres {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        if self.pairing.stopped.is_some() || seg.bytes == 0 {
            return;
        }
        let Postgres { req, resp, pairing, first_request } = self;
        match side {
            Side::Request => {
                // A typed message starts with its type, never 0; a
                // startup-phase one with its length, below 2^24.
                if std::mem::take(first_request) && seg.payload.first() == Some(&0) {
                    req.expect = Expect::Untyped;
                }
                let fed = req.feed(seg, &mut |f| {
                    pairing.on_request(f, resp, out);
                    true
                });
                pairing.counts.malformed += u64::from(fed.malformed);
                if fed.lost && !fed.malformed {
                    pairing.request_framing_lost(seg.ts_ns);
                }
            }
            Side::Response => {
                pairing.response_last = Timing { first_ns: seg.ts_ns, last_ns: seg.ts_ns, seq: seg.seq, tid: seg.tid };
                let fed = resp.feed(seg, &mut |f| pairing.on_response(f, out));
                pairing.counts.malformed += u64::from(fed.malformed);
                if resp.is_lost() {
                    // A long result: resume at a write after the next call.
                    pairing.response_framing_lost(pairing.response_last);
                    resp.may_resync = false;
                } else {
                    pairing.response_lost = false;
                }
            }
        }
    }

    fn close(&mut self, out: &mut Vec<Exchange>) {
        self.pairing.flush(None, out);
    }

    fn stopped(&self) -> Option<&'static str> {
        self.pairing.stopped
    }

    fn take_counts(&mut self) -> ParserCounts {
        let p = &mut self.pairing;
        let mut c = std::mem::take(&mut p.counts);
        c.evicted = std::mem::take(&mut p.statements.evicted) + std::mem::take(&mut p.portals.evicted);
        c
    }
}

#[cfg(test)]
impl Postgres {
    /// Bytes and entries this parser holds between calls.
    pub(crate) fn held(&self) -> (usize, usize) {
        let p = &self.pairing;
        (self.req.buffered() + self.resp.buffered() + p.statements.held() + p.portals.held(), p.pending_len())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_prop;
#[cfg(test)]
mod tests_recorded;
#[cfg(test)]
mod wire;
