//! Calls paired with their answers, from the messages of both directions:
//! what each frontend message adds to the queue of what the server owes,
//! and what each backend message settles.

use std::{collections::VecDeque, sync::Arc};

use super::{
    CANCEL_REQUEST, GSSENC_REQUEST, MAX_PENDING, MAX_PORTALS, MAX_STATEMENTS, PgExchange, SSL_REQUEST, STOP_GSSENC,
    STOP_TLS,
    cache::Cache,
    frame::{Expect, Frame, Stream, UNTYPED},
    message,
};
use crate::protocols::{
    Exchange, Info, ParserCounts, Timing,
    sql::{self, Dialect, Statement},
};

/// A call waiting for (or receiving) its answer.
#[derive(Debug)]
struct Call {
    extended: bool,
    statement: Option<Arc<Statement>>,
    request: Timing,
    response: Option<Timing>,
    tag_rows: Option<u64>,
    data_rows: u64,
    row_description: bool,
    /// Some of its answer could not be framed: DataRows were missed.
    framing_lost: bool,
    sqlstate: Option<[u8; 5]>,
    copy_bytes: Option<u64>,
    /// Taken to be an Execute because the end of its batch was not
    /// captured; `executed`: its answer says it was one.
    guessed: bool,
    executed: bool,
}

impl Call {
    fn new(extended: bool, statement: Option<Arc<Statement>>, request: Timing) -> Self {
        Call {
            extended,
            statement,
            request,
            response: None,
            tag_rows: None,
            data_rows: 0,
            row_description: false,
            framing_lost: false,
            sqlstate: None,
            copy_bytes: None,
            guessed: false,
            executed: false,
        }
    }
}

/// What the response side waits for, in order.
#[derive(Debug)]
enum Entry {
    Call(Call),
    /// A Sync (or FunctionCall) answered by ReadyForQuery. With a call: the
    /// batch had a Parse and no Execute; an error in it is still a span.
    Sync(Option<Call>),
    /// The Sync a batch whose end was not captured probably had: taken by
    /// a ReadyForQuery, dropped by any other answer (the batch went on,
    /// pipelined).
    MaybeSync,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Startup and authentication: nothing is a span until ReadyForQuery.
    Startup,
    Ready,
}

pub(super) struct Pairing {
    phase: Phase,
    /// An SSLRequest or GSSENCRequest waits for its one-byte answer.
    awaiting_answer: Option<u32>,
    pub stopped: Option<&'static str>,
    pending: VecDeque<Entry>,
    database: Option<Arc<str>>,
    pub statements: Cache,
    pub portals: Cache,
    unnamed_statement: Option<Arc<Statement>>,
    unnamed_portal: Option<Arc<Statement>>,
    /// The extended-protocol messages since the last Execute or Sync: where
    /// the first was, and the statement the last Parse made.
    batch_start: Option<Timing>,
    batch_parse: Option<Arc<Statement>>,
    /// The statement the batch's last Bind bound (known or not).
    batch_bound: Option<Option<Arc<Statement>>>,
    recent: Recent,
    /// The response side lost framing; the waiting calls end at the next call.
    pub response_lost: bool,
    /// The last response segment (its return time as `last_ns`).
    pub response_last: Timing,
    pub counts: ParserCounts,
}

impl Pairing {
    pub fn new(query_text: bool) -> Self {
        Pairing {
            recent: Recent { query_text, slots: Default::default(), next: 0 },
            phase: Phase::Ready,
            awaiting_answer: None,
            stopped: None,
            pending: VecDeque::new(),
            database: None,
            statements: Cache::new(MAX_STATEMENTS),
            portals: Cache::new(MAX_PORTALS),
            unnamed_statement: None,
            unnamed_portal: None,
            batch_start: None,
            batch_parse: None,
            batch_bound: None,
            response_lost: false,
            response_last: Timing::default(),
            counts: ParserCounts::default(),
        }
    }

    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn push(&mut self, e: Entry) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.counts.overflow += 1;
        }
        self.pending.push_back(e);
    }

    /// A new call is sent while the response side is lost: clients wait
    /// for ReadyForQuery, so the calls before it were answered in the bytes
    /// that could not be framed. The response side may then resume.
    fn new_call_sent(&mut self, resp: &mut Stream, out: &mut Vec<Exchange>) {
        // The startup ended, whether its ReadyForQuery was framed or not.
        self.phase = Phase::Ready;
        if !self.response_lost {
            return;
        }
        self.flush(Some(self.response_last), out);
        self.response_lost = false;
        resp.may_resync = true;
    }

    /// Every waiting call ends, incomplete. `answered`: in the bytes that
    /// could not be framed, up to that segment; None: the connection closed.
    pub fn flush(&mut self, answered: Option<Timing>, out: &mut Vec<Exchange>) {
        let last_ns = answered.map_or(self.response_last.last_ns, |t| t.last_ns);
        for e in std::mem::take(&mut self.pending) {
            // A batch without Execute that got no error is no span.
            if let Entry::Call(mut c) = e {
                if let Some(t) = answered {
                    c.response.get_or_insert(t);
                }
                finish(c, &self.database, last_ns, true, out);
            }
        }
    }

    /// The response side lost framing inside the answer being read, which
    /// started in this segment at the latest.
    pub fn response_framing_lost(&mut self, seg: Timing) {
        self.response_lost = true;
        if let Some(Entry::Call(c)) = self.pending.front_mut() {
            c.framing_lost = true;
            c.response.get_or_insert(seg);
        }
    }

    /// The request side lost framing: the rest of an extended batch was not
    /// captured (a long Parse followed by Bind, Execute and Sync in one
    /// write). It is taken to end with Execute and Sync, as drivers send
    /// it; an answer with no sign of an Execute (a prepare: Parse, Sync)
    /// drops it.
    pub fn request_framing_lost(&mut self, ts_ns: u64) {
        if let Some(start) = self.batch_start.take() {
            let parsed = self.batch_parse.take();
            let statement = self.batch_bound.take().unwrap_or(parsed);
            let mut call = Call::new(true, statement, Timing { last_ns: ts_ns, ..start });
            call.guessed = true;
            self.push(Entry::Call(call));
            self.push(Entry::MaybeSync);
        }
    }

    pub fn on_request(&mut self, f: &Frame<'_>, resp: &mut Stream, out: &mut Vec<Exchange>) {
        match f.tag {
            UNTYPED => match message::code(f.body) {
                code @ (SSL_REQUEST | GSSENC_REQUEST) => {
                    self.awaiting_answer = Some(code);
                    resp.expect = Expect::Answer;
                }
                CANCEL_REQUEST => {}
                c if c >> 16 == 3 => {
                    self.database = message::startup_database(f.body).map(Arc::from);
                    self.phase = Phase::Startup;
                }
                _ => self.counts.malformed += 1,
            },
            b'Q' => {
                self.new_call_sent(resp, out);
                let (text, whole) = message::query(f.body, f.len);
                let statement = self.recent.statement(text, !whole);
                self.batch_start = None;
                self.batch_parse = None;
                self.batch_bound = None;
                self.push(Entry::Call(Call::new(false, Some(statement), f.timing)));
            }
            b'P' => {
                self.start_batch(f, resp, out);
                let Some((name, text, whole)) = message::parse(f.body, f.len) else {
                    self.batch_parse = None;
                    return;
                };
                let statement = self.recent.statement(text, !whole);
                if name.is_empty() {
                    self.unnamed_statement = Some(statement.clone());
                } else {
                    self.statements.insert(name, Some(statement.clone()));
                }
                self.batch_parse = Some(statement);
            }
            b'B' => {
                self.start_batch(f, resp, out);
                let Some((portal, name)) = message::bind(f.body) else { return };
                let statement =
                    if name.is_empty() { self.unnamed_statement.clone() } else { self.statements.get(name) };
                self.batch_bound = Some(statement.clone());
                if portal.is_empty() {
                    self.unnamed_portal = statement;
                } else {
                    self.portals.insert(portal, statement);
                }
            }
            b'E' => {
                self.start_batch(f, resp, out);
                let statement = match message::execute(f.body) {
                    Some([]) => self.unnamed_portal.clone(),
                    Some(portal) => self.portals.get(portal),
                    None => None,
                };
                let start = self.batch_start.take().unwrap_or(f.timing);
                self.batch_parse = None;
                self.batch_bound = None;
                self.push(Entry::Call(Call::new(true, statement, Timing { last_ns: f.timing.last_ns, ..start })));
            }
            b'D' | b'H' => self.start_batch(f, resp, out),
            b'C' => {
                self.start_batch(f, resp, out);
                match message::close(f.body) {
                    Some((b'S', name)) => self.statements.remove(name),
                    Some((b'P', name)) => self.portals.remove(name),
                    _ => {}
                }
            }
            b'S' => {
                self.batch_bound = None;
                let parse = self.batch_parse.take();
                let start = self.batch_start.take();
                // No span unless an error answers it.
                let end = f.timing.last_ns;
                let orphan = parse.zip(start).map(|(p, s)| Call::new(true, Some(p), Timing { last_ns: end, ..s }));
                self.push(Entry::Sync(orphan));
            }
            b'F' => {
                self.new_call_sent(resp, out);
                self.push(Entry::Sync(None));
            }
            // The client read every answer it wanted before leaving.
            b'X' => self.new_call_sent(resp, out),
            b'd' | b'c' | b'f' => {
                // COPY FROM STDIN data: the call being answered sends it.
                if let Some(Entry::Call(c)) = self.pending.front_mut() {
                    if f.tag == b'd' {
                        *c.copy_bytes.get_or_insert(0) += u64::from(f.len);
                    }
                    c.request.last_ns = f.timing.last_ns;
                }
            }
            _ => {} // password and SASL messages
        }
    }

    /// A message of the extended protocol: the first since the last Execute
    /// or Sync starts a call.
    fn start_batch(&mut self, f: &Frame<'_>, resp: &mut Stream, out: &mut Vec<Exchange>) {
        if self.batch_start.is_none() {
            self.new_call_sent(resp, out);
            self.batch_start = Some(f.timing);
        }
    }

    /// False: stop reading the connection (encrypted from here on).
    pub fn on_response(&mut self, f: &Frame<'_>, out: &mut Vec<Exchange>) -> bool {
        if let Some(code) = self.awaiting_answer.take() {
            match (code, f.tag) {
                (SSL_REQUEST, b'S') => self.stopped = Some(STOP_TLS),
                (GSSENC_REQUEST, b'G') => self.stopped = Some(STOP_GSSENC),
                (_, b'N') => {} // refused: the startup follows in the clear
                _ => self.counts.malformed += 1,
            }
            return self.stopped.is_none();
        }
        if self.phase == Phase::Startup {
            if f.tag == b'Z' {
                self.phase = Phase::Ready;
            }
            return true;
        }
        if f.tag == b'A' {
            return true; // a notification: asynchronous
        }
        let end = f.timing.last_ns;
        while matches!(self.pending.front(), Some(Entry::MaybeSync)) {
            self.pending.pop_front();
            if f.tag == b'Z' {
                return true;
            }
        }
        let Some(head) = self.pending.front_mut() else {
            if matches!(f.tag, b'C' | b'E' | b'Z' | b'I' | b's') {
                self.counts.unpaired += 1;
            }
            return true;
        };
        let call = match head {
            Entry::Call(c) => c,
            Entry::MaybeSync => return true, // taken off above
            Entry::Sync(orphan) => {
                match f.tag {
                    // The batch's Parse failed: a span for it.
                    b'E' => {
                        if let Some(mut c) = orphan.take() {
                            c.sqlstate = message::sqlstate(f.body);
                            c.response = Some(f.timing);
                            finish(c, &self.database, end, false, out);
                        }
                    }
                    b'Z' => {
                        self.pending.pop_front();
                    }
                    _ => {}
                }
                return true;
            }
        };
        call.response.get_or_insert(f.timing);
        call.executed |= matches!(f.tag, b'2' | b'D' | b'C' | b'I' | b's' | b'E' | b'G' | b'H');
        let extended = call.extended;
        match f.tag {
            b'T' => call.row_description = true,
            b'D' => call.data_rows += 1,
            b'G' | b'H' | b'W' => {
                call.copy_bytes.get_or_insert(0);
            }
            b'd' => *call.copy_bytes.get_or_insert(0) += u64::from(f.len),
            b'C' => {
                if let Some(n) = message::returned_rows(f.body) {
                    *call.tag_rows.get_or_insert(0) += n;
                }
                if extended {
                    self.finish_head(end, out);
                }
            }
            b'I' | b's' if extended => self.finish_head(end, out),
            b'E' => {
                call.sqlstate = call.sqlstate.or(message::sqlstate(f.body));
                if extended {
                    self.finish_head(end, out);
                    // The server skips the rest of the batch up to its Sync.
                    while matches!(self.pending.front(), Some(Entry::Call(c)) if c.extended) {
                        self.pending.pop_front();
                    }
                }
            }
            b'Z' if !extended => self.finish_head(end, out),
            b'Z' => {
                // Executes answered without a completion (framing lost).
                while let Some(e) = self.pending.pop_front() {
                    match e {
                        Entry::Call(c) if c.response.is_some() && (c.executed || !c.guessed) => {
                            finish(c, &self.database, end, true, out)
                        }
                        Entry::Call(_) => {}
                        Entry::Sync(_) | Entry::MaybeSync => break,
                    }
                }
            }
            _ => {}
        }
        true
    }

    fn finish_head(&mut self, end: u64, out: &mut Vec<Exchange>) {
        if let Some(Entry::Call(c)) = self.pending.pop_front() {
            finish(c, &self.database, end, false, out);
        }
    }
}

/// Statements read lately, by a hash of their text: services send the
/// same few texts again and again (an unnamed Parse of the same SQL per
/// call, BEGIN and COMMIT, health checks), and reading one is most of what
/// a call costs. Only the hash is kept, never the text (two texts of one
/// 64-bit hash would share a statement: a chance of 2^-64 per look-up).
struct Recent {
    /// Reduce statements to their literal-free text (else: shape only).
    query_text: bool,
    slots: [Option<(u64, Arc<Statement>)>; RECENT],
    next: usize,
}

const RECENT: usize = 16;

impl Recent {
    fn statement(&mut self, text: &[u8], cut: bool) -> Arc<Statement> {
        use std::hash::BuildHasher;
        let key = foldhash::fast::FixedState::with_seed(0x5157_4c20).hash_one((text, cut));
        if let Some((_, s)) = self.slots.iter().flatten().find(|(k, _)| *k == key) {
            return s.clone();
        }
        let read = if self.query_text { sql::sanitize } else { sql::summarize };
        let s = Arc::new(read(text, Dialect::Postgres, cut));
        self.slots[self.next] = Some((key, s.clone()));
        self.next = (self.next + 1) % RECENT;
        s
    }
}

fn finish(c: Call, database: &Option<Arc<str>>, last_ns: u64, incomplete: bool, out: &mut Vec<Exchange>) {
    let response = c.response.map(|t| Timing { last_ns: last_ns.max(t.first_ns), ..t });
    let counted = c.row_description && !c.framing_lost;
    let returned_rows = c.tag_rows.or(counted.then_some(c.data_rows));
    out.push(Exchange {
        request: c.request,
        response,
        info: Info::Postgres(PgExchange {
            statement: c.statement,
            database: database.clone(),
            returned_rows,
            sqlstate: c.sqlstate,
            copy_bytes: c.copy_bytes,
            extended: c.extended,
            response_incomplete: incomplete && response.is_some(),
            no_response: response.is_none(),
        }),
    });
}
