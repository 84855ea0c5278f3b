//! Property tests: valid keep-alive streams cut at any byte frame the same as
//! whole messages; arbitrary bytes never panic and never grow the parser.

use std::sync::Arc;

use proptest::{collection::vec, prelude::*, sample::Index};

use super::{
    Http1, HttpConfig,
    stream::MAX_HEAD,
    tests::{Q, R, REQ_SEQ, RESP_SEQ, Seg, feed, http},
};
use crate::protocols::{ProtocolParser, Segment};

#[derive(Clone, Debug)]
enum Body {
    /// No framing header: no body.
    Empty,
    Length(usize),
    Chunked(Vec<usize>),
}

impl Body {
    fn size(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Length(n) => *n as u64,
            Body::Chunked(c) => c.iter().sum::<usize>() as u64,
        }
    }

    fn header(&self) -> String {
        match self {
            Body::Empty => String::new(),
            Body::Length(n) => format!("Content-Length: {n}\r\n"),
            Body::Chunked(_) => "Transfer-Encoding: chunked\r\n".to_string(),
        }
    }

    /// The body bytes: text that looks like message heads, to catch a
    /// parser that resynchronises inside a body.
    fn bytes(&self) -> Vec<u8> {
        let fill =
            |n: usize| b"HTTP/1.1 200 OK\r\n\r\nGET / HTTP/1.1\r\n".iter().copied().cycle().take(n).collect::<Vec<_>>();
        match self {
            Body::Empty => vec![],
            Body::Length(n) => fill(*n),
            Body::Chunked(chunks) => {
                let mut v = vec![];
                for (i, c) in chunks.iter().enumerate() {
                    let ext = if i % 2 == 1 { ";k=v" } else { "" };
                    v.extend_from_slice(format!("{c:x}{ext}\r\n").as_bytes());
                    v.extend_from_slice(&fill(*c));
                    v.extend_from_slice(b"\r\n");
                }
                v.extend_from_slice(b"0\r\nX-T: 1\r\n\r\n");
                v
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Pair {
    method: &'static str,
    target: String,
    req_body: Body,
    interim: bool,
    status: u16,
    resp_body: Body,
}

impl Pair {
    fn request(&self) -> Vec<u8> {
        let head = format!("{} {} HTTP/1.1\r\nHost: svc\r\n{}\r\n", self.method, self.target, self.req_body.header());
        [head.into_bytes(), self.req_body.bytes()].concat()
    }

    /// (interim part, final response).
    fn response(&self) -> (Vec<u8>, Vec<u8>) {
        let interim = if self.interim { b"HTTP/1.1 100 Continue\r\n\r\n".to_vec() } else { vec![] };
        let head = format!("HTTP/1.1 {} X\r\n{}\r\n", self.status, self.resp_body.header());
        let no_body = self.method == "HEAD" || self.status == 204 || self.status == 304;
        let body = if no_body { vec![] } else { self.resp_body.bytes() };
        (interim, [head.into_bytes(), body].concat())
    }

    /// What the parser must report: method, target, status, body sizes.
    fn expected(&self) -> (String, String, u16, Option<u64>, Option<u64>) {
        let no_body = self.method == "HEAD" || self.status == 204 || self.status == 304;
        let resp = if no_body { 0 } else { self.resp_body.size() };
        (self.method.into(), self.target.clone(), self.status, Some(self.req_body.size()), Some(resp))
    }
}

fn body(max: usize) -> impl Strategy<Value = Body> {
    prop_oneof![Just(Body::Empty), (0..max).prop_map(Body::Length), vec(1..max / 4, 0..5).prop_map(Body::Chunked),]
}

fn pair() -> impl Strategy<Value = Pair> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "PROPFIND"]);
    let status = prop::sample::select(vec![200u16, 201, 204, 304, 404, 500]);
    (method, "/[a-z0-9]{0,12}", body(300), any::<bool>(), status, body(3000)).prop_map(
        |(method, target, req_body, interim, status, resp_body)| {
            let req_body = if matches!(method, "GET" | "HEAD") { Body::Empty } else { req_body };
            // Without a length a response ends at close: only the last may do that.
            let resp_body = if matches!(resp_body, Body::Empty) { Body::Length(0) } else { resp_body };
            Pair { method, target, req_body, interim, status, resp_body }
        },
    )
}

/// Cut `bytes` at the given points; each piece remembers its end offset.
fn cut(bytes: &[u8], at: &[Index]) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = at.iter().map(|i| i.index(bytes.len().max(1))).filter(|p| *p > 0).collect();
    points.extend([0, bytes.len()]);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| (w[0], w[1])).collect()
}

type Summary = Vec<(String, String, u16, Option<u64>, Option<u64>)>;

fn summarise(run: &super::tests::Run) -> Summary {
    run.ex
        .iter()
        .map(|e| {
            let h = http(e);
            let status = h.response.as_ref().map_or(0, |r| r.status);
            (h.request.method.clone(), h.request.target.clone(), status, h.request_body, h.response_body)
        })
        .collect()
}

proptest! {
    #[test]
    fn any_split_frames_like_whole_messages(
        pairs in vec(pair(), 1..6),
        req_cuts in vec(any::<Index>(), 0..24),
        resp_cuts in vec(any::<Index>(), 0..24),
        order in vec(any::<bool>(), 0..64),
    ) {
        let want: Summary = pairs.iter().map(Pair::expected).collect();
        let requests: Vec<Vec<u8>> = pairs.iter().map(Pair::request).collect();
        let responses: Vec<(Vec<u8>, Vec<u8>)> = pairs.iter().map(Pair::response).collect();

        // One syscall per message.
        let mut segs: Vec<Seg<'_>> = vec![];
        for (i, (q, (interim, fin))) in requests.iter().zip(&responses).enumerate() {
            segs.push((Q, 10 * i as u64, q, None));
            if !interim.is_empty() {
                segs.push((R, 10 * i as u64 + 1, interim, None));
            }
            segs.push((R, 10 * i as u64 + 2, fin, None));
        }
        let mut whole = feed(HttpConfig::default(), &segs);
        whole.parser.close(&mut whole.ex);
        prop_assert_eq!(&summarise(&whole), &want);

        // The same bytes cut anywhere, interleaved in a causal order.
        let q_all = requests.concat();
        let s_all: Vec<u8> = responses.iter().flat_map(|(a, b)| [a.clone(), b.clone()].concat()).collect();
        let mut req_end = vec![];
        let mut resp_owner = vec![];
        let (mut q_off, mut q_starts, mut s_starts) = (0, vec![], vec![]);
        for (i, (q, (interim, fin))) in requests.iter().zip(&responses).enumerate() {
            q_starts.push(q_off);
            q_off += q.len();
            req_end.push(q_off);
            s_starts.push(resp_owner.len() + interim.len());
            resp_owner.extend(std::iter::repeat_n(i, interim.len() + fin.len()));
        }
        let q_segs = cut(&q_all, &req_cuts);
        let s_segs = cut(&s_all, &resp_cuts);
        let (mut qi, mut si, mut ts) = (0, 0, 0u64);
        let mut order = order.into_iter().chain(std::iter::repeat(true));
        let mut segs: Vec<Seg<'_>> = vec![];
        while qi < q_segs.len() || si < s_segs.len() {
            ts += 1;
            let resp_ok = si < s_segs.len() && {
                let owner = resp_owner[s_segs[si].1 - 1];
                qi == q_segs.len() || q_segs[qi].0 >= req_end[owner]
            };
            let pick_resp = resp_ok && (qi == q_segs.len() || order.next() == Some(true));
            if pick_resp {
                let (a, b) = s_segs[si];
                segs.push((R, ts, &s_all[a..b], None));
                si += 1;
            } else {
                let (a, b) = q_segs[qi];
                segs.push((Q, ts, &q_all[a..b], None));
                qi += 1;
            }
        }
        let mut split = feed(HttpConfig::default(), &segs);
        split.parser.close(&mut split.ex);
        prop_assert_eq!(&summarise(&split), &want);
        for (i, e) in split.ex.iter().enumerate() {
            prop_assert_eq!(e.request.seq, Some(REQ_SEQ + q_starts[i] as u32));
            prop_assert_eq!(e.response.and_then(|t| t.seq), Some(RESP_SEQ + s_starts[i] as u32));
            let t = e.response.unwrap();
            prop_assert!(t.first_ns <= t.last_ns && e.request.first_ns <= t.first_ns);
        }
        prop_assert_eq!((split.parser.not_http, split.parser.unpaired, split.parser.overflow), (0, 0, 0));
    }
}

const FRAGMENTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"POST /x HTTP/1.1\r\n",
    b"HEAD / HTTP/1.1\r\n",
    b"CONNECT a:1 HTTP/1.1\r\n",
    b"PROPFIND /d HTTP/1.0\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 101 Switching\r\n",
    b"HTTP/1.0 204 N\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"X-A: value\r\n",
    b"\r\n",
    b"5\r\nhello\r\n",
    b"3;ext\r\nabc\r\n",
    b"0\r\n\r\n",
    b"fffffffffffffffffff\r\n",
    b"GE",
    b"HTTP/1.",
];

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..600),
        vec(prop::sample::select(FRAGMENTS), 1..12).prop_map(|f| f.concat()),
        (vec(prop::sample::select(FRAGMENTS), 1..6), vec(any::<u8>(), 0..40))
            .prop_map(|(f, tail)| [f.concat(), tail].concat()),
    ]
}

/// Text one waiting request may keep: method, target, four always-kept
/// headers and the allow-listed ones (`x-a`, repeated at most 96 times).
const PER_REQUEST: usize = 20 + 2048 + 4 * 256 + 96 * (3 + 256);

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_grow(
        segs in vec((any::<bool>(), payload(), prop_oneof![Just(0u32), 0u32..100_000]), 0..40),
    ) {
        let max_pending = 4;
        let cfg = HttpConfig { max_pending, request_headers: vec!["x-a".into()], ..HttpConfig::default() };
        let mut p = Http1::new(Arc::new(cfg));
        let mut out = vec![];
        for (i, (request, payload, extra)) in segs.iter().enumerate() {
            let seg = Segment {
                ts_ns: i as u64,
                bytes: payload.len() as u32 + extra,
                payload,
                seq: Some(u32::MAX - 100),
                tid: 7,
            };
            p.feed(if *request { Q } else { R }, &seg, &mut out);
            prop_assert!(p.buffered() <= 2 * MAX_HEAD + (max_pending + 1) * PER_REQUEST, "{} bytes", p.buffered());
            prop_assert!(p.pending_len() <= max_pending);
        }
        p.close(&mut out);
        prop_assert_eq!(p.pending_len(), 0);
        for e in &out {
            if let Some(t) = e.response {
                prop_assert!(t.first_ns <= t.last_ns);
            }
        }
    }
}
