//! HTTP/1.x message heads: detection of a message start, parsing with
//! httparse, and the fields spans need. Header values are kept only for the
//! framing headers, the trace context and the configured allow-list; a
//! sensitive header's value is never kept, whatever the allow-list says.

use super::HttpConfig;

/// Longest request target kept (the rest is cut).
const MAX_TARGET: usize = 2048;
/// Longest header value kept.
const MAX_VALUE: usize = 256;
/// Headers parsed per message at most (more: the head counts as truncated).
const MAX_HEADERS: usize = 96;

const METHODS: &[&[u8]] = &[
    b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ",
];

/// A request line: a known method, or an unknown token followed by a target
/// and `HTTP/1.x` on the same (captured) line.
pub fn looks_like_request(p: &[u8]) -> bool {
    if METHODS.iter().any(|m| p.starts_with(m)) {
        return true;
    }
    let Some(sp) = p.iter().take(21).position(|b| *b == b' ') else { return false };
    if sp == 0 || !p[..sp].iter().all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_') {
        return false;
    }
    let line_end = p.iter().position(|b| *b == b'\r').unwrap_or(p.len());
    let line = &p[..line_end];
    line.len() > 9 && line[line.len() - 9..line.len() - 1] == *b" HTTP/1."
}

/// A status line: `HTTP/1.x NNN`.
pub fn looks_like_response(p: &[u8]) -> bool {
    p.len() >= 12
        && p.starts_with(b"HTTP/1.")
        && (p[7] == b'0' || p[7] == b'1')
        && p[8] == b' '
        && p[9..12].iter().all(u8::is_ascii_digit)
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
    pub method: String,
    /// Request target as sent (origin form: path and query), cut at 2048 bytes.
    pub target: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub upgrade: bool,
    pub common: Common,
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

/// `Ok(Some((head, len)))`: a complete head of `len` bytes; `Ok(None)`: more
/// bytes needed; `Err`: not HTTP/1.
pub fn parse(buf: &[u8], request: bool, cfg: &HttpConfig) -> Result<Option<(Head, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if request {
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let mut h = RequestHead {
                    method: req.method.unwrap_or_default().to_string(),
                    target: cut(req.path.unwrap_or_default(), MAX_TARGET),
                    ..Default::default()
                };
                h.common.minor_version = req.version.unwrap_or(1);
                for hd in req.headers.iter() {
                    request_header(&mut h, hd.name, hd.value, cfg);
                }
                Ok(Some((Head::Request(h), n)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(()),
            Err(_) => Err(()),
        }
    } else {
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let mut h = ResponseHead { status: resp.code.unwrap_or(0), ..Default::default() };
                h.common.minor_version = resp.version.unwrap_or(1);
                for hd in resp.headers.iter() {
                    common_header(&mut h.common, hd.name, hd.value, &cfg.response_headers, cfg);
                }
                Ok(Some((Head::Response(h), n)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Err(()),
        }
    }
}

/// The first line alone, for a head whose rest was not captured.
pub fn parse_first_line(buf: &[u8], request: bool) -> Option<Head> {
    let end = buf.iter().position(|b| *b == b'\r' || *b == b'\n')?;
    let line = std::str::from_utf8(&buf[..end]).ok()?;
    let mut parts = line.splitn(3, ' ');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next());
    let mut common = Common { truncated: true, minor_version: 1, ..Default::default() };
    if request {
        let v = c?;
        common.minor_version = v.strip_prefix("HTTP/1.")?.parse().ok()?;
        Some(Head::Request(RequestHead {
            method: a.to_string(),
            target: cut(b, MAX_TARGET),
            common,
            ..Default::default()
        }))
    } else {
        common.minor_version = a.strip_prefix("HTTP/1.")?.parse().ok()?;
        Some(Head::Response(ResponseHead { status: b.parse().ok()?, common }))
    }
}

fn request_header(h: &mut RequestHead, name: &str, value: &[u8], cfg: &HttpConfig) {
    let v = || cut(&String::from_utf8_lossy(value), MAX_VALUE);
    if name.eq_ignore_ascii_case("host") {
        h.host = Some(v());
    } else if name.eq_ignore_ascii_case("user-agent") {
        h.user_agent = Some(v());
    } else if name.eq_ignore_ascii_case("traceparent") {
        h.traceparent = Some(v());
    } else if name.eq_ignore_ascii_case("tracestate") {
        h.tracestate = Some(v());
    } else if name.eq_ignore_ascii_case("upgrade") {
        h.upgrade = true;
    }
    common_header(&mut h.common, name, value, &cfg.request_headers, cfg);
}

fn common_header(c: &mut Common, name: &str, value: &[u8], allow: &[String], cfg: &HttpConfig) {
    if name.eq_ignore_ascii_case("content-length") {
        c.content_length = std::str::from_utf8(value).ok().and_then(|s| s.trim().parse().ok());
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        // Chunked is the final coding when present (RFC 9112 6.1).
        c.chunked = value.to_ascii_lowercase().trim_ascii_end().ends_with(b"chunked");
    } else if name.eq_ignore_ascii_case("connection") {
        c.connection_close = value.to_ascii_lowercase().windows(5).any(|w| w == b"close");
    }
    if allow.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        let value = if cfg.is_sensitive(name) {
            "REDACTED".to_string()
        } else {
            cut(&String::from_utf8_lossy(value), MAX_VALUE)
        };
        c.headers.push((name.to_ascii_lowercase(), value));
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
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
        let Ok(Some((Head::Request(h), n))) = parse(raw, true, &cfg) else { panic!() };
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
        assert!(parse_first_line(b"HTTP/1.1 200 OK", false).is_none(), "line not complete");
    }
}
