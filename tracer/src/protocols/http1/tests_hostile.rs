//! Hostile and cut heads: allow-listed headers found in a head longer than
//! the capture, nothing made of a line the capture cut, methods and targets
//! outside the grammar, and arbitrary bytes never giving an unprintable or
//! unbounded field.

use proptest::{collection::vec, prelude::*};

use super::{
    HttpConfig,
    head::{Head, Parsed, parse, parse_first_line},
    tests::{Q, R, feed, http},
};
use crate::{
    printable::is_printable,
    protocols::{Exchange, ProtocolParser},
};

fn cfg(headers: &[&str]) -> HttpConfig {
    HttpConfig { request_headers: headers.iter().map(|h| (*h).to_string()).collect(), ..HttpConfig::default() }
}

/// The request of a head sent in one syscall of which `capture` bytes were
/// captured, answered by a 200.
fn cut_request(cfg: HttpConfig, head: &[u8], capture: usize) -> Vec<Exchange> {
    let mut r = feed(
        cfg,
        &[
            (Q, 10, &head[..capture.min(head.len())], Some(head.len() as u32)),
            (R, 20, b"HTTP/1.1 200 OK\r\n\r\n", None),
        ],
    );
    r.parser.close(&mut r.ex);
    r.ex
}

fn headers(e: &Exchange) -> Vec<(String, String)> {
    http(e).request.common.headers.clone()
}

#[test]
fn allow_listed_headers_in_the_captured_prefix_are_kept() {
    let pad = "p".repeat(3000);
    let head = format!("GET /a HTTP/1.1\r\nX-Request-Id: 42\r\nHost: svc:81\r\nX-Pad: {pad}\r\nX-Tail: 9\r\n\r\n");
    let ex = cut_request(cfg(&["x-request-id", "x-tail", "x-pad"]), head.as_bytes(), 512);
    let [e] = ex.as_slice() else { panic!("{ex:?}") };
    let h = &http(e).request;
    assert!(h.common.truncated);
    assert_eq!(headers(e), [("x-request-id".to_string(), "42".to_string())], "x-pad was cut, x-tail not captured");
    assert_eq!(h.host.as_deref(), Some("svc:81"));
    assert_eq!(h.route_path(), Some("/a"));
}

#[test]
fn nothing_is_made_of_a_line_the_capture_cut() {
    let c = cfg(&["x-a", "x-b"]);
    // Cut inside the value; cut right after the line's CRLF (the next line
    // could still fold into it); a line continued by obs-fold.
    type Case<'a> = (&'a [u8], usize, &'a [(&'a str, &'a str)]);
    let cases: &[Case<'_>] = &[
        (b"GET / HTTP/1.1\r\nX-A: 1\r\nX-B: 12345\r\nX-C: x\r\n\r\n", 30, &[("x-a", "1")]),
        (b"GET / HTTP/1.1\r\nX-A: 1\r\nX-B: 2\r\nX-C: x\r\n\r\n", 32, &[("x-a", "1")]),
        (b"GET / HTTP/1.1\r\nX-A: 1\r\nX-B: 2\r\n more\r\nX-C: x\r\n\r\n", 42, &[("x-a", "1")]),
        (b"GET / HTTP/1.1\r\nX-A: 1\r\nbad line\r\nX-B: 2\r\nX-C: x\r\n\r\n", 44, &[("x-a", "1")]),
    ];
    for (head, capture, want) in cases {
        let ex = cut_request(c.clone(), head, *capture);
        let [e] = ex.as_slice() else { panic!("{ex:?}") };
        let want: Vec<_> = want.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(headers(e), want, "{:?} cut at {capture}", String::from_utf8_lossy(head));
    }
}

#[test]
fn methods_are_tokens_and_targets_printable() {
    let c = HttpConfig::default();
    let Parsed::Complete(Head::Request(h), _) = parse(b"M-SEARCH * HTTP/1.1\r\n\r\n", true, &c) else { panic!() };
    assert_eq!((h.method.as_str(), h.route_path()), ("M-SEARCH", Some("*")));
    assert!(matches!(parse(format!("{} / HTTP/1.1\r\n\r\n", "A".repeat(21)).as_bytes(), true, &c), Parsed::Invalid));
    assert!(parse_first_line(b"G\x1bT / HTTP/1.1\r\n", true).is_none());
    assert!(parse_first_line(b"GET /\x1b[2J HTTP/1.1\r\n", true).is_none(), "control byte in the target");
    assert!(parse_first_line(b"GET /x junk\r\n", true).is_none(), "not a version");
    // httparse takes non-ASCII in a target; it is kept percent-encoded and
    // makes no route.
    let Parsed::Complete(Head::Request(h), _) = parse("GET /café HTTP/1.1\r\n\r\n".as_bytes(), true, &c) else {
        panic!()
    };
    assert_eq!((h.target.as_str(), h.route_path()), ("/caf%C3%A9", None));
    // A cut first line: the path is routable only when it was seen whole.
    let Some(Head::Request(h)) = parse_first_line(b"GET /long/pa", true) else { panic!() };
    assert_eq!((h.target.as_str(), h.route_path()), ("/long/pa", None));
    let Some(Head::Request(h)) = parse_first_line(b"GET /p?q=very-lo", true) else { panic!() };
    assert_eq!(h.route_path(), Some("/p"));
}

/// Bytes that look like HTTP now and then: fragments of heads, control
/// characters, invalid UTF-8, long runs.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"GET /"[..],
            b"POST ",
            b"PROPFIND ",
            b"HTTP/1.1 200 OK\r\n",
            b" HTTP/1.1\r\n",
            b"\r\n",
            b"\r\n\r\n",
            b"Host: ",
            b"User-Agent: ",
            b"X-Id: ",
            b"\x1b]0;pwned\x07",
            b"\xc2\x9b",
            b"\xe2\x80\xae",
            b"%zz",
            b"/123/",
        ])
        .prop_map(<[u8]>::to_vec),
        vec(any::<u8>(), 1..40),
        (any::<u8>(), 100..600usize).prop_map(|(b, n)| vec![b; n]),
    ];
    vec(piece, 1..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn hostile_bytes_give_printable_bounded_fields(
        req in hostile(),
        resp in hostile(),
        cap in 16usize..700,
        split in 1usize..64,
    ) {
        let c = cfg(&["x-id", "user-agent"]);
        let mut segs = Vec::new();
        for chunk in req.chunks(split.max(1) * 17) {
            segs.push((Q, 10, &chunk[..chunk.len().min(cap)], Some(chunk.len() as u32)));
        }
        segs.push((R, 20, &resp[..resp.len().min(cap)], Some(resp.len() as u32)));
        let mut r = feed(c, &segs);
        r.parser.close(&mut r.ex);
        for e in &r.ex {
            let h = &http(e).request;
            prop_assert!(!h.method.is_empty() && h.method.len() <= 20);
            prop_assert!(h.method.bytes().all(super::wire::is_tchar), "{:?}", h.method);
            prop_assert!(h.target.len() <= 2048 && h.target.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{:?}", h.target);
            if let Some(p) = h.route_path() {
                prop_assert!(p == "*" || p.is_empty() || p.starts_with('/'), "{p:?}");
            }
            for v in [&h.host, &h.user_agent, &h.traceparent, &h.tracestate].into_iter().flatten() {
                prop_assert!(v.len() <= 256 && is_printable(v), "{v:?}");
            }
            for (n, v) in &h.common.headers {
                prop_assert!(is_printable(n) && v.len() <= 256 && is_printable(v), "{n:?}: {v:?}");
            }
        }
    }
}
