//! HTTP/1.x: two [`stream::Stream`]s (request and response direction) and the
//! pairing between them. Requests queue in order (keep-alive, pipelining);
//! each final response takes the oldest waiting request; 1xx responses are
//! skipped; 101 and a successful CONNECT stop parsing the connection.
//!
//! A response can reach the agent before its request: the kernel reports a
//! send when the syscall returns, so a client whose writer thread is
//! preempted right after sending (the woken server often preempts it) is
//! seen writing after its reader thread already read the answer (Java's
//! HttpClient, Go's writeLoop/readLoop). A response that starts while no
//! request waits is therefore held ([`Early`]) until the next request
//! arrives — when no request byte went missing in between (its TCP
//! sequence number follows the previous one) and soon enough — and paired
//! with it; otherwise it is counted unpaired, as before.

pub mod head;
pub mod route;
pub mod span;
pub mod stream;
pub mod wire;

use std::{collections::VecDeque, sync::Arc};

use serde::Deserialize;

pub use self::head::{Head, RequestHead, ResponseHead, looks_like_request, looks_like_response};
use self::{
    head::{request_framing, response_framing},
    stream::{Stream, StreamEvent},
};
use super::{ConnHints, Exchange, Info, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side, Timing};

/// `[http]` config section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Request headers recorded on spans (`http.request.header.<name>`). Default: none.
    pub request_headers: Vec<String>,
    /// Response headers recorded on spans. Default: none.
    pub response_headers: Vec<String>,
    /// Headers whose values never leave the node, on top of the built-in
    /// list (authorization, proxy-authorization, cookie, set-cookie, x-api-key).
    pub sensitive_headers: Vec<String>,
    /// Requests waiting for a response per connection (pipelining depth).
    pub max_pending: usize,
}

const ALWAYS_SENSITIVE: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { request_headers: vec![], response_headers: vec![], sensitive_headers: vec![], max_pending: 64 }
    }
}

impl HttpConfig {
    pub fn is_sensitive(&self, name: &str) -> bool {
        ALWAYS_SENSITIVE.iter().any(|s| s.eq_ignore_ascii_case(name))
            || self.sensitive_headers.iter().any(|s| s.eq_ignore_ascii_case(name))
    }
}

/// What an HTTP exchange carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpExchange {
    pub request: RequestHead,
    pub response: Option<ResponseHead>,
    /// Body bytes (None: framing lost before the end).
    pub request_body: Option<u64>,
    pub response_body: Option<u64>,
    /// The response's end was not seen (framing lost, or connection closed).
    pub response_incomplete: bool,
    /// The connection closed with this request still waiting.
    pub no_response: bool,
    /// Read as TLS plaintext (https).
    pub tls: bool,
}

struct Pending {
    head: RequestHead,
    timing: Timing,
    body: Option<u64>,
}

struct InFlight {
    req: Pending,
    head: ResponseHead,
    timing: Timing,
}

/// Response segments held while their request is awaited, at most.
const EARLY_SEGMENTS: usize = 4;
const EARLY_BYTES: usize = 4096;
/// How much later than its response a request may be reported.
const EARLY_WAIT_NS: u64 = 500_000_000;

/// Response segments that arrived while no request was waiting, copied
/// (bounded), fed once their request arrived.
#[derive(Default)]
struct Early {
    segments: Vec<HeldSegment>,
    bytes: usize,
}

/// A [`Segment`] that owns its captured bytes.
struct HeldSegment {
    ts_ns: u64,
    bytes: u32,
    seq: Option<u32>,
    tid: u32,
    payload: Vec<u8>,
}

/// Detection (the registry's): a request line or a status line.
pub fn detect(payload: &[u8], _port_hint: bool) -> Option<Side> {
    if looks_like_request(payload) {
        Some(Side::Request)
    } else if looks_like_response(payload) {
        Some(Side::Response)
    } else {
        None
    }
}

pub fn parser(cfg: &ProtocolConfig, hints: ConnHints) -> Box<dyn ProtocolParser> {
    Box::new(Http1::new(cfg.http.clone()).from_start(hints.from_start).tls(hints.tls))
}

/// Why a parser gave up on a connection for good.
pub const STOP_UPGRADE: &str = "upgrade";
pub const STOP_TUNNEL: &str = "connect_tunnel";

pub struct Http1 {
    cfg: Arc<HttpConfig>,
    req: Stream,
    resp: Stream,
    /// Requests without a (final) response yet, oldest first.
    pending: VecDeque<Pending>,
    /// The request whose head was seen and whose end is not yet.
    receiving: bool,
    inflight: Option<InFlight>,
    stopped: Option<&'static str>,
    early: Early,
    /// Sequence number that follows the last request byte seen: a request
    /// segment that does not start there follows bytes never reported.
    req_next_seq: Option<u32>,
    /// The connection was seen from its handshake: every byte it carried was
    /// reported, so a response that no request preceded is early, not the
    /// answer to a request sent before the agent started.
    from_start: bool,
    /// TLS plaintext: exchanges are https.
    tls: bool,
    /// Counters for the caller: requests dropped past max_pending, responses
    /// without a request, segments that were not HTTP.
    pub overflow: u64,
    pub unpaired: u64,
    pub not_http: u64,
    events: Vec<StreamEvent>,
}

impl Http1 {
    pub fn new(cfg: Arc<HttpConfig>) -> Self {
        Http1 {
            cfg,
            req: Stream::new(Side::Request),
            resp: Stream::new(Side::Response),
            pending: VecDeque::new(),
            receiving: false,
            inflight: None,
            stopped: None,
            early: Early::default(),
            req_next_seq: None,
            from_start: false,
            tls: false,
            overflow: 0,
            unpaired: 0,
            not_http: 0,
            events: Vec::new(),
        }
    }

    /// A parser for a connection seen from its handshake.
    pub fn from_start(mut self, from_start: bool) -> Self {
        self.from_start = from_start;
        self
    }

    /// A parser of TLS plaintext.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self.req.seq_at_start_only = tls;
        self.resp.seq_at_start_only = tls;
        self
    }

    fn feed_request(&mut self, seg: &Segment<'_>) {
        let cfg = self.cfg.clone();
        self.req.feed(
            seg,
            &cfg,
            &mut |h| match h {
                Head::Request(r) => request_framing(r),
                Head::Response(_) => head::Framing::None,
            },
            &mut self.events,
        );
        self.on_request_events();
    }

    fn feed_response(&mut self, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        let cfg = self.cfg.clone();
        // The framing of a response depends on its request's method.
        // Responses pair in order and interim ones take no request, so the
        // n-th final response of this segment answers the n-th waiting
        // request (pending is updated after the feed).
        let pending = &self.pending;
        let mut answered = 0;
        self.resp.feed(
            seg,
            &cfg,
            &mut |h| match h {
                Head::Response(r) => {
                    let method = pending.get(answered).map(|p| p.head.method.as_str());
                    if !is_interim(r.status) {
                        answered += 1;
                    }
                    response_framing(r, method)
                }
                Head::Request(_) => head::Framing::None,
            },
            &mut self.events,
        );
        self.on_response_events(out);
    }

    /// Hold a response segment that starts a message while no request
    /// waits (and the ones that follow it), within bounds. False: feed it.
    fn holds_early(&mut self, seg: &Segment<'_>) -> bool {
        let captured = &seg.payload[..seg.payload.len().min(seg.bytes as usize)];
        if self.early.segments.is_empty() {
            let awaited = (self.from_start || self.req_next_seq.is_some())
                && self.pending.is_empty()
                && self.inflight.is_none()
                && !self.resp.in_message()
                && !self.req.in_message()
                && !self.req.is_lost()
                && head::starts_message(captured, false) == Some(true);
            if !awaited {
                return false;
            }
        }
        if self.early.segments.len() >= EARLY_SEGMENTS || self.early.bytes + captured.len() > EARLY_BYTES {
            return false;
        }
        self.early.bytes += captured.len();
        self.early.segments.push(HeldSegment {
            ts_ns: seg.ts_ns,
            bytes: seg.bytes,
            seq: seg.seq,
            tid: seg.tid,
            payload: captured.to_vec(),
        });
        true
    }

    /// Feed the held response segments (paired if a request now waits).
    fn replay_early(&mut self, out: &mut Vec<Exchange>) {
        let early = std::mem::take(&mut self.early);
        for h in &early.segments {
            let seg = Segment { ts_ns: h.ts_ns, bytes: h.bytes, payload: &h.payload, seq: h.seq, tid: h.tid };
            self.feed_response(&seg, out);
        }
    }

    fn on_request_events(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                StreamEvent::Head { head: Head::Request(h), first_ns, seq, tid } => {
                    if self.pending.len() >= self.cfg.max_pending.max(1) {
                        self.pending.pop_front();
                        self.overflow += 1;
                    }
                    let timing = Timing { first_ns, last_ns: 0, seq, tid };
                    self.pending.push_back(Pending { head: h, timing, body: None });
                    self.receiving = true;
                }
                StreamEvent::End { ts_ns, body_bytes } => {
                    // None when a response already took it (answered early):
                    // it was then the only one waiting.
                    if let Some(p) = self.pending.back_mut().filter(|_| self.receiving) {
                        p.timing.last_ns = ts_ns;
                        p.body = Some(body_bytes);
                    }
                    self.receiving = false;
                }
                StreamEvent::Lost { last_ns } => {
                    if let Some(p) = self.pending.back_mut().filter(|_| self.receiving) {
                        p.timing.last_ns = last_ns;
                    }
                    self.receiving = false;
                }
                StreamEvent::NotHttp => self.not_http += 1,
                StreamEvent::Head { head: Head::Response(_), .. } => {}
            }
        }
        self.events = events; // keep the allocation for the next segment
    }

    fn on_response_events(&mut self, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            if self.stopped.is_some() && !matches!(ev, StreamEvent::End { .. } | StreamEvent::Lost { .. }) {
                continue; // bytes after an upgrade or a tunnel are not HTTP/1
            }
            match ev {
                StreamEvent::Head { head: Head::Response(h), first_ns, seq, tid } => {
                    // A previous response whose end was lost ends before this one.
                    if let Some(f) = self.inflight.take() {
                        let last = self.resp.last_ns;
                        out.push(finish(f, last, None, true));
                    }
                    if is_interim(h.status) {
                        continue; // 100 Continue, 103 Early Hints
                    }
                    let Some(req) = self.pending.pop_front() else {
                        self.unpaired += 1;
                        continue;
                    };
                    if h.status == 101 {
                        self.stopped = Some(STOP_UPGRADE);
                    } else if req.head.method == "CONNECT" && (200..300).contains(&h.status) {
                        self.stopped = Some(STOP_TUNNEL);
                    }
                    self.inflight = Some(InFlight { req, head: h, timing: Timing { first_ns, last_ns: 0, seq, tid } });
                }
                StreamEvent::End { ts_ns, body_bytes } => {
                    if let Some(f) = self.inflight.take() {
                        out.push(finish(f, ts_ns, Some(body_bytes), false));
                    }
                }
                StreamEvent::Lost { last_ns } => {
                    if let Some(f) = self.inflight.take() {
                        out.push(finish(f, last_ns, None, true));
                    }
                }
                StreamEvent::NotHttp => self.not_http += 1,
                StreamEvent::Head { head: Head::Request(_), .. } => {}
            }
        }
        self.events = events; // keep the allocation for the next segment
    }
}

/// A 1xx response other than 101: another response follows for the same request.
fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

fn finish(f: InFlight, last_ns: u64, body: Option<u64>, incomplete: bool) -> Exchange {
    let mut timing = f.timing;
    timing.last_ns = last_ns.max(timing.first_ns);
    Exchange {
        request: f.req.timing,
        response: Some(timing),
        info: Info::Http(HttpExchange {
            request: f.req.head,
            response: Some(f.head),
            request_body: f.req.body,
            response_body: body,
            response_incomplete: incomplete,
            no_response: false,
            tls: false,
        }),
    }
}

impl ProtocolParser for Http1 {
    fn name(&self) -> &'static str {
        "http"
    }

    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        let before = out.len();
        self.feed_side(side, seg, out);
        self.mark_tls(&mut out[before..]);
    }

    fn close(&mut self, out: &mut Vec<Exchange>) {
        let before = out.len();
        self.close_all(out);
        self.mark_tls(&mut out[before..]);
    }

    fn stopped(&self) -> Option<&'static str> {
        self.stopped
    }

    fn take_counts(&mut self) -> ParserCounts {
        ParserCounts {
            unpaired: std::mem::take(&mut self.unpaired),
            overflow: std::mem::take(&mut self.overflow),
            malformed: std::mem::take(&mut self.not_http),
            ..Default::default()
        }
    }
}

impl Http1 {
    fn mark_tls(&self, new: &mut [Exchange]) {
        if self.tls {
            for e in new {
                if let Info::Http(h) = &mut e.info {
                    h.tls = true;
                }
            }
        }
    }

    fn feed_side(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        if self.stopped.is_some() {
            return;
        }
        match side {
            Side::Request => {
                let follows = match (self.req_next_seq, seg.seq) {
                    (Some(next), Some(seq)) => next == seq,
                    _ => true,
                };
                self.req_next_seq = seg.seq.map(|s| s.wrapping_add(seg.bytes));
                let held_since = self.early.segments.first().map(|e| e.ts_ns);
                if held_since.is_some_and(|t| !follows || seg.ts_ns.saturating_sub(t) > EARLY_WAIT_NS) {
                    self.replay_early(out); // not this request's response
                }
                let first = self.early.segments.first().map(|e| e.ts_ns);
                self.feed_request(seg);
                if let Some(first) = first.filter(|_| !self.pending.is_empty()) {
                    // The request was reported after its response: it was
                    // sent before the response's first byte was read.
                    for p in &mut self.pending {
                        p.timing.first_ns = p.timing.first_ns.min(first);
                        if p.timing.last_ns != 0 {
                            p.timing.last_ns = p.timing.last_ns.min(first);
                        }
                    }
                    self.replay_early(out);
                }
            }
            Side::Response => {
                if self.holds_early(seg) {
                    return;
                }
                self.replay_early(out); // held segments that cannot wait longer go first
                self.feed_response(seg, out);
            }
        }
    }

    fn close_all(&mut self, out: &mut Vec<Exchange>) {
        self.replay_early(out);
        self.req.close(&self.cfg, &mut self.events);
        self.on_request_events();
        self.resp.close(&self.cfg, &mut self.events);
        self.on_response_events(out);
        if let Some(f) = self.inflight.take() {
            let last = self.resp.last_ns;
            out.push(finish(f, last, None, true));
        }
        for p in self.pending.drain(..) {
            out.push(Exchange {
                request: p.timing,
                response: None,
                info: Info::Http(HttpExchange {
                    request: p.head,
                    request_body: p.body,
                    no_response: true,
                    ..Default::default()
                }),
            });
        }
    }
}
#[cfg(test)]
impl Http1 {
    /// Bytes this parser holds between calls: partial heads, and the text
    /// kept for each waiting request.
    pub(crate) fn buffered(&self) -> usize {
        let text = |h: &RequestHead| {
            let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
            let headers: usize = h.common.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
            h.method.len()
                + h.target.len()
                + opt(&h.host)
                + opt(&h.user_agent)
                + opt(&h.traceparent)
                + opt(&h.tracestate)
                + headers
        };
        let inflight = self.inflight.as_ref().map_or(0, |f| text(&f.req.head));
        self.req.buffered()
            + self.resp.buffered()
            + self.early.bytes
            + self.pending.iter().map(|p| text(&p.head)).sum::<usize>()
            + inflight
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
#[cfg(test)]
#[path = "tests_hostile.rs"]
mod tests_hostile;
#[cfg(test)]
#[path = "tests_prop.rs"]
mod tests_prop;
