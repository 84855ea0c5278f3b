//! One direction of a PostgreSQL connection cut into messages: a type byte
//! and a big-endian length (or, before the startup is done, a length and a
//! request code with no type byte), skipped by count so only the captured
//! prefix of each syscall is read. A message is handed on when its last
//! byte went by, with the first bytes of its body that its reader needs
//! ([`keep`]). When a header falls in bytes that were not captured the
//! stream is lost and waits for a syscall that starts with a message.

use crate::protocols::{Segment, Side, Timing};

/// Longest message accepted (PostgreSQL's own limit is 1 GiB).
const MAX_LEN: u32 = 1 << 30;
/// Longest startup-phase message (startup parameters, SSLRequest).
const MAX_STARTUP_LEN: u32 = 10_000;
/// Bytes of a typed header (type, length) and of an untyped one (length;
/// its code is the start of the body).
const HEADER: usize = 5;
const UNTYPED_HEADER: usize = 4;

/// Tag of a startup-phase message, which has none on the wire.
pub const UNTYPED: u8 = 0;

/// Frontend (client) message types.
const FRONTEND: &[u8] = b"QPBDESHCXFdcfp";
/// Backend (server) message types.
const BACKEND: &[u8] = b"123ntTDCIEZsGHWdcNASKRVv";

/// How much of a message's body its reader needs.
pub fn keep(side: Side, tag: u8) -> usize {
    match (side, tag) {
        (Side::Request, UNTYPED) => 2048,
        (Side::Request, b'Q' | b'P') => super::MAX_SQL + 2 * super::MAX_NAME,
        (Side::Request, b'B' | b'E' | b'C') => 2 * (super::MAX_NAME + 1),
        (Side::Response, b'C') => 64,
        (Side::Response, b'E') => 256,
        (Side::Response, b'Z') => 1,
        // DataRow, CopyData, passwords and everything else: never read.
        _ => 0,
    }
}

/// A message whose last byte went by.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The type byte ([`UNTYPED`] in the startup phase).
    pub tag: u8,
    /// Body length (after the header).
    pub len: u32,
    /// The first bytes of the body: at most [`keep`], fewer if not captured.
    pub body: &'a [u8],
    /// Where and when its first byte crossed; `last_ns` when its last did.
    pub timing: Timing,
}

/// What the stream expects next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Type byte, length.
    Typed,
    /// Length, code (the startup phase of the request direction).
    Untyped,
    /// One byte: the server's answer to SSLRequest or GSSENCRequest.
    Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a message boundary; `buf` may hold the start of a header.
    Between,
    /// Inside a body: bytes still to come, body bytes still wanted in `buf`.
    Body { tag: u8, len: u32, remaining: u32 },
    /// Out of step: waiting for a syscall that starts with a message.
    Lost,
}

/// What feeding one segment did besides handing on messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Framing was lost in this segment (bytes not captured, or not the protocol).
    pub lost: bool,
    /// ...because the bytes were not PostgreSQL (a header that cannot be one).
    pub malformed: bool,
}

pub struct Stream {
    side: Side,
    pub expect: Expect,
    state: State,
    /// Header bytes split across syscalls, then the kept body prefix.
    buf: Vec<u8>,
    /// The message being read: where its first byte was.
    first: Timing,
    /// May a lost stream resynchronise (at a syscall that starts with a message)?
    pub may_resync: bool,
}

impl Stream {
    pub fn new(side: Side, expect: Expect) -> Self {
        Stream { side, expect, state: State::Between, buf: Vec::new(), first: Timing::default(), may_resync: true }
    }

    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Bytes held between syscalls.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feed one segment; `on` gets each message that ends in it and returns
    /// false to stop reading this direction for good (TLS from here on).
    pub fn feed(&mut self, seg: &Segment<'_>, on: &mut dyn FnMut(&Frame<'_>) -> bool) -> Fed {
        let total = seg.bytes as usize;
        let p = &seg.payload[..seg.payload.len().min(total)];
        let mut fed = Fed::default();
        let mut pos = 0usize;
        while pos < total {
            match self.state {
                State::Lost => {
                    if pos == 0 && self.may_resync && self.starts_message(p, total) {
                        self.state = State::Between;
                        continue;
                    }
                    if self.side == Side::Response && p.len() == total && pos == 0 {
                        self.recover_tail(seg, p, on);
                    }
                    break;
                }
                State::Between => {
                    if self.buf.is_empty() {
                        self.first = Timing {
                            first_ns: seg.ts_ns,
                            last_ns: 0,
                            seq: seg.seq.map(|s| s.wrapping_add(pos as u32)),
                            tid: seg.tid,
                        };
                    }
                    let need = self.header_len();
                    if pos >= p.len() {
                        self.lose(&mut fed, false);
                        break;
                    }
                    let take = (need - self.buf.len()).min(p.len() - pos);
                    self.buf.extend_from_slice(&p[pos..pos + take]);
                    pos += take;
                    if self.buf.len() < need {
                        if pos < total {
                            self.lose(&mut fed, false); // the rest of the header was not captured
                        }
                        break;
                    }
                    if self.expect == Expect::Answer {
                        let tag = self.buf[0];
                        self.buf.clear();
                        self.expect = Expect::Typed;
                        let frame = Frame { tag, len: 0, body: &[], timing: self.first_with_end(seg.ts_ns) };
                        if !on(&frame) {
                            return fed;
                        }
                        continue;
                    }
                    let Some((tag, len)) = self.parse_header() else {
                        self.lose(&mut fed, true);
                        break;
                    };
                    self.buf.clear();
                    let n = len as usize;
                    if pos + n <= total {
                        // The whole message is in this syscall: its body is
                        // read in place (as far as it was captured).
                        let body = &p[pos.min(p.len())..(pos + keep(self.side, tag).min(n)).min(p.len())];
                        pos += n;
                        self.expect = next_expect(self.expect, tag, body);
                        let frame = Frame { tag, len, body, timing: self.first_with_end(seg.ts_ns) };
                        if !on(&frame) {
                            return fed;
                        }
                    } else {
                        self.state = State::Body { tag, len, remaining: len };
                    }
                }
                State::Body { tag, len, remaining } => {
                    let keep = keep(self.side, tag).min(len as usize);
                    let done = (len - remaining) as usize;
                    if self.buf.len() == done && done < keep && pos < p.len() {
                        let take = (keep - done).min(p.len() - pos).min(remaining as usize);
                        self.buf.extend_from_slice(&p[pos..pos + take]);
                    }
                    let take = (remaining as usize).min(total - pos);
                    pos += take;
                    let remaining = remaining - take as u32;
                    if remaining > 0 {
                        self.state = State::Body { tag, len, remaining };
                        continue;
                    }
                    self.state = State::Between;
                    let body = std::mem::take(&mut self.buf);
                    self.expect = next_expect(self.expect, tag, &body);
                    let frame = Frame { tag, len, body: &body, timing: self.first_with_end(seg.ts_ns) };
                    let go_on = on(&frame);
                    self.buf = body;
                    self.buf.clear();
                    if !go_on {
                        return fed;
                    }
                }
            }
        }
        fed
    }

    /// A lost response direction: a syscall captured whole that ends with
    /// ReadyForQuery (the server writes up to it and flushes) ends the
    /// answer being read; the CommandComplete just before it, when found,
    /// is handed on too. Framing resumes after it.
    fn recover_tail(&mut self, seg: &Segment<'_>, p: &[u8], on: &mut dyn FnMut(&Frame<'_>) -> bool) {
        let n = p.len();
        let Some(z) = n.checked_sub(HEADER + 1) else { return };
        if p[z] != b'Z' || be32(&p[z + 1..]) != 5 || !matches!(p[n - 1], b'I' | b'T' | b'E') {
            return;
        }
        let timing = Timing {
            first_ns: seg.ts_ns,
            last_ns: seg.ts_ns,
            seq: seg.seq.map(|s| s.wrapping_add(z as u32)),
            tid: seg.tid,
        };
        self.state = State::Between;
        let tags = z.saturating_sub(HEADER + keep(Side::Response, b'C'))..z.saturating_sub(HEADER);
        let complete = tags.rev().find(|&j| p[j] == b'C' && j + 1 + be32(&p[j + 1..]) as usize == z && p[z - 1] == 0);
        if let Some(j) = complete {
            let frame = Frame { tag: b'C', len: (z - j - HEADER) as u32, body: &p[j + HEADER..z], timing };
            if !on(&frame) {
                return;
            }
        }
        on(&Frame { tag: b'Z', len: 1, body: &p[n - 1..], timing });
    }

    fn first_with_end(&self, end_ns: u64) -> Timing {
        Timing { last_ns: end_ns, ..self.first }
    }

    fn header_len(&self) -> usize {
        match self.expect {
            Expect::Typed => HEADER,
            Expect::Untyped => UNTYPED_HEADER,
            Expect::Answer => 1,
        }
    }

    /// Tag and body length of the header in `buf`, if it can be one.
    fn parse_header(&self) -> Option<(u8, u32)> {
        match self.expect {
            Expect::Typed => typed_header(self.side, &self.buf),
            Expect::Untyped => {
                let len = be32(&self.buf);
                (8..=MAX_STARTUP_LEN).contains(&len).then(|| (UNTYPED, len - 4))
            }
            Expect::Answer => None,
        }
    }

    fn lose(&mut self, fed: &mut Fed, malformed: bool) {
        self.buf.clear();
        self.state = State::Lost;
        fed.lost = true;
        fed.malformed |= malformed;
    }

    /// The captured bytes of a syscall start with a message of this side: a
    /// known type and a sane length, and a second header where the first
    /// message ends (when that is captured and not the syscall's end).
    fn starts_message(&self, p: &[u8], total: usize) -> bool {
        let Some((_, len)) = typed_header(self.side, p) else { return false };
        let next = HEADER + len as usize;
        next >= total || next + HEADER > p.len() || typed_header(self.side, &p[next..]).is_some()
    }
}

/// Type and body length of a typed header at the start of `p`.
fn typed_header(side: Side, p: &[u8]) -> Option<(u8, u32)> {
    let (&tag, rest) = p.split_first()?;
    let known = match side {
        Side::Request => FRONTEND,
        Side::Response => BACKEND,
    };
    let len = be32(rest.get(..4)?);
    (known.contains(&tag) && (4..=MAX_LEN).contains(&len)).then(|| (tag, len - 4))
}

/// What follows a message of the request direction's startup phase: the
/// startup message ends it; SSLRequest and GSSENCRequest are answered by
/// one byte (the pairing sets the response side to [`Expect::Answer`]) and
/// followed by another startup-phase message.
fn next_expect(now: Expect, tag: u8, body: &[u8]) -> Expect {
    match (now, tag) {
        (Expect::Untyped, UNTYPED) => match body.get(..4).map(be32) {
            Some(super::SSL_REQUEST | super::GSSENC_REQUEST) => Expect::Untyped,
            _ => Expect::Typed,
        },
        _ => now,
    }
}

pub fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}
