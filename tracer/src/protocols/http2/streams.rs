//! The streams of one HTTP/2 connection, paired by id: a client-initiated
//! (odd) stream opens with the request's HEADERS and ends when the
//! response's END_STREAM is read, when either side resets it
//! (RST_STREAM), or when the server's GOAWAY says it was not processed.
//! In: decoded header blocks and frames. Out: [`Exchange`]s.
//!
//! Interim responses (1xx) are skipped; a second response block is the
//! trailers (gRPC's status). DATA frames are counted into body sizes, never
//! kept. Open streams are bounded ([`MAX_STREAMS`]): a stream opened past
//! the bound is counted (`overflow`) and not followed.

use std::collections::BTreeMap;

use super::{H2Exchange, frame::Frame, hpack::Fields};
use crate::protocols::{
    Exchange, Info, ParserCounts, Side, Timing,
    http1::{HttpExchange, RequestHead, ResponseHead, head::Common},
};

/// Streams followed at once per connection (servers allow 100 to 250
/// concurrent streams by default: SETTINGS_MAX_CONCURRENT_STREAMS). Each
/// holds its request's fields (a path of up to 2 KiB).
pub const MAX_STREAMS: usize = 256;

struct Stream {
    request: Fields,
    req: Timing,
    req_body: u64,
    /// The request's END_STREAM was read.
    req_ended: bool,
    response: Option<Fields>,
    resp: Option<Timing>,
    resp_body: u64,
    grpc_status: Option<u32>,
    /// Framing was lost in this direction while the stream was open: its
    /// body sizes are unknown.
    req_lost: bool,
    resp_lost: bool,
    trailers_incomplete: bool,
}

/// How a stream ended.
enum End {
    /// END_STREAM of the response, read at this time.
    Ended(u64),
    /// RST_STREAM: when, its error code, who sent it.
    Reset(u64, u32, Side),
    /// Past the last stream id of the server's GOAWAY.
    Refused(u64),
    /// The connection closed first.
    Closed,
}

#[derive(Default)]
pub struct Streams {
    open: BTreeMap<u32, Stream>,
    /// The highest stream id a request was seen on: a response on a lower
    /// id that is not open answers a stream already ended or not followed.
    max_id: u32,
    /// Request frames were lost on this connection: a response on a stream
    /// not open may answer a request never read.
    requests_lost: bool,
    /// The response direction is out of step now: a stream opened meanwhile
    /// may have its answer in frames never read.
    responses_lost_now: bool,
    /// The connection's bytes are TLS plaintext (`https`).
    pub tls: bool,
    counts: ParserCounts,
}

fn timing(f: &Frame) -> Timing {
    Timing { first_ns: f.first_ns, last_ns: f.last_ns, seq: f.seq, tid: f.tid }
}

impl Streams {
    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    pub fn take_counts(&mut self) -> ParserCounts {
        std::mem::take(&mut self.counts)
    }

    /// Stream 1 of an h2c upgrade: the HTTP/1 request that asked for it
    /// (its whole body was sent in HTTP/1).
    pub fn open_upgraded(&mut self, request: Fields, ex: &Exchange) {
        let req_body = match &ex.info {
            Info::Http(h) => h.request_body,
            _ => None,
        };
        self.max_id = 1;
        self.open.insert(
            1,
            Stream {
                request,
                req: ex.request,
                req_body: req_body.unwrap_or(0),
                req_ended: true,
                response: None,
                resp: None,
                resp_body: 0,
                grpc_status: None,
                req_lost: req_body.is_none(),
                resp_lost: false,
                trailers_incomplete: false,
            },
        );
    }

    pub fn on_headers(&mut self, side: Side, f: &Frame, fields: Fields, out: &mut Vec<Exchange>) {
        let id = f.stream;
        if id.is_multiple_of(2) {
            return; // server-initiated (push), or the connection's stream
        }
        match side {
            Side::Request => {
                if let Some(s) = self.open.get_mut(&id) {
                    // Request trailers.
                    if f.end_stream() {
                        s.req_ended = true;
                        s.req.last_ns = f.last_ns;
                    }
                    return;
                }
                if id <= self.max_id {
                    return; // a stream that ended already (a protocol error)
                }
                self.max_id = id;
                if self.open.len() >= MAX_STREAMS && !self.evict_lost(out) {
                    self.counts.overflow += 1;
                    return;
                }
                let mut req = timing(f);
                let req_ended = f.end_stream();
                if !req_ended {
                    req.last_ns = 0;
                }
                self.open.insert(
                    id,
                    Stream {
                        request: fields,
                        req,
                        req_body: 0,
                        req_ended,
                        response: None,
                        resp: None,
                        resp_body: 0,
                        grpc_status: None,
                        req_lost: false,
                        resp_lost: self.responses_lost_now,
                        trailers_incomplete: false,
                    },
                );
            }
            Side::Response => {
                let Some(s) = self.open.get_mut(&id) else {
                    self.unknown_stream(f);
                    return;
                };
                match &s.response {
                    None => {
                        if fields.status.is_some_and(|st| (100..200).contains(&st)) {
                            return; // 100 Continue, 103 Early Hints
                        }
                        s.grpc_status = fields.grpc_status; // trailers-only
                        s.response = Some(fields);
                        s.resp = Some(timing(f));
                    }
                    Some(_) => {
                        // Trailers.
                        s.grpc_status = fields.grpc_status.or(s.grpc_status);
                        s.trailers_incomplete |= !fields.complete;
                    }
                }
                if f.end_stream() {
                    self.finish(id, f.last_ns, None, out);
                }
            }
        }
    }

    /// A response frame on a stream not open: a response to a request
    /// never seen is counted once (at its END_STREAM; a stream after every
    /// one seen, at its first HEADERS).
    fn unknown_stream(&mut self, f: &Frame) {
        if f.stream.is_multiple_of(2) {
            return;
        }
        let after = f.stream > self.max_id && f.kind == super::frame::HEADERS;
        if after {
            self.max_id = f.stream; // its later frames are not counted again
        }
        if after || self.requests_lost && f.end_stream() && f.stream <= self.max_id {
            self.counts.unpaired += 1;
        }
    }

    pub fn on_data(&mut self, side: Side, f: &Frame, out: &mut Vec<Exchange>) {
        let Some(s) = self.open.get_mut(&f.stream) else {
            if side == Side::Response {
                self.unknown_stream(f);
            }
            return;
        };
        match side {
            Side::Request => {
                s.req_body += f.data_len();
                if f.end_stream() {
                    s.req_ended = true;
                    s.req.last_ns = f.last_ns;
                }
            }
            Side::Response => {
                s.resp_body += f.data_len();
                if !f.end_stream() {
                    return;
                }
                if s.response.is_none() {
                    if !s.resp_lost {
                        return; // DATA before any response head: a protocol error
                    }
                    // Its head was in frames never read: the stream still
                    // ends here, its status unknown.
                    s.response = Some(Fields::default());
                    s.resp = Some(timing(f));
                }
                self.finish(f.stream, f.last_ns, None, out);
            }
        }
    }

    /// RST_STREAM from `side` (the client's is on the request direction).
    pub fn on_reset(&mut self, side: Side, f: &Frame, out: &mut Vec<Exchange>) {
        let Some(s) = self.open.get_mut(&f.stream) else { return };
        let code = f.u32_at(0).unwrap_or(u32::MAX);
        match (side, s.resp.is_some()) {
            // The server answered by resetting: that is the response's time.
            (Side::Response, false) => s.resp = Some(timing(f)),
            (Side::Request, false) => s.req.last_ns = s.req.last_ns.max(f.last_ns),
            _ => {}
        }
        self.finish(f.stream, f.last_ns, Some((code, side)), out);
    }

    /// The server's GOAWAY: client streams past its last stream id were not
    /// processed and end here.
    pub fn on_goaway(&mut self, f: &Frame, out: &mut Vec<Exchange>) {
        let Some(last) = f.u32_at(0).map(|l| l & 0x7fff_ffff) else { return };
        let refused: Vec<u32> = self.open.range(last.saturating_add(1)..).map(|(id, _)| *id).collect();
        for id in refused {
            if let Some(ex) = self.exchange(id, End::Refused(f.last_ns)) {
                out.push(ex);
            }
        }
    }

    /// Full: make room by ending the oldest stream whose frames may have
    /// been lost (its end among them), counted as overflow. False: none.
    fn evict_lost(&mut self, out: &mut Vec<Exchange>) -> bool {
        let Some(id) = self.open.iter().find(|(_, s)| s.req_lost || s.resp_lost).map(|(id, _)| *id) else {
            return false;
        };
        self.counts.overflow += 1;
        if let Some(ex) = self.exchange(id, End::Closed) {
            out.push(ex);
        }
        true
    }

    /// Framing was lost in one direction: the bodies of open streams there
    /// are no longer counted whole.
    pub fn framing_lost(&mut self, side: Side) {
        self.requests_lost |= side == Side::Request;
        self.responses_lost_now |= side == Side::Response;
        for s in self.open.values_mut() {
            match side {
                Side::Request => s.req_lost = true,
                Side::Response => s.resp_lost = true,
            }
        }
    }

    /// Framing resumed in one direction.
    pub fn framing_resumed(&mut self, side: Side) {
        if side == Side::Response {
            self.responses_lost_now = false;
        }
    }

    /// The connection closed: open streams end unanswered or incomplete.
    pub fn close(&mut self, out: &mut Vec<Exchange>) {
        let ids: Vec<u32> = self.open.keys().copied().collect();
        for id in ids {
            if let Some(ex) = self.exchange(id, End::Closed) {
                out.push(ex);
            }
        }
    }

    fn finish(&mut self, id: u32, end_ns: u64, reset: Option<(u32, Side)>, out: &mut Vec<Exchange>) {
        let end = match reset {
            Some((code, by)) => End::Reset(end_ns, code, by),
            None => End::Ended(end_ns),
        };
        if let Some(ex) = self.exchange(id, end) {
            out.push(ex);
        }
    }

    /// The exchange of a stream that ends so, removed from the open ones.
    fn exchange(&mut self, id: u32, end: End) -> Option<Exchange> {
        let s = self.open.remove(&id)?;
        let (end_ns, ended, reset, refused) = match end {
            End::Ended(ns) => (ns, true, None, false),
            End::Reset(ns, code, by) => (ns, false, Some((code, by)), false),
            End::Refused(ns) => (ns, false, None, true),
            End::Closed => (0, false, None, false),
        };
        let response = s.resp.map(|mut t| {
            t.last_ns = if end_ns == 0 { t.last_ns } else { end_ns.max(t.first_ns) };
            t
        });
        let request = s.request;
        let req_head = RequestHead {
            method: request.method.unwrap_or_default(),
            target: request.path.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
            route_path: request.path.and_then(|p| p.1),
            host: request.authority,
            user_agent: request.user_agent,
            traceparent: request.traceparent,
            tracestate: request.tracestate,
            upgrade: false,
            common: Common {
                minor_version: 1,
                headers: request.headers,
                truncated: !request.complete,
                ..Default::default()
            },
        };
        // Frames of the response were lost while the stream was open: its
        // head may have been among them, so "no response" would be a guess.
        let response_fields = match s.response {
            None if s.resp_lost && reset.is_none() && !refused => Some(Fields::default()),
            r => r,
        };
        let resp_head = response_fields.map(|r| ResponseHead {
            status: r.status.unwrap_or(0),
            common: Common {
                minor_version: 1,
                headers: r.headers,
                truncated: !r.complete || s.trailers_incomplete,
                ..Default::default()
            },
        });
        let no_response = resp_head.is_none() && end_ns == 0;
        let http = HttpExchange {
            tls: self.tls,
            request: req_head,
            request_body: (s.req_ended && !s.req_lost).then_some(s.req_body),
            response_body: (ended && !s.resp_lost).then_some(s.resp_body),
            response_incomplete: resp_head.is_some() && end_ns == 0,
            no_response,
            response: resp_head,
        };
        Some(Exchange {
            request: s.req,
            response,
            info: Info::Http2(H2Exchange {
                http,
                stream: id,
                scheme: request.scheme,
                grpc: request.grpc == Some(true),
                grpc_status: s.grpc_status,
                reset,
                refused,
            }),
        })
    }
}
