//! MySQL and MariaDB: the server speaks first (its greeting names the
//! server: MariaDB says so in its version), the client's handshake response
//! may name a schema, then each command (a packet of sequence id 0) is
//! answered by packets framed by [`packet::Framer`] and read by
//! [`response::Reading`]: OK, ERR, EOF, result sets (rows counted), the
//! answer to a prepare (its statement id cached with the statement).
//!
//! - Statements (COM_QUERY, COM_STMT_PREPARE) are reduced by the SQL
//!   sanitizer ([`crate::protocols::sql`]) as soon as they are read: what an
//!   exchange keeps is literal-free. COM_STMT_EXECUTE names a prepared
//!   statement by id: its bound values are never read.
//! - COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA and COM_QUIT have no answer:
//!   they are no span (CLOSE forgets the statement).
//! - An SSLRequest stops parsing (`tls`) until TLS plaintext comes (library
//!   probes): the handshake response is read again from it. A negotiated
//!   compression (`compressed`) or a replication stream (`replication`)
//!   stops it for good.
//! - A command answers at most one command at a time; when the answer's
//!   framing is lost (a row's header past the capture, most often), the
//!   next command ends it (incomplete), and framing resumes at the next
//!   answer's first packet.

pub mod packet;
pub mod response;
pub mod span;
pub mod statements;
pub mod wire;

use std::{collections::VecDeque, sync::Arc};

use self::{
    packet::{Event, Framer, Packet},
    response::{Expect, Outcome, Reading},
    statements::Statements,
    wire::*,
};
use super::{ConnHints, Exchange, Info, ParserCounts, ProtocolConfig, ProtocolParser, Segment, Side, Timing};
use crate::protocols::sql::Statement;

/// Bytes kept of a client packet (a statement's text; the capture is at most 4096).
const KEEP_REQUEST: usize = 4096;
/// Bytes kept of a server packet (headers of OK/ERR/EOF, the greeting).
const KEEP_RESPONSE: usize = 128;
/// Commands waiting for their answer (clients send one at a time; MariaDB's
/// pipelining a few).
pub const MAX_PENDING: usize = 64;

pub const STOP_TLS: &str = "tls";
pub const STOP_COMPRESSED: &str = "compressed";
pub const STOP_REPLICATION: &str = "replication";

/// What a MySQL exchange carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MysqlExchange {
    /// `mysql` or `mariadb`.
    pub system: &'static str,
    /// The schema in use (handshake, COM_INIT_DB, USE).
    pub schema: Option<Arc<str>>,
    /// The command's name (`QUERY`, `EXECUTE`, `PING`, ...).
    pub command: &'static str,
    /// The statement, literal-free (QUERY, PREPARE, EXECUTE of a known id).
    pub statement: Option<Arc<Statement>>,
    /// ERR: error code and SQLSTATE.
    pub error: Option<(u16, Option<[u8; 5]>)>,
    /// Rows of the result sets the answer held.
    pub rows: Option<u64>,
    pub response_incomplete: bool,
    pub no_response: bool,
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the server's greeting (or a command, seen mid-stream).
    Greeting,
    /// Greeting seen: the client's handshake response comes next.
    Login,
    /// Authenticating: until the server's OK or ERR.
    Auth,
    Command,
}

struct Pending {
    info: MysqlExchange,
    request: Timing,
    reading: Reading,
    response: Option<Timing>,
    /// The schema a successful answer switches to (COM_INIT_DB, USE).
    new_schema: Option<Arc<str>>,
    /// A prepare: its statement, cached under the id the answer gives.
    prepares: Option<Arc<Statement>>,
}

pub fn detect(payload: &[u8], port_hint: bool) -> Option<Side> {
    let len = payload.get(..4).map(|h| u32::from_le_bytes([h[0], h[1], h[2], 0]))?;
    let body = &payload[4..];
    if payload[3] == 0 && (33..1024).contains(&len) && greeting(body).is_some() {
        return Some(Side::Response);
    }
    if !port_hint || len == 0 || len >= 0xff_ffff {
        return None;
    }
    match (payload[3], body.first().copied()) {
        // A command: a statement must read as text.
        (0, Some(c @ (COM_QUERY | COM_STMT_PREPARE))) => {
            let text = &body[1..body.len().min(len as usize)];
            (c != 0
                && !text.is_empty()
                && text.iter().take(64).all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()))
            .then_some(Side::Request)
        }
        (0, Some(c)) if command_name(c).is_some() && len < 64 => Some(Side::Request),
        (1, Some(_)) if login(body, body.len() as u32 == len).is_some() => Some(Side::Request),
        // An OK or ERR answer, seen mid-stream.
        (1 | 2, Some(0x00)) if len < 64 => Some(Side::Response),
        (1 | 2, Some(0xff)) if err(body).is_some_and(|(_, s)| s.is_some()) => Some(Side::Response),
        _ => None,
    }
}

pub fn parser(_cfg: &ProtocolConfig, _hints: ConnHints) -> Box<dyn ProtocolParser> {
    Box::new(Mysql::new())
}

pub struct Mysql {
    req: Framer,
    resp: Framer,
    phase: Phase,
    system: &'static str,
    server_caps: Option<u32>,
    caps: Option<u32>,
    schema: Option<Arc<str>>,
    statements: Statements,
    pending: VecDeque<Pending>,
    stopped: Option<&'static str>,
    /// TLS was negotiated (SSLRequest) and its plaintext is read: the
    /// handshake response comes again inside it, one sequence id later.
    tls: bool,
    counts: ParserCounts,
    events: Vec<Event>,
    arena: Vec<u8>,
    /// Exchanges finished while reading a segment.
    done: Vec<Exchange>,
}

impl Default for Mysql {
    fn default() -> Self {
        Self::new()
    }
}

impl Mysql {
    pub fn new() -> Self {
        Mysql {
            req: Framer::new(KEEP_REQUEST),
            resp: Framer::new(KEEP_RESPONSE),
            phase: Phase::Greeting,
            system: "mysql",
            server_caps: None,
            caps: None,
            schema: None,
            statements: Statements::default(),
            pending: VecDeque::new(),
            stopped: None,
            tls: false,
            counts: ParserCounts::default(),
            events: Vec::new(),
            arena: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Result sets end with an OK instead of an EOF (None: not known).
    fn deprecate_eof(&self) -> Option<bool> {
        self.caps.map(|c| c & CLIENT_DEPRECATE_EOF != 0)
    }

    fn on_request_packet(&mut self, p: Packet, body: &[u8]) {
        match self.phase {
            Phase::Login if p.seq_id == 1 + u8::from(self.tls) => {
                let Some(l) = login(body, p.whole()) else { return };
                let caps = l.caps & self.server_caps.unwrap_or(u32::MAX);
                self.caps = Some(caps);
                if l.tls {
                    self.stopped = Some(STOP_TLS);
                    return;
                }
                if let Some(s) = l.schema {
                    self.schema = Some(s.into());
                }
                self.phase = Phase::Auth;
            }
            Phase::Login | Phase::Auth => {} // auth data: never read
            Phase::Greeting | Phase::Command if p.seq_id == 0 => {
                if let Some(&c) = body.first() {
                    self.phase = Phase::Command;
                    self.on_command(c, p, &body[1..]);
                } else if p.len > 0 {
                    self.counts.malformed += 1;
                }
            }
            Phase::Greeting | Phase::Command => {} // LOAD DATA LOCAL contents, auth switch data
        }
    }

    fn on_command(&mut self, c: u8, p: Packet, args: &[u8]) {
        // A new command: the client read all of the answer it waited for,
        // so one whose end was not framed ends here.
        let answering = self.pending.front().and_then(|f| f.response);
        if let Some(r) = answering.filter(|_| self.resp.is_lost() || !self.resp.at_boundary()) {
            self.finish(r.last_ns, true);
            self.resp.lose();
        }
        let Some(name) = command_name(c) else {
            self.counts.malformed += 1;
            return;
        };
        let cut = !p.whole();
        let mut info =
            MysqlExchange { system: self.system, schema: self.schema.clone(), command: name, ..Default::default() };
        let mut new_schema = None;
        let mut prepares = None;
        let expect = match c {
            COM_QUERY => {
                let text = self.query_text(args);
                if let Some(text) = text {
                    new_schema = use_schema(text).map(Arc::from);
                    info.statement = Some(self.statements.reduce(text, cut));
                }
                Expect::Results
            }
            COM_STMT_PREPARE => {
                let s = self.statements.reduce(args, cut);
                info.statement = Some(s.clone());
                prepares = Some(s);
                Expect::Prepare
            }
            COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE => {
                info.statement = args.get(..4).and_then(|id| {
                    let id = u32::from_le_bytes(id.try_into().ok()?);
                    if id == u32::MAX { self.statements.last() } else { self.statements.get(id) }
                });
                Expect::Results
            }
            COM_STMT_FETCH => Expect::Rows,
            COM_INIT_DB => {
                new_schema = schema_name(args).filter(|_| !cut).map(Arc::from);
                Expect::Results
            }
            COM_STMT_CLOSE => {
                if let Some(id) = args.get(..4) {
                    self.statements.close(u32::from_le_bytes(id.try_into().unwrap_or_default()));
                }
                return;
            }
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return,
            COM_STATISTICS => Expect::Single,
            COM_CHANGE_USER => Expect::Auth,
            COM_FIELD_LIST => Expect::Columns,
            COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID => {
                self.stopped = Some(STOP_REPLICATION);
                return;
            }
            0x1f => {
                self.statements.clear(); // COM_RESET_CONNECTION
                Expect::Results
            }
            _ => Expect::Results,
        };
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.counts.overflow += 1;
        }
        self.pending.push_back(Pending {
            info,
            request: Timing { first_ns: p.first_ns, last_ns: p.last_ns, seq: p.tcp_seq, tid: p.tid },
            reading: Reading::new(expect, self.deprecate_eof()),
            response: None,
            new_schema,
            prepares,
        });
    }

    /// A COM_QUERY's text: after the query attributes when they were
    /// negotiated (None when it has some: they are bound values).
    fn query_text<'a>(&self, args: &'a [u8]) -> Option<&'a [u8]> {
        if self.caps.is_some_and(|c| c & CLIENT_QUERY_ATTRIBUTES != 0) {
            let (params, k) = lenenc(args)?;
            let (_, k2) = lenenc(&args[k..])?;
            return (params == 0).then(|| &args[k + k2..]);
        }
        Some(args)
    }

    fn on_response_packet(&mut self, p: Packet, body: &[u8]) {
        match self.phase {
            Phase::Greeting => {
                if let Some(g) = (p.seq_id == 0).then(|| greeting(body)).flatten() {
                    self.system = if g.mariadb { "mariadb" } else { "mysql" };
                    self.server_caps = Some(g.caps);
                    self.phase = Phase::Login;
                    return;
                }
                self.phase = Phase::Command; // seen mid-stream
            }
            Phase::Login => return,
            Phase::Auth => {
                match body.first() {
                    Some(0x00) => {
                        self.phase = Phase::Command;
                        if self.caps.is_some_and(|c| c & CLIENT_COMPRESS != 0) {
                            self.stopped = Some(STOP_COMPRESSED);
                        }
                    }
                    Some(0xff) => self.phase = Phase::Command,
                    _ => {} // auth switch, more data
                }
                return;
            }
            Phase::Command => {}
        }
        let Some(front) = self.pending.front_mut() else {
            // An EOF after a prepare's definitions when the capabilities
            // were not seen is part of the last answer.
            if !(body.first() == Some(&0xfe) && p.len == 5) {
                self.counts.unpaired += 1;
            }
            return;
        };
        let timing = Timing { first_ns: p.first_ns, last_ns: p.last_ns, seq: p.tcp_seq, tid: p.tid };
        match &mut front.response {
            Some(r) => r.last_ns = p.last_ns,
            None => front.response = Some(timing),
        }
        if body.is_empty() && p.len > 0 {
            // Not even its first byte was kept: the answer cannot be read.
            front.info.response_incomplete = true;
            self.counts.malformed += 1;
            self.resp.lose();
            return;
        }
        match front.reading.packet(body, p.len) {
            Outcome::More => {}
            Outcome::Done => {
                let r = front.reading;
                front.info.rows = r.rows();
                front.info.error = r.error();
                if let (Some(s), Some(id)) = (&front.prepares, r.statement_id()) {
                    let s = s.clone();
                    self.statements.insert(id, s);
                }
                let front = &self.pending[0];
                if front.info.error.is_none()
                    && let Some(s) = &front.new_schema
                {
                    self.schema = Some(s.clone());
                }
                self.finish(p.last_ns, false);
            }
        }
    }

    /// The oldest command's exchange ends (its answer read, or not).
    fn finish(&mut self, last_ns: u64, incomplete: bool) {
        let Some(mut f) = self.pending.pop_front() else { return };
        f.info.response_incomplete |= incomplete;
        if incomplete {
            f.info.rows = None;
        }
        let response = f.response.map(|mut r| {
            r.last_ns = last_ns.max(r.first_ns);
            r
        });
        self.done.push(Exchange { request: f.request, response, info: Info::Mysql(f.info) });
    }
}

/// Could a syscall of the client start a command (framing picks up there)?
fn starts_command(b: &[u8]) -> bool {
    starts_packet(b, |s| s == 0, |c| command_name(c).is_some())
}

/// Could a syscall of the server start an answer (sequence id 1 on)?
fn starts_answer(b: &[u8]) -> bool {
    starts_packet(b, |s| s >= 1, |_| true)
}

impl ProtocolParser for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn feed(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        if self.stopped.is_some() {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        let mut arena = std::mem::take(&mut self.arena);
        match side {
            Side::Request => self.req.feed(seg, starts_command, &mut events, &mut arena),
            Side::Response => self.resp.feed(seg, starts_answer, &mut events, &mut arena),
        }
        for ev in events.drain(..) {
            if self.stopped.is_some() {
                break;
            }
            match (side, ev) {
                (Side::Request, Event::Packet(p)) => self.on_request_packet(p, &arena[p.at..p.at + p.kept]),
                (Side::Response, Event::Packet(p)) => self.on_response_packet(p, &arena[p.at..p.at + p.kept]),
                (Side::Request, Event::Lost { .. }) => self.counts.malformed += 1,
                (Side::Response, Event::Lost { .. }) => {
                    self.counts.malformed += 1;
                    if let Some(f) = self.pending.front_mut().filter(|f| f.response.is_some()) {
                        f.info.response_incomplete = true;
                        if let Some(r) = &mut f.response {
                            r.last_ns = seg.ts_ns;
                        }
                    }
                }
            }
        }
        arena.clear();
        self.events = events;
        self.arena = arena;
        out.append(&mut self.done);
    }

    fn close(&mut self, out: &mut Vec<Exchange>) {
        while let Some(f) = self.pending.front() {
            match f.response {
                Some(r) => self.finish(r.last_ns, true),
                None => {
                    let Some(mut f) = self.pending.pop_front() else { break };
                    f.info.no_response = true;
                    self.done.push(Exchange { request: f.request, response: None, info: Info::Mysql(f.info) });
                }
            }
        }
        out.append(&mut self.done);
    }

    fn stopped(&self) -> Option<&'static str> {
        self.stopped
    }

    fn tls_started(&mut self) -> bool {
        if self.stopped != Some(STOP_TLS) {
            return false;
        }
        self.stopped = None;
        self.tls = true;
        self.req.renumber();
        self.resp.renumber();
        true
    }

    fn take_counts(&mut self) -> ParserCounts {
        let mut c = std::mem::take(&mut self.counts);
        c.evicted = std::mem::take(&mut self.statements.evicted);
        c
    }
}

#[cfg(test)]
impl Mysql {
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn statements_len(&self) -> usize {
        self.statements.prepared_len()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
#[cfg(test)]
#[path = "tests_prop.rs"]
mod tests_prop;
