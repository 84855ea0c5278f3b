//! The span model, protocol-neutral: what every stage after the protocol
//! parsers (chain linking, export, topology, store, page) reads. A protocol
//! describes its exchange as a [`Described`] (name, status, its attributes);
//! `chain::build` adds what every span has (timing, ids, addresses).

pub mod attr;

use std::{borrow::Cow, net::SocketAddr, sync::Arc};

use serde::Serialize;

pub use self::attr::{Attributes, Key, Value};
use crate::{business::Transaction, identity::Service};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// This process received the request.
    Server,
    /// This process sent the request.
    Client,
    /// This process sent a message nobody answers (a publish).
    Producer,
    /// This process received such a message (a subscriber's delivery).
    Consumer,
}

impl SpanKind {
    /// The side that received the request or message (SERVER, CONSUMER).
    pub fn is_inbound(self) -> bool {
        matches!(self, SpanKind::Server | SpanKind::Consumer)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Unset,
    Error,
}

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub kind: SpanKind,
    pub name: String,
    /// Which protocol the span is a call of ("http", "redis", ...).
    pub protocol: &'static str,
    /// Monotonic ns: request's first byte.
    pub start_ns: u64,
    /// Monotonic ns: response's last byte (request's last byte when no response).
    pub end_ns: u64,
    /// Monotonic ns: response's first byte.
    pub response_first_ns: Option<u64>,
    pub status: Status,
    pub attributes: Attributes,
    pub service: Arc<Service>,
    pub pid: Option<u32>,
    pub comm: String,
    /// Thread that read (SERVER) or wrote (CLIENT) the request's first byte,
    /// and thread that moved the response: evidence for chain linking.
    pub request_tid: u32,
    pub response_tid: Option<u32>,
    /// In a Go process probed for goroutines: the goroutine of the
    /// request's and of the response's first byte (0: unknown). When set,
    /// it is the linker's evidence instead of the thread.
    pub request_goid: u64,
    pub response_goid: u64,
    /// TCP sequence number of the request's first byte.
    pub request_seq: Option<u32>,
    /// The connection (local, remote) from this process's side.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Trace id and parent came from the request's traceparent header.
    pub context_from_header: bool,
    /// The service at the other end, when this node traced it too (set by
    /// the linker; topology edges use it, else a virtual node by address).
    pub peer_service: Option<Arc<Service>>,
    /// The business transaction of the span's trace: that of its entry
    /// SERVER span (set by the linker; also the attribute
    /// business.transaction.name).
    pub transaction: Option<Arc<Transaction>>,
    /// This span is its chain's entry on this node: a SERVER span no traced
    /// caller on this node called (the span business KPIs count).
    pub business_entry: bool,
}

impl Span {
    pub fn attr(&self, key: &Key) -> Option<&Value> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An attribute's value as text (strings and addresses).
    pub fn attr_text(&self, key: &Key) -> Option<Cow<'_, str>> {
        self.attr(key).and_then(Value::text)
    }

    pub fn attr_int(&self, key: &Key) -> Option<i64> {
        self.attr(key).and_then(Value::int)
    }

    /// The database or cache system the span is a call to (`db.system.name`).
    pub fn db_system(&self) -> Option<&str> {
        match self.attr(&Key::DbSystemName) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The status the protocol reported, as a short text for a terminal
    /// (HTTP status code, database status code, DNS response code).
    pub fn status_text(&self) -> Option<String> {
        if let Some(c) = self.attr_int(&Key::HttpResponseStatusCode) {
            return Some(c.to_string());
        }
        self.attr_text(&Key::DbResponseStatusCode)
            .or_else(|| self.attr_text(&Key::DnsResponseCode))
            .map(|c| c.into_owned())
    }
}

/// What a protocol says of one exchange: the parts of its span that depend
/// on the protocol. Addresses, timing and ids are added by `chain::build`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Described {
    pub name: String,
    pub protocol: &'static str,
    /// Set: the span is an error of this type (`error.type`).
    pub error_type: Option<Cow<'static, str>>,
    pub attributes: Attributes,
    /// Trace context the request carried (W3C traceparent).
    pub context: Option<(TraceId, SpanId)>,
    /// The server as the request named it (an HTTP Host header): address
    /// and port. None: the socket's address names the server.
    pub server: Option<(String, Option<u16>)>,
    /// The span's kind when the protocol says (a pub/sub delivery is a
    /// CONSUMER span); None: SERVER or CLIENT by which end this process is.
    pub kind: Option<SpanKind>,
}

/// A W3C traceparent `00-<trace-id>-<parent-id>-<flags>`, if valid.
pub fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId)> {
    let mut parts = v.trim().split('-');
    let (ver, tid, sid, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if ver.len() != 2 || ver == "ff" || tid.len() != 32 || sid.len() != 16 || flags.len() != 2 {
        return None;
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    hex_into(tid, &mut t)?;
    hex_into(sid, &mut s)?;
    if t == [0; 16] || s == [0; 8] {
        return None;
    }
    Some((t, s))
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn random_trace_id() -> TraceId {
    loop {
        let v = fastrand::u128(..).to_be_bytes();
        if v != [0; 16] {
            return v;
        }
    }
}

pub fn random_span_id() -> SpanId {
    loop {
        let v = fastrand::u64(..).to_be_bytes();
        if v != [0; 8] {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let (t, s) = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(&t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&s), "00f067aa0ba902b7");
        assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse_traceparent("garbage").is_none());
    }
}
