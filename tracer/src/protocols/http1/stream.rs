//! One direction of an HTTP/1.x connection: finds message heads, then skips
//! bodies by length (Content-Length, chunk sizes) without needing their
//! bytes, so only the captured prefix of each syscall is ever read. When the
//! bytes needed to stay in step were not captured, the stream is `Lost` and
//! resynchronises at the next syscall that starts with a message head.

use super::{
    HttpConfig,
    head::{self, Framing, Head, Parsed},
};
use crate::protocols::{Segment, Side};

/// Longest head kept while it arrives over several syscalls.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size line (hex digits, extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "events live for one feed call in a reused Vec; boxing would allocate per message"
)]
pub enum StreamEvent {
    /// A complete head; `first_ns`/`seq`/`tid` locate its first byte.
    Head { head: Head, first_ns: u64, seq: Option<u32>, tid: u32 },
    /// The current message's last byte arrived in the segment ending at `ts_ns`.
    End { ts_ns: u64, body_bytes: u64 },
    /// Framing was lost inside the current message; its end is unknown. The
    /// last byte seen so far was at `last_ns`.
    Lost { last_ns: u64 },
    /// Bytes that are not an HTTP message start (counted, skipped).
    NotHttp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line: value so far, a digit seen, line length,
    /// inside extensions.
    Size { size: u64, digit: bool, len: usize, ext: bool },
    /// Skipping chunk data and the CRLF after it.
    Data(u64),
    /// Trailer section after the last chunk: until an empty line.
    Trailer { line_len: usize },
}

const SIZE_START: Chunk = Chunk::Size { size: 0, digit: false, len: 0, ext: false };

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Between messages.
    Start,
    /// Inside a head that spans syscalls (bytes kept in `head`).
    Head,
    Body {
        remaining: u64,
        body: u64,
    },
    Chunked {
        chunk: Chunk,
        body: u64,
    },
    UntilClose {
        body: u64,
    },
    /// Out of step: skip until a syscall starts with a head.
    Lost,
}

pub struct Stream {
    side: Side,
    state: State,
    head: Vec<u8>,
    first_ns: u64,
    seq: Option<u32>,
    tid: u32,
    /// Return time of the last segment fed (the one being fed, during `feed`).
    pub last_ns: u64,
    /// A segment's sequence number locates only a message that starts at
    /// its first byte (TLS plaintext: the number is the first ciphertext
    /// byte's, and plaintext offsets are not ciphertext offsets).
    pub seq_at_start_only: bool,
}

impl Stream {
    pub fn new(side: Side) -> Self {
        Stream {
            side,
            state: State::Start,
            head: Vec::new(),
            first_ns: 0,
            seq: None,
            tid: 0,
            last_ns: 0,
            seq_at_start_only: false,
        }
    }

    fn starts_message(&self, p: &[u8]) -> Option<bool> {
        head::starts_message(p, self.side == Side::Request)
    }

    /// Inside a message (head seen, end not yet).
    pub fn in_message(&self) -> bool {
        !matches!(self.state, State::Start | State::Lost)
    }

    /// Out of step: a message's bytes went missing.
    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Bytes held between syscalls (a head that spans several).
    pub fn buffered(&self) -> usize {
        self.head.len()
    }

    /// Feed one segment. `framing` decides a message's body framing from its
    /// head (responses depend on their request).
    pub fn feed(
        &mut self,
        seg: &Segment<'_>,
        cfg: &HttpConfig,
        framing: &mut dyn FnMut(&Head) -> Framing,
        out: &mut Vec<StreamEvent>,
    ) {
        let total = seg.bytes as usize;
        if total == 0 {
            return;
        }
        let p = &seg.payload[..seg.payload.len().min(total)];
        let cap = p.len();
        // The last byte seen of the current message is in this segment from now on.
        self.last_ns = seg.ts_ns;
        let mut pos = 0usize;
        while pos < total {
            match &mut self.state {
                State::Lost => {
                    if pos == 0 && self.starts_message(p) == Some(true) {
                        self.state = State::Start;
                        continue;
                    }
                    break;
                }
                State::Start => {
                    if pos >= cap {
                        // The next message starts in bytes that were not
                        // captured: out of step, but nothing says it is not HTTP.
                        self.state = State::Lost;
                        break;
                    }
                    if p[pos] == b'\r' || p[pos] == b'\n' {
                        pos += 1; // stray CRLF between messages (RFC 9112 2.2)
                        continue;
                    }
                    if self.starts_message(&p[pos..]) == Some(false) {
                        self.state = State::Lost;
                        out.push(StreamEvent::NotHttp);
                        break;
                    }
                    self.first_ns = seg.ts_ns;
                    self.seq = match seg.seq {
                        Some(_) if self.seq_at_start_only && pos != 0 => None,
                        s => s.map(|s| s.wrapping_add(pos as u32)),
                    };
                    self.tid = seg.tid;
                    self.head.clear();
                    self.state = State::Head;
                }
                State::Head => {
                    if pos >= cap {
                        self.salvage(cfg, out);
                        break;
                    }
                    let take = (cap - pos).min(MAX_HEAD - self.head.len());
                    let before = self.head.len();
                    // A head that starts in this segment is parsed in place;
                    // its bytes are kept only when it goes on in the next one.
                    let fresh = before == 0;
                    if !fresh {
                        self.head.extend_from_slice(&p[pos..pos + take]);
                    }
                    let buf = if fresh { &p[pos..pos + take] } else { &self.head[..] };
                    let parsed = match head::starts_message(buf, self.side == Side::Request) {
                        Some(true) => head::parse(buf, self.side == Side::Request, cfg),
                        // The first line is still too short to tell.
                        None => Parsed::Partial,
                        Some(false) => {
                            self.head.clear();
                            self.state = State::Lost;
                            out.push(StreamEvent::NotHttp);
                            break;
                        }
                    };
                    if fresh && !matches!(parsed, Parsed::Complete(..)) {
                        self.head.extend_from_slice(&p[pos..pos + take]);
                    }
                    match parsed {
                        Parsed::Complete(h, len) => {
                            pos += len.saturating_sub(before);
                            let f = framing(&h);
                            out.push(StreamEvent::Head {
                                head: h,
                                first_ns: self.first_ns,
                                seq: self.seq,
                                tid: self.tid,
                            });
                            self.head.clear();
                            self.state = match f {
                                Framing::None | Framing::Length(0) => {
                                    out.push(StreamEvent::End { ts_ns: seg.ts_ns, body_bytes: 0 });
                                    State::Start
                                }
                                Framing::Length(n) => State::Body { remaining: n, body: 0 },
                                Framing::Chunked => State::Chunked { chunk: SIZE_START, body: 0 },
                                Framing::UntilClose => State::UntilClose { body: 0 },
                            };
                        }
                        Parsed::Partial => {
                            pos += take;
                            if self.head.len() >= MAX_HEAD || pos < total {
                                // Too long, or the rest of this syscall's bytes
                                // were not captured: the head cannot complete.
                                self.salvage(cfg, out);
                                break;
                            }
                        }
                        Parsed::Invalid => {
                            self.salvage(cfg, out);
                            break;
                        }
                    }
                }
                State::Body { remaining, body } => {
                    let take = (*remaining).min((total - pos) as u64);
                    pos += take as usize;
                    *remaining -= take;
                    *body += take;
                    if *remaining == 0 {
                        out.push(StreamEvent::End { ts_ns: seg.ts_ns, body_bytes: *body });
                        self.state = State::Start;
                    }
                }
                State::Chunked { chunk, body } => match step_chunked(chunk, body, p, &mut pos, total) {
                    ChunkStep::More => {}
                    ChunkStep::Done => {
                        out.push(StreamEvent::End { ts_ns: seg.ts_ns, body_bytes: *body });
                        self.state = State::Start;
                    }
                    ChunkStep::Lost => {
                        out.push(StreamEvent::Lost { last_ns: seg.ts_ns });
                        self.state = State::Lost;
                        break;
                    }
                },
                State::UntilClose { body } => {
                    *body += (total - pos) as u64;
                    pos = total;
                }
            }
        }
    }

    /// A head that cannot complete: keep its first line when that was
    /// captured (a span with method/target or status is still worth having)
    /// and the header lines captured whole (an allow-listed header early in
    /// a long head is still recorded), then resynchronise. Its last byte
    /// seen is in the latest segment.
    fn salvage(&mut self, cfg: &HttpConfig, out: &mut Vec<StreamEvent>) {
        match head::parse_truncated(&self.head, self.side == Side::Request, cfg) {
            Some(h) => {
                out.push(StreamEvent::Head { head: h, first_ns: self.first_ns, seq: self.seq, tid: self.tid });
                out.push(StreamEvent::Lost { last_ns: self.last_ns.max(self.first_ns) });
            }
            None => out.push(StreamEvent::NotHttp),
        }
        self.head.clear();
        self.state = State::Lost;
    }

    /// End of stream (connection closed): a body delimited by close ends at
    /// the last byte seen; anything else in flight is lost.
    pub fn close(&mut self, cfg: &HttpConfig, out: &mut Vec<StreamEvent>) {
        match std::mem::replace(&mut self.state, State::Start) {
            State::UntilClose { body } => out.push(StreamEvent::End { ts_ns: self.last_ns, body_bytes: body }),
            State::Head => self.salvage(cfg, out),
            State::Body { .. } | State::Chunked { .. } => out.push(StreamEvent::Lost { last_ns: self.last_ns }),
            State::Start | State::Lost => {}
        }
        self.state = State::Start;
    }
}

enum ChunkStep {
    More,
    Done,
    Lost,
}

/// Advance through chunked framing. Chunk data is skipped by count; size
/// lines and the trailer must have been captured.
fn step_chunked(chunk: &mut Chunk, body: &mut u64, p: &[u8], pos: &mut usize, total: usize) -> ChunkStep {
    while *pos < total {
        match chunk {
            Chunk::Data(remaining) => {
                let take = (*remaining).min((total - *pos) as u64);
                *pos += take as usize;
                *remaining -= take;
                if *remaining == 0 {
                    *chunk = SIZE_START;
                }
            }
            Chunk::Size { size, digit, len, ext } => {
                let Some(&b) = p.get(*pos) else { return ChunkStep::Lost };
                *pos += 1;
                *len += 1;
                if *len > MAX_CHUNK_LINE {
                    return ChunkStep::Lost;
                }
                match b {
                    b'\n' if !*digit => return ChunkStep::Lost,
                    b'\n' if *size == 0 => *chunk = Chunk::Trailer { line_len: 0 },
                    b'\n' => {
                        *body += *size;
                        *chunk = Chunk::Data(*size + 2);
                    }
                    b'\r' => {}
                    _ if *ext => {}
                    b';' | b' ' | b'\t' => *ext = true,
                    _ if b.is_ascii_hexdigit() => {
                        if *size >> 56 != 0 {
                            return ChunkStep::Lost; // absurd size
                        }
                        *size = *size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                        *digit = true;
                    }
                    _ => return ChunkStep::Lost,
                }
            }
            Chunk::Trailer { line_len } => {
                let Some(&b) = p.get(*pos) else { return ChunkStep::Lost };
                *pos += 1;
                match b {
                    b'\n' if *line_len == 0 => return ChunkStep::Done,
                    b'\n' => *line_len = 0,
                    b'\r' => {}
                    _ => *line_len += 1,
                }
            }
        }
    }
    ChunkStep::More
}
