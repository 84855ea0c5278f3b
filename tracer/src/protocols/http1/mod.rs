//! HTTP/1.x: two [`stream::Stream`]s (request and response direction) and the
//! pairing between them. Requests queue in order (keep-alive, pipelining);
//! each final response takes the oldest waiting request; 1xx responses are
//! skipped; 101 and a successful CONNECT stop parsing the connection.

pub mod head;
pub mod stream;
pub mod wire;

use std::{collections::VecDeque, sync::Arc};

use serde::Deserialize;

pub use self::head::{Head, RequestHead, ResponseHead, looks_like_request, looks_like_response};
use self::{
    head::{request_framing, response_framing},
    stream::{Stream, StreamEvent},
};
use super::{Exchange, Info, ProtocolParser, Segment, Side, Timing};

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
            overflow: 0,
            unpaired: 0,
            not_http: 0,
            events: Vec::new(),
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
        }),
    }
}

impl ProtocolParser for Http1 {
    fn name(&self) -> &'static str {
        "http"
    }

    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        if self.stopped.is_some() {
            return;
        }
        let cfg = self.cfg.clone();
        match side {
            Side::Request => {
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
            Side::Response => {
                // The framing of a response depends on its request's method.
                // Responses pair in order and interim ones take no request,
                // so the n-th final response of this segment answers the
                // n-th waiting request (pending is updated after the feed).
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
        }
    }

    fn close(&mut self, out: &mut Vec<Exchange>) {
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

    fn stopped(&self) -> Option<&'static str> {
        self.stopped
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
