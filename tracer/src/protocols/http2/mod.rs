//! HTTP/2 over cleartext TCP with prior knowledge (RFC 9113 section 3.3),
//! and the gRPC calls it carries. Each direction is framed on its own
//! ([`frame::Framer`]) and has its own HPACK table ([`hpack::Table`],
//! decoded by [`decoder`]);
//! frames are paired into exchanges by stream id ([`streams`]): many
//! streams at once per connection, each one exchange, from the first
//! HEADERS of its request to the END_STREAM (or RST_STREAM) of its
//! response. A gRPC streaming call is one stream, hence one span.
//!
//! Detected by the client preface, or by an HTTP/1 request asking for
//! `Upgrade: h2c` ([`upgrade`]: HTTP/1 until the server's 101, then
//! HTTP/2 with the upgrade request as stream 1). A connection first seen
//! mid-stream is not detected: its HPACK tables are out of step, so only
//! stream ids and flags could be read, and frames lack a signature strong
//! enough to tell them from other bytes.

pub mod decoder;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod span;
pub mod streams;
pub mod tables;
pub mod upgrade;

use std::sync::Arc;

use self::{
    frame::{Frame, Framer, Item, PREFACE},
    hpack::Table,
    streams::Streams,
    upgrade::{Switch, Upgrade, asks_h2c},
};
use super::{
    ConnHints, Exchange, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side,
    http1::{HttpConfig, HttpExchange},
};

/// What an HTTP/2 exchange (one stream) carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct H2Exchange {
    /// The request and response as HTTP: `:method`, `:path` as the target,
    /// `:authority` as the host, `:status`; DATA bytes as body sizes
    /// (None: not seen to END_STREAM, or framing lost meanwhile). A head
    /// whose block was not read whole is `common.truncated`.
    pub http: HttpExchange,
    pub stream: u32,
    /// `:scheme` as sent.
    pub scheme: Option<String>,
    /// The request's content-type is gRPC's.
    pub grpc: bool,
    /// `grpc-status` of the trailers (or of a trailers-only response).
    pub grpc_status: Option<u32>,
    /// RST_STREAM ended the stream: its error code, and whether the client sent it.
    pub reset: Option<(u32, Side)>,
    /// The server's GOAWAY said the stream was not processed.
    pub refused: bool,
}

/// Detection (the registry's): the client preface, whole or as far as the
/// syscall went (at least its request-line part), or an HTTP/1 request
/// asking for h2c.
pub fn detect(payload: &[u8], _port_hint: bool) -> Option<Side> {
    (starts_preface(payload) || asks_h2c(payload)).then_some(Side::Request)
}

fn starts_preface(p: &[u8]) -> bool {
    let n = p.len().min(PREFACE.len());
    n >= 14 && p[..n] == PREFACE[..n]
}

pub fn parser(cfg: &ProtocolConfig, hints: ConnHints) -> Box<dyn ProtocolParser> {
    let mut p = Http2::new(cfg.http.clone());
    p.tls = hints.tls;
    p.streams.tls = hints.tls;
    Box::new(p)
}

/// One direction: its framer, its HPACK table, the header block being
/// gathered from HEADERS and CONTINUATION frames.
struct Direction {
    framer: Framer,
    table: Table,
    block: Option<Block>,
    /// Sequence number after the last byte seen (None: not known).
    next_seq: Option<u32>,
}

/// A header block whose END_HEADERS has not come yet.
struct Block {
    first: Frame,
    bytes: Vec<u8>,
    cut: bool,
}

impl Direction {
    fn new(side: Side) -> Self {
        Direction { framer: Framer::new(side == Side::Request), table: Table::default(), block: None, next_seq: None }
    }
}

pub struct Http2 {
    cfg: Arc<HttpConfig>,
    req: Direction,
    resp: Direction,
    streams: Streams,
    /// HTTP/1 before an h2c upgrade (or for good, if the server declines).
    upgrade: Option<Upgrade>,
    /// The first request bytes were looked at (preface or upgrade).
    started: bool,
    /// TLS plaintext: a segment's sequence number is its first ciphertext
    /// byte's, so it neither follows the last segment's nor locates a frame
    /// inside the segment.
    tls: bool,
    counts: ParserCounts,
    items: Vec<Item>,
}

impl Http2 {
    pub fn new(cfg: Arc<HttpConfig>) -> Self {
        Http2 {
            cfg,
            req: Direction::new(Side::Request),
            resp: Direction::new(Side::Response),
            streams: Streams::default(),
            upgrade: None,
            started: false,
            tls: false,
            counts: ParserCounts::default(),
            items: Vec::new(),
        }
    }

    /// The server switched to HTTP/2: the upgrade request is stream 1, and
    /// the frames after the 101's head (in `seg`) are the server's first.
    fn switch(&mut self, sw: Switch, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        self.upgrade = None;
        self.streams.open_upgraded(sw.request, &sw.exchange);
        self.req = Direction::new(Side::Request);
        self.resp = Direction::new(Side::Response);
        let Some(at) = sw.frames_at else {
            // The head went on past the capture: where frames start is unknown.
            self.resp.framer = Framer::lost();
            self.resp.table = Table::lost();
            self.counts.malformed += 1;
            return;
        };
        let rest = Segment {
            bytes: seg.bytes - at as u32,
            payload: &seg.payload[at.min(seg.payload.len())..],
            seq: seg.seq.map(|s| s.wrapping_add(at as u32)),
            ..*seg
        };
        self.feed_frames(Side::Response, &rest, out);
    }

    fn feed_frames(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        let mut items = std::mem::take(&mut self.items);
        let tls = self.tls;
        let dir = self.dir(side);
        if let (Some(next), Some(seq), false) = (dir.next_seq, seg.seq, tls)
            && next != seq
        {
            dir.framer.gap(&mut items);
        }
        dir.next_seq = seg.seq.map(|s| s.wrapping_add(seg.bytes));
        dir.framer.seq_at_start_only = tls;
        dir.framer.feed(seg, &mut items);
        self.items = items;
        self.on_items(side, out);
    }

    fn on_items(&mut self, side: Side, out: &mut Vec<Exchange>) {
        let mut items = std::mem::take(&mut self.items);
        for item in items.drain(..) {
            match item {
                Item::Frame(f) => self.on_frame(side, f, out),
                Item::Lost => {
                    self.counts.malformed += 1;
                    let dir = self.dir(side);
                    dir.table.lose();
                    dir.block = None;
                    self.streams.framing_lost(side);
                }
                Item::Resumed => self.streams.framing_resumed(side),
            }
        }
        self.items = items; // keep the allocation for the next segment
    }

    fn dir(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Request => &mut self.req,
            Side::Response => &mut self.resp,
        }
    }

    fn on_frame(&mut self, side: Side, f: Frame, out: &mut Vec<Exchange>) {
        let dir = self.dir(side);
        if let Some(b) = &mut dir.block {
            if f.kind == frame::CONTINUATION && f.stream == b.first.stream {
                let room = frame::MAX_BLOCK.saturating_sub(b.bytes.len());
                b.cut |= f.cut || f.block.len() > room;
                b.bytes.extend_from_slice(&f.block[..f.block.len().min(room)]);
                if f.flags & frame::END_HEADERS != 0 {
                    let b = dir.block.take().expect("a block is being gathered");
                    let last_ns = f.last_ns;
                    self.on_block(side, b, last_ns, out);
                }
                return;
            }
            // Anything else interrupts a block (a protocol error): its
            // fields are unknown and the table is out of step.
            dir.block = None;
            dir.table.lose();
            self.counts.malformed += 1;
        }
        match f.kind {
            frame::HEADERS | frame::PUSH_PROMISE => {
                let dir = self.dir(side);
                let b = Block { bytes: Vec::new(), cut: f.cut, first: f };
                if b.first.flags & frame::END_HEADERS == 0 {
                    dir.block = Some(b);
                    return;
                }
                let last_ns = b.first.last_ns;
                self.on_block(side, b, last_ns, out);
            }
            frame::CONTINUATION => {
                // No block to continue: its fragment cannot be decoded.
                self.dir(side).table.lose();
                self.counts.malformed += 1;
            }
            frame::DATA => self.streams.on_data(side, &f, out),
            frame::RST_STREAM => self.streams.on_reset(side, &f, out),
            frame::GOAWAY if side == Side::Response => self.streams.on_goaway(&f, out),
            _ => {} // SETTINGS, PING, WINDOW_UPDATE, PRIORITY, unknown types
        }
    }

    fn on_block(&mut self, side: Side, mut b: Block, last_ns: u64, out: &mut Vec<Exchange>) {
        let cfg = self.cfg.clone();
        let allow = match side {
            Side::Request => &cfg.request_headers,
            Side::Response => &cfg.response_headers,
        };
        let dir = self.dir(side);
        let bytes = if b.bytes.is_empty() {
            std::mem::take(&mut b.first.block)
        } else {
            let mut all = std::mem::take(&mut b.first.block);
            all.extend_from_slice(&b.bytes);
            all
        };
        let fields = dir.table.decode(&bytes, b.cut, &cfg, allow);
        if !fields.complete {
            self.counts.malformed += 1;
        }
        if b.first.kind == frame::PUSH_PROMISE {
            return; // decoded to keep the table in step; pushes are not spans
        }
        b.first.last_ns = last_ns;
        self.streams.on_headers(side, &b.first, fields, out);
    }
}

impl ProtocolParser for Http2 {
    fn name(&self) -> &'static str {
        if self.upgrade.is_some() { "http" } else { "http2" }
    }

    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        if !self.started && side == Side::Request && !seg.payload.is_empty() {
            self.started = true;
            if !starts_preface(seg.payload) && asks_h2c(seg.payload) {
                self.upgrade = Some(Upgrade::new(self.cfg.clone()));
            }
        }
        if let Some(u) = &mut self.upgrade {
            let switch = u.feed(side, seg, out);
            let c = u.take_counts();
            self.counts.add(c);
            if let Some(sw) = switch {
                self.switch(sw, seg, out);
            }
        } else {
            self.feed_frames(side, seg, out);
        }
        let c = self.streams.take_counts();
        self.counts.add(c);
    }

    fn close(&mut self, out: &mut Vec<Exchange>) {
        if let Some(u) = &mut self.upgrade {
            u.close(out);
        }
        self.streams.close(out);
    }

    fn stopped(&self) -> Option<&'static str> {
        None
    }

    fn wide_capture(&self) -> bool {
        true // a read or write of many frames: their headers lie past 512 bytes
    }

    fn take_counts(&mut self) -> ParserCounts {
        std::mem::take(&mut self.counts)
    }
}

#[cfg(test)]
impl Http2 {
    /// Bytes and entries this parser holds between calls.
    pub(crate) fn buffered(&self) -> usize {
        let block = |d: &Direction| d.block.as_ref().map_or(0, |b| b.bytes.capacity() + b.first.block.capacity());
        self.req.framer.buffered() + self.resp.framer.buffered() + block(&self.req) + block(&self.resp)
    }

    pub(crate) fn open_streams(&self) -> usize {
        self.streams.open()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
#[cfg(test)]
#[path = "tests_lost.rs"]
mod tests_lost;
#[cfg(test)]
#[path = "tests_prop.rs"]
mod tests_prop;
#[cfg(test)]
#[path = "tests_recorded.rs"]
mod tests_recorded;
