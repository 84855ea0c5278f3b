//! Rule 2b of `link`: evidence carried by the bytes. When a request's path
//! holds an identifier (an order number, a UUID, a hash, a token) and one
//! call of the same process repeats it while that request is in flight, the
//! call belongs to that request, whatever thread or task wrote it: the rule
//! for runtimes whose threads are no evidence (Go, event loops, thread-pool
//! hand-offs). Unambiguous or nothing:
//!
//! - only high-entropy identifiers count (numbers of 6+ digits, UUIDs, hex of
//!   8+, long base64-like tokens, mixed codes, e-mails; the route
//!   templater's `{id}` values minus short numbers and dates), so that an id
//!   is unlikely to appear in an unrelated request, and the whole request
//!   target (path and query) when it has two segments or a query: what a
//!   reverse proxy repeats upstream;
//! - the id is in exactly one of the process's requests in flight (read,
//!   response not started) when the call was written, and
//! - in exactly one of the process's calls written while that request was in
//!   flight: a request that calls twice with its id, or two requests with
//!   the same id, link nothing.
//!
//! Tokens are hashes held in memory only; nothing of them is exported.
//! Bounded: entries live until their span is released plus `RETAIN_NS`
//! (past `MAX_ENTRIES` the oldest go sooner); what is forgotten moves a
//! horizon, and a request that started before it is never a parent (what
//! was forgotten could have made it ambiguous).

use foldhash::{HashMap, HashMapExt};
use std::{collections::VecDeque, hash::BuildHasher};

use super::threads::Id;
use crate::{
    protocols::http1::route::is_identifier,
    span::{Key, Span, SpanKind, Value},
};

/// Identifiers taken from one path at most (plus its whole target).
const MAX_TOKENS: usize = 4;
/// Keeps a whole target's hash apart from a segment's.
const TARGET_TOKEN: u8 = 0;
/// How long a released span's tokens still count for ambiguity.
const RETAIN_NS: u64 = 5_000_000_000;
/// Entries of released spans remembered at most.
const MAX_ENTRIES: usize = 200_000;
/// Spans remembered per identifier of a process: one seen more often than
/// this within the retention is no evidence of one request (and its lists
/// stay short, so insert and release are constant time).
const MAX_PER_TOKEN: usize = 16;

#[derive(Clone, Copy)]
struct Entry {
    id: Id,
    kind: SpanKind,
    start: u64,
    /// Requests: when the response started (in flight until then).
    served_until: u64,
    held: bool,
}

#[derive(Default)]
struct Spans {
    entries: Vec<Entry>,
    /// More than MAX_PER_TOKEN spans held the identifier: never evidence
    /// until all of them are forgotten.
    common: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Parent(Id),
    /// No identifier, or none shared with a request in flight.
    None,
    Ambiguous,
}

pub struct Content {
    /// (pid, token hash) -> spans of that process whose path holds it.
    index: HashMap<(u32, u64), Spans>,
    /// The tokens of each held span that has any (computed once).
    held: HashMap<Id, (u32, Vec<u64>)>,
    /// Released entries, oldest first: (forget at, pid, token, id).
    released: VecDeque<(u64, u32, u64, Id)>,
    /// Latest `served_until` of anything forgotten early.
    horizon: u64,
    hasher: foldhash::quality::FixedState,
}

impl Default for Content {
    fn default() -> Self {
        Self::new()
    }
}

impl Content {
    pub fn new() -> Self {
        Content {
            index: HashMap::new(),
            held: HashMap::new(),
            released: VecDeque::new(),
            horizon: 0,
            hasher: foldhash::quality::FixedState::with_seed(0x7e57_c0de),
        }
    }

    fn tokens(&self, span: &Span) -> Vec<u64> {
        let Some(Value::Str(path)) = span.attr(&Key::UrlPath) else { return Vec::new() };
        let mut out: Vec<u64> = Vec::new();
        for seg in path.split('/').filter(|s| is_identifier(s)) {
            let h = self.hasher.hash_one(seg);
            if !out.contains(&h) {
                out.push(h);
            }
            if out.len() == MAX_TOKENS {
                break;
            }
        }
        // The whole target, as a proxy repeats it upstream (nginx, any
        // reverse proxy): evidence when it is specific (two segments or a
        // query), under the same uniqueness conditions as an identifier.
        let query = match span.attr(&Key::UrlQuery) {
            Some(Value::Str(q)) => q.as_ref(),
            _ => "",
        };
        if path.split('/').filter(|s| !s.is_empty()).count() >= 2 || !query.is_empty() {
            out.push(self.hasher.hash_one((TARGET_TOKEN, path.as_ref(), query)));
        }
        out
    }

    pub fn insert(&mut self, span: &Span, id: Id) {
        let Some(pid) = span.pid else { return };
        let served_until = match span.kind {
            SpanKind::Server | SpanKind::Consumer => span.response_first_ns.unwrap_or(span.end_ns),
            SpanKind::Client | SpanKind::Producer => span.start_ns,
        };
        let e = Entry { id, kind: span.kind, start: span.start_ns, served_until, held: true };
        let tokens = self.tokens(span);
        if tokens.is_empty() {
            return;
        }
        for t in &tokens {
            let v = self.index.entry((pid, *t)).or_default();
            if v.entries.len() < MAX_PER_TOKEN {
                v.entries.push(e);
            } else {
                v.common = true;
            }
        }
        self.held.insert(id, (pid, tokens));
    }

    /// The span left the linker; its tokens still count for a while.
    pub fn release(&mut self, span: &Span, id: Id, now_ns: u64) {
        let Some((pid, tokens)) = self.held.remove(&id) else {
            self.prune(now_ns);
            return;
        };
        for t in tokens {
            if let Some(v) = self.index.get_mut(&(pid, t))
                && let Some(e) = v.entries.iter_mut().find(|e| e.id == id)
            {
                e.held = false;
                self.released.push_back((now_ns.max(span.end_ns).saturating_add(RETAIN_NS), pid, t, id));
            }
        }
        self.prune(now_ns);
    }

    fn prune(&mut self, now_ns: u64) {
        while let Some(&(at, pid, t, id)) = self.released.front() {
            let early = self.released.len() > MAX_ENTRIES;
            if at > now_ns && !early {
                break;
            }
            self.released.pop_front();
            if let Some(v) = self.index.get_mut(&(pid, t)) {
                if let Some(i) = v.entries.iter().position(|e| e.id == id) {
                    let e = v.entries.swap_remove(i);
                    self.horizon = self.horizon.max(e.served_until.max(e.start));
                }
                if v.entries.is_empty() {
                    self.index.remove(&(pid, t));
                }
            }
        }
    }

    /// The request of `call` (a held CLIENT span) by the identifiers of its
    /// path; only a request still held can be named.
    pub fn parent(&self, id: Id, call: &Span) -> Verdict {
        let Some((pid, tokens)) = self.held.get(&id) else { return Verdict::None };
        let (pid, at) = (*pid, call.start_ns);
        let mut parent: Option<Entry> = None;
        for &t in tokens {
            let Some(spans) = self.index.get(&(pid, t)) else { continue };
            if spans.common {
                return Verdict::Ambiguous;
            }
            let v = &spans.entries;
            let in_flight = |e: &&Entry| e.kind == SpanKind::Server && e.start <= at && at <= e.served_until;
            let mut requests = v.iter().filter(in_flight);
            let Some(r) = requests.next() else { continue };
            // A request that started before something was forgotten may
            // have overlapped it: no answer rather than a guess.
            if requests.next().is_some() || r.start <= self.horizon {
                return Verdict::Ambiguous;
            }
            // Exactly one call of the process repeats the id while that
            // request was in flight: this one.
            let calls =
                v.iter().filter(|e| e.kind == SpanKind::Client && r.start <= e.start && e.start <= r.served_until);
            if calls.count() != 1 {
                return Verdict::Ambiguous;
            }
            match parent {
                Some(p) if p.id != r.id => return Verdict::Ambiguous,
                _ => parent = Some(*r),
            }
        }
        match parent {
            Some(p) if p.held => Verdict::Parent(p.id),
            Some(_) => Verdict::None,
            None => Verdict::None,
        }
    }
}
