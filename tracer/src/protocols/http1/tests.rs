//! Golden fixtures for the HTTP/1 parser: syscalls in, exchanges out.
//!
//! A fixture is a list of [`Seg`]: `(side, ts_ns, captured payload, total)`,
//! where `total` is `Some(bytes the syscall moved)` when the capture was cut
//! (`None`: the payload is the whole syscall). Sequence numbers and threads
//! are filled in per direction. Each exchange is summarised as one line:
//!
//! `METHOD TARGET STATUS | req FIRST..LAST body N | resp FIRST..LAST body N | flags`
//!
//! (`?`: body size unknown, `-`: no response). To add a case from a capture,
//! paste its syscalls as segments and the lines you expect.

use std::sync::Arc;

use super::{Http1, HttpConfig, STOP_TUNNEL, STOP_UPGRADE, stream::MAX_HEAD};
use crate::protocols::{Exchange, Info, ProtocolParser, Segment, Side};

pub(super) use Side::{Request as Q, Response as R};

/// One syscall: direction, return time, captured bytes, bytes moved when
/// more than were captured.
pub(super) type Seg<'a> = (Side, u64, &'a [u8], Option<u32>);

/// First sequence number of the request and response directions.
pub(super) const REQ_SEQ: u32 = 1_000;
pub(super) const RESP_SEQ: u32 = 900_000;

pub(super) struct Run {
    pub parser: Http1,
    pub ex: Vec<Exchange>,
}

impl Run {
    fn lines(&self) -> Vec<String> {
        self.ex.iter().map(line).collect()
    }

    /// The exchanges so far, one summary line each.
    #[track_caller]
    fn expect<S: AsRef<str>>(&self, want: &[S]) {
        assert_eq!(self.lines(), want.iter().map(|w| w.as_ref()).collect::<Vec<_>>());
    }

    fn close(&mut self) {
        self.parser.close(&mut self.ex);
    }
}

/// Feed the segments in order (no close).
pub(super) fn feed(cfg: HttpConfig, segs: &[Seg<'_>]) -> Run {
    let mut parser = Http1::new(Arc::new(cfg));
    let mut ex = Vec::new();
    let (mut qseq, mut rseq) = (REQ_SEQ, RESP_SEQ);
    for &(side, ts_ns, payload, total) in segs {
        let bytes = total.unwrap_or(payload.len() as u32);
        let (seq, tid) = match side {
            Q => (&mut qseq, 1),
            R => (&mut rseq, 2),
        };
        let seg = Segment { ts_ns, bytes, payload, seq: Some(*seq), tid };
        *seq = seq.wrapping_add(bytes);
        parser.feed(side, &seg, &mut ex);
    }
    Run { parser, ex }
}

/// Feed the segments with the default config (no close).
fn open(segs: &[Seg<'_>]) -> Run {
    feed(HttpConfig::default(), segs)
}

/// Feed the segments, then close the connection.
fn run(segs: &[Seg<'_>]) -> Run {
    let mut r = feed(HttpConfig::default(), segs);
    r.close();
    r
}

pub(super) fn http(e: &Exchange) -> &super::HttpExchange {
    let Info::Http(h) = &e.info else { panic!("not HTTP: {:?}", e.info) };
    h
}

fn line(e: &Exchange) -> String {
    let h = http(e);
    let body = |b: Option<u64>| b.map_or("?".to_string(), |n| n.to_string());
    let status = h.response.as_ref().map_or("-".to_string(), |r| r.status.to_string());
    let mut s = format!("{} {} {status}", h.request.method, h.request.target);
    s += &format!(" | req {}..{} body {}", e.request.first_ns, e.request.last_ns, body(h.request_body));
    match e.response {
        Some(t) => s += &format!(" | resp {}..{} body {}", t.first_ns, t.last_ns, body(h.response_body)),
        None => s += " | resp -",
    }
    let flags = [
        (h.request.common.truncated, "req_truncated"),
        (h.response.as_ref().is_some_and(|r| r.common.truncated), "resp_truncated"),
        (h.response_incomplete, "incomplete"),
        (h.no_response, "no_response"),
    ];
    for (on, name) in flags {
        if on {
            s += " | ";
            s += name;
        }
    }
    s
}

pub(super) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: svc\r\n\r\n").into_bytes()
}

fn post(target: &str, body: &str) -> Vec<u8> {
    format!("POST {target} HTTP/1.1\r\nHost: svc\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn resp(status: u16, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn ok(body: &str) -> Vec<u8> {
    resp(200, body)
}

#[test]
fn keep_alive_pairs_in_order_as_soon_as_each_response_ends() {
    let (a, b, c) = (get("/a"), cat(&[b"\r\n", &get("/b")]), post("/c", "xyz"));
    let (ra, rb, rc) = (ok("hello"), ok(""), resp(404, "nope"));
    let mut r = open(&[
        (Q, 10, &a, None),
        (R, 20, &ra, None),
        (Q, 30, &b, None),
        (R, 40, &rb, None),
        (Q, 50, &c, None),
        (R, 60, &rc, None),
    ]);
    let want = [
        "GET /a 200 | req 10..10 body 0 | resp 20..20 body 5",
        "GET /b 200 | req 30..30 body 0 | resp 40..40 body 0",
        "POST /c 404 | req 50..50 body 3 | resp 60..60 body 4",
    ];
    assert_eq!(r.lines(), want);
    r.close();
    assert_eq!(r.lines(), want, "close adds nothing");
    // Stray CRLF before /b is skipped: its seq is after it.
    assert_eq!(r.ex[1].request.seq, Some(REQ_SEQ + a.len() as u32 + 2));
    assert_eq!(r.ex[2].response.unwrap().seq, Some(RESP_SEQ + (ra.len() + rb.len()) as u32));
    assert_eq!((r.ex[0].request.tid, r.ex[0].response.unwrap().tid), (1, 2));
    assert_eq!((r.parser.not_http, r.parser.unpaired, r.parser.overflow), (0, 0, 0));
}

#[test]
fn head_split_inside_a_header_line() {
    let r = run(&[
        (Q, 10, b"GET /split HTTP/1.1\r\nHost: exa", None),
        (Q, 11, b"mple.com\r\nAccept: */*\r\n\r\n", None),
        (R, 20, b"HTTP/1.1 200 OK\r\nContent-Le", None),
        (R, 21, b"ngth: 3\r\n\r\nabc", None),
    ]);
    r.expect(&["GET /split 200 | req 10..11 body 0 | resp 20..21 body 3"]);
    assert_eq!(http(&r.ex[0]).request.host.as_deref(), Some("example.com"));
    assert_eq!(r.ex[0].request.seq, Some(REQ_SEQ));
}

#[test]
fn first_line_split_before_it_can_be_recognised() {
    let r = run(&[
        (Q, 10, b"GE", None),
        (Q, 11, b"T /x HTTP/1.1\r\n\r\n", None),
        (R, 20, b"HTTP/1.", None),
        (R, 21, b"1 2", None),
        (R, 22, b"04 No Content\r\n\r\n", None),
        (Q, 30, b"PROPF", None),
        (Q, 31, b"IND /dav HTTP/1.1\r\n\r\n", None),
        (R, 40, b"HTTP/1.1 207 M\r\nContent-Length: 0\r\n\r\n", None),
    ]);
    r.expect(&[
        "GET /x 204 | req 10..11 body 0 | resp 20..22 body 0",
        "PROPFIND /dav 207 | req 30..31 body 0 | resp 40..40 body 0",
    ]);
}

#[test]
fn one_byte_per_syscall() {
    let q = cat(&[&post("/p", "hello"), &get("/g")]);
    let s = cat(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n", &ok("12")]);
    let mut segs: Vec<Seg<'_>> = Vec::new();
    segs.extend(q.chunks(1).enumerate().map(|(i, b)| (Q, 1000 + i as u64, b, None)));
    segs.extend(s.chunks(1).enumerate().map(|(i, b)| (R, 2000 + i as u64, b, None)));
    let r = run(&segs);
    let (p, cl) = (post("/p", "hello").len() as u64, s.len() as u64 - ok("12").len() as u64);
    r.expect(&[
        format!("POST /p 200 | req 1000..{} body 5 | resp 2000..{} body 3", 1000 + p - 1, 2000 + cl - 1),
        format!(
            "GET /g 200 | req {}..{} body 0 | resp {}..{} body 2",
            1000 + p,
            999 + q.len() as u64,
            2000 + cl,
            1999 + s.len() as u64
        ),
    ]);
    assert_eq!(r.ex[1].request.seq, Some(REQ_SEQ + p as u32));
}

#[test]
fn head_and_body_in_one_segment_or_split_after_crlfcrlf() {
    let r = run(&[
        // writev(head, body): one syscall.
        (Q, 10, &post("/w", "hello"), None),
        (R, 20, &resp(201, "made"), None),
        // Head, then body in the next syscall.
        (Q, 30, b"PUT /s HTTP/1.1\r\nContent-Length: 5\r\n\r\n", None),
        (Q, 31, b"world", None),
        (R, 40, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", None),
        (R, 41, b"done", None),
    ]);
    r.expect(&[
        "POST /w 201 | req 10..10 body 5 | resp 20..20 body 4",
        "PUT /s 200 | req 30..31 body 5 | resp 40..41 body 4",
    ]);
}

#[test]
fn bodies_larger_than_the_capture_are_skipped_by_length() {
    let head = |n: usize| format!("POST /upload HTTP/1.1\r\nContent-Length: {n:06}\r\n\r\n").into_bytes();
    let n = 100_000 - head(0).len();
    let q = cat(&[&head(n), &vec![b'x'; 512]]);
    let rhead = |n: usize| format!("HTTP/1.1 200 OK\r\nContent-Length: {n:06}\r\n\r\n").into_bytes();
    let m = 200_000 - rhead(0).len();
    let s = cat(&[&rhead(m), &vec![b'y'; 512]]);
    let r = run(&[
        (Q, 10, &q[..512], Some(100_000)),
        (R, 20, &resp(201, ""), None),
        (Q, 30, &get("/next"), None),
        (R, 40, &s[..512], Some(100_000)),
        (R, 41, &[b'y'; 512], Some(100_000)),
        (Q, 50, &get("/last"), None),
        (R, 60, &ok("z"), None),
    ]);
    r.expect(&[
        format!("POST /upload 201 | req 10..10 body {n} | resp 20..20 body 0"),
        format!("GET /next 200 | req 30..30 body 0 | resp 40..41 body {m}"),
        "GET /last 200 | req 50..50 body 0 | resp 60..60 body 1".to_string(),
    ]);
}

#[test]
fn message_starting_in_uncaptured_bytes_is_lost_not_counted() {
    // The capture ends exactly where a pipelined request starts.
    let (a, b) = (get("/a"), get("/b"));
    let r = run(&[
        (Q, 10, &a, Some((a.len() + b.len()) as u32)),
        (R, 20, &ok("a"), None),
        (R, 21, &ok("b"), None),
        (Q, 30, &get("/c"), None),
        (R, 40, &ok("c"), None),
    ]);
    r.expect(&[
        "GET /a 200 | req 10..10 body 0 | resp 20..20 body 1",
        "GET /c 200 | req 30..30 body 0 | resp 40..40 body 1",
    ]);
    // The response to the unseen /b has no request to pair with.
    assert_eq!((r.parser.not_http, r.parser.unpaired), (0, 1));
}

#[test]
fn chunked_bodies_in_many_segments() {
    let big = cat(&[b"186a0\r\n", &[b'd'; 505]]); // one 100000-byte chunk, 512 captured
    let r = run(&[
        (Q, 10, b"POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nwiki\r\n", None),
        (Q, 11, b"5\r\npedia\r\n0\r\n\r\n", None),
        (R, 20, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", None),
        (R, 21, b"5\r\nhello\r\n", None),
        (R, 22, b"3;name=\"v\"\r\nabc\r\n1", None), // extension; size line split
        (R, 23, b"0\r\n0123456789abcdef\r\n", None),
        (R, 24, &big, Some(7 + 100_000 + 2)),
        (R, 25, b"0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n", None), // trailer
        (Q, 30, &get("/after"), None),
        (R, 40, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", None),
    ]);
    r.expect(&[
        "POST /c 200 | req 10..11 body 9 | resp 20..25 body 100024",
        "GET /after 200 | req 30..30 body 0 | resp 40..40 body 0",
    ]);
    assert_eq!(r.parser.not_http, 0);
}

#[test]
fn chunk_size_line_not_captured_loses_framing_then_resyncs() {
    let mut s = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        s.extend_from_slice(b"400\r\n");
        s.extend_from_slice(&[b'c'; 0x400]);
        s.extend_from_slice(b"\r\n");
    }
    let r = run(&[
        (Q, 10, &get("/big"), None),
        (R, 20, &s[..512], Some(s.len() as u32)),
        (R, 21, &[b'c'; 512], Some(5000)), // rest of that body: ignored
        (Q, 30, &get("/after"), None),
        (R, 40, &ok("fine"), None),
    ]);
    r.expect(&[
        "GET /big 200 | req 10..10 body 0 | resp 20..20 body ? | incomplete",
        "GET /after 200 | req 30..30 body 0 | resp 40..40 body 4",
    ]);
    assert_eq!((r.parser.not_http, r.parser.unpaired), (0, 0));
}

#[test]
fn pipelined_requests_in_one_segment() {
    let (g1, h2, g3) = (get("/1"), b"HEAD /2 HTTP/1.1\r\n\r\n".to_vec(), get("/3"));
    let q = cat(&[&g1, &h2, &g3]);
    let head_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
    let s = cat(&[&ok("one"), &head_resp, &ok("three")]);
    let want = |t: [(u64, u64); 3]| {
        [
            format!("GET /1 200 | req 10..10 body 0 | resp {}..{} body 3", t[0].0, t[0].1),
            format!("HEAD /2 200 | req 10..10 body 0 | resp {}..{} body 0", t[1].0, t[1].1),
            format!("GET /3 200 | req 10..10 body 0 | resp {}..{} body 5", t[2].0, t[2].1),
        ]
    };
    // Responses in one segment: the HEAD response's length is not a body.
    let r = run(&[(Q, 10, &q, None), (R, 20, &s, None)]);
    assert_eq!(r.lines(), want([(20, 20), (20, 20), (20, 20)]));
    let offs = [0, g1.len(), g1.len() + h2.len()].map(|o| Some(REQ_SEQ + o as u32));
    assert_eq!(r.ex.iter().map(|e| e.request.seq).collect::<Vec<_>>(), offs);
    let roffs = [0, ok("one").len(), ok("one").len() + head_resp.len()].map(|o| Some(RESP_SEQ + o as u32));
    assert_eq!(r.ex.iter().map(|e| e.response.unwrap().seq).collect::<Vec<_>>(), roffs);
    // Responses cut anywhere: inside the second head, inside the third body.
    let (c1, c2) = (ok("one").len() + 10, s.len() - 2);
    let r = run(&[(Q, 10, &q, None), (R, 20, &s[..c1], None), (R, 21, &s[c1..c2], None), (R, 22, &s[c2..], None)]);
    assert_eq!(r.lines(), want([(20, 20), (20, 21), (21, 22)]));
}

#[test]
fn interim_responses_are_skipped() {
    let r = run(&[
        // 100-continue: head, interim 100, body, final 200.
        (Q, 10, b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", None),
        (R, 20, b"HTTP/1.1 100 Continue\r\n\r\n", None),
        (Q, 30, b"data", None),
        (R, 40, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        // 103 Early Hints in its own syscall, then with the final response.
        (Q, 50, &get("/page"), None),
        (R, 60, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", None),
        (R, 61, &ok("<html>"), None),
        (Q, 70, &get("/page2"), None),
        (R, 80, &cat(&[b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", &ok("x")]), None),
    ]);
    r.expect(&[
        "POST /up 200 | req 10..30 body 4 | resp 40..40 body 2",
        "GET /page 200 | req 50..50 body 0 | resp 61..61 body 6",
        "GET /page2 200 | req 70..70 body 0 | resp 80..80 body 1",
    ]);
    assert_eq!(r.parser.unpaired, 0);
}

#[test]
fn responses_without_a_body() {
    let r = run(&[
        (Q, 10, b"HEAD /h HTTP/1.1\r\n\r\n", None),
        (R, 20, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", None),
        (Q, 30, b"DELETE /d HTTP/1.1\r\n\r\n", None),
        (R, 40, b"HTTP/1.1 204 No Content\r\n\r\n", None),
        (Q, 50, b"GET /c HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\n", None),
        (R, 60, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", None),
        (Q, 70, &get("/next"), None),
        (R, 80, &ok("abc"), None),
    ]);
    r.expect(&[
        "HEAD /h 200 | req 10..10 body 0 | resp 20..20 body 0",
        "DELETE /d 204 | req 30..30 body 0 | resp 40..40 body 0",
        "GET /c 304 | req 50..50 body 0 | resp 60..60 body 0",
        "GET /next 200 | req 70..70 body 0 | resp 80..80 body 3",
    ]);
}

#[test]
fn body_delimited_by_close() {
    let mut r = open(&[
        (Q, 10, b"GET /old HTTP/1.0\r\n\r\n", None),
        (R, 20, b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nfirst", None),
        (R, 21, b" and second", None),
    ]);
    assert!(r.ex.is_empty(), "ends only at close");
    r.close();
    r.expect(&["GET /old 200 | req 10..10 body 0 | resp 20..21 body 16"]);
    // Connection: close with a length still ends by length.
    let r = run(&[
        (Q, 10, &get("/c"), None),
        (R, 20, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", None),
    ]);
    r.expect(&["GET /c 200 | req 10..10 body 0 | resp 20..20 body 2"]);
    assert!(http(&r.ex[0]).response.as_ref().unwrap().common.connection_close);
}

#[test]
fn websocket_upgrade_stops_parsing() {
    let mut r = open(&[
        (Q, 10, b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", None),
        (R, 20, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", None),
        (Q, 30, b"\x81\x85\x01\x02\x03\x04iaolo", None),
        (Q, 31, &get("/looks-like-http"), None),
        (R, 40, &ok("ignored"), None),
    ]);
    r.close();
    r.expect(&["GET /chat 101 | req 10..10 body 0 | resp 20..20 body 0"]);
    assert_eq!(r.parser.stopped(), Some(STOP_UPGRADE));
    assert!(http(&r.ex[0]).request.upgrade);
    assert_eq!((r.parser.not_http, r.parser.unpaired), (0, 0));
}

#[test]
fn connect_tunnel_stops_parsing() {
    let mut r = open(&[
        (Q, 10, b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n", None),
        (R, 20, b"HTTP/1.1 200 Connection established\r\n\r\n", None),
        (Q, 30, TLS_HELLO, None),
        (R, 40, b"\x16\x03\x03\x00\x5a\x02", None),
    ]);
    r.close();
    r.expect(&["CONNECT db:5432 200 | req 10..10 body 0 | resp 20..20 body 0"]);
    assert_eq!(r.parser.stopped(), Some(STOP_TUNNEL));
    assert_eq!(r.parser.not_http, 0);
}

const TLS_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f\x00\x20GET / HTTP/1.1";

#[test]
fn bytes_that_are_not_http_are_counted_and_skipped() {
    let mut noise = vec![0u8; 700];
    let mut x = 0x2545_f491_u32;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let redis = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    for junk in [TLS_HELLO, redis, b"+OK\r\n", &noise, &noise[..512], b"get / http/1.1\r\n\r\n"] {
        let r = run(&[
            (Q, 10, junk, None),
            (R, 20, junk, Some(junk.len() as u32 + 3000)),
            (Q, 30, &get("/clean"), None),
            (R, 40, &ok("x"), None),
        ]);
        let want = ["GET /clean 200 | req 30..30 body 0 | resp 40..40 body 1"];
        assert_eq!(r.lines(), want, "after {junk:?}");
        assert_eq!(r.parser.not_http, 2, "one per direction for {junk:?}");
    }
}

#[test]
fn capture_starting_mid_stream_resyncs() {
    let r = run(&[
        (Q, 10, b"ody of an upload that started before\r\n", Some(4000)),
        (R, 15, b"Content-Length: 10\r\n\r\n0123456789", None), // tail of a head
        (R, 16, &ok("orphan"), None),                           // its request was never seen
        (Q, 20, &get("/clean"), None),
        (R, 30, &ok("x"), None),
    ]);
    r.expect(&["GET /clean 200 | req 20..20 body 0 | resp 30..30 body 1"]);
    assert_eq!((r.parser.not_http, r.parser.unpaired), (2, 1));
}

#[test]
fn head_longer_than_the_capture_keeps_its_first_line() {
    let cookie = "c".repeat(1500);
    let q = format!("POST /form HTTP/1.1\r\nHost: svc\r\nCookie: {cookie}\r\nContent-Length: 3\r\n\r\nabc");
    let s = format!("HTTP/1.1 503 Unavailable\r\nX-Pad: {cookie}\r\nContent-Length: 2\r\n\r\nno");
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(1000));
    let r = run(&[
        (Q, 10, &q.as_bytes()[..512], Some(q.len() as u32)),
        (R, 20, &ok("done"), None),
        (Q, 30, &get("/x"), None),
        (R, 40, &s.as_bytes()[..512], Some(s.len() as u32)),
        (Q, 50, &long.as_bytes()[..512], Some(long.len() as u32)),
        (R, 60, &ok("ok"), None),
    ]);
    r.expect(&[
        "POST /form 200 | req 10..10 body ? | resp 20..20 body 4 | req_truncated",
        "GET /x 503 | req 30..30 body 0 | resp 40..40 body ? | resp_truncated | incomplete",
        format!("GET /{} 200 | req 50..50 body ? | resp 60..60 body 2 | req_truncated", "a".repeat(507)).as_str(),
    ]);
    assert!(!format!("{:?}", r.ex).contains("ccccc"), "only the first line is kept");
}

#[test]
fn head_over_max_head_or_with_too_many_headers_is_truncated() {
    let huge = format!("GET /huge HTTP/1.1\r\nX-Big: {}\r\n\r\n", "v".repeat(20_000));
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /many HTTP/1.1\r\n{many}\r\n");
    let mut segs: Vec<Seg<'_>> =
        huge.as_bytes().chunks(4096).enumerate().map(|(i, c)| (Q, 10 + i as u64, c, None)).collect();
    let (after, r1, r2, r3) = (get("/after"), ok("1"), ok("2"), ok("3"));
    segs.extend([(R, 20, &r1[..], None), (Q, 30, &after, None), (R, 40, &r2, None)]);
    segs.extend([(Q, 50, many.as_bytes(), None), (R, 60, &r3, None)]);
    let mut r = open(&segs);
    assert!(r.parser.buffered() <= MAX_HEAD);
    r.close();
    r.expect(&[
        "GET /huge 200 | req 10..13 body ? | resp 20..20 body 1 | req_truncated",
        "GET /after 200 | req 30..30 body 0 | resp 40..40 body 1",
        "GET /many 200 | req 50..50 body ? | resp 60..60 body 1 | req_truncated",
    ]);
}

#[test]
fn sensitive_headers_never_leave_allow_listed_ones_do() {
    let cfg = HttpConfig {
        request_headers: ["authorization", "cookie", "x-api-key", "proxy-authorization", "x-tenant", "x-request-id"]
            .map(String::from)
            .to_vec(),
        response_headers: ["set-cookie", "content-type", "x-tenant"].map(String::from).to_vec(),
        sensitive_headers: vec!["X-Tenant".into(), "user-agent".into()],
        ..HttpConfig::default()
    };
    let q = b"GET /me HTTP/1.1\r\nHost: svc\r\nAuthorization: Bearer SECRET1\r\nCookie: sid=SECRET2\r\n\
X-Api-Key: SECRET3\r\nProxy-Authorization: Basic SECRET4\r\nX-Tenant: SECRET5\r\nUser-Agent: SECRET6\r\n\
X-Request-Id: rid-42\r\n\r\n";
    let s = b"HTTP/1.1 200 OK\r\nSet-Cookie: SECRET7\r\nContent-Type: text/plain\r\nX-Tenant: SECRET8\r\n\
Content-Length: 0\r\n\r\n";
    let mut r = feed(cfg, &[(Q, 10, q, None), (R, 20, s, None), (Q, 30, q, None)]);
    r.close();
    assert_eq!(r.ex.len(), 2);
    assert!(!format!("{:?}", r.ex).contains("SECRET"), "{:?}", r.ex);
    let h = http(&r.ex[0]);
    let red = |n: &str| (n.to_string(), "REDACTED".to_string());
    let kept = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(
        h.request.common.headers,
        [
            red("authorization"),
            red("cookie"),
            red("x-api-key"),
            red("proxy-authorization"),
            red("x-tenant"),
            kept("x-request-id", "rid-42"),
        ]
    );
    assert_eq!(
        h.response.as_ref().unwrap().common.headers,
        [red("set-cookie"), kept("content-type", "text/plain"), red("x-tenant")]
    );
    assert_eq!((h.request.host.as_deref(), h.request.user_agent.as_deref()), (Some("svc"), None));
}

#[test]
fn unpaired_responses_and_requests_left_at_close() {
    let r = run(&[
        (R, 5, &ok("before"), None),
        (Q, 10, &get("/a"), None),
        (R, 20, &ok("a"), None),
        (Q, 30, &get("/b"), None),
        (Q, 31, b"POST /c HTTP/1.1\r\nContent-Length: 10\r\n\r\nabcd", None),
        (R, 40, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", None),
    ]);
    r.expect(&[
        "GET /a 200 | req 10..10 body 0 | resp 20..20 body 1",
        "GET /b 200 | req 30..30 body 0 | resp 40..40 body ? | incomplete",
        "POST /c - | req 31..31 body ? | resp - | no_response",
    ]);
    assert_eq!(r.parser.unpaired, 1);
}

#[test]
fn max_pending_overflow_drops_the_oldest_and_counts() {
    let cfg = HttpConfig { max_pending: 2, ..HttpConfig::default() };
    let (a, b, c) = (get("/1"), get("/2"), get("/3"));
    let mut r = feed(cfg, &[(Q, 10, &a, None), (Q, 11, &b, None), (Q, 12, &c, None)]);
    assert_eq!((r.parser.overflow, r.parser.pending_len()), (1, 2));
    r.close();
    assert_eq!(
        r.lines(),
        ["GET /2 - | req 11..11 body 0 | resp - | no_response", "GET /3 - | req 12..12 body 0 | resp - | no_response",]
    );
}

#[test]
fn final_response_before_the_request_body_ends() {
    // The server answers 413 while the body is still arriving.
    let r = run(&[
        (Q, 10, b"POST /big HTTP/1.1\r\nContent-Length: 8\r\n\r\n1234", None),
        (R, 20, &resp(413, ""), None),
        (Q, 30, b"5678", None),
        (Q, 40, &get("/next"), None),
        (R, 50, &ok("n"), None),
    ]);
    r.expect(&[
        "POST /big 413 | req 10..0 body ? | resp 20..20 body 0",
        "GET /next 200 | req 40..40 body 0 | resp 50..50 body 1",
    ]);
}

#[test]
fn response_reported_before_its_request_still_pairs() {
    // A client's writer thread reported its send after its reader thread
    // read the answer (kernel reports sends when the syscall returns).
    let r = run(&[
        (Q, 10, &get("/a"), None),
        (R, 20, &ok("a"), None),
        (R, 40, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", None),
        (R, 41, b"bb", None),
        (Q, 45, &get("/b"), None),
        (Q, 50, &get("/c"), None),
        (R, 60, &ok("c"), None),
    ]);
    r.expect(&[
        "GET /a 200 | req 10..10 body 0 | resp 20..20 body 1",
        // Its start is not known: no later than its response's first byte.
        "GET /b 200 | req 40..40 body 0 | resp 40..41 body 2",
        "GET /c 200 | req 50..50 body 0 | resp 60..60 body 1",
    ]);
    assert_eq!((r.parser.unpaired, r.parser.buffered()), (0, 0));
    // The first exchange of a connection seen from its handshake, response
    // first; seen mid-stream, the response may answer a request sent before
    // the agent started, so it is not paired.
    let mut p = Http1::new(Arc::new(HttpConfig::default())).from_start(true);
    let mut ex = Vec::new();
    let (a, r): (&[u8], &[u8]) = (&get("/a"), &ok("a"));
    p.feed(R, &Segment { ts_ns: 20, bytes: r.len() as u32, payload: r, seq: Some(9), tid: 2 }, &mut ex);
    p.feed(Q, &Segment { ts_ns: 25, bytes: a.len() as u32, payload: a, seq: Some(1), tid: 1 }, &mut ex);
    assert_eq!(ex.iter().map(line).collect::<Vec<_>>(), ["GET /a 200 | req 20..20 body 0 | resp 20..20 body 1"]);
    let r = run(&[(R, 20, &ok("a"), None), (Q, 25, &get("/a"), None)]);
    r.expect(&["GET /a - | req 25..25 body 0 | resp - | no_response"]);
}

#[test]
fn response_without_a_request_is_not_given_the_wrong_one() {
    // Unsolicited (a 408 before close): held, then counted at close.
    let r = run(&[(Q, 10, &get("/a"), None), (R, 20, &ok("a"), None), (R, 30, &resp(408, ""), None)]);
    r.expect(&["GET /a 200 | req 10..10 body 0 | resp 20..20 body 1"]);
    assert_eq!((r.parser.unpaired, r.parser.buffered()), (1, 0));
    // A request reported much later is not the one it answered.
    let late = 30 + super::EARLY_WAIT_NS + 1;
    let r = run(&[
        (Q, 10, &get("/a"), None),
        (R, 20, &ok("a"), None),
        (R, 30, &ok("x"), None),
        (Q, late, &get("/b"), None),
    ]);
    r.expect(&[
        "GET /a 200 | req 10..10 body 0 | resp 20..20 body 1",
        &format!("GET /b - | req {late}..{late} body 0 | resp - | no_response"),
    ]);
    assert_eq!(r.parser.unpaired, 1);
    // A request whose bytes do not follow the last ones seen: another
    // request went unreported, and the held response was its answer.
    let mut p = Http1::new(Arc::new(HttpConfig::default()));
    let mut ex = Vec::new();
    let (a, b) = (get("/a"), get("/b"));
    let seg = |ts_ns, payload: &'static [u8], seq| Segment {
        ts_ns,
        bytes: payload.len() as u32,
        payload,
        seq: Some(seq),
        tid: 1,
    };
    let (a, b): (&'static [u8], &'static [u8]) = (a.leak(), b.leak());
    p.feed(Q, &seg(10, a, 100), &mut ex);
    p.feed(R, &seg(20, ok("a").leak(), 900), &mut ex);
    p.feed(R, &seg(30, ok("lost").leak(), 950), &mut ex);
    p.feed(Q, &seg(40, b, 100 + a.len() as u32 + 7), &mut ex);
    p.feed(R, &seg(50, ok("b").leak(), 1000), &mut ex);
    let lines: Vec<String> = ex.iter().map(line).collect();
    assert_eq!(
        lines,
        ["GET /a 200 | req 10..10 body 0 | resp 20..20 body 1", "GET /b 200 | req 40..40 body 0 | resp 50..50 body 1"]
    );
    assert_eq!(p.unpaired, 1);
}

#[test]
fn held_responses_are_bounded() {
    // A server that streams responses nobody asked for: nothing grows.
    let many: Vec<Vec<u8>> = (0..20).map(|i| ok(&"x".repeat(i * 100))).collect();
    let mut segs: Vec<Seg<'_>> =
        vec![(Q, 1, b"GET / HTTP/1.1\r\n\r\n", None), (R, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None)];
    segs.extend(many.iter().enumerate().map(|(i, m)| (R, 10 + i as u64, &m[..], None)));
    let r = open(&segs);
    assert!(r.parser.buffered() <= super::EARLY_BYTES, "{}", r.parser.buffered());
    assert_eq!(r.ex.len(), 1);
    assert!(r.parser.unpaired >= 16, "{}", r.parser.unpaired);
}
