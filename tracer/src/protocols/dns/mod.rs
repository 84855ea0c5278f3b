//! DNS over UDP (one datagram per segment) and over TCP (messages behind a
//! 2-byte length, RFC 1035 §4.2.2): queries paired with their responses by
//! id and question (the flow is the socket's 5-tuple), one exchange per
//! query. Bounded: [`MAX_PENDING`] queries wait per flow (the oldest is
//! dropped past it, counted), a TCP message is kept up to [`MAX_MESSAGE`]
//! bytes; a response no query waits for (spoofed, or its query was lost)
//! is counted, and its answers name nothing.

pub mod span;
pub mod wire;

use std::collections::VecDeque;

use self::wire::{Answer, Message};
use super::{ConnHints, Exchange, Info, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side, Timing};

/// Queries waiting for a response per flow (glibc has 2 in flight, A and AAAA).
pub const MAX_PENDING: usize = 32;
/// Bytes of one TCP message kept (the rest of a longer one is skipped).
pub const MAX_MESSAGE: usize = 4096;

/// One query and what its response said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsExchange {
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    /// None: no response came (timed out, or the flow ended first).
    pub rcode: Option<u8>,
    pub answers: Vec<Answer>,
    /// Answer records not listed (other types, past the cap, cut by capture).
    pub more_answers: u16,
    pub truncated: bool,
    /// Over TCP (else UDP).
    pub tcp: bool,
}

/// A DNS message's side, when `payload` starts with one. Only on port 53
/// (a header and a question are weak evidence elsewhere); over TCP the
/// length prefix must agree with the bytes.
pub fn detect(payload: &[u8], port_hint: bool) -> Option<Side> {
    if !port_hint {
        return None;
    }
    let m = match payload {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) >= wire::HEADER => wire::parse(rest).ok()?,
        _ => return None,
    };
    side_of(&m)
}

/// The side of a datagram that is a DNS message (UDP flows: no length).
pub fn detect_datagram(payload: &[u8]) -> Option<Side> {
    side_of(&wire::parse(payload).ok()?)
}

fn side_of(m: &Message) -> Option<Side> {
    // Standard queries only (opcode 0): NOTIFY and UPDATE are not lookups.
    (m.opcode == 0).then_some(if m.response { Side::Response } else { Side::Request })
}

pub fn parser(_: &ProtocolConfig, hints: ConnHints) -> Box<dyn ProtocolParser> {
    Box::new(DnsParser::new(!hints.udp))
}

struct Pending {
    id: u16,
    name: String,
    qtype: u16,
    timing: Timing,
}

/// A TCP direction's framing: the message being read and how much of it
/// is still to come.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    /// The 2-byte length prefix read so far (0..=2 bytes).
    prefix: Vec<u8>,
    /// Bytes of the current message not seen yet (captured or not).
    left: usize,
    /// Its bytes past the capture size were skipped: what `buf` holds is a
    /// cut message.
    cut: bool,
    first_ns: u64,
    tid: u32,
}

pub struct DnsParser {
    tcp: bool,
    pending: VecDeque<Pending>,
    framers: [Framer; 2],
    counts: ParserCounts,
    messages: Vec<(Message, Timing)>,
}

impl DnsParser {
    pub fn new(tcp: bool) -> Self {
        DnsParser {
            tcp,
            pending: VecDeque::new(),
            framers: Default::default(),
            counts: ParserCounts::default(),
            messages: Vec::new(),
        }
    }

    fn message(&mut self, side: Side, m: Message, t: Timing, out: &mut Vec<Exchange>) {
        match (side, m.response) {
            (Side::Request, false) => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                    self.counts.overflow += 1;
                }
                self.pending.push_back(Pending { id: m.id, name: m.question.name, qtype: m.question.qtype, timing: t });
            }
            (Side::Response, true) => {
                let q = &m.question;
                let Some(i) = self.pending.iter().position(|p| p.id == m.id && p.qtype == q.qtype && p.name == q.name)
                else {
                    self.counts.unpaired += 1;
                    return;
                };
                let p = self.pending.remove(i).expect("found above");
                out.push(self.exchange(p, Some((m, t))));
            }
            // A query where answers come, or the reverse: not this flow's DNS.
            _ => self.counts.malformed += 1,
        }
    }

    fn exchange(&self, p: Pending, response: Option<(Message, Timing)>) -> Exchange {
        let (rcode, answers, more_answers, truncated, response) = match response {
            Some((m, t)) => (Some(m.rcode), m.answers, m.more_answers, m.truncated, Some(t)),
            None => (None, Vec::new(), 0, false, None),
        };
        let info = Info::Dns(DnsExchange {
            id: p.id,
            name: p.name,
            qtype: p.qtype,
            rcode,
            answers,
            more_answers,
            truncated,
            tcp: self.tcp,
        });
        Exchange { request: p.timing, response, info }
    }

    /// One TCP segment of a direction: frames messages out of it.
    fn frame(&mut self, side: Side, seg: &Segment<'_>) {
        let f = &mut self.framers[usize::from(side == Side::Response)];
        let mut rest = seg.payload;
        // Bytes the syscall moved past what was captured.
        let mut uncaptured = (seg.bytes as usize).saturating_sub(seg.payload.len());
        loop {
            if f.left == 0 {
                // Between messages: a length prefix, then the message.
                while f.prefix.len() < 2 {
                    let Some((&b, r)) = rest.split_first() else { break };
                    f.prefix.push(b);
                    rest = r;
                }
                if f.prefix.len() < 2 {
                    if uncaptured > 0 {
                        // A prefix we did not see: framing is lost until
                        // the flow ends.
                        self.counts.malformed += 1;
                        *f = Framer::default();
                        f.left = usize::MAX;
                    }
                    return;
                }
                f.left = usize::from(u16::from_be_bytes([f.prefix[0], f.prefix[1]]));
                f.prefix.clear();
                f.buf.clear();
                f.cut = false;
                f.first_ns = seg.ts_ns;
                f.tid = seg.tid;
                if f.left == 0 {
                    continue;
                }
            }
            if f.left == usize::MAX {
                return;
            }
            let take = rest.len().min(f.left);
            let keep = take.min(MAX_MESSAGE - f.buf.len());
            f.buf.extend_from_slice(&rest[..keep]);
            f.cut |= keep < take;
            f.left -= take;
            rest = &rest[take..];
            if f.left > 0 && uncaptured > 0 {
                // The message goes on past the capture: skip its uncaptured part.
                let skip = uncaptured.min(f.left);
                f.left -= skip;
                uncaptured -= skip;
                f.cut = true;
            }
            if f.left > 0 {
                return;
            }
            let t = Timing { first_ns: f.first_ns, last_ns: seg.ts_ns, seq: None, tid: f.tid };
            match wire::parse(&f.buf) {
                Ok(m) => self.messages.push((m, t)),
                Err(_) => self.counts.malformed += 1,
            }
            if rest.is_empty() && uncaptured == 0 {
                return;
            }
        }
    }
}

impl ProtocolParser for DnsParser {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        if self.tcp {
            self.frame(side, seg);
            for (m, t) in std::mem::take(&mut self.messages) {
                self.message(side, m, t, out);
            }
            return;
        }
        // A datagram is one message; a cut one still has its header and
        // question (a query is short; an answer loses its last records).
        let t = Timing { first_ns: seg.ts_ns, last_ns: seg.ts_ns, seq: None, tid: seg.tid };
        match wire::parse(seg.payload) {
            Ok(mut m) => {
                m.cut |= seg.payload.len() < seg.bytes as usize;
                self.message(side, m, t, out);
            }
            Err(_) => self.counts.malformed += 1,
        }
    }

    fn close(&mut self, out: &mut Vec<Exchange>) {
        // Queries never answered: spans without a response.
        while let Some(p) = self.pending.pop_front() {
            out.push(self.exchange(p, None));
        }
    }

    fn stopped(&self) -> Option<&'static str> {
        None
    }

    fn take_counts(&mut self) -> ParserCounts {
        std::mem::take(&mut self.counts)
    }
}

#[cfg(test)]
mod tests;
