//! The span model and how an HTTP exchange becomes a span: kind from which
//! end the process is, OpenTelemetry HTTP semantic conventions for names
//! and attributes, status rules (5xx is an error on both kinds, 4xx only on
//! CLIENT spans), and the trace context a request carried (W3C traceparent).

use std::{borrow::Cow, net::SocketAddr, sync::Arc};

use serde::Serialize;

use crate::{
    conntrack::CallRecord,
    identity::Service,
    protocols::{Info, http1::HttpExchange},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// This process received the request.
    Server,
    /// This process sent the request.
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Unset,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// Borrowed for the constants most attributes are ("GET", "http",
    /// "tcp", "1.1"): no allocation per span for them.
    Str(Cow<'static, str>),
    Int(i64),
    StrArray(Vec<String>),
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
    /// Monotonic ns: request's first byte.
    pub start_ns: u64,
    /// Monotonic ns: response's last byte (request's last byte when no response).
    pub end_ns: u64,
    /// Monotonic ns: response's first byte.
    pub response_first_ns: Option<u64>,
    pub status: Status,
    pub attributes: Vec<(Cow<'static, str>, Value)>,
    pub service: Arc<Service>,
    pub pid: Option<u32>,
    pub comm: String,
    /// Thread that read (SERVER) or wrote (CLIENT) the request's first byte,
    /// and thread that moved the response: evidence for chain linking.
    pub request_tid: u32,
    pub response_tid: Option<u32>,
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
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

const KNOWN_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Settings of span building (`[http]` in the config file, with the parser's).
#[derive(Clone, Debug)]
pub struct SpanConfig {
    /// Replace query values by REDACTED (keys kept).
    pub redact_query_values: bool,
}

impl Default for SpanConfig {
    fn default() -> Self {
        SpanConfig { redact_query_values: true }
    }
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

/// Query string with every value replaced by REDACTED (keys kept).
pub fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{k}=REDACTED"),
            None => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Longest `server.address` kept from a Host header (a DNS name is at most 253).
const MAX_HOST: usize = 253;

/// Build the span of one HTTP exchange. `kind` is which end this process is;
/// `route` the templated route of the path (moved into the span), None when
/// the target was not one a route is made of: the name is then the method
/// alone, as the semantic conventions ask when there is no route.
pub fn http_span(
    call: &CallRecord,
    h: &HttpExchange,
    kind: SpanKind,
    route: Option<String>,
    service: Arc<Service>,
    cfg: &SpanConfig,
) -> Span {
    let ex = &call.exchange;
    let req = &h.request;
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.target.as_str(), None),
    };
    let mut a: Vec<(Cow<'static, str>, Value)> = Vec::with_capacity(24);
    let known = KNOWN_METHODS.iter().find(|m| **m == req.method.as_str());
    match known {
        Some(m) => put(&mut a, "http.request.method", Value::Str(Cow::Borrowed(m))),
        None => {
            put(&mut a, "http.request.method", Value::Str("_OTHER".into()));
            // The parser keeps tokens only; checked again because this
            // string is shown and exported as it is.
            if is_token(&req.method) {
                put(&mut a, "http.request.method_original", Value::Str(req.method.clone().into()));
            }
        }
    }
    put(&mut a, "url.path", Value::Str(path.to_string().into()));
    if let Some(q) = query {
        let q = if cfg.redact_query_values { redact_query(q) } else { q.to_string() };
        put(&mut a, "url.query", Value::Str(q.into()));
    }
    put(&mut a, "url.scheme", Value::Str("http".into()));
    // The name before the route moves into its attribute.
    let method = known.copied().unwrap_or("HTTP");
    let name = match route {
        Some(route) => {
            let mut name = String::with_capacity(method.len() + 1 + route.len());
            name.push_str(method);
            name.push(' ');
            name.push_str(&route);
            put(&mut a, "http.route", Value::Str(route.into()));
            name
        }
        None => method.to_string(),
    };
    let status = h.response.as_ref().map(|r| r.status);
    if let Some(s) = status {
        put(&mut a, "http.response.status_code", Value::Int(i64::from(s)));
    }
    // The server end of the connection.
    let (server_sock, client_sock) = match kind {
        SpanKind::Server => (call.tuple.local, call.tuple.remote),
        SpanKind::Client => (call.tuple.remote, call.tuple.local),
    };
    let (host, host_port) = split_host(req.host.as_deref());
    // The peer's address is formatted once (it is also the client's, or the
    // server's when the request named no host).
    let peer_ip = call.tuple.remote.ip().to_string();
    let server_ip = if kind == SpanKind::Client { peer_ip.clone() } else { server_sock.ip().to_string() };
    put(&mut a, "server.address", Value::Str(host.unwrap_or(server_ip).into()));
    put(&mut a, "server.port", Value::Int(i64::from(host_port.unwrap_or(server_sock.port()))));
    if kind == SpanKind::Server {
        debug_assert_eq!(client_sock, call.tuple.remote);
        put(&mut a, "client.address", Value::Str(peer_ip.clone().into()));
    }
    put(&mut a, "network.peer.address", Value::Str(peer_ip.into()));
    put(&mut a, "network.peer.port", Value::Int(i64::from(call.tuple.remote.port())));
    put(&mut a, "network.transport", Value::Str("tcp".into()));
    let version = if req.common.minor_version == 0 { "1.0" } else { "1.1" };
    put(&mut a, "network.protocol.version", Value::Str(version.into()));
    if let Some(ua) = &req.user_agent {
        put(&mut a, "user_agent.original", Value::Str(ua.clone().into()));
    }
    if let Some(n) = h.request_body {
        put(&mut a, "http.request.body.size", Value::Int(n as i64));
    }
    if let Some(n) = h.response_body {
        put(&mut a, "http.response.body.size", Value::Int(n as i64));
    }
    for (name, value) in &req.common.headers {
        a.push((format!("http.request.header.{name}").into(), Value::StrArray(vec![value.clone()])));
    }
    if let Some(r) = &h.response {
        for (name, value) in &r.common.headers {
            a.push((format!("http.response.header.{name}").into(), Value::StrArray(vec![value.clone()])));
        }
    }

    let error_type: Option<Cow<'static, str>> = match status {
        Some(s) if s >= 500 => Some(s.to_string().into()),
        Some(s) if s >= 400 && kind == SpanKind::Client => Some(s.to_string().into()),
        None if h.no_response => Some("no_response".into()),
        _ => None,
    };
    let status = if error_type.is_some() { Status::Error } else { Status::Unset };
    if let Some(e) = error_type {
        put(&mut a, "error.type", Value::Str(e));
    }
    if h.response_incomplete {
        put(&mut a, "tracer.http.response_incomplete", Value::Str("true".into()));
    }
    if req.common.truncated {
        put(&mut a, "tracer.http.request_head_truncated", Value::Str("true".into()));
    }

    let header = req.traceparent.as_deref().and_then(parse_traceparent);
    let (trace_id, parent) = match header {
        Some((t, p)) => (t, Some(p)),
        None => (random_trace_id(), None),
    };
    let response = ex.response;
    let end_ns = response.map(|r| r.last_ns).filter(|n| *n > 0).unwrap_or(ex.request.last_ns.max(ex.request.first_ns));
    Span {
        trace_id,
        span_id: random_span_id(),
        parent_span_id: parent,
        kind,
        name,
        start_ns: ex.request.first_ns,
        end_ns: end_ns.max(ex.request.first_ns),
        response_first_ns: response.map(|r| r.first_ns),
        status,
        attributes: a,
        service,
        pid: call.pid,
        comm: call.comm.clone(),
        request_tid: ex.request.tid,
        response_tid: response.map(|r| r.tid),
        request_seq: ex.request.seq,
        local: call.tuple.local,
        remote: call.tuple.remote,
        context_from_header: header.is_some(),
        peer_service: None,
    }
}

fn put(a: &mut Vec<(Cow<'static, str>, Value)>, k: &'static str, v: Value) {
    a.push((Cow::Borrowed(k), v));
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(crate::protocols::http1::wire::is_tchar)
}

/// A Host header's host is a reg-name, an IPv4 address or a bracketed IPv6
/// literal (RFC 3986 3.2.2): unreserved, sub-delims and percent escapes.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_HOST
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:".contains(&b))
}

/// Host header `name[:port]` (IPv6 literals in brackets). A host that is not
/// one by RFC 3986, or longer than a DNS name, is not kept (the socket's
/// address names the server then); a port that is not a number neither.
fn split_host(h: Option<&str>) -> (Option<String>, Option<u16>) {
    let (host, port) = split_host_raw(h);
    match host.filter(|h| is_host(h)) {
        Some(h) => (Some(h), port),
        None => (None, None),
    }
}

fn split_host_raw(h: Option<&str>) -> (Option<String>, Option<u16>) {
    let Some(h) = h.map(str::trim).filter(|h| !h.is_empty()) else { return (None, None) };
    if let Some(rest) = h.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (Some(ip.to_string()), tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match h.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => (Some(n.to_string()), p.parse().ok()),
        _ => (Some(h.to_string()), None),
    }
}

/// Which end of the exchange this process is.
pub fn kind_of(call: &CallRecord) -> SpanKind {
    if call.requests_inbound { SpanKind::Server } else { SpanKind::Client }
}

/// An HTTP exchange's info, when it is one.
pub fn http(call: &CallRecord) -> Option<&HttpExchange> {
    match &call.exchange.info {
        Info::Http(h) => Some(h),
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

    #[test]
    fn query_values_are_redacted() {
        assert_eq!(redact_query("token=abc&x=1&flag"), "token=REDACTED&x=REDACTED&flag");
    }

    #[test]
    fn host_header() {
        assert_eq!(split_host(Some("api:8080")), (Some("api".into()), Some(8080)));
        assert_eq!(split_host(Some("[::1]:80")), (Some("::1".into()), Some(80)));
        assert_eq!(split_host(Some("example.com")), (Some("example.com".into()), None));
        // Not a host: the socket names the server.
        for bad in ["a b", "x\\x1b[2J", "\u{fffd}", "a/b", "<script>", &"a".repeat(254)] {
            assert_eq!(split_host(Some(bad)), (None, None), "{bad:?}");
        }
    }
}
