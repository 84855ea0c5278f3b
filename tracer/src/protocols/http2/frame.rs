//! HTTP/2 framing of one direction (RFC 9113 section 4): the client
//! preface, then 9-byte frame headers and their payloads, split across
//! syscalls at any byte. In: [`Segment`]s (bytes moved and their captured
//! prefix). Out: [`Frame`]s with what pairing needs of each (the header
//! block fragment of HEADERS, PUSH_PROMISE and CONTINUATION, the error code
//! of RST_STREAM and GOAWAY, the body bytes of DATA), never a body byte.
//!
//! Frames are length-prefixed, so bytes moved but not captured are skipped
//! by count: framing survives any cut inside a payload. A frame header that
//! was not captured, or bytes never reported (a gap in TCP sequence
//! numbers: a syscall dropped on the way), lose the framing; it resumes at
//! a later syscall whose captured bytes chain as frame headers
//! ([`plausible_start`]), since senders write whole frames per syscall.

use super::super::Segment;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what a client sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_LEN: usize = 9;
/// Header block bytes kept per frame at most (HEADERS with CONTINUATIONs are
/// bounded again by the caller); past it the block counts as not captured.
pub const MAX_BLOCK: usize = 16 * 1024;
/// The largest frame a resync accepts as a start: the default
/// SETTINGS_MAX_FRAME_SIZE (peers rarely raise it).
const RESYNC_MAX_LEN: u32 = 16_384;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// One frame, whole or with the parts pairing needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub len: u32,
    /// Return of the syscall that moved the first byte of the frame header,
    /// and of the one that moved its last byte.
    pub first_ns: u64,
    pub last_ns: u64,
    pub seq: Option<u32>,
    pub tid: u32,
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the header block fragment (pad
    /// and priority fields removed); RST_STREAM, GOAWAY: the payload.
    pub block: Vec<u8>,
    /// Header blocks: some byte of the fragment was not captured (or the
    /// fragment is longer than [`MAX_BLOCK`]).
    pub cut: bool,
}

impl Frame {
    pub fn end_stream(&self) -> bool {
        self.flags & END_STREAM != 0 && matches!(self.kind, DATA | HEADERS)
    }

    /// DATA: the body bytes it carried (padding removed when its length
    /// byte was captured).
    pub fn data_len(&self) -> u64 {
        u64::from(self.len.saturating_sub(self.pad_overhead()))
    }

    fn pad_overhead(&self) -> u32 {
        if self.flags & PADDED == 0 {
            return 0;
        }
        self.block.first().map_or(1, |p| 1 + u32::from(*p))
    }

    /// RST_STREAM's error code; GOAWAY's last stream id and error code.
    pub fn u32_at(&self, at: usize) -> Option<u32> {
        let b = self.block.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[derive(Debug)]
enum State {
    /// Bytes of the client preface seen so far.
    Preface(usize),
    /// Bytes of the next frame header gathered so far (in `head`).
    Header,
    /// In a payload: bytes left of it.
    Payload(u32),
    /// Framing lost: until a syscall starts with frames again.
    Lost,
}

/// What one direction's framer reports, in byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Frame(Frame),
    /// Framing was lost here (a frame header not captured, not a preface).
    Lost,
    /// Framing resumed at a syscall's start after a loss.
    Resumed,
}

pub struct Framer {
    state: State,
    head: [u8; HEADER_LEN],
    head_len: usize,
    frame: Option<Frame>,
    /// A payload byte to keep was not captured: nothing after it is kept.
    gap: bool,
    /// A segment's sequence number locates only a frame at its first byte
    /// (TLS plaintext).
    pub seq_at_start_only: bool,
}

impl Framer {
    /// A framer of the client's direction (`preface`) or the server's.
    pub fn new(preface: bool) -> Self {
        let state = if preface { State::Preface(0) } else { State::Header };
        Framer { state, head: [0; HEADER_LEN], head_len: 0, frame: None, gap: false, seq_at_start_only: false }
    }

    /// A framer that starts out of step (a connection not seen from its
    /// start): frames are read from the first syscall that starts with them.
    pub fn lost() -> Self {
        Framer {
            state: State::Lost,
            head: [0; HEADER_LEN],
            head_len: 0,
            frame: None,
            gap: false,
            seq_at_start_only: false,
        }
    }

    /// Bytes held between calls (a partial header, a partial header block).
    pub fn buffered(&self) -> usize {
        self.head_len + self.frame.as_ref().map_or(0, |f| f.block.capacity())
    }

    pub fn feed(&mut self, seg: &Segment<'_>, out: &mut Vec<Item>) {
        let total = seg.bytes as usize;
        let p = &seg.payload[..seg.payload.len().min(total)];
        let cap = p.len();
        let mut pos = 0usize;
        while pos < total {
            match self.state {
                State::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(total - pos);
                    let got = &p[pos.min(cap)..(pos + n).min(cap)];
                    if got != &PREFACE[seen..seen + got.len()] {
                        self.lose(out);
                        continue;
                    }
                    pos += n;
                    self.state = if seen + n == PREFACE.len() { State::Header } else { State::Preface(seen + n) };
                }
                State::Header => {
                    if pos >= cap {
                        self.lose(out);
                        break;
                    }
                    if self.head_len == 0 {
                        self.frame = Some(Frame {
                            kind: 0,
                            flags: 0,
                            stream: 0,
                            len: 0,
                            first_ns: seg.ts_ns,
                            last_ns: seg.ts_ns,
                            seq: match seg.seq {
                                Some(_) if self.seq_at_start_only && pos != 0 => None,
                                s => s.map(|s| s.wrapping_add(pos as u32)),
                            },
                            tid: seg.tid,
                            block: Vec::new(),
                            cut: false,
                        });
                    }
                    let n = (HEADER_LEN - self.head_len).min(cap - pos);
                    self.head[self.head_len..self.head_len + n].copy_from_slice(&p[pos..pos + n]);
                    self.head_len += n;
                    pos += n;
                    if self.head_len < HEADER_LEN {
                        continue;
                    }
                    self.head_len = 0;
                    let h = self.head;
                    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                    let f = self.frame.as_mut().expect("a frame is started with its header");
                    f.len = len;
                    f.kind = h[3];
                    f.flags = h[4];
                    f.stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    self.gap = false;
                    f.block.reserve(keep_limit(f.kind, f.flags, len));
                    self.state = State::Payload(len);
                    if len == 0 {
                        self.finish(seg.ts_ns, out);
                    }
                }
                State::Payload(left) => {
                    let n = (left as usize).min(total - pos);
                    let f = self.frame.as_mut().expect("a payload belongs to a frame");
                    let want = n.min(keep_limit(f.kind, f.flags, f.len).saturating_sub(f.block.len()));
                    if want > 0 && !self.gap {
                        // Kept bytes are contiguous from the payload's start.
                        let got = &p[pos.min(cap)..(pos + want).min(cap)];
                        f.block.extend_from_slice(got);
                        self.gap = got.len() < want;
                    }
                    pos += n;
                    let left = left - n as u32;
                    self.state = State::Payload(left);
                    if left == 0 {
                        self.finish(seg.ts_ns, out);
                    }
                }
                State::Lost => {
                    if pos == 0 && plausible_start(p, total) {
                        self.state = State::Header;
                        out.push(Item::Resumed);
                        continue;
                    }
                    break;
                }
            }
        }
    }

    /// Bytes of this direction were never reported (a TCP sequence gap):
    /// what follows is not where the framing expects.
    pub fn gap(&mut self, out: &mut Vec<Item>) {
        if !matches!(self.state, State::Lost) {
            self.lose(out);
        }
    }

    fn lose(&mut self, out: &mut Vec<Item>) {
        self.state = State::Lost;
        self.head_len = 0;
        self.frame = None;
        out.push(Item::Lost);
    }

    fn finish(&mut self, ts_ns: u64, out: &mut Vec<Item>) {
        self.state = State::Header;
        if let Some(mut f) = self.frame.take() {
            f.last_ns = ts_ns;
            strip(&mut f);
            out.push(Item::Frame(f));
        }
    }
}

/// How many of a frame's first payload bytes are kept: header blocks (up
/// to [`MAX_BLOCK`]), the codes of RST_STREAM and GOAWAY, DATA's pad length.
fn keep_limit(kind: u8, flags: u8, len: u32) -> usize {
    let n = match kind {
        HEADERS | PUSH_PROMISE | CONTINUATION => MAX_BLOCK,
        RST_STREAM => 4,
        GOAWAY => 8,
        DATA if flags & PADDED != 0 => 1,
        _ => 0,
    };
    n.min(len as usize)
}

/// A header block fragment without the pad length, priority fields,
/// promised stream id and padding around it.
fn strip(f: &mut Frame) {
    match f.kind {
        CONTINUATION => f.cut = f.block.len() < f.len as usize,
        HEADERS | PUSH_PROMISE => {
            let padded = f.flags & PADDED != 0;
            let pad = if padded { f.block.first().copied().map(usize::from) } else { Some(0) };
            let mut skip = usize::from(padded);
            if f.kind == HEADERS && f.flags & PRIORITY_FLAG != 0 {
                skip += 5;
            }
            if f.kind == PUSH_PROMISE {
                skip += 4;
            }
            let Some(pad) = pad else {
                f.cut = true;
                f.block.clear();
                return;
            };
            let end = (f.len as usize).saturating_sub(pad);
            if skip > end {
                f.cut = true; // malformed padding: nothing to read
                f.block.clear();
                return;
            }
            if f.block.len() < end {
                f.cut = true; // cut by the capture, or longer than MAX_BLOCK
            }
            f.block.truncate(end);
            f.block.drain(..skip.min(f.block.len()));
        }
        _ => {}
    }
}

/// Whether captured bytes at a syscall's start read as whole frames: every
/// header in the capture is a known type with a length its type allows, on
/// a stream its type allows, and the frames either end exactly at the
/// syscall's end or run past the capture.
pub fn plausible_start(p: &[u8], total: usize) -> bool {
    let mut at = 0usize;
    let mut seen = 0;
    while at + HEADER_LEN <= p.len() {
        let h = &p[at..at + HEADER_LEN];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let (kind, stream) = (h[3], u32::from_be_bytes([h[5], h[6], h[7], h[8]]));
        if stream & 0x8000_0000 != 0 || !plausible(kind, len, stream) {
            return false;
        }
        seen += 1;
        at += HEADER_LEN + len as usize;
        if at == total {
            return true;
        }
    }
    seen > 0 && at > p.len() && at <= total
}

fn plausible(kind: u8, len: u32, stream: u32) -> bool {
    if len > RESYNC_MAX_LEN {
        return false;
    }
    match kind {
        DATA | HEADERS | CONTINUATION | PUSH_PROMISE => stream != 0,
        PRIORITY => stream != 0 && len == 5,
        RST_STREAM => stream != 0 && len == 4,
        SETTINGS => stream == 0 && len.is_multiple_of(6),
        PING => stream == 0 && len == 8,
        GOAWAY => stream == 0 && len >= 8,
        WINDOW_UPDATE => len == 4,
        _ => false,
    }
}
