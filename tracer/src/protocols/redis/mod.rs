//! Redis (RESP2 and RESP3): commands framed by [`resp::Framer`] queue in
//! order and each reply answers the oldest waiting command (pipelining: one
//! exchange per command). What an exchange keeps is the command's name
//! ([`commands`]), never an argument, the error's code, and the database
//! index `SELECT` chose (`db.namespace`).
//!
//! - MULTI/EXEC: every command is its own span. A command queued inside a
//!   transaction is answered `+QUEUED` (its span ends there); EXEC's span
//!   carries how many replies its array held (`db.operation.batch.size`).
//! - Pub/sub: after (P|S)SUBSCRIBE the server pushes messages that answer
//!   nothing (arrays `message`/`pmessage`/`smessage`, or RESP3 `>` pushes).
//!   They are counted ([`ParserCounts::pushed`]), not spans: a delivery has
//!   no request on this connection and no duration, and the publish that
//!   caused it is already a span (`PUBLISH`) on the publisher's connection.
//!   The subscribe call itself is a span ending at its first
//!   confirmation; the confirmations of its other channels are absorbed.
//! - MONITOR: the stream of `+...` lines after its `+OK` is counted the same
//!   way (those lines echo every argument of every client: never kept).
//! - Framing lost on the request side (bytes never reported, a line longer
//!   than the capture) leaves a [`Pending::Lost`] mark: replies sent before
//!   the next framed command answer lost commands (unpaired), the first one
//!   after it answers that command. Lost on the reply side: the reply being
//!   read answers its command, incomplete; framing resumes at a syscall that
//!   starts like a reply.

pub mod commands;
pub mod resp;
pub mod span;

use std::{borrow::Cow, collections::VecDeque};

use self::resp::{Event, Framer, INLINE, Msg};
use super::{ConnHints, Exchange, Info, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side, Timing};

/// Commands waiting for their reply per connection (pipelining depth);
/// past it, commands are only counted (`overflow`), in order.
pub const MAX_PENDING: usize = 1024;

/// What a Redis exchange carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedisExchange {
    /// Upper-case command name, or `_OTHER`.
    pub command: Cow<'static, str>,
    /// Database index in use (`SELECT`); None: not known (seen mid-stream).
    pub db: Option<u16>,
    /// The reply was an error with this code (`ERR`, `WRONGTYPE`, `_OTHER`).
    pub error: Option<&'static str>,
    /// Replies EXEC's array held.
    pub batch: Option<u32>,
    /// The reply's end was not seen (framing lost).
    pub response_incomplete: bool,
    /// The connection closed with the command still waiting.
    pub no_response: bool,
}

struct Cmd {
    command: Cow<'static, str>,
    timing: Timing,
    db: Option<u16>,
    /// The database before a `SELECT` (restored if it fails).
    db_before: Option<u16>,
    /// A pub/sub (un)subscribe: its confirmation's kind and how many come.
    confirms: Option<(&'static str, u32)>,
}

enum Pending {
    Cmd(Cmd),
    /// Commands past [`MAX_PENDING`]: their replies are skipped.
    Gap(u32),
    /// Framing was lost here: an unknown number of commands.
    Lost,
}

pub fn detect(payload: &[u8], port_hint: bool) -> Option<Side> {
    match array_command(payload) {
        Some(Some(name)) if port_hint || commands::command(name) != commands::OTHER => return Some(Side::Request),
        Some(None) if port_hint => return Some(Side::Request), // the name is past the capture
        _ => {}
    }
    if !port_hint {
        return None;
    }
    let word = payload.split(|b| *b == b' ' || *b == b'\r').next().unwrap_or_default();
    if word.len() < payload.len() && commands::command(word) != commands::OTHER {
        return Some(Side::Request); // an inline command (`PING\r\n`)
    }
    looks_like_reply(payload).then_some(Side::Response)
}

/// `*<n>\r\n$<len>\r\n<name>`: Some(name) (None when not captured).
fn array_command(p: &[u8]) -> Option<Option<&[u8]>> {
    let rest = p.strip_prefix(b"*")?;
    let (n, rest) = digits_crlf(rest)?;
    let rest = rest.strip_prefix(b"$")?;
    let (len, rest) = digits_crlf(rest)?;
    if n == 0 || len == 0 {
        return None;
    }
    Some(rest.get(..len).filter(|name| name.iter().all(|b| b.is_ascii_alphabetic() || b"._-|".contains(b))))
        .filter(|name| name.is_some() || rest.iter().all(u8::is_ascii_alphabetic))
}

fn digits_crlf(p: &[u8]) -> Option<(usize, &[u8])> {
    let end = p.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || end > 7 {
        return None;
    }
    let rest = p[end..].strip_prefix(b"\r\n")?;
    Some((std::str::from_utf8(&p[..end]).ok()?.parse().ok()?, rest))
}

/// A reply's first line: `+OK`, `-ERR x`, `:1`, `$5`, `*2`, `_`, ...
fn looks_like_reply(p: &[u8]) -> bool {
    let Some(end) = p.windows(2).position(|w| w == b"\r\n") else { return false };
    let (ty, line) = (p[0], &p[1..end]);
    match ty {
        b'+' | b'-' => !line.is_empty() && line.iter().all(|b| b.is_ascii_graphic() || *b == b' '),
        b':' | b'$' | b'*' | b'%' | b'~' | b'>' => resp_int(line),
        b'_' => line.is_empty(),
        _ => false,
    }
}

fn resp_int(line: &[u8]) -> bool {
    let d = line.strip_prefix(b"-").unwrap_or(line);
    !d.is_empty() && d.len() <= 18 && d.iter().all(u8::is_ascii_digit)
}

pub fn parser(_cfg: &ProtocolConfig, hints: ConnHints) -> Box<dyn ProtocolParser> {
    Box::new(Redis::new(hints.from_start))
}

pub struct Redis {
    req: Framer,
    resp: Framer,
    pending: VecDeque<Pending>,
    /// The database commands run in (0 on a connection seen from its start).
    db: Option<u16>,
    /// Subscriptions the last confirmation counted (RESP2 subscribed mode).
    subscriptions: i64,
    /// More confirmations of this kind answer the last (un)subscribe.
    absorb: Option<(&'static str, u32)>,
    monitoring: bool,
    counts: ParserCounts,
    events: Vec<Event>,
}

impl Redis {
    pub fn new(from_start: bool) -> Self {
        Redis {
            req: Framer::new(Side::Request),
            resp: Framer::new(Side::Response),
            pending: VecDeque::new(),
            db: from_start.then_some(0),
            subscriptions: 0,
            absorb: None,
            monitoring: false,
            counts: ParserCounts::default(),
            events: Vec::new(),
        }
    }

    fn enqueue(&mut self, p: Pending) {
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(p);
            return;
        }
        // Full: the newest entries become one gap, so the replies that
        // follow still pair with the commands they answer.
        self.counts.overflow += 1;
        let skipped = matches!(p, Pending::Cmd(_));
        match self.pending.back_mut() {
            Some(Pending::Gap(n)) => *n += u32::from(skipped),
            Some(back @ Pending::Cmd(_)) => {
                self.counts.overflow += 1;
                *back = Pending::Gap(1 + u32::from(skipped));
            }
            _ => self.pending.push_back(Pending::Gap(u32::from(skipped))),
        }
    }

    fn on_command(&mut self, m: Msg) {
        if m.count <= 0 {
            return; // `*0` and empty inline lines: Redis answers nothing
        }
        let command = match m.head.whole() {
            Some(name) if m.kind == b'*' || m.kind == INLINE => commands::command(name),
            _ => Cow::Borrowed(commands::OTHER),
        };
        let db_before = self.db;
        if command == "SELECT" {
            // Applied now: the commands pipelined behind it run in that database.
            self.db = m.arg.whole().and_then(|a| std::str::from_utf8(a).ok()?.parse().ok()).or(self.db);
        }
        let confirms = confirmation_of(&command).map(|kind| {
            let channels = u32::try_from(m.count - 1).unwrap_or(0);
            let n = match (channels, kind.contains("unsub")) {
                (0, true) => u32::try_from(self.subscriptions).unwrap_or(0).max(1),
                (n, _) => n.max(1),
            };
            (kind, n)
        });
        let timing = Timing { first_ns: m.first_ns, last_ns: m.last_ns, seq: m.seq, tid: m.tid };
        self.enqueue(Pending::Cmd(Cmd { command, timing, db: self.db, db_before, confirms }));
    }

    fn on_reply(&mut self, m: Msg, incomplete: bool, out: &mut Vec<Exchange>) {
        let array = matches!(m.kind, b'*' | b'>');
        let first = if array { m.head.whole() } else { None };
        let word = first.and_then(confirmation_word);
        let front_confirms = match self.pending.front() {
            Some(Pending::Cmd(c)) => c.confirms.map(|(k, _)| k),
            _ => None,
        };
        let absorbing = self.absorb.is_some_and(|(k, _)| Some(k) == word);
        if word.is_some()
            && (absorbing || front_confirms == word || m.kind == b'>')
            && let Some(n) = m.last_int
        {
            self.subscriptions = n;
        }
        if absorbing {
            if let Some((_, n)) = &mut self.absorb {
                *n -= 1;
                if *n == 0 {
                    self.absorb = None;
                }
            }
            return;
        }
        let delivery = first.is_some_and(|f| [&b"message"[..], b"pmessage", b"smessage"].contains(&f));
        if delivery && (m.kind == b'>' || self.subscriptions > 0)
            || m.kind == b'>' && (word.is_none() || front_confirms != word)
            || self.monitoring && m.kind == b'+' && self.pending.is_empty()
        {
            self.counts.pushed += 1;
            return;
        }
        self.pair(m, word, incomplete, out);
    }

    fn pair(&mut self, m: Msg, word: Option<&'static str>, incomplete: bool, out: &mut Vec<Exchange>) {
        let cmd = loop {
            match self.pending.front_mut() {
                None => {
                    self.counts.unpaired += 1;
                    return;
                }
                Some(Pending::Gap(n)) => {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.pending.pop_front();
                    }
                    return;
                }
                Some(Pending::Lost) => {
                    // Sent before the next framed command: it answers a lost one.
                    let next_first = self.pending.iter().find_map(|p| match p {
                        Pending::Cmd(c) => Some(c.timing.first_ns),
                        _ => None,
                    });
                    if next_first.is_none_or(|t| t > m.first_ns) {
                        self.counts.unpaired += 1;
                        return;
                    }
                    self.pending.pop_front();
                }
                Some(Pending::Cmd(_)) => match self.pending.pop_front() {
                    Some(Pending::Cmd(c)) => break c,
                    _ => unreachable!("the front is a command"),
                },
            }
        };
        let error = match m.kind {
            b'-' | b'!' => Some(commands::error_prefix(m.head.bytes())),
            _ => None,
        };
        match (&*cmd.command, error) {
            ("SELECT", Some(_)) => self.db = cmd.db_before,
            ("RESET", None) => {
                self.db = Some(0);
                self.subscriptions = 0;
                self.monitoring = false;
            }
            ("MONITOR", None) => self.monitoring = true,
            _ => {}
        }
        if let Some((kind, n)) = cmd.confirms
            && word == Some(kind)
            && n > 1
        {
            self.absorb = Some((kind, n - 1));
        }
        let batch = (cmd.command == "EXEC" && m.kind == b'*' && m.count >= 0).then_some(m.count as u32);
        let response = Timing { first_ns: m.first_ns, last_ns: m.last_ns, seq: m.seq, tid: m.tid };
        out.push(Exchange {
            request: cmd.timing,
            response: Some(response),
            info: Info::Redis(RedisExchange {
                command: cmd.command,
                db: cmd.db,
                error,
                batch,
                response_incomplete: incomplete,
                no_response: false,
            }),
        });
    }

    fn on_request_events(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                Event::Msg(m) => self.on_command(m),
                Event::Lost { partial, .. } => {
                    self.counts.malformed += 1;
                    if let Some(m) = partial {
                        self.on_command(m); // its name, or _OTHER when cut
                    }
                    if !matches!(self.pending.back(), Some(Pending::Lost)) {
                        self.enqueue(Pending::Lost);
                    }
                }
            }
        }
        self.events = events;
    }

    fn on_response_events(&mut self, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                Event::Msg(m) => self.on_reply(m, false, out),
                Event::Lost { partial, .. } => {
                    self.counts.malformed += 1;
                    if let Some(m) = partial {
                        self.on_reply(m, true, out);
                    }
                }
            }
        }
        self.events = events;
    }
}

/// The confirmation a pub/sub command is answered with (`subscribe`, ...).
fn confirmation_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "SUBSCRIBE" => "subscribe",
        "PSUBSCRIBE" => "psubscribe",
        "SSUBSCRIBE" => "ssubscribe",
        "UNSUBSCRIBE" => "unsubscribe",
        "PUNSUBSCRIBE" => "punsubscribe",
        "SUNSUBSCRIBE" => "sunsubscribe",
        _ => return None,
    })
}

fn confirmation_word(first: &[u8]) -> Option<&'static str> {
    ["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"]
        .into_iter()
        .find(|w| w.as_bytes().eq_ignore_ascii_case(first))
}

impl ProtocolParser for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        match side {
            Side::Request => {
                self.req.feed(seg, &mut self.events);
                self.on_request_events();
            }
            Side::Response => {
                self.resp.feed(seg, &mut self.events);
                self.on_response_events(out);
            }
        }
    }

    fn close(&mut self, out: &mut Vec<Exchange>) {
        if let Some(m) = self.req.take_partial() {
            self.on_command(m);
        }
        if let Some(m) = self.resp.take_partial() {
            self.on_reply(m, true, out);
        }
        for p in self.pending.drain(..) {
            if let Pending::Cmd(c) = p {
                out.push(Exchange {
                    request: c.timing,
                    response: None,
                    info: Info::Redis(RedisExchange {
                        command: c.command,
                        db: c.db,
                        no_response: true,
                        ..Default::default()
                    }),
                });
            }
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
impl Redis {
    /// Entries this parser holds between calls (bounded by MAX_PENDING + 1).
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
#[cfg(test)]
#[path = "tests_prop.rs"]
mod tests_prop;
#[cfg(test)]
#[path = "tests_recorded.rs"]
mod tests_recorded;
