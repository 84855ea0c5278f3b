//! HTTP/1.x message heads: detection of a message start, parsing with
//! httparse, and the fields spans need. Header values are kept only for the
//! framing headers, the trace context and the configured allow-list; a
//! sensitive header's value is never kept, whatever the allow-list says.
//!
//! Everything kept comes from untrusted bytes and ends up in span names,
//! labels and on terminals, so it is made printable here (see `wire`): the
//! method is an RFC 9110 token, the target printable ASCII (other bytes
//! percent-encoded) with a flag saying whether it is a valid request target,
//! header values with control and invisible characters escaped.

use super::{HttpConfig, wire};

/// Longest request target kept (the rest is cut).
const MAX_TARGET: usize = 2048;
/// Longest header value kept.
const MAX_VALUE: usize = 256;
/// Headers parsed per message at most (more: the head counts as truncated).
const MAX_HEADERS: usize = 96;

const METHODS: &[&[u8]] =
    &[b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];

/// A request line: a known method, or an unknown token followed by a target
/// and `HTTP/1.x` on the same (captured) line. An unknown token shorter than
/// any registered method, or the tail of a known one (`T` of a `GE`|`T`
/// split), is not a request line.
pub fn looks_like_request(p: &[u8]) -> bool {
    if METHODS.iter().any(|m| p.starts_with(m)) {
        return true;
    }
    let Some(sp) = p.iter().take(MAX_METHOD + 1).position(|b| *b == b' ') else { return false };
    let token = &p[..sp];
    if sp < 3
        || !token.iter().all(|b| is_method_byte(*b))
        || METHODS.iter().any(|m| m.trim_ascii_end().ends_with(token))
    {
        return false;
    }
    let line_end = p.iter().position(|b| *b == b'\r').unwrap_or(p.len());
    let line = &p[..line_end];
    line.len() > 9 && line[line.len() - 9..line.len() - 1] == *b" HTTP/1."
}

/// A status line: `HTTP/1.x NNN`.
pub fn looks_like_response(p: &[u8]) -> bool {
    p.len() >= STATUS_PREFIX && could_be_response(p)
}

/// Whether `p` starts a message of the given kind: `Some(true)` or
/// `Some(false)`, or `None` when `p` is a prefix of a plausible start that is
/// too short to tell (a syscall that split the first line).
pub fn starts_message(p: &[u8], request: bool) -> Option<bool> {
    type Check = fn(&[u8]) -> bool;
    let (yes, maybe): (Check, Check) =
        if request { (looks_like_request, could_be_request) } else { (looks_like_response, could_be_response) };
    if yes(p) {
        Some(true)
    } else if maybe(p) {
        None
    } else {
        Some(false)
    }
}

/// Bytes of `HTTP/1.x NNN`.
const STATUS_PREFIX: usize = 12;
/// Longest method token accepted for a method outside [`METHODS`].
const MAX_METHOD: usize = 20;

fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// `p` agrees with `HTTP/1.x NNN` as far as it goes.
fn could_be_response(p: &[u8]) -> bool {
    p.iter().take(STATUS_PREFIX).enumerate().all(|(i, b)| match i {
        0..7 => *b == b"HTTP/1."[i],
        7 => *b == b'0' || *b == b'1',
        8 => *b == b' ',
        _ => b.is_ascii_digit(),
    })
}

/// `p` is a request line cut before it could be recognised: part of a known
/// method, or a method token and a target whose line has not ended yet.
fn could_be_request(p: &[u8]) -> bool {
    if METHODS.iter().any(|m| m.starts_with(p)) {
        return true;
    }
    match p.iter().take(MAX_METHOD + 1).position(|b| *b == b' ') {
        None => p.len() <= MAX_METHOD && p.iter().all(|b| is_method_byte(*b)),
        Some(0) => false,
        Some(sp) => {
            p[..sp].iter().all(|b| is_method_byte(*b)) && p[sp + 1..].iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        }
    }
}

/// How the body of a message is delimited (RFC 9112 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Common {
    /// 0 or 1 (HTTP/1.0, HTTP/1.1).
    pub minor_version: u8,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub connection_close: bool,
    /// Allow-listed headers (lowercase name, value or "REDACTED").
    pub headers: Vec<(String, String)>,
    /// The head was cut (not captured whole, or too many headers): only the
    /// first line is sure.
    pub truncated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// An RFC 9110 token of at most 20 bytes.
    pub method: String,
    /// Request target as sent, printable ASCII: bytes outside `!`..=`~` are
    /// percent-encoded; cut at 2048 bytes.
    pub target: String,
    /// Where a route may come from: the target's path when the target is a
    /// valid request target (origin, absolute or asterisk form) whose path
    /// was captured whole; None otherwise (garbage, CONNECT's authority
    /// form, a path cut by the capture).
    pub route_path: Option<std::ops::Range<usize>>,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub upgrade: bool,
    pub common: Common,
}

impl RequestHead {
    /// The path a route is made of (see `route_path`).
    pub fn route_path(&self) -> Option<&str> {
        self.route_path.clone().and_then(|r| self.target.get(r))
    }

    fn set_target(&mut self, raw: &[u8], cut: bool) {
        let (target, route_path) = wire::target(raw, cut, MAX_TARGET);
        (self.target, self.route_path) = (target, route_path);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub common: Common,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    Request(RequestHead),
    Response(ResponseHead),
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "returned by value to the caller, which moves the head on; never stored")]
pub enum Parsed {
    /// A complete head of this many bytes.
    Complete(Head, usize),
    /// More bytes needed.
    Partial,
    /// Not an HTTP/1 head, or one with more than [`MAX_HEADERS`] headers.
    Invalid,
}

pub fn parse(buf: &[u8], request: bool, cfg: &HttpConfig) -> Parsed {
    // Left uninitialised: zeroing 96 headers (3 KiB) per head was ~9 % of the table's time.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let parser = httparse::ParserConfig::default();
    if request {
        let mut req = httparse::Request::new(&mut []);
        match parser.parse_request_with_uninit_headers(&mut req, buf, &mut headers) {
            Ok(httparse::Status::Complete(n)) => {
                let method = req.method.unwrap_or_default();
                // httparse takes any token; ours are at most MAX_METHOD long.
                if method.len() > MAX_METHOD {
                    return Parsed::Invalid;
                }
                let mut h = RequestHead { method: method.to_string(), ..Default::default() };
                h.set_target(req.path.unwrap_or_default().as_bytes(), false);
                h.common.minor_version = req.version.unwrap_or(1);
                for hd in req.headers.iter() {
                    request_header(&mut h, hd.name, hd.value, cfg);
                }
                Parsed::Complete(Head::Request(h), n)
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(_) => Parsed::Invalid,
        }
    } else {
        let mut resp = httparse::Response::new(&mut []);
        match parser.parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
            Ok(httparse::Status::Complete(n)) => {
                let mut h = ResponseHead { status: resp.code.unwrap_or(0), ..Default::default() };
                h.common.minor_version = resp.version.unwrap_or(1);
                for hd in resp.headers.iter() {
                    common_header(&mut h.common, hd.name, hd.value, &cfg.response_headers, cfg);
                }
                Parsed::Complete(Head::Response(h), n)
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(_) => Parsed::Invalid,
        }
    }
}

/// A head that could not be parsed whole (cut by the capture, longer than
/// `MAX_HEAD`, or malformed past its first line), marked `truncated`: its
/// first line, then the header lines that are whole in `buf`. A line counts
/// only when its end and the first byte of the next line were captured, and
/// that byte does not continue it (obs-fold): nothing is made of a line the
/// capture cut. Parsing stops at the first malformed line or the empty line.
pub fn parse_truncated(buf: &[u8], request: bool, cfg: &HttpConfig) -> Option<Head> {
    let mut head = parse_first_line(buf, request)?;
    let Some(first_end) = buf.iter().position(|b| *b == b'\n') else { return Some(head) };
    let mut rest = &buf[first_end + 1..];
    for _ in 0..MAX_HEADERS {
        let Some(end) = rest.iter().position(|b| *b == b'\n') else { break };
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        let next = rest.get(end + 1);
        if line.is_empty() || next.is_none_or(|b| *b == b' ' || *b == b'\t') {
            break;
        }
        let Some((name, value)) = header_line(line) else { break };
        match &mut head {
            Head::Request(h) => request_header(h, name, value, cfg),
            Head::Response(h) => common_header(&mut h.common, name, value, &cfg.response_headers, cfg),
        }
        rest = &rest[end + 1..];
    }
    Some(head)
}

/// `name: value` with a token name and a field value httparse would take
/// (HTAB, SP, visible ASCII, obs-text); the value without surrounding spaces.
fn header_line(line: &[u8]) -> Option<(&str, &[u8])> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|b| wire::is_tchar(*b)) {
        return None;
    }
    let value = line[colon + 1..].trim_ascii();
    if !value.iter().all(|b| *b == b'\t' || *b == b' ' || (0x21..=0x7e).contains(b) || *b >= 0x80) {
        return None;
    }
    Some((std::str::from_utf8(name).ok()?, value))
}

/// The first line alone. A line cut before its end still gives the method
/// and the start of the target, or the status once `HTTP/1.x NNN` was
/// captured. A method must be a token, a target must have no control bytes
/// up to its end, and a line that ended must end in `HTTP/1.0` or `HTTP/1.1`.
pub fn parse_first_line(buf: &[u8], request: bool) -> Option<Head> {
    let end = buf.iter().position(|b| *b == b'\r' || *b == b'\n');
    let line = &buf[..end.unwrap_or(buf.len())];
    let mut parts = line.splitn(3, |b| *b == b' ');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next());
    let version = |v: &[u8]| match v {
        b"HTTP/1.0" => Some(0),
        b"HTTP/1.1" => Some(1),
        _ => None,
    };
    let mut common = Common { truncated: true, minor_version: 1, ..Default::default() };
    if request {
        if a.is_empty() || a.len() > MAX_METHOD || !a.iter().all(|b| wire::is_tchar(*b)) {
            return None;
        }
        // A target is visible ASCII or obs-text, as httparse takes it.
        if b.is_empty() || !b.iter().all(|x| (0x21..=0x7e).contains(x) || *x >= 0x80) {
            return None;
        }
        // A line cut by the capture may end inside the target or the version.
        let cut = end.is_none() && c.is_none();
        match c.map(version) {
            Some(Some(m)) => common.minor_version = m,
            None if cut => {}
            Some(None) if end.is_none() && c.is_some_and(|v| b"HTTP/1.1".starts_with(v)) => {}
            _ => return None,
        }
        let mut h = RequestHead { method: String::from_utf8_lossy(a).into_owned(), common, ..Default::default() };
        h.set_target(b, cut);
        Some(Head::Request(h))
    } else {
        common.minor_version = version(a)?;
        if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let status = std::str::from_utf8(b).ok()?.parse().ok()?;
        Some(Head::Response(ResponseHead { status, common }))
    }
}

fn request_header(h: &mut RequestHead, name: &str, value: &[u8], cfg: &HttpConfig) {
    let v = || wire::printable(value, MAX_VALUE);
    if name.eq_ignore_ascii_case("upgrade") {
        h.upgrade = true;
    } else if cfg.is_sensitive(name) {
        // Configured as sensitive: not even the fields spans always carry.
    } else if name.eq_ignore_ascii_case("host") {
        h.host = Some(v());
    } else if name.eq_ignore_ascii_case("user-agent") {
        h.user_agent = Some(v());
    } else if name.eq_ignore_ascii_case("traceparent") {
        h.traceparent = Some(v());
    } else if name.eq_ignore_ascii_case("tracestate") {
        h.tracestate = Some(v());
    }
    common_header(&mut h.common, name, value, &cfg.request_headers, cfg);
}

fn common_header(c: &mut Common, name: &str, value: &[u8], allow: &[String], cfg: &HttpConfig) {
    if name.eq_ignore_ascii_case("content-length") {
        c.content_length = std::str::from_utf8(value).ok().and_then(|s| s.trim().parse().ok());
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        // Chunked is the final coding when present (RFC 9112 6.1).
        let v = value.trim_ascii_end();
        c.chunked = v.len() >= 7 && v[v.len() - 7..].eq_ignore_ascii_case(b"chunked");
    } else if name.eq_ignore_ascii_case("connection") {
        c.connection_close = value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
    }
    if allow.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        let value = if cfg.is_sensitive(name) { "REDACTED".to_string() } else { wire::printable(value, MAX_VALUE) };
        c.headers.push((name.to_ascii_lowercase(), value));
    }
}

/// Body framing of a request (RFC 9112 6.3: no length means no body).
pub fn request_framing(h: &RequestHead) -> Framing {
    if h.common.chunked {
        Framing::Chunked
    } else {
        match h.common.content_length {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    }
}

/// Body framing of a response to a request with `method`.
pub fn response_framing(h: &ResponseHead, method: Option<&str>) -> Framing {
    let s = h.status;
    if (100..200).contains(&s) || s == 204 || s == 304 || method == Some("HEAD") {
        return Framing::None;
    }
    if method == Some("CONNECT") && (200..300).contains(&s) {
        return Framing::None;
    }
    if h.common.chunked {
        Framing::Chunked
    } else {
        match h.common.content_length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_starts() {
        assert!(looks_like_request(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_request(b"PROPFIND /x HTTP/1.1\r\nHost: a\r\n"));
        assert!(!looks_like_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!looks_like_request(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_request(b"SET key value\r\n"));
        assert!(looks_like_request(b"MKCOL /c HTTP/1.1\r\n"));
        for split in [&b"T /x HTTP/1.1\r\n"[..], b"OST /x HTTP/1.1\r\n", b"ETE /x HTTP/1.1\r\n", b"AB /x HTTP/1.1\r\n"]
        {
            assert!(!looks_like_request(split), "{:?}", String::from_utf8_lossy(split));
        }
        assert_eq!(starts_message(b"PROPF", true), None);
        assert_eq!(starts_message(b"HTTP/1.1 2", false), None);
        assert_eq!(starts_message(b"HTTP/2 200", false), Some(false));
        assert_eq!(starts_message(b"+OK\r\n", false), Some(false));
        assert!(looks_like_response(b"HTTP/1.1 200 OK\r\n"));
        assert!(looks_like_response(b"HTTP/1.0 404 Not Found\r\n"));
        assert!(!looks_like_response(b"HTTP/2 200\r\n"));
        assert!(!looks_like_response(b"+OK\r\n"));
    }

    #[test]
    fn sensitive_headers_are_redacted_even_when_allow_listed() {
        let cfg = HttpConfig {
            request_headers: vec!["authorization".into(), "x-request-id".into()],
            ..HttpConfig::default()
        };
        let raw = b"GET /a?b=c HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nX-Request-Id: 42\r\nCookie: sid=1\r\n\r\n";
        let Parsed::Complete(Head::Request(h), n) = parse(raw, true, &cfg) else { panic!() };
        assert_eq!(n, raw.len());
        assert_eq!(h.target, "/a?b=c");
        assert_eq!(
            h.common.headers,
            vec![("authorization".into(), "REDACTED".into()), ("x-request-id".into(), "42".into())]
        );
        assert!(!format!("{h:?}").contains("s3cret"));
        assert!(!format!("{h:?}").contains("sid=1"));
    }

    #[test]
    fn trace_context_and_always_kept_fields() {
        let raw = b"GET / HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
tracestate: k=v\r\nUser-Agent: curl/8\r\nHost: svc\r\n\r\n";
        let Parsed::Complete(Head::Request(h), _) = parse(raw, true, &HttpConfig::default()) else { panic!() };
        assert_eq!(h.traceparent.as_deref(), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert_eq!(
            (h.tracestate.as_deref(), h.user_agent.as_deref(), h.host.as_deref()),
            (Some("k=v"), Some("curl/8"), Some("svc"))
        );
    }

    #[test]
    fn framing_rules() {
        let r = |status, cl: Option<u64>, chunked| ResponseHead {
            status,
            common: Common { content_length: cl, chunked, ..Default::default() },
        };
        assert_eq!(response_framing(&r(200, Some(5), false), Some("GET")), Framing::Length(5));
        assert_eq!(response_framing(&r(200, Some(5), false), Some("HEAD")), Framing::None);
        assert_eq!(response_framing(&r(204, None, false), Some("GET")), Framing::None);
        assert_eq!(response_framing(&r(304, Some(10), false), Some("GET")), Framing::None);
        assert_eq!(response_framing(&r(100, None, false), Some("POST")), Framing::None);
        assert_eq!(response_framing(&r(200, Some(3), true), Some("GET")), Framing::Chunked);
        assert_eq!(response_framing(&r(200, None, false), Some("GET")), Framing::UntilClose);
        assert_eq!(response_framing(&r(200, None, false), Some("CONNECT")), Framing::None);
    }

    #[test]
    fn first_line_salvage() {
        let Some(Head::Request(h)) = parse_first_line(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-", true) else {
            panic!()
        };
        assert_eq!((h.method.as_str(), h.target.as_str(), h.common.truncated), ("POST", "/upload", true));
        let Some(Head::Response(r)) = parse_first_line(b"HTTP/1.1 503 Service Unavailable\r\nServ", false) else {
            panic!()
        };
        assert_eq!(r.status, 503);
        let Some(Head::Response(r)) = parse_first_line(b"HTTP/1.1 200 O", false) else { panic!("status captured") };
        assert_eq!(r.status, 200);
        assert!(parse_first_line(b"HTTP/1.1 20", false).is_none(), "status not complete");
        let Some(Head::Request(h)) = parse_first_line(b"GET /very/long/pa", true) else { panic!("cut target") };
        assert_eq!((h.method.as_str(), h.target.as_str()), ("GET", "/very/long/pa"));
        assert!(parse_first_line(b"GET /x HTTZ\r\n", true).is_none(), "bad version");
    }
}
