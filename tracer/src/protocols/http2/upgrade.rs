//! HTTP/2 by upgrade from HTTP/1.1 (`Upgrade: h2c`, RFC 7540 section 3.2):
//! the connection is HTTP/1 ([`Http1`]) until the server answers 101;
//! then the upgrade request is stream 1, answered by HTTP/2 frames that
//! follow the 101's head in the same read, and the client's preface starts
//! its HTTP/2 direction. A server that does not upgrade answers in HTTP/1
//! and the connection stays HTTP/1 (its exchanges are HTTP's).

use std::sync::Arc;

use super::hpack::Fields;
use crate::protocols::{
    Exchange, Info, ParserCounts, ProtocolParser, Segment, Side,
    http1::{Http1, HttpConfig, RequestHead, STOP_UPGRADE, looks_like_request},
};

/// The first captured bytes are an HTTP/1 request asking for `h2c`.
pub fn asks_h2c(p: &[u8]) -> bool {
    if !looks_like_request(p) {
        return false;
    }
    let mut lines = p.split(|b| *b == b'\n').skip(1);
    lines.by_ref().take(64).take_while(|l| l.len() > 1).any(|l| {
        let Some(colon) = l.iter().position(|b| *b == b':') else { return false };
        l[..colon].eq_ignore_ascii_case(b"upgrade")
            && l[colon + 1..].split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"))
    })
}

/// What the HTTP/1 part of a connection yielded for the HTTP/2 one.
pub struct Switch {
    /// The upgrade request, as stream 1's request.
    pub request: Fields,
    pub exchange: Exchange,
    /// Where the HTTP/2 frames start in the segment that held the 101, or
    /// None when its head did not end within the captured bytes.
    pub frames_at: Option<usize>,
}

pub struct Upgrade {
    h1: Http1,
    out: Vec<Exchange>,
}

impl Upgrade {
    pub fn new(cfg: Arc<HttpConfig>) -> Self {
        Upgrade { h1: Http1::new(cfg).from_start(true), out: Vec::new() }
    }

    pub fn take_counts(&mut self) -> ParserCounts {
        self.h1.take_counts()
    }

    pub fn close(&mut self, out: &mut Vec<Exchange>) {
        self.h1.close(out);
    }

    /// Feed HTTP/1; Some once the server switched protocols.
    pub fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) -> Option<Switch> {
        // The 101's head is fed alone: the bytes after it are HTTP/2.
        let head = (side == Side::Response).then(|| switching_head(seg)).flatten();
        let sub = match head {
            Some(n) => Segment { bytes: n as u32, payload: &seg.payload[..n], ..*seg },
            None => *seg,
        };
        self.h1.feed(side, &sub, &mut self.out);
        let mut switch = None;
        for ex in self.out.drain(..) {
            let upgraded = match &ex.info {
                Info::Http(h) => h.response.as_ref().is_some_and(|r| r.status == 101),
                _ => false,
            };
            if upgraded && self.h1.stopped() == Some(STOP_UPGRADE) {
                let Info::Http(h) = &ex.info else { unreachable!("checked above") };
                switch = Some(Switch { request: fields(&h.request), exchange: ex, frames_at: head });
            } else {
                out.push(ex);
            }
        }
        switch
    }
}

/// A read that starts with a `101` status line and holds its whole head:
/// the head's length.
fn switching_head(seg: &Segment<'_>) -> Option<usize> {
    let p = &seg.payload[..seg.payload.len().min(seg.bytes as usize)];
    if !(p.starts_with(b"HTTP/1.1 101") || p.starts_with(b"HTTP/1.0 101")) {
        return None;
    }
    p.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// An HTTP/1 request head as the fields of an HTTP/2 request.
fn fields(h: &RequestHead) -> Fields {
    Fields {
        method: Some(h.method.clone()),
        path: Some((h.target.clone(), h.route_path.clone())),
        scheme: Some("http".into()),
        authority: h.host.clone(),
        user_agent: h.user_agent.clone(),
        traceparent: h.traceparent.clone(),
        tracestate: h.tracestate.clone(),
        headers: h.common.headers.clone(),
        complete: !h.common.truncated,
        ..Default::default()
    }
}
