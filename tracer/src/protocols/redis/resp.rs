//! RESP framing (RESP2 and RESP3) of one direction of a connection, across
//! syscalls: bytes in, one [`Msg`] per top-level value out. Only the
//! captured prefix of each syscall is seen, so bulk strings are skipped by
//! their length (their bytes need not be captured), while a header line
//! (`*3`, `$5`, `+OK`, `-ERR ...`) must be: a line or bytes that cannot be
//! framed lose the framing ([`Event::Lost`]) until a syscall starts with
//! something that looks like a message again.
//!
//! What is kept of a message is a few fixed-size bytes, for pairing only:
//! the top-level text of a simple string or error (`OK`, `QUEUED`, the
//! error's first word), the first element of an aggregate (the command
//! name, a push's kind: `message`, `subscribe`) and, for `SELECT` alone, its
//! argument. Nothing here is exported as it is.

use crate::protocols::{Segment, Side};

/// Bytes kept of a text (longer texts are marked cut).
pub const TEXT: usize = 24;
/// Aggregates nested deeper than this are not RESP a client or server sends.
const MAX_DEPTH: usize = 8;
/// Longest header line read (`*2147483647`, or the start of a simple text).
const LINE: usize = 32;
/// Longest bulk string framed (Redis's `proto-max-bulk-len` is 512 MiB by default).
const MAX_BULK: u64 = 1 << 32;
const MAX_AGGREGATE: i64 = 1 << 31;

/// A short prefix of a text from the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Text {
    buf: [u8; TEXT],
    len: u8,
    /// The text was longer than [`TEXT`] or not captured whole.
    pub cut: bool,
}

impl Text {
    fn push(&mut self, b: &[u8]) {
        let room = TEXT - self.len as usize;
        let n = b.len().min(room);
        self.buf[self.len as usize..self.len as usize + n].copy_from_slice(&b[..n]);
        self.len += n as u8;
        self.cut |= n < b.len();
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// The whole text, when it was kept whole.
    pub fn whole(&self) -> Option<&[u8]> {
        (!self.cut).then(|| self.bytes())
    }
}

/// One top-level value (a command, a reply, a push).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    /// Type byte of the value (`*`, `+`, `>`, ...); [`INLINE`] for an
    /// inline command.
    pub kind: u8,
    /// Text of a simple string or error, or the first element of an
    /// aggregate (bulk or simple), or an inline command's first word.
    pub head: Text,
    /// Second element, only when the first is `SELECT` (request side).
    pub arg: Text,
    /// Elements of a top-level aggregate (words of an inline command); -1: null.
    pub count: i64,
    /// Last integer element of a top-level aggregate (the subscription count
    /// of a pub/sub confirmation).
    pub last_int: Option<i64>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub seq: Option<u32>,
    pub tid: u32,
}

pub const INLINE: u8 = b' ';

pub enum Event {
    Msg(Msg),
    /// Framing was lost at `ts_ns`; `partial` is the message it was in.
    Lost {
        partial: Option<Msg>,
        ts_ns: u64,
    },
}

#[derive(Clone, Copy, Default)]
struct Frame {
    left: u64,
    /// An attribute map (`|`): not an element of what contains it.
    attr: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a value's type byte.
    Start,
    /// In the header line of a value of type `ty`.
    Line,
    /// In a bulk string's bytes: `left` to go, its CRLF included.
    Bulk { len: u64, left: u64 },
    /// In an inline command's line.
    Inline,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    None,
    Head,
    Arg,
}

pub struct Framer {
    side: Side,
    state: State,
    ty: u8,
    line: [u8; LINE],
    line_len: usize,
    line_over: bool,
    slot: Slot,
    stack: [Frame; MAX_DEPTH],
    depth: usize,
    /// Index of the next element of the top-level aggregate.
    child: u32,
    msg: Option<Msg>,
    lost: bool,
    next_seq: Option<u32>,
    /// When the last syscall returned.
    last_ns: u64,
}

impl Framer {
    pub fn new(side: Side) -> Self {
        Framer {
            side,
            state: State::Start,
            ty: 0,
            line: [0; LINE],
            line_len: 0,
            line_over: false,
            slot: Slot::None,
            stack: [Frame::default(); MAX_DEPTH],
            depth: 0,
            child: 0,
            msg: None,
            lost: false,
            next_seq: None,
            last_ns: 0,
        }
    }

    /// Frame one syscall's bytes.
    pub fn feed(&mut self, seg: &Segment<'_>, out: &mut Vec<Event>) {
        let captured = &seg.payload[..seg.payload.len().min(seg.bytes as usize)];
        let follows = match (self.next_seq, seg.seq) {
            (Some(next), Some(seq)) => next == seq,
            _ => true,
        };
        self.next_seq = seg.seq.map(|s| s.wrapping_add(seg.bytes));
        self.last_ns = seg.ts_ns;
        if !follows && !self.lost {
            self.lose(seg.ts_ns, out); // bytes were never reported
        }
        if self.lost {
            if !starts_message(self.side, captured) {
                return;
            }
            self.lost = false;
        }
        if !self.frame(captured, seg, out) {
            return;
        }
        let mut rest = u64::from(seg.bytes) - captured.len() as u64;
        if rest == 0 {
            return;
        }
        if let State::Bulk { len, left } = self.state {
            let n = left.min(rest);
            rest -= n;
            if len + 2 - left < len {
                self.cut_slot(); // part of its text was not captured
            }
            let left = left - n;
            self.state = State::Bulk { len, left };
            if left == 0 {
                self.state = State::Start;
                self.value_done(seg.ts_ns, out);
            }
        }
        if rest > 0 {
            self.lose(seg.ts_ns, out); // bytes of unknown shape past the capture
        }
    }

    /// The message a closing connection was in the middle of.
    pub fn take_partial(&mut self) -> Option<Msg> {
        let last = self.last_ns;
        let m = self.msg.take().filter(|m| m.kind != 0).map(|mut m| {
            m.last_ns = last.max(m.first_ns);
            m
        });
        self.reset();
        m
    }

    fn reset(&mut self) {
        self.state = State::Start;
        self.depth = 0;
        self.child = 0;
        self.msg = None;
    }

    fn lose(&mut self, ts_ns: u64, out: &mut Vec<Event>) {
        if self.state == State::Line {
            // What was read of the line (an error's code) still says something.
            let buf = self.line;
            self.capture(&buf[..self.line_len]);
            self.cut_slot();
        }
        // A byte that starts no value started no message.
        let partial = self.msg.take().filter(|m| m.kind != 0).map(|mut m| {
            m.last_ns = ts_ns.max(m.first_ns);
            m
        });
        self.reset();
        self.lost = true;
        out.push(Event::Lost { partial, ts_ns });
    }

    fn cut_slot(&mut self) {
        if let Some(m) = &mut self.msg {
            match self.slot {
                Slot::Head => m.head.cut = true,
                Slot::Arg => m.arg.cut = true,
                Slot::None => {}
            }
        }
    }

    /// Frame the captured bytes; false when framing was lost.
    fn frame(&mut self, buf: &[u8], seg: &Segment<'_>, out: &mut Vec<Event>) -> bool {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Start => {
                    if self.msg.is_none() {
                        self.msg = Some(Msg {
                            first_ns: seg.ts_ns,
                            seq: seg.seq.map(|s| s.wrapping_add(i as u32)),
                            tid: seg.tid,
                            ..Msg::default()
                        });
                    }
                    self.line_len = 0;
                    self.line_over = false;
                    let b = buf[i];
                    if self.depth == 0 && self.side == Side::Request && b != b'*' {
                        self.set_kind(INLINE);
                        self.slot = Slot::Head;
                        self.state = State::Inline;
                        continue;
                    }
                    if !is_type(b) {
                        self.lose(seg.ts_ns, out);
                        return false;
                    }
                    i += 1;
                    if self.depth == 0 && b != b'|' {
                        self.set_kind(b); // an attribute map comes before the value it describes
                    }
                    self.ty = b;
                    self.slot = self.slot_for(b);
                    self.state = State::Line;
                }
                State::Line | State::Inline => {
                    let rest = &buf[i..];
                    let (line, done) = match rest.iter().position(|&b| b == b'\n') {
                        Some(p) => (&rest[..p], true),
                        None => (rest, false),
                    };
                    let n = line.len().min(LINE - self.line_len);
                    self.line[self.line_len..self.line_len + n].copy_from_slice(&line[..n]);
                    self.line_len += n;
                    self.line_over |= n < line.len();
                    i += line.len() + usize::from(done);
                    if done && !self.end_line(seg.ts_ns, out) {
                        self.lose(seg.ts_ns, out);
                        return false;
                    }
                }
                State::Bulk { len, left } => {
                    let n = (left.min((buf.len() - i) as u64)) as usize;
                    let chunk = &buf[i..i + n];
                    let at = len + 2 - left; // offset of chunk[0] in the value
                    if at < len {
                        let content = &chunk[..n.min((len - at) as usize)];
                        self.capture(content);
                    }
                    // The value must end in CRLF: a check that framing holds.
                    for (k, &b) in chunk.iter().enumerate() {
                        let pos = at + k as u64;
                        if (pos == len && b != b'\r') || (pos == len + 1 && b != b'\n') {
                            self.lose(seg.ts_ns, out);
                            return false;
                        }
                    }
                    i += n;
                    let left = left - n as u64;
                    self.state = State::Bulk { len, left };
                    if left == 0 {
                        self.state = State::Start;
                        self.value_done(seg.ts_ns, out);
                    }
                }
            }
        }
        true
    }

    fn set_kind(&mut self, kind: u8) {
        if let Some(m) = &mut self.msg
            && m.kind == 0
        {
            m.kind = kind;
        }
    }

    /// Where the text of a value of type `ty` starting now is kept.
    fn slot_for(&self, ty: u8) -> Slot {
        let text = matches!(ty, b'$' | b'+');
        if self.depth == 0 {
            // A top-level reply's own text only when it says what happened
            // (OK, QUEUED, an error's code), never a value.
            return if matches!(ty, b'+' | b'-' | b'!') { Slot::Head } else { Slot::None };
        }
        if self.depth != 1 || self.stack[0].attr || !text {
            return Slot::None;
        }
        match self.child {
            0 => Slot::Head,
            1 if self.side == Side::Request
                && self.msg.is_some_and(|m| m.head.whole().is_some_and(|h| h.eq_ignore_ascii_case(b"SELECT"))) =>
            {
                Slot::Arg
            }
            _ => Slot::None,
        }
    }

    fn capture(&mut self, b: &[u8]) {
        if let Some(m) = &mut self.msg {
            match self.slot {
                Slot::Head => m.head.push(b),
                Slot::Arg => m.arg.push(b),
                Slot::None => {}
            }
        }
    }

    /// A header line (or an inline command) ended. False: not RESP.
    fn end_line(&mut self, ts_ns: u64, out: &mut Vec<Event>) -> bool {
        let (buf, over) = (self.line, self.line_over);
        let mut line = &buf[..self.line_len];
        if !over && line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let inline = self.state == State::Inline;
        self.state = State::Start;
        if inline {
            let mut count = 0i64;
            for (k, w) in line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).enumerate() {
                if k == 0 {
                    self.capture(w);
                } else if k == 1 && w.len() <= TEXT && w.iter().all(u8::is_ascii_digit) {
                    let select =
                        self.msg.is_some_and(|m| m.head.whole().is_some_and(|h| h.eq_ignore_ascii_case(b"SELECT")));
                    if select {
                        self.slot = Slot::Arg;
                        self.capture(w);
                    }
                }
                count += 1;
            }
            if let Some(m) = &mut self.msg {
                m.count = count;
                // The first word may go on past what was kept of the line.
                m.head.cut |= over && count <= 1;
            }
            self.value_done(ts_ns, out);
            return true;
        }
        match self.ty {
            b'+' | b'-' | b',' | b'(' | b'#' | b'_' => {
                self.capture(line);
                if over {
                    self.cut_slot();
                }
                self.value_done(ts_ns, out);
            }
            b':' => {
                let Some(v) = parse_int(line).filter(|_| !over) else { return false };
                if self.depth == 1
                    && !self.stack[0].attr
                    && let Some(m) = &mut self.msg
                {
                    m.last_int = Some(v);
                }
                self.value_done(ts_ns, out);
            }
            b'$' | b'!' | b'=' => match parse_int(line).filter(|_| !over) {
                Some(-1) => self.value_done(ts_ns, out),
                Some(len) if (0..=MAX_BULK as i64).contains(&len) => {
                    self.state = State::Bulk { len: len as u64, left: len as u64 + 2 };
                }
                _ => return false,
            },
            ty @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
                let Some(n) = parse_int(line).filter(|n| !over && (-1..=MAX_AGGREGATE).contains(n)) else {
                    return false;
                };
                let attr = ty == b'|';
                if self.depth == 0
                    && !attr
                    && let Some(m) = &mut self.msg
                {
                    m.count = n;
                }
                if n <= 0 {
                    if !attr {
                        self.value_done(ts_ns, out);
                    }
                    return true;
                }
                if self.depth == MAX_DEPTH {
                    return false;
                }
                let per_entry = if matches!(ty, b'%' | b'|') { 2 } else { 1 };
                self.stack[self.depth] = Frame { left: n as u64 * per_entry, attr };
                self.depth += 1;
            }
            _ => return false,
        }
        true
    }

    /// A value ended: count it in the aggregates that hold it; the
    /// top-level one ended is a message.
    fn value_done(&mut self, ts_ns: u64, out: &mut Vec<Event>) {
        loop {
            if self.depth == 0 {
                if let Some(mut m) = self.msg.take() {
                    m.last_ns = ts_ns.max(m.first_ns);
                    out.push(Event::Msg(m));
                }
                self.child = 0;
                return;
            }
            let f = &mut self.stack[self.depth - 1];
            f.left -= 1;
            if self.depth == 1 && !f.attr {
                self.child += 1;
            }
            if f.left > 0 {
                return;
            }
            self.depth -= 1;
            if f.attr {
                return; // an attribute precedes a value; it is not one
            }
        }
    }
}

fn is_type(b: u8) -> bool {
    b"+-:$*_,#!=(%~>|".contains(&b)
}

fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v = 0i64;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// Does a syscall start with what a message of `side` starts with (to pick
/// up framing again)?
pub fn starts_message(side: Side, b: &[u8]) -> bool {
    let next = b.get(1).copied();
    let digit = |n: Option<u8>| n.is_some_and(|n| n.is_ascii_digit() || n == b'-');
    match (side, b.first().copied()) {
        (_, None) => false,
        (Side::Request, Some(b'*')) => digit(next),
        (Side::Request, Some(c)) => c.is_ascii_alphabetic(),
        (Side::Response, Some(b'+' | b'-')) => next.is_some_and(|n| n.is_ascii_graphic() || n == b'\r'),
        (Side::Response, Some(b'_')) => next == Some(b'\r'),
        (Side::Response, Some(c)) => is_type(c) && digit(next),
    }
}
