//! DNS: recorded dnsmasq exchanges (UDP and TCP) as fixtures, hostile
//! names, pairing rules, and properties: a TCP stream split at any points
//! frames the same messages; random bytes never panic and stay bounded.

use std::net::IpAddr;

use proptest::{collection::vec, prelude::*};

use super::{
    DnsExchange, DnsParser, MAX_PENDING,
    wire::{self, Answer, build},
};
use crate::protocols::{Exchange, Info, ProtocolParser, Segment, Side, fixture};

fn seg(payload: &[u8], ts_ns: u64) -> Segment<'_> {
    Segment { ts_ns, bytes: payload.len() as u32, payload, seq: None, tid: 7 }
}

fn run(p: &mut DnsParser, reads: &[(Side, Vec<u8>)]) -> Vec<Exchange> {
    let mut out = Vec::new();
    for (i, (side, b)) in reads.iter().enumerate() {
        p.feed(*side, &seg(b, i as u64 + 1), &mut out);
    }
    out
}

fn dns(e: &Exchange) -> &DnsExchange {
    match &e.info {
        Info::Dns(d) => d,
        other => panic!("not DNS: {other:?}"),
    }
}

fn ip(s: &str) -> Answer {
    Answer::Addr(s.parse().unwrap())
}

/// What the recordings hold, known from dnsmasq's configuration.
fn assert_recorded(out: &[Exchange], tcp: bool) {
    let got: Vec<_> = out.iter().map(|e| dns(e).clone()).collect();
    let want = |id, name: &str, qtype, rcode, answers: Vec<Answer>| DnsExchange {
        id,
        name: name.into(),
        qtype,
        rcode: Some(rcode),
        answers,
        more_answers: 0,
        truncated: false,
        tcp,
    };
    assert_eq!(
        got,
        vec![
            want(0x1a2b, "api.example.test", 1, 0, vec![ip("10.53.0.2")]),
            want(0x1a2c, "api.example.test", 28, 0, vec![ip("fd53::2")]),
            want(0x1a2d, "www.example.test", 1, 0, vec![Answer::Alias("api.example.test".into()), ip("10.53.0.2")]),
            want(0x1a2e, "missing.example.test", 1, 3, vec![]),
        ]
    );
    for (i, e) in out.iter().enumerate() {
        let r = e.response.expect("answered");
        assert_eq!((e.request.first_ns, r.first_ns), (2 * i as u64 + 1, 2 * i as u64 + 2));
    }
}

#[test]
fn dnsmasq_over_udp() {
    let reads = fixture::load(include_str!("fixtures/dnsmasq_udp.txt"));
    let mut p = DnsParser::new(false);
    assert_recorded(&run(&mut p, &reads), false);
    assert_eq!(p.take_counts(), Default::default());
}

#[test]
fn dnsmasq_over_tcp() {
    let reads = fixture::load(include_str!("fixtures/dnsmasq_tcp.txt"));
    let mut p = DnsParser::new(true);
    assert_recorded(&run(&mut p, &reads), true);
    assert_eq!(p.take_counts(), Default::default());
}

#[test]
fn spans_say_name_type_code_and_answers() {
    let reads = fixture::load(include_str!("fixtures/dnsmasq_udp.txt"));
    let out = run(&mut DnsParser::new(false), &reads);
    let d = super::span::describe(dns(&out[0]));
    assert_eq!(d.name, "DNS A");
    assert!(d.error_type.is_none());
    let attr = |k: &str| d.attributes.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v.clone());
    assert_eq!(attr("dns.question.name").unwrap().text().unwrap(), "api.example.test");
    assert_eq!(attr("dns.response_code").unwrap().text().unwrap(), "NOERROR");
    assert_eq!(attr("dns.answers"), Some(crate::span::Value::StrArray(vec!["10.53.0.2".into()])));
    let nx = super::span::describe(dns(&out[3]));
    assert_eq!(nx.error_type.as_deref(), Some("NXDOMAIN"));
    assert_eq!(super::span::describe(dns(&out[1])).name, "DNS AAAA");
}

#[test]
fn responses_pair_by_id_and_question_in_any_order() {
    // glibc sends A and AAAA together; the AAAA answer may come first.
    let qa = build::query(1, "a.test", 1);
    let qaaaa = build::query(1, "a.test", 28);
    let ra = build::response(1, "a.test", 1, 0, &["10.0.0.1".parse().unwrap()]);
    let raaaa = build::response(1, "a.test", 28, 0, &[]);
    let mut p = DnsParser::new(false);
    let out =
        run(&mut p, &[(Side::Request, qa), (Side::Request, qaaaa), (Side::Response, raaaa), (Side::Response, ra)]);
    let got: Vec<_> = out.iter().map(|e| (dns(e).qtype, dns(e).answers.clone())).collect();
    assert_eq!(got, vec![(28, vec![]), (1, vec![ip("10.0.0.1")])]);
}

#[test]
fn spoofed_and_unasked_responses_are_counted_not_spans() {
    let mut p = DnsParser::new(false);
    let q = build::query(5, "a.test", 1);
    // Right id, other name; right name, other id.
    let wrong_name = build::response(5, "evil.test", 1, 0, &["6.6.6.6".parse().unwrap()]);
    let wrong_id = build::response(6, "a.test", 1, 0, &["6.6.6.6".parse().unwrap()]);
    let out = run(&mut p, &[(Side::Request, q), (Side::Response, wrong_name), (Side::Response, wrong_id)]);
    assert!(out.is_empty());
    assert_eq!(p.take_counts().unpaired, 2);
    // The query still waits; at close it is a span without response.
    let mut out = Vec::new();
    p.close(&mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].response.is_none());
    assert_eq!(super::span::describe(dns(&out[0])).error_type.as_deref(), Some("timeout"));
}

#[test]
fn pending_queries_are_bounded() {
    let mut p = DnsParser::new(false);
    let reads: Vec<_> = (0..MAX_PENDING as u16 + 5).map(|i| (Side::Request, build::query(i, "a.test", 1))).collect();
    assert!(run(&mut p, &reads).is_empty());
    assert_eq!(p.pending.len(), MAX_PENDING);
    assert_eq!(p.take_counts().overflow, 5);
}

#[test]
fn names_are_escaped_lowercased_and_bounded() {
    // A label with a dot, a NUL, a quote and upper case.
    let mut q = build::query(1, "x.test", 1);
    let hostile = b"\x06A.b\0\"z\x04test\x00";
    q.splice(12..12 + 8, hostile.iter().copied());
    let m = wire::parse(&q).unwrap();
    assert_eq!(m.question.name, "a\\.b\\000\\034z.test");
    // A pointer to itself, and a chain of pointers: refused, not looped.
    let mut l = build::query(1, "x", 1);
    l.splice(12..15, [0xc0, 12]);
    assert_eq!(wire::parse(&l), Err(wire::WireError::Name));
    // A name longer than 255 bytes.
    let long = vec!["a".repeat(63); 5].join(".");
    assert_eq!(wire::parse(&build::query(1, &long, 1)), Err(wire::WireError::Name));
    // The root.
    assert_eq!(wire::parse(&build::query(1, "", 2)).unwrap().question.name, ".");
}

#[test]
fn cut_answers_keep_what_was_captured() {
    let addrs: Vec<IpAddr> = (1..=5).map(|i| format!("10.0.0.{i}").parse().unwrap()).collect();
    let r = build::response(9, "a.test", 1, 0, &addrs);
    // Two whole records and part of the third.
    let cut = &r[..r.len() - 3 * 16 + 5];
    let m = wire::parse(cut).unwrap();
    assert_eq!(m.answers, vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    assert!(m.cut);
    assert_eq!(m.more_answers, 3);
}

#[test]
fn tcp_framing_lost_past_the_capture_is_counted() {
    let mut p = DnsParser::new(true);
    let mut out = Vec::new();
    // A segment of 100 bytes of which 1 was captured: the prefix is cut.
    p.feed(Side::Request, &Segment { ts_ns: 1, bytes: 100, payload: b"\x00", seq: None, tid: 1 }, &mut out);
    let q = build::query(1, "a.test", 1);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    p.feed(Side::Request, &seg(&framed, 2), &mut out);
    assert_eq!(p.take_counts().malformed, 1);
    assert!(p.pending.is_empty(), "nothing is read once framing is lost");
}

fn tcp_stream() -> (Vec<u8>, Vec<u8>) {
    let names = ["a.test", "bb.example.test", "c.test"];
    let (mut q, mut r) = (Vec::new(), Vec::new());
    for (i, n) in names.iter().enumerate() {
        for (out, m) in [
            (&mut q, build::query(i as u16, n, 1)),
            (&mut r, build::response(i as u16, n, 1, 0, &[format!("10.0.0.{i}").parse().unwrap()])),
        ] {
            out.extend_from_slice(&(m.len() as u16).to_be_bytes());
            out.extend_from_slice(&m);
        }
    }
    (q, r)
}

fn split(b: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (b.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut parts = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([b.len()]) {
        if c > at {
            parts.push(b[at..c].to_vec());
            at = c;
        }
    }
    parts
}

proptest! {
    #[test]
    fn tcp_split_anywhere_frames_the_same(qcuts in vec(any::<usize>(), 0..12), rcuts in vec(any::<usize>(), 0..12)) {
        let (q, r) = tcp_stream();
        let whole = run(&mut DnsParser::new(true), &[(Side::Request, q.clone()), (Side::Response, r.clone())]);
        prop_assert_eq!(whole.len(), 3);
        let mut reads: Vec<_> = split(&q, &qcuts).into_iter().map(|b| (Side::Request, b)).collect();
        reads.extend(split(&r, &rcuts).into_iter().map(|b| (Side::Response, b)));
        let mut p = DnsParser::new(true);
        let parts = run(&mut p, &reads);
        let infos: Vec<_> = parts.iter().map(|e| e.info.clone()).collect();
        let want: Vec<_> = whole.iter().map(|e| e.info.clone()).collect();
        prop_assert_eq!(infos, want);
        prop_assert_eq!(p.take_counts(), Default::default());
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(chunks in vec((any::<bool>(), vec(any::<u8>(), 0..600)), 0..40), tcp in any::<bool>()) {
        let mut p = DnsParser::new(tcp);
        let mut out = Vec::new();
        for (i, (resp, b)) in chunks.iter().enumerate() {
            let side = if *resp { Side::Response } else { Side::Request };
            // Some segments say more bytes moved than were captured.
            let bytes = b.len() as u32 + if i % 3 == 0 { 700 } else { 0 };
            p.feed(side, &Segment { ts_ns: i as u64, bytes, payload: b, seq: None, tid: 1 }, &mut out);
            let _ = wire::parse(b);
            prop_assert!(p.pending.len() <= MAX_PENDING);
            prop_assert!(p.framers.iter().all(|f| f.buf.len() <= super::MAX_MESSAGE && f.prefix.len() <= 2));
        }
        p.close(&mut out);
        for e in &out {
            let d = dns(e);
            prop_assert!(d.name.len() <= 4 * wire::MAX_NAME && d.answers.len() <= wire::MAX_ANSWERS);
        }
    }

    #[test]
    fn random_names_decode_bounded(b in vec(any::<u8>(), 0..300), start in 0usize..300) {
        if let Ok((name, after)) = wire::name(&b, start) {
            prop_assert!(name.len() <= 4 * wire::MAX_NAME);
            prop_assert!(after <= b.len());
            prop_assert!(name.bytes().all(|c| c.is_ascii_graphic()));
        }
    }
}
