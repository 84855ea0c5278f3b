//! How an HTTP/2 exchange is described on a span. Not gRPC: as HTTP's
//! (`http1::span`, routes included) with `network.protocol.version` 2.
//! gRPC (OpenTelemetry RPC conventions): named `{service}/{method}` from
//! `:path`, `rpc.grpc.status_code` from the trailers; a SERVER span is an
//! error only for the codes that mean the server failed, a CLIENT span for
//! any code but OK. A stream reset or refused without a status is an error
//! by its HTTP/2 error code (a client's CANCEL is not the server's error).

use std::borrow::Cow;

use super::H2Exchange;
use crate::{
    protocols::{
        Side,
        http1::span::{HttpSpans, split_host},
    },
    span::{Attributes, Described, Key, SpanKind, Value, parse_traceparent},
};

/// gRPC status codes by number (grpc/doc/statuscodes.md).
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Codes that are errors on a SERVER span: UNKNOWN, DEADLINE_EXCEEDED,
/// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
const SERVER_ERRORS: [u32; 6] = [2, 4, 12, 13, 14, 15];

/// HTTP/2 error codes by number (RFC 9113 section 7).
const H2_ERRORS: [&str; 14] = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
];
const CANCEL: u32 = 8;

pub fn describe(h: &H2Exchange, http: &mut HttpSpans, kind: SpanKind, service: &str) -> Described {
    let mut d = if h.grpc { grpc(h, kind) } else { plain(h, http, kind, service) };
    if h.http.response.as_ref().is_some_and(|r| r.common.truncated) {
        d.attributes.push((Key::Other("tracer.http2.response_headers_incomplete".into()), "true".into()));
    }
    // A status that says why wins; a reset or GOAWAY says more than nothing.
    if let Some(e) = stream_error(h, kind)
        && d.error_type.as_deref().is_none_or(|t| t == "no_response")
    {
        d.error_type = Some(e);
    }
    d
}

/// The error of a stream that ended without a (gRPC) status saying so.
fn stream_error(h: &H2Exchange, kind: SpanKind) -> Option<Cow<'static, str>> {
    if h.refused {
        return Some("goaway".into());
    }
    let (code, by) = h.reset?;
    if h.grpc_status.is_some() {
        return None; // the status says how it ended
    }
    if code == CANCEL && by == Side::Request && kind == SpanKind::Server {
        return None; // the client gave up: not the server's failure
    }
    if code == 0 && h.http.response.is_some() {
        return None; // NO_ERROR after the response: the server stopped reading the request
    }
    Some(h2_error(code))
}

fn h2_error(code: u32) -> Cow<'static, str> {
    match H2_ERRORS.get(code as usize) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(format!("h2_error_{code}")),
    }
}

fn plain(h: &H2Exchange, http: &mut HttpSpans, kind: SpanKind, service: &str) -> Described {
    let mut d = http.describe(&h.http, kind, service);
    let unknown_status = h.http.response.as_ref().is_some_and(|r| r.status == 0);
    d.attributes.retain(|(k, _)| !(unknown_status && *k == Key::HttpResponseStatusCode));
    for (k, v) in &mut d.attributes {
        match k {
            Key::NetworkProtocolVersion => *v = "2".into(),
            Key::UrlScheme if h.scheme.as_deref() == Some("https") => *v = "https".into(),
            _ => {}
        }
    }
    d
}

fn grpc(h: &H2Exchange, kind: SpanKind) -> Described {
    let req = &h.http.request;
    let mut a: Attributes = Vec::with_capacity(8);
    a.push((Key::RpcSystem, "grpc".into()));
    let call = req.route_path().and_then(service_method);
    if let Some((service, method)) = call {
        a.push((Key::RpcService, service.to_string().into()));
        a.push((Key::RpcMethod, method.to_string().into()));
    }
    if let Some(code) = h.grpc_status {
        a.push((Key::RpcGrpcStatusCode, Value::Int(i64::from(code))));
    }
    a.push((Key::NetworkProtocolName, "http".into()));
    a.push((Key::NetworkProtocolVersion, "2".into()));
    for (name, value) in &req.common.headers {
        a.push((Key::Other(format!("rpc.grpc.request.metadata.{name}").into()), Value::StrArray(vec![value.clone()])));
    }
    if let Some(r) = &h.http.response {
        for (name, value) in &r.common.headers {
            a.push((
                Key::Other(format!("rpc.grpc.response.metadata.{name}").into()),
                Value::StrArray(vec![value.clone()]),
            ));
        }
    }
    if req.common.truncated {
        a.push((Key::TracerRequestHeadTruncated, "true".into()));
    }
    if h.http.response_incomplete {
        a.push((Key::TracerResponseIncomplete, "true".into()));
    }
    let error_type = match h.grpc_status {
        Some(0) => None,
        Some(c) if kind == SpanKind::Client || SERVER_ERRORS.contains(&c) => Some(grpc_code(c)),
        Some(_) => None,
        None if h.http.no_response => Some("no_response".into()),
        // No status: an HTTP error before gRPC (a proxy's 503), or one not read.
        None => match h.http.response.as_ref().map(|r| r.status) {
            Some(s) if s >= 300 => Some(s.to_string().into()),
            _ => None,
        },
    };
    let name = match call {
        Some((s, m)) => format!("{s}/{m}"),
        None => "grpc".to_string(),
    };
    let (host, port) = split_host(req.host.as_deref());
    Described {
        name,
        protocol: "grpc",
        error_type,
        attributes: a,
        context: req.traceparent.as_deref().and_then(parse_traceparent),
        server: host.map(|h| (h, port)),
        kind: None,
    }
}

fn grpc_code(c: u32) -> Cow<'static, str> {
    match GRPC_CODES.get(c as usize) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(c.to_string()),
    }
}

/// `/package.Service/Method` -> (`package.Service`, `Method`), when both
/// are names (letters, digits, `_`, `.`, `-`; not empty).
fn service_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let name = |s: &str| {
        !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    (name(service) && name(method)).then_some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths() {
        assert_eq!(service_method("/helloworld.Greeter/SayHello"), Some(("helloworld.Greeter", "SayHello")));
        assert_eq!(service_method("/a/b/c"), None);
        assert_eq!(service_method("/x"), None);
        assert_eq!(service_method("/a b/c"), None);
    }
}
