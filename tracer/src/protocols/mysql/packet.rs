//! MySQL packet framing of one direction across syscalls: a 3-byte length
//! and a sequence id, then the payload (a payload of 0xFFFFFF bytes
//! continues in the next packet; the parts are one [`Packet`]). Only each
//! syscall's captured prefix is seen: payloads are skipped by their length
//! and only their first bytes kept (`keep`), but a header must be captured.
//! When one is not, or bytes were never reported, framing is lost until a
//! syscall starts with what the caller accepts as a packet start.

use crate::protocols::Segment;

/// A payload longer than this continues in the next packet.
const MAX_PAYLOAD: u32 = 0xFF_FFFF;

/// One packet (its payload's first bytes are in the caller's arena).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of its first part.
    pub seq_id: u8,
    /// Payload bytes, continuation parts included.
    pub len: u64,
    /// Where its kept bytes are in the arena, and how many.
    pub at: usize,
    pub kept: usize,
    pub first_ns: u64,
    pub last_ns: u64,
    /// TCP sequence number of its first byte.
    pub tcp_seq: Option<u32>,
    pub tid: u32,
}

impl Packet {
    /// Every payload byte was kept.
    pub fn whole(&self) -> bool {
        self.kept as u64 == self.len
    }
}

pub enum Event {
    Packet(Packet),
    /// Framing was lost at `ts_ns` (bytes that could not be framed).
    Lost {
        ts_ns: u64,
    },
}

pub struct Framer {
    /// Payload bytes kept of each packet.
    keep: usize,
    head: [u8; 4],
    have: usize,
    /// Payload bytes of the current part still to come.
    left: u32,
    /// The current part is 0xFFFFFF bytes: another part follows.
    continues: bool,
    cur: Option<Packet>,
    body: Vec<u8>,
    lost: bool,
    next_seq: Option<u32>,
}

impl Framer {
    pub fn new(keep: usize) -> Self {
        Framer {
            keep,
            head: [0; 4],
            have: 0,
            left: 0,
            continues: false,
            cur: None,
            body: Vec::new(),
            lost: false,
            next_seq: None,
        }
    }

    /// The stream's sequence numbers start again (TLS plaintext offsets
    /// replace TCP sequence numbers): the next segment follows on.
    pub fn renumber(&mut self) {
        self.next_seq = None;
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Between packets (nothing of one read yet).
    pub fn at_boundary(&self) -> bool {
        self.cur.is_none() && self.have == 0
    }

    /// Forget the current packet and frame afresh from the next syscall
    /// that `starts` accepts (the caller knows the framing cannot hold).
    pub fn lose(&mut self) {
        self.reset();
        self.lost = true;
    }

    fn reset(&mut self) {
        self.have = 0;
        self.left = 0;
        self.continues = false;
        self.cur = None;
        self.body.clear();
    }

    /// Frame one syscall. Packets' kept bytes are appended to `arena`.
    pub fn feed(
        &mut self,
        seg: &Segment<'_>,
        starts: impl Fn(&[u8]) -> bool,
        out: &mut Vec<Event>,
        arena: &mut Vec<u8>,
    ) {
        let captured = &seg.payload[..seg.payload.len().min(seg.bytes as usize)];
        let follows = match (self.next_seq, seg.seq) {
            (Some(next), Some(seq)) => next == seq,
            _ => true,
        };
        self.next_seq = seg.seq.map(|s| s.wrapping_add(seg.bytes));
        if !follows && !self.lost {
            self.lose_at(seg.ts_ns, out);
        }
        if self.lost {
            if !starts(captured) {
                return;
            }
            self.lost = false;
        }
        let mut i = 0;
        while i < captured.len() {
            if self.have < 4 {
                if self.have == 0 && self.cur.is_none() {
                    self.cur = Some(Packet {
                        first_ns: seg.ts_ns,
                        tcp_seq: seg.seq.map(|s| s.wrapping_add(i as u32)),
                        tid: seg.tid,
                        ..Packet::default()
                    });
                }
                let n = (4 - self.have).min(captured.len() - i);
                self.head[self.have..self.have + n].copy_from_slice(&captured[i..i + n]);
                self.have += n;
                i += n;
                if self.have == 4 {
                    self.start_part();
                    if self.left == 0 {
                        self.end_part(seg.ts_ns, out, arena);
                    }
                }
                continue;
            }
            let n = (self.left as usize).min(captured.len() - i);
            let room = self.keep.saturating_sub(self.body.len());
            self.body.extend_from_slice(&captured[i..i + n.min(room)]);
            self.left -= n as u32;
            i += n;
            if self.left == 0 {
                self.end_part(seg.ts_ns, out, arena);
            }
        }
        let mut rest = u64::from(seg.bytes) - captured.len() as u64;
        if rest > 0 && self.have == 4 {
            let n = u64::from(self.left).min(rest);
            self.left -= n as u32;
            rest -= n;
            if self.left == 0 {
                self.end_part(seg.ts_ns, out, arena);
            }
        }
        if rest > 0 {
            self.lose_at(seg.ts_ns, out); // a header past the capture
        }
    }

    fn start_part(&mut self) {
        let len = u32::from_le_bytes([self.head[0], self.head[1], self.head[2], 0]);
        if let Some(p) = &mut self.cur
            && !self.continues
        {
            p.seq_id = self.head[3];
        }
        if let Some(p) = &mut self.cur {
            p.len += u64::from(len);
        }
        self.left = len;
        self.continues = len == MAX_PAYLOAD;
    }

    fn end_part(&mut self, ts_ns: u64, out: &mut Vec<Event>, arena: &mut Vec<u8>) {
        self.have = 0;
        if self.continues {
            return; // the next part is the same packet
        }
        if let Some(mut p) = self.cur.take() {
            p.last_ns = ts_ns;
            p.at = arena.len();
            p.kept = self.body.len();
            arena.extend_from_slice(&self.body);
            out.push(Event::Packet(p));
        }
        self.body.clear();
    }

    fn lose_at(&mut self, ts_ns: u64, out: &mut Vec<Event>) {
        self.reset();
        self.lost = true;
        out.push(Event::Lost { ts_ns });
    }
}
