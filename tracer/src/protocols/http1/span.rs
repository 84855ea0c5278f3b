//! How an HTTP exchange is described on a span: OpenTelemetry HTTP semantic
//! conventions for name and attributes, status rules (5xx is an error on
//! both kinds, 4xx only on CLIENT spans), the templated route
//! ([`super::route`]) and the trace context the request carried.

use std::borrow::Cow;

use super::{
    HttpExchange,
    route::{RouteConfig, Router},
};
use crate::span::{Attributes, Described, Key, SpanKind, Value, parse_traceparent};

const KNOWN_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Longest `server.address` kept from a Host header (a DNS name is at most 253).
const MAX_HOST: usize = 253;

/// Settings of HTTP spans (`[http]` in the config file, with the parser's).
#[derive(Clone, Debug)]
pub struct HttpSpanConfig {
    /// Replace query values by REDACTED (keys kept).
    pub redact_query_values: bool,
    pub routes: RouteConfig,
}

impl Default for HttpSpanConfig {
    fn default() -> Self {
        HttpSpanConfig { redact_query_values: true, routes: RouteConfig::default() }
    }
}

/// What describing HTTP spans keeps between spans: the routes seen per service.
pub struct HttpSpans {
    router: Router,
    redact_query_values: bool,
    /// Routes replaced by the overflow route since the last take.
    pub route_overflow: u64,
}

impl HttpSpans {
    pub fn new(cfg: &HttpSpanConfig) -> anyhow::Result<Self> {
        Ok(HttpSpans {
            router: Router::new(&cfg.routes)?,
            redact_query_values: cfg.redact_query_values,
            route_overflow: 0,
        })
    }

    /// The span of one HTTP exchange of `service`. With no valid request
    /// target there is no route: the name is the method alone, as the
    /// semantic conventions ask.
    pub fn describe(&mut self, h: &HttpExchange, kind: SpanKind, service: &str) -> Described {
        let req = &h.request;
        let route = req.route_path().map(|path| {
            let (route, overflowed) = self.router.route(service, path);
            self.route_overflow += u64::from(overflowed);
            route
        });
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.target.as_str(), None),
        };
        let mut a: Attributes = Vec::with_capacity(16);
        let known = KNOWN_METHODS.iter().find(|m| **m == req.method.as_str());
        match known {
            Some(m) => a.push((Key::HttpRequestMethod, Value::Str(Cow::Borrowed(m)))),
            None => {
                a.push((Key::HttpRequestMethod, "_OTHER".into()));
                // The parser keeps tokens only; checked again because this
                // string is shown and exported as it is.
                if is_token(&req.method) {
                    a.push((Key::HttpRequestMethodOriginal, req.method.clone().into()));
                }
            }
        }
        a.push((Key::UrlPath, path.to_string().into()));
        if let Some(q) = query {
            let q = if self.redact_query_values { redact_query(q) } else { q.to_string() };
            a.push((Key::UrlQuery, q.into()));
        }
        a.push((Key::UrlScheme, if h.tls { "https" } else { "http" }.into()));
        // The name before the route moves into its attribute.
        let method = known.copied().unwrap_or("HTTP");
        let name = match route {
            Some(route) => {
                let mut name = String::with_capacity(method.len() + 1 + route.len());
                name.push_str(method);
                name.push(' ');
                name.push_str(&route);
                a.push((Key::HttpRoute, route.into()));
                name
            }
            None => method.to_string(),
        };
        let status = h.response.as_ref().map(|r| r.status);
        if let Some(s) = status {
            a.push((Key::HttpResponseStatusCode, Value::Int(i64::from(s))));
        }
        let version = if req.common.minor_version == 0 { "1.0" } else { "1.1" };
        a.push((Key::NetworkProtocolVersion, version.into()));
        if let Some(ua) = &req.user_agent {
            a.push((Key::UserAgentOriginal, ua.clone().into()));
        }
        if let Some(n) = h.request_body {
            a.push((Key::HttpRequestBodySize, Value::Int(n as i64)));
        }
        if let Some(n) = h.response_body {
            a.push((Key::HttpResponseBodySize, Value::Int(n as i64)));
        }
        for (name, value) in &req.common.headers {
            a.push((Key::Other(format!("http.request.header.{name}").into()), Value::StrArray(vec![value.clone()])));
        }
        if let Some(r) = &h.response {
            for (name, value) in &r.common.headers {
                a.push((
                    Key::Other(format!("http.response.header.{name}").into()),
                    Value::StrArray(vec![value.clone()]),
                ));
            }
        }
        if h.response_incomplete {
            a.push((Key::TracerResponseIncomplete, "true".into()));
        }
        if req.common.truncated {
            a.push((Key::TracerRequestHeadTruncated, "true".into()));
        }
        let error_type: Option<Cow<'static, str>> = match status {
            Some(s) if s >= 500 => Some(s.to_string().into()),
            Some(s) if s >= 400 && kind == SpanKind::Client => Some(s.to_string().into()),
            None if h.no_response => Some("no_response".into()),
            _ => None,
        };
        let (host, port) = split_host(req.host.as_deref());
        Described {
            name,
            protocol: "http",
            error_type,
            attributes: a,
            context: req.traceparent.as_deref().and_then(parse_traceparent),
            server: host.map(|h| (h, port)),
            kind: None,
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

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(super::wire::is_tchar)
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
pub fn split_host(h: Option<&str>) -> (Option<String>, Option<u16>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
