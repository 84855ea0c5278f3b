//! Fixtures for the HTTP/2 parser: frames built with an HPACK encoder (the
//! one of `loona-hpack`, which indexes every new name, so later blocks
//! refer to the dynamic table), fed as syscalls, exchanges out. Each
//! exchange is summarised on one line:
//!
//! `STREAM METHOD PATH -> STATUS | grpc=CODE | body REQ/RESP | flags`
//!
//! (`-`: not known; flags: `reset=CODE/by`, `refused`, `incomplete`,
//! `no_response`, `req_cut`, `resp_cut`).

use std::sync::Arc;

use loona_hpack::Encoder;

use super::{
    H2Exchange, Http2, detect,
    frame::{self, PREFACE},
    span::describe,
};
use crate::{
    protocols::{
        Exchange, Info, ParserCounts, ProtocolParser, Segment, Side,
        http1::{HttpConfig, span::HttpSpans},
    },
    span::{Described, Key, SpanKind, Value},
};

pub(super) use Side::{Request as Q, Response as R};

/// One syscall: direction, bytes moved, bytes captured of them (None: all).
pub(super) type Seg = (Side, Vec<u8>, Option<usize>);

pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = len.to_be_bytes()[1..].to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub(super) fn settings() -> Vec<u8> {
    frame(frame::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])
}

pub(super) fn data(stream: u32, n: usize, end: bool) -> Vec<u8> {
    frame(frame::DATA, u8::from(end), stream, &vec![b'x'; n])
}

pub(super) fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(frame::RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// Both peers' HPACK encoders.
pub(super) struct Wire {
    pub req: Encoder<'static>,
    resp: Encoder<'static>,
}

impl Wire {
    pub(super) fn new() -> Self {
        Wire { req: Encoder::new(), resp: Encoder::new() }
    }

    pub(super) fn block(&mut self, side: Side, fields: &[(&str, &str)]) -> Vec<u8> {
        let enc = if side == Q { &mut self.req } else { &mut self.resp };
        enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// A HEADERS frame (END_HEADERS, and END_STREAM when `end`).
    pub(super) fn headers(&mut self, side: Side, stream: u32, fields: &[(&str, &str)], end: bool) -> Vec<u8> {
        let block = self.block(side, fields);
        frame(frame::HEADERS, frame::END_HEADERS | u8::from(end), stream, &block)
    }

    pub(super) fn get(&mut self, stream: u32, path: &str) -> Vec<u8> {
        let f = [(":method", "GET"), (":scheme", "http"), (":authority", "api:8080"), (":path", path)];
        self.headers(Q, stream, &f, true)
    }

    pub(super) fn status(&mut self, stream: u32, status: &str, end: bool) -> Vec<u8> {
        self.headers(R, stream, &[(":status", status), ("content-type", "text/plain")], end)
    }

    pub(super) fn grpc_call(&mut self, stream: u32, path: &str) -> Vec<u8> {
        let f = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "greeter:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        [self.headers(Q, stream, &f, false), data(stream, 12, true)].concat()
    }

    /// A gRPC response: headers, a message, trailers with `code`.
    pub(super) fn grpc_reply(&mut self, stream: u32, code: &str) -> Vec<u8> {
        [
            self.headers(R, stream, &[(":status", "200"), ("content-type", "application/grpc")], false),
            data(stream, 20, false),
            self.headers(R, stream, &[("grpc-status", code), ("grpc-message", "")], true),
        ]
        .concat()
    }
}

/// The client's first bytes: the preface and its SETTINGS.
pub(super) fn preface() -> Vec<u8> {
    [PREFACE, &settings()].concat()
}

pub(super) struct Run {
    pub parser: Http2,
    pub ex: Vec<Exchange>,
    pub counts: ParserCounts,
}

pub(super) fn feed_with(cfg: HttpConfig, segs: &[Seg]) -> Run {
    let mut parser = Http2::new(Arc::new(cfg));
    let mut ex = Vec::new();
    let mut counts = ParserCounts::default();
    let mut seq = [1_000u32, 900_000u32];
    for (i, (side, bytes, cap)) in segs.iter().enumerate() {
        let k = usize::from(*side == R);
        let cap = cap.unwrap_or(bytes.len()).min(bytes.len());
        let seg = Segment {
            ts_ns: (i as u64 + 1) * 1000,
            bytes: bytes.len() as u32,
            payload: &bytes[..cap],
            seq: Some(seq[k]),
            tid: 7,
        };
        seq[k] = seq[k].wrapping_add(bytes.len() as u32);
        parser.feed(*side, &seg, &mut ex);
        counts.add(parser.take_counts());
    }
    parser.close(&mut ex);
    counts.add(parser.take_counts());
    Run { parser, ex, counts }
}

pub(super) fn feed(segs: &[Seg]) -> Run {
    feed_with(HttpConfig::default(), segs)
}

pub(super) fn h2(e: &Exchange) -> &H2Exchange {
    let Info::Http2(h) = &e.info else { panic!("not http2: {e:?}") };
    h
}

pub(super) fn summary(e: &Exchange) -> String {
    let h = h2(e);
    let r = &h.http.request;
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let status = opt(h.http.response.as_ref().map(|r| r.status.to_string()));
    let body = |b: Option<u64>| opt(b.map(|b| b.to_string()));
    let mut flags = Vec::new();
    if let Some((code, by)) = h.reset {
        flags.push(format!("reset={code}/{}", if by == Q { "client" } else { "server" }));
    }
    for (on, name) in [
        (h.refused, "refused"),
        (h.http.response_incomplete, "incomplete"),
        (h.http.no_response, "no_response"),
        (r.common.truncated, "req_cut"),
        (h.http.response.as_ref().is_some_and(|r| r.common.truncated), "resp_cut"),
    ] {
        if on {
            flags.push(name.to_string());
        }
    }
    let method = if r.method.is_empty() { "-" } else { &r.method };
    let path = if r.target.is_empty() { "-" } else { &r.target };
    format!(
        "{} {method} {path} -> {status} | grpc={} | body {}/{} | {}",
        h.stream,
        opt(h.grpc_status.map(|c| c.to_string())),
        body(h.http.request_body),
        body(h.http.response_body),
        flags.join(" ")
    )
    .trim_end()
    .to_string()
}

impl Run {
    pub(super) fn lines(&self) -> Vec<String> {
        self.ex.iter().map(summary).collect()
    }

    #[track_caller]
    pub(super) fn expect(&self, want: &[&str]) {
        assert_eq!(self.lines(), want);
    }

    pub(super) fn span(&self, i: usize, kind: SpanKind) -> Described {
        let mut spans = HttpSpans::new(&Default::default()).unwrap();
        describe(h2(&self.ex[i]), &mut spans, kind, "svc")
    }
}

pub(super) fn attr<'a>(d: &'a Described, k: &Key) -> Option<&'a Value> {
    d.attributes.iter().find(|(key, _)| key == k).map(|(_, v)| v)
}

#[test]
fn detects_the_preface_only() {
    assert_eq!(detect(&preface(), false), Some(Q));
    assert_eq!(detect(&PREFACE[..16], false), Some(Q)); // a syscall cut inside it
    assert_eq!(detect(b"PRI * HTTP/1.1\r\n", false), None);
    assert_eq!(detect(b"PRI", true), None);
    assert_eq!(detect(&settings(), true), None);
}

#[test]
fn one_get_with_its_body_and_timing() {
    let mut w = Wire::new();
    let run = feed(&[
        (Q, [preface(), w.get(1, "/users/12345?x=1")].concat(), None),
        (R, [settings(), frame(frame::SETTINGS, 1, 0, &[])].concat(), None),
        (R, [w.status(1, "200", false), data(1, 5, false)].concat(), None),
        (R, data(1, 7, true), None),
    ]);
    run.expect(&["1 GET /users/12345?x=1 -> 200 | grpc=- | body 0/12 |"]);
    let e = &run.ex[0];
    assert_eq!((e.request.first_ns, e.request.seq), (1000, Some(1000 + PREFACE.len() as u32 + 15)));
    let resp = e.response.unwrap();
    assert_eq!((resp.first_ns, resp.last_ns), (3000, 4000));
    let d = run.span(0, SpanKind::Server);
    assert_eq!(d.name, "GET /users/{id}");
    assert_eq!(d.protocol, "http");
    assert_eq!(attr(&d, &Key::NetworkProtocolVersion), Some(&Value::from("2")));
    assert_eq!(attr(&d, &Key::HttpResponseStatusCode), Some(&Value::Int(200)));
    assert_eq!(attr(&d, &Key::HttpResponseBodySize), Some(&Value::Int(12)));
    assert_eq!(d.server, Some(("api".into(), Some(8080))));
    assert_eq!(run.counts, ParserCounts::default());
}

#[test]
fn concurrent_streams_pair_by_id() {
    let mut w = Wire::new();
    let run = feed(&[
        (Q, [preface(), w.get(1, "/a"), w.get(3, "/b")].concat(), None),
        (Q, w.get(5, "/c"), None),
        (R, [w.status(5, "404", true), w.status(1, "200", false)].concat(), None),
        (R, [w.status(3, "500", true), data(1, 3, true)].concat(), None),
    ]);
    run.expect(&[
        "5 GET /c -> 404 | grpc=- | body 0/0 |",
        "3 GET /b -> 500 | grpc=- | body 0/0 |",
        "1 GET /a -> 200 | grpc=- | body 0/3 |",
    ]);
    assert_eq!(run.span(0, SpanKind::Client).error_type.as_deref(), Some("404"));
    assert_eq!(run.span(0, SpanKind::Server).error_type, None);
    assert_eq!(run.span(1, SpanKind::Server).error_type.as_deref(), Some("500"));
}

#[test]
fn grpc_unary_and_status_rules() {
    let mut w = Wire::new();
    let path = "/helloworld.Greeter/SayHello";
    let run = feed(&[
        (Q, [preface(), w.grpc_call(1, path), w.grpc_call(3, path), w.grpc_call(5, path)].concat(), None),
        (R, [w.grpc_reply(1, "0"), w.grpc_reply(3, "5"), w.grpc_reply(5, "13")].concat(), None),
    ]);
    run.expect(&[
        "1 POST /helloworld.Greeter/SayHello -> 200 | grpc=0 | body 12/20 |",
        "3 POST /helloworld.Greeter/SayHello -> 200 | grpc=5 | body 12/20 |",
        "5 POST /helloworld.Greeter/SayHello -> 200 | grpc=13 | body 12/20 |",
    ]);
    let ok = run.span(0, SpanKind::Server);
    assert_eq!((ok.name.as_str(), ok.protocol, ok.error_type.clone()), ("helloworld.Greeter/SayHello", "grpc", None));
    assert_eq!(attr(&ok, &Key::RpcSystem), Some(&Value::from("grpc")));
    assert_eq!(attr(&ok, &Key::RpcService), Some(&Value::from("helloworld.Greeter")));
    assert_eq!(attr(&ok, &Key::RpcMethod), Some(&Value::from("SayHello")));
    assert_eq!(attr(&ok, &Key::RpcGrpcStatusCode), Some(&Value::Int(0)));
    assert_eq!(ok.server, Some(("greeter".into(), Some(50051))));
    // NOT_FOUND: the client's error, not the server's.
    assert_eq!(run.span(1, SpanKind::Server).error_type, None);
    assert_eq!(run.span(1, SpanKind::Client).error_type.as_deref(), Some("NOT_FOUND"));
    // INTERNAL: both.
    assert_eq!(run.span(2, SpanKind::Server).error_type.as_deref(), Some("INTERNAL"));
    assert_eq!(run.span(2, SpanKind::Client).error_type.as_deref(), Some("INTERNAL"));
}

#[test]
fn trailers_only_response() {
    let mut w = Wire::new();
    let trailers_only = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")];
    let run = feed(&[
        (Q, [preface(), w.grpc_call(1, "/pkg.Svc/Missing")].concat(), None),
        (R, w.headers(R, 1, &trailers_only, true), None),
    ]);
    run.expect(&["1 POST /pkg.Svc/Missing -> 200 | grpc=12 | body 12/0 |"]);
    assert_eq!(run.span(0, SpanKind::Server).error_type.as_deref(), Some("UNIMPLEMENTED"));
}

#[test]
fn server_streaming_is_one_exchange() {
    let mut w = Wire::new();
    let mut reply = w.headers(R, 1, &[(":status", "200"), ("content-type", "application/grpc")], false);
    for _ in 0..5 {
        reply.extend(data(1, 10, false));
    }
    reply.extend(w.headers(R, 1, &[("grpc-status", "0")], true));
    let run = feed(&[(Q, [preface(), w.grpc_call(1, "/pkg.Svc/List")].concat(), None), (R, reply, None)]);
    run.expect(&["1 POST /pkg.Svc/List -> 200 | grpc=0 | body 12/50 |"]);
}

#[test]
fn resets_and_goaway() {
    let mut w = Wire::new();
    let run = feed(&[
        (
            Q,
            [preface(), w.grpc_call(1, "/pkg.Svc/Slow"), w.get(3, "/x"), w.get(5, "/y"), w.get(7, "/z")].concat(),
            None,
        ),
        (Q, rst(1, 8), None), // the client cancels (a deadline)
        (R, rst(3, 7), None), // the server refuses
        (R, w.status(5, "200", false), None),
        (R, frame(frame::GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]), None),
        (R, data(5, 2, true), None),
    ]);
    run.expect(&[
        "1 POST /pkg.Svc/Slow -> - | grpc=- | body 12/- | reset=8/client",
        "3 GET /x -> - | grpc=- | body 0/- | reset=7/server",
        "7 GET /z -> - | grpc=- | body 0/- | refused",
        "5 GET /y -> 200 | grpc=- | body 0/2 |",
    ]);
    assert_eq!(run.span(0, SpanKind::Server).error_type, None);
    assert_eq!(run.span(0, SpanKind::Client).error_type.as_deref(), Some("CANCEL"));
    assert_eq!(run.span(1, SpanKind::Server).error_type.as_deref(), Some("REFUSED_STREAM"));
    assert_eq!(run.span(2, SpanKind::Client).error_type.as_deref(), Some("goaway"));
    assert_eq!(run.ex[1].response.map(|r| r.first_ns), Some(3000)); // the reset is the answer
}

#[test]
fn continuation_and_padding() {
    let mut w = Wire::new();
    let block = w.block(Q, &[(":method", "GET"), (":scheme", "http"), (":path", "/split"), ("user-agent", "t/1")]);
    let (a, b) = block.split_at(5);
    // HEADERS padded (3 bytes of padding) and with priority, then CONTINUATION.
    let mut first = vec![3u8, 0, 0, 0, 0, 16];
    first.extend_from_slice(a);
    first.extend_from_slice(&[0, 0, 0]);
    let req = [
        frame(frame::HEADERS, frame::END_STREAM | frame::PADDED | frame::PRIORITY_FLAG, 1, &first),
        frame(frame::CONTINUATION, frame::END_HEADERS, 1, b),
    ]
    .concat();
    let mut padded = vec![4u8];
    padded.extend_from_slice(b"body");
    padded.extend_from_slice(&[0; 4]);
    let run = feed(&[
        (Q, [preface(), req].concat(), None),
        (
            R,
            [w.status(1, "200", false), frame(frame::DATA, frame::END_STREAM | frame::PADDED, 1, &padded)].concat(),
            None,
        ),
    ]);
    run.expect(&["1 GET /split -> 200 | grpc=- | body 0/4 |"]);
    assert_eq!(h2(&run.ex[0]).http.request.user_agent.as_deref(), Some("t/1"));
}

#[test]
fn interim_responses_are_skipped() {
    let mut w = Wire::new();
    let post = [(":method", "POST"), (":scheme", "http"), (":path", "/up"), ("expect", "100-continue")];
    let run = feed(&[
        (Q, [preface(), w.headers(Q, 1, &post, false)].concat(), None),
        (R, w.headers(R, 1, &[(":status", "100")], false), None),
        (Q, data(1, 100, true), None),
        (R, w.status(1, "201", true), None),
    ]);
    run.expect(&["1 POST /up -> 201 | grpc=- | body 100/0 |"]);
}

#[test]
fn frames_split_at_every_byte() {
    let mut w = Wire::new();
    let req = [preface(), w.grpc_call(1, "/pkg.Svc/M")].concat();
    let resp = w.grpc_reply(1, "0");
    let mut segs: Vec<Seg> = req.iter().map(|b| (Q, vec![*b], None)).collect();
    segs.extend(resp.iter().map(|b| (R, vec![*b], None)));
    feed(&segs).expect(&["1 POST /pkg.Svc/M -> 200 | grpc=0 | body 12/20 |"]);
}

#[test]
fn traceparent_is_adopted() {
    let mut w = Wire::new();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let f = [(":method", "GET"), (":scheme", "http"), (":path", "/t"), ("traceparent", tp)];
    let run = feed(&[(Q, [preface(), w.headers(Q, 1, &f, true)].concat(), None), (R, w.status(1, "200", true), None)]);
    let d = run.span(0, SpanKind::Server);
    let (trace, parent) = d.context.expect("the context is adopted");
    assert_eq!(trace[..2], [0x0a, 0xf7]);
    assert_eq!(parent[..2], [0xb7, 0xad]);
}

#[test]
fn close_flushes_open_streams() {
    let mut w = Wire::new();
    let run = feed(&[
        (Q, [preface(), w.get(1, "/answered"), w.get(3, "/waiting")].concat(), None),
        (R, w.status(1, "200", false), None),
    ]);
    run.expect(&[
        "1 GET /answered -> 200 | grpc=- | body 0/- | incomplete",
        "3 GET /waiting -> - | grpc=- | body 0/- | no_response",
    ]);
    assert_eq!(run.span(1, SpanKind::Client).error_type.as_deref(), Some("no_response"));
}

#[test]
fn responses_without_requests_are_counted() {
    let mut w = Wire::new();
    let run = feed(&[
        (Q, preface(), None),
        (R, [w.status(1, "200", false), data(1, 5, true)].concat(), None), // counted once
        (R, w.status(3, "200", true), None),
    ]);
    assert!(run.ex.is_empty());
    assert_eq!(run.counts.unpaired, 2);
}

#[test]
fn allow_listed_headers_are_recorded_and_sensitive_ones_redacted() {
    let cfg = HttpConfig {
        request_headers: vec!["X-Tenant".into(), "authorization".into()],
        response_headers: vec!["server".into()],
        ..Default::default()
    };
    let mut w = Wire::new();
    let f = [(":method", "GET"), (":path", "/h"), ("x-tenant", "acme"), ("authorization", "Bearer s3cret")];
    let run = feed_with(
        cfg,
        &[
            (Q, [preface(), w.headers(Q, 1, &f, true)].concat(), None),
            (R, w.headers(R, 1, &[(":status", "200"), ("server", "nginx")], true), None),
        ],
    );
    let h = h2(&run.ex[0]);
    assert_eq!(
        h.http.request.common.headers,
        vec![("x-tenant".to_string(), "acme".to_string()), ("authorization".to_string(), "REDACTED".to_string())]
    );
    assert_eq!(h.http.response.as_ref().unwrap().common.headers, vec![("server".to_string(), "nginx".to_string())]);
}

const UPGRADE: &[u8] = b"GET /up HTTP/1.1\r\nHost: h2c.local:8080\r\nUser-Agent: curl/7.88.1\r\n\
Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";

#[test]
fn h2c_upgrade_makes_the_request_stream_1() {
    assert_eq!(detect(UPGRADE, false), Some(Q));
    assert_eq!(detect(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", false), None);
    let mut w = Wire::new();
    let switching = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    let run = feed(&[
        (Q, UPGRADE.to_vec(), None),
        (R, [&switching[..], &settings(), &w.status(1, "200", false), &data(1, 9, true)].concat(), None),
        (Q, [preface(), frame(frame::SETTINGS, 1, 0, &[]), w.get(3, "/second")].concat(), None),
        (R, [w.status(3, "200", true)].concat(), None),
    ]);
    run.expect(&["1 GET /up -> 200 | grpc=- | body 0/9 |", "3 GET /second -> 200 | grpc=- | body 0/0 |"]);
    assert_eq!(run.counts, ParserCounts::default());
    assert_eq!(run.parser.name(), "http2");
    let d = run.span(0, SpanKind::Client);
    assert_eq!((d.name.as_str(), d.server.clone()), ("GET /up", Some(("h2c.local".into(), Some(8080)))));
    assert_eq!(attr(&d, &Key::NetworkProtocolVersion), Some(&Value::from("2")));
    assert_eq!(attr(&d, &Key::UserAgentOriginal), Some(&Value::from("curl/7.88.1")));
}

#[test]
fn a_declined_upgrade_stays_http1() {
    let run = feed(&[
        (Q, UPGRADE.to_vec(), None),
        (R, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), None),
        (Q, b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), None),
        (R, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(), None),
    ]);
    let got: Vec<_> = run
        .ex
        .iter()
        .map(|e| match &e.info {
            Info::Http(h) => (h.request.target.clone(), h.response.as_ref().map(|r| r.status)),
            other => panic!("not HTTP/1: {other:?}"),
        })
        .collect();
    assert_eq!(got, [("/up".to_string(), Some(200)), ("/again".to_string(), Some(404))]);
    assert_eq!(run.parser.name(), "http");
}

#[test]
fn streams_past_the_bound_are_counted_not_followed() {
    let mut w = Wire::new();
    let n = super::streams::MAX_STREAMS as u32 + 10;
    let mut req = preface();
    let mut resp = Vec::new();
    for i in 0..n {
        req.extend(w.get(2 * i + 1, "/many"));
    }
    for i in 0..n {
        resp.extend(w.status(2 * i + 1, "200", true));
    }
    let run = feed(&[(Q, req, None), (R, resp, None)]);
    assert_eq!(run.ex.len(), super::streams::MAX_STREAMS);
    assert_eq!(run.counts, ParserCounts { overflow: 10, ..Default::default() });
}
