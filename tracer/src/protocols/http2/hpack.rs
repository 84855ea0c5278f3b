//! HPACK (RFC 7541) of one direction: the decoder with its dynamic table
//! ([`super::decoder`]), and the fields a span needs picked from each
//! header block as it is decoded ([`Fields`]); every other value is
//! dropped unread.
//!
//! A block that was not captured whole, or that does not decode, leaves the
//! dynamic table out of step with the peer's: the direction is *lost*. A
//! lost direction still decodes each block with an empty table, and what it
//! yields is exact: entries a block inserts are the table's newest, so an
//! index into them means the same in both tables, and an index past them
//! (an entry from before) fails to decode instead of naming another entry.
//! The fields read before such a failure are kept, the block is marked
//! incomplete, nothing is guessed. A lost block that starts by shrinking
//! the table to zero empties the peer's table too: the direction is back
//! in step from there.

use super::{
    super::http1::{HttpConfig, wire},
    decoder::Decoder,
};

/// Largest dynamic table accepted (SETTINGS_HEADER_TABLE_SIZE is 4096 by
/// default; a size update past this loses the table rather than holding it).
pub const MAX_TABLE: usize = 64 * 1024;
/// Longest value kept (user agent, authority, allow-listed headers).
const MAX_VALUE: usize = 256;
/// Longest `:path` kept.
const MAX_TARGET: usize = 2048;
/// Longest method token kept.
const MAX_METHOD: usize = 20;

/// The fields of one header block that spans use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub method: Option<String>,
    /// `:path`, printable (see `http1::wire::target`), and the range of it a
    /// route may be made of.
    pub path: Option<(String, Option<std::ops::Range<usize>>)>,
    pub scheme: Option<String>,
    pub authority: Option<String>,
    pub status: Option<u16>,
    /// `content-type` was seen: whether it is gRPC's.
    pub grpc: Option<bool>,
    pub grpc_status: Option<u32>,
    pub user_agent: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// Allow-listed headers (name, value or "REDACTED").
    pub headers: Vec<(String, String)>,
    /// Every field of the block was read.
    pub complete: bool,
}

/// The decoder of one direction.
pub struct Table {
    decoder: Decoder,
    lost: bool,
}

impl Default for Table {
    fn default() -> Self {
        Table { decoder: decoder(), lost: false }
    }
}

fn decoder() -> Decoder {
    Decoder::new(MAX_TABLE)
}

impl Table {
    /// A table out of step from the start (a connection seen mid-stream).
    pub fn lost() -> Self {
        Table { decoder: decoder(), lost: true }
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// The table can no longer be trusted (a block was not seen whole).
    pub fn lose(&mut self) {
        self.lost = true;
    }

    /// Decode one header block. `cut`: the block was not captured whole
    /// (what was is decoded, and the table is lost after it). `allow`: the
    /// headers recorded by name.
    pub fn decode(&mut self, block: &[u8], cut: bool, cfg: &HttpConfig, allow: &[String]) -> Fields {
        let mut f = Fields::default();
        let mut pick = |n: &[u8], v: &[u8]| pick(&mut f, n, v, cfg, allow);
        let ok = if self.lost {
            let mut fresh = decoder();
            fresh.set_max_size(MAX_TABLE);
            let ok = fresh.decode(block, &mut pick).is_ok();
            if ok && !cut && block.first() == Some(&0x20) {
                // `0x20`: size update to 0; the peer's table is empty too.
                self.decoder = fresh;
                self.lost = false;
            }
            ok
        } else {
            let ok = self.decoder.decode(block, &mut pick).is_ok();
            self.lost = !ok || cut;
            ok
        };
        f.complete = ok && !cut;
        f
    }
}

fn pick(f: &mut Fields, name: &[u8], v: &[u8], cfg: &HttpConfig, allow: &[String]) {
    let text = |max| Some(wire::printable(v, max));
    match name {
        b":method" => {
            let token = v.len() <= MAX_METHOD && !v.is_empty() && v.iter().all(|b| wire::is_tchar(*b));
            f.method = Some(if token { String::from_utf8_lossy(v).into_owned() } else { String::new() });
        }
        b":path" => f.path = Some(wire::target(v, false, MAX_TARGET)),
        b":scheme" => f.scheme = text(16),
        b":authority" => f.authority = text(MAX_VALUE),
        b"host" if f.authority.is_none() => f.authority = text(MAX_VALUE),
        b":status" => f.status = std::str::from_utf8(v).ok().filter(|s| s.len() == 3).and_then(|s| s.parse().ok()),
        b"content-type" => f.grpc = Some(is_grpc(v)),
        b"grpc-status" => f.grpc_status = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()),
        b"user-agent" => f.user_agent = text(MAX_VALUE),
        b"traceparent" => f.traceparent = text(64),
        b"tracestate" => f.tracestate = text(MAX_VALUE),
        _ => {}
    }
    if allow.is_empty() || name.first() == Some(&b':') {
        return;
    }
    let Some(n) = allow.iter().find(|a| a.as_bytes().eq_ignore_ascii_case(name)) else { return };
    let value = if cfg.is_sensitive(n) { "REDACTED".to_string() } else { wire::printable(v, MAX_VALUE) };
    f.headers.push((n.to_ascii_lowercase(), value));
}

/// `application/grpc`, with an optional `+format` or parameters.
fn is_grpc(v: &[u8]) -> bool {
    v.strip_prefix(b"application/grpc").is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
}
