//! Chain linking: parent and trace id of every span, from evidence the agent
//! sees, without touching traffic. Rules, in order:
//!
//! 1. A request that carried a W3C traceparent keeps its trace id and its
//!    parent (applications already instrumented stay connected).
//! 2. Within a process: a CLIENT span whose request was written by the thread
//!    that read an inbound request (SERVER span), after reading it and before
//!    starting its response, is that SERVER span's child — only when that
//!    SERVER span was alone on the thread from its first byte to the call
//!    (event loops serving several requests at once are left unlinked: a
//!    wrong parent is worse than none), and only in processes whose threads
//!    are evidence: never by thread in Go (goroutines move between threads;
//!    told from the executable, `crate::runtimes`), where the goroutine that
//!    answered the request and the call's goroutine (its writeLoop credited
//!    to the caller) take the threads' place (`threads::task`), nor in a
//!    process whose spans showed
//!    a request moving between threads (read on one, answered on another) or
//!    more than one thread serving overlapping requests (a multi-threaded
//!    event loop: tokio, Netty), from the first such span on.
//! 3. Between processes on one node: a SERVER span's parent is the CLIENT span
//!    of its peer socket, found by the connection (server address, client
//!    address) and the TCP sequence number of the request's first byte,
//!    which both ends see.
//! 4. Across nodes: the same key derives the CLIENT span's id on one node and
//!    the SERVER span's parent id on the other, so two agents agree without
//!    talking. A root CLIENT span also derives its trace id from the key, so
//!    a two-hop trace joins across nodes; deeper cross-node chains keep the
//!    parent link but get the server side's trace id (limit, see README).
//!
//! Spans are held for a bounded time after they end (parents end after their
//! children) and released with their links resolved; a full buffer releases
//! its oldest spans early (counted).

use foldhash::{HashMap, HashMapExt};
use std::{collections::VecDeque, net::SocketAddr, sync::Arc, time::Duration};

use serde::Deserialize;

use super::{
    content::{self, Content},
    threads::{self, Id, Threads, Verdict},
};
use crate::{
    business::Transaction,
    identity::Service,
    span::{Key, Span, SpanId, SpanKind, TraceId, Value},
};

/// Names the business transaction an entry SERVER span starts: the first
/// SERVER span along its chain (its callers on this node, if any, are
/// clients serving no request that has a transaction: curl, a load
/// generator, an unnamed entry). The linker carries the name to every span
/// of the chain below. `crate::business::Matcher` is the agent's.
pub trait Classify: Send {
    fn classify(&mut self, entry: &Span) -> Option<Arc<Transaction>>;
}

type Txn = Option<Arc<Transaction>>;

/// `[chain]` config section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Link spans into call chains. Off: spans are released at once, each
    /// its own trace unless a traceparent says otherwise. Default true.
    pub enabled: bool,
    /// How long a span waits after its end for its parents. Default 2000 ms.
    pub hold_ms: u64,
    /// Spans held at most; past it the oldest are released early (counted).
    /// Default 30000 (about 75 MiB; 15000 spans/s at the default hold).
    pub max_spans: usize,
    /// A SERVER span whose client is not on this node names the client's
    /// derived span id as its parent (rule 4). Default true. Turn off when no
    /// other node runs the agent, so such spans stay roots.
    pub remote_parent: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig { enabled: true, hold_ms: 2000, max_spans: 30_000, remote_parent: true }
    }
}

/// The connection and request a span is about, as both ends see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub seq: u32,
}

impl PeerKey {
    pub fn of(span: &Span) -> Option<PeerKey> {
        let seq = span.request_seq?;
        Some(match span.kind {
            SpanKind::Server | SpanKind::Consumer => PeerKey { server: span.local, client: span.remote, seq },
            SpanKind::Client | SpanKind::Producer => PeerKey { server: span.remote, client: span.local, seq },
        })
    }

    /// A stable 64-bit mix of the key (splitmix64 over its bytes). Stable
    /// across agent builds and versions: two agents must derive equal ids.
    fn hash(&self, domain: u64) -> u64 {
        let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ domain;
        let mut mix = |v: u64| {
            h = (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 31;
        };
        for a in [self.server, self.client] {
            match a.ip() {
                std::net::IpAddr::V4(ip) => mix(u64::from(ip.to_bits())),
                std::net::IpAddr::V6(ip) => {
                    let v = ip.to_canonical();
                    match v {
                        std::net::IpAddr::V4(ip) => mix(u64::from(ip.to_bits())),
                        std::net::IpAddr::V6(ip) => {
                            let b = ip.to_bits();
                            mix((b >> 64) as u64);
                            mix(b as u64);
                        }
                    }
                }
            }
            mix(u64::from(a.port()));
        }
        mix(u64::from(self.seq));
        h ^= h >> 29;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 32)
    }

    /// The CLIENT span's id (and the SERVER span's parent).
    pub fn client_span_id(&self) -> SpanId {
        nonzero8(self.hash(1))
    }

    pub fn server_span_id(&self) -> SpanId {
        nonzero8(self.hash(2))
    }

    /// Trace id of a trace whose root is this request's CLIENT span.
    pub fn trace_id(&self) -> TraceId {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&self.hash(3).to_be_bytes());
        t[8..].copy_from_slice(&self.hash(4).to_be_bytes());
        if t == [0; 16] {
            t[15] = 1;
        }
        t
    }
}

fn nonzero8(v: u64) -> SpanId {
    if v == 0 { 1u64.to_be_bytes() } else { v.to_be_bytes() }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Released before their hold ended because the buffer was full.
    pub released_early: u64,
    /// Parent found by rule 2 (same thread), 3 (peer socket on this node),
    /// 4 (derived remote parent).
    pub thread_links: u64,
    pub peer_links: u64,
    pub remote_links: u64,
    /// CLIENT spans left unlinked because several requests were in flight on
    /// their thread.
    pub ambiguous: u64,
    /// CLIENT spans left unlinked because their process's threads are no
    /// evidence (Go, requests moving between threads, several event loops).
    pub multiplexed: u64,
    /// Parent found by rule 2b (an identifier of the request repeated in
    /// exactly one call).
    pub content_links: u64,
}

impl LinkCounters {
    /// Each counter with its `rule` label on /metrics (one list, so a name
    /// never lands on another counter's value).
    pub fn by_rule(&self) -> [(&'static str, u64); 7] {
        [
            ("thread", self.thread_links),
            ("content", self.content_links),
            ("peer", self.peer_links),
            ("remote", self.remote_links),
            ("ambiguous", self.ambiguous),
            ("multiplexed", self.multiplexed),
            ("released_early", self.released_early),
        ]
    }
}

/// What this node saw of one request (a [`PeerKey`]): the CLIENT span still
/// held, and the service at each end, so a span learns which service is at
/// the other end (topology edges) even after that end was released.
#[derive(Default)]
struct Peer {
    client: Option<Id>,
    client_service: Option<Arc<Service>>,
    server_service: Option<Arc<Service>>,
}

/// A held span and when its hold ends; `span` is None once released.
struct Held {
    at: u64,
    span: Option<Span>,
}

pub struct Linker {
    cfg: LinkConfig,
    /// Held spans in arrival order; ids are consecutive, `first` is the id
    /// of `held[0]`. Arrival order is release order (hold deadlines grow
    /// with arrival), so spans leave from the front and a lookup by id is an
    /// index, not a hash.
    held: VecDeque<Held>,
    first: Id,
    live: usize,
    peers: HashMap<PeerKey, Peer>,
    peers_order: VecDeque<PeerKey>,
    /// What each thread served (rule 2).
    threads: Threads,
    /// Identifiers in the paths of held and recent spans (rule 2b).
    content: Content,
    /// Trace ids already fixed (span id -> trace id), so later children and
    /// parents agree; bounded with the buffer.
    /// With the transaction of each, once known.
    fixed: HashMap<SpanId, (TraceId, Txn)>,
    fixed_order: VecDeque<SpanId>,
    pub counters: LinkCounters,
    classify: Option<Box<dyn Classify>>,
}

impl Linker {
    pub fn new(cfg: LinkConfig) -> Self {
        Linker {
            cfg,
            held: VecDeque::new(),
            first: 0,
            live: 0,
            peers: HashMap::new(),
            peers_order: VecDeque::new(),
            threads: Threads::new(),
            content: Content::new(),
            fixed: HashMap::new(),
            fixed_order: VecDeque::new(),
            counters: LinkCounters::default(),
            classify: None,
        }
    }

    /// Entry spans get their transaction from `c`, and their chains with them.
    pub fn with_classifier(mut self, c: Option<Box<dyn Classify>>) -> Self {
        self.classify = c;
        self
    }

    /// Without linking every SERVER span is an entry: name its transaction.
    pub fn classify_unlinked(&mut self, span: &mut Span) {
        if span.kind == SpanKind::Server
            && let Some(c) = &mut self.classify
        {
            span.business_entry = true;
            span.transaction = c.classify(span);
            mark(span);
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Rule 2 is not applied to `pid` (its runtime multiplexes tasks over
    /// threads) from now on.
    pub fn mark_multiplexed(&mut self, pid: u32) {
        self.threads.mark_multiplexed(pid);
    }

    pub fn is_multiplexed(&self, pid: u32) -> bool {
        self.threads.is_multiplexed(pid)
    }

    fn get(&self, id: Id) -> Option<&Span> {
        let i = usize::try_from(id.checked_sub(self.first)?).ok()?;
        self.held.get(i)?.span.as_ref()
    }

    fn get_mut(&mut self, id: Id) -> Option<&mut Span> {
        let i = usize::try_from(id.checked_sub(self.first)?).ok()?;
        self.held.get_mut(i)?.span.as_mut()
    }

    /// Take a finished span; spans pushed to `out` are released early when
    /// the buffer is full.
    pub fn insert(&mut self, span: Span, out: &mut Vec<Span>) {
        let end = span.end_ns;
        self.insert_at(span, end, out);
    }

    /// Take a finished span that reached the linker at `now_ns`. It is held
    /// from whichever is later, its end or its arrival: when the pipeline
    /// runs behind (a loaded machine), its parents still get the full hold.
    pub fn insert_at(&mut self, mut span: Span, now_ns: u64, out: &mut Vec<Span>) {
        let key = PeerKey::of(&span);
        let id = self.first + self.held.len() as Id;
        if let Some(k) = key {
            span.span_id = match span.kind {
                SpanKind::Client | SpanKind::Producer => k.client_span_id(),
                SpanKind::Server | SpanKind::Consumer => k.server_span_id(),
            };
            let peer = match self.peers.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    self.peers_order.push_back(k);
                    e.insert(Peer::default())
                }
            };
            match span.kind {
                SpanKind::Client | SpanKind::Producer => {
                    peer.client = Some(id);
                    peer.client_service.get_or_insert_with(|| span.service.clone());
                }
                SpanKind::Server | SpanKind::Consumer => {
                    peer.server_service.get_or_insert_with(|| span.service.clone());
                }
            }
            while self.peers_order.len() > self.cfg.max_spans.max(1024) {
                if let Some(old) = self.peers_order.pop_front() {
                    self.peers.remove(&old);
                }
            }
        }
        self.threads.insert(&span, id);
        self.content.insert(&span, id);
        let hold = Duration::from_millis(self.cfg.hold_ms).as_nanos() as u64;
        let at = span.end_ns.max(now_ns).saturating_add(hold);
        self.held.push_back(Held { at, span: Some(span) });
        self.live += 1;
        while self.live > self.cfg.max_spans {
            let Some(old) = self.front_live() else { break };
            self.counters.released_early += 1;
            if let Some(s) = self.release(old, now_ns) {
                out.push(s);
            }
        }
    }

    /// Id of the oldest span still held, dropping released slots before it.
    fn front_live(&mut self) -> Option<Id> {
        while let Some(h) = self.held.front() {
            if h.span.is_some() {
                return Some(self.first);
            }
            self.held.pop_front();
            self.first += 1;
        }
        None
    }

    /// Release every span whose hold ended by `now_ns` (all with u64::MAX).
    pub fn release_due(&mut self, now_ns: u64, out: &mut Vec<Span>) {
        self.threads.sweep(now_ns);
        // Hold deadlines are max(end, arrival) + hold and arrivals only grow,
        // so the buffer is in deadline order but for spans that ended after
        // they arrived (clock skew between CPUs, microseconds): stopping at
        // the first span not due delays those by as much, and keeps this
        // proportional to what is released, not to what is held.
        while let Some(id) = self.front_live() {
            if self.held[0].at > now_ns {
                break;
            }
            if let Some(s) = self.release(id, now_ns) {
                out.push(s);
            }
        }
    }

    fn release(&mut self, id: Id, now_ns: u64) -> Option<Span> {
        let (trace, parent, txn) = self.resolve(id, 0);
        let i = usize::try_from(id.checked_sub(self.first)?).ok()?;
        let mut span = self.held.get_mut(i)?.span.take()?;
        self.live -= 1;
        span.trace_id = trace;
        span.parent_span_id = parent;
        span.transaction = txn.clone();
        mark(&mut span);
        if let Some(k) = PeerKey::of(&span)
            && let Some(peer) = self.peers.get_mut(&k)
        {
            match span.kind {
                SpanKind::Client | SpanKind::Producer => {
                    if peer.client == Some(id) {
                        peer.client = None;
                    }
                    span.peer_service = peer.server_service.clone();
                }
                SpanKind::Server | SpanKind::Consumer => span.peer_service = peer.client_service.clone(),
            }
        }
        if span.kind == SpanKind::Server {
            self.threads.release(&span, id);
        }
        self.content.release(&span, id, now_ns);
        self.fix(span.span_id, trace, txn);
        Some(span)
    }

    fn fix(&mut self, span: SpanId, trace: TraceId, txn: Txn) {
        if self.fixed.insert(span, (trace, txn)).is_none() {
            self.fixed_order.push_back(span);
        }
        while self.fixed_order.len() > self.cfg.max_spans.max(1024) {
            if let Some(old) = self.fixed_order.pop_front() {
                self.fixed.remove(&old);
            }
        }
    }

    /// Trace id, parent and business transaction of a held span.
    fn resolve(&mut self, id: Id, depth: u32) -> (TraceId, Option<SpanId>, Txn) {
        let Some(span) = self.get(id) else { return ([0; 16], None, None) };
        if let Some((t, txn)) = self.fixed.get(&span.span_id) {
            return (*t, span.parent_span_id, txn.clone());
        }
        let key = PeerKey::of(span);
        let (kind, own_trace, span_id) = (span.kind, span.trace_id, span.span_id);
        if depth > 32 {
            return (own_trace, span.parent_span_id, None);
        }
        if span.context_from_header {
            let parent = span.parent_span_id;
            // The caller's context came in the request; the transaction is
            // still the on-node caller's, else this span starts one.
            let txn = match (kind, key) {
                (SpanKind::Server, Some(k)) => {
                    let upstream = match self.peers.get(&k).and_then(|p| p.client) {
                        Some(client) => self.resolve(client, depth + 1).2,
                        None => self.fixed.get(&k.client_span_id()).and_then(|(_, txn)| txn.clone()),
                    };
                    upstream.or_else(|| self.entry(id))
                }
                (SpanKind::Server, None) => self.entry(id),
                _ => None,
            };
            let trace = own_trace;
            self.fix(span_id, trace, txn.clone());
            if let Some(s) = self.get_mut(id) {
                s.transaction = txn.clone();
            }
            return (trace, parent, txn);
        }
        let (trace, parent, txn) = match kind {
            SpanKind::Server | SpanKind::Consumer => match key {
                Some(k) => match self.peers.get(&k).and_then(|p| p.client) {
                    // Rule 3: the client end is on this node.
                    Some(client) => {
                        self.counters.peer_links += 1;
                        let (t, _, txn) = self.resolve(client, depth + 1);
                        (t, Some(k.client_span_id()), txn.or_else(|| self.entry(id)))
                    }
                    // Rule 3, the client end already released: its trace
                    // id was fixed then (a SERVER span can end, or arrive,
                    // after its CLIENT span).
                    None if let Some((t, txn)) = self.fixed.get(&k.client_span_id()).cloned() => {
                        self.counters.peer_links += 1;
                        (t, Some(k.client_span_id()), txn.or_else(|| self.entry(id)))
                    }
                    // Rule 4: the client is elsewhere (or not traced).
                    None if self.cfg.remote_parent => {
                        self.counters.remote_links += 1;
                        (k.trace_id(), Some(k.client_span_id()), self.entry(id))
                    }
                    None => (k.trace_id(), None, self.entry(id)),
                },
                None => (own_trace, None, self.entry(id)),
            },
            SpanKind::Client | SpanKind::Producer => match self.call_parent(id) {
                Some(server) => {
                    let parent_id = self.get(server).map_or([0; 8], |s| s.span_id);
                    let (t, _, txn) = self.resolve(server, depth + 1);
                    (t, Some(parent_id), txn)
                }
                None => (key.map_or(own_trace, |k| k.trace_id()), None, None),
            },
        };
        self.fix(span_id, trace, txn.clone());
        if let Some(s) = self.get_mut(id) {
            s.trace_id = trace;
            s.parent_span_id = parent;
            s.transaction = txn.clone();
        }
        (trace, parent, txn)
    }

    /// The held span `id` has no transaction from upstream: when a SERVER
    /// span, it is an entry (marked so) and its transaction is named.
    fn entry(&mut self, id: Id) -> Txn {
        let c = self.classify.as_mut()?;
        let i = usize::try_from(id.checked_sub(self.first)?).ok()?;
        let span = self.held.get_mut(i)?.span.as_mut()?;
        if span.kind != SpanKind::Server {
            return None;
        }
        span.business_entry = true;
        c.classify(span)
    }

    /// Rules 2 and 2b: the request a call belongs to, by its thread or by an
    /// identifier it repeats. When both speak they must agree.
    fn call_parent(&mut self, id: Id) -> Option<Id> {
        let by_thread = self.thread_parent(id);
        let by_content = match self.get(id) {
            Some(c) => self.content.parent(id, c),
            None => content::Verdict::None,
        };
        match (by_thread, by_content) {
            (Some(t), content::Verdict::Parent(c)) if t != c => {
                self.counters.ambiguous += 1;
                None
            }
            (Some(t), _) => {
                self.counters.thread_links += 1;
                Some(t)
            }
            (None, content::Verdict::Parent(c)) => {
                self.counters.content_links += 1;
                Some(c)
            }
            (None, _) => None,
        }
    }

    /// Rule 2: the SERVER span in flight on the client's thread when it sent
    /// its request, if it was alone there from its first byte to the call.
    fn thread_parent(&mut self, id: Id) -> Option<Id> {
        let c = self.get(id)?;
        let (pid, task, call) = (c.pid?, threads::task(c), c.start_ns);
        let verdict =
            self.threads.parent(pid, task, call, |sid| self.get(sid).map(|s| s.response_first_ns.unwrap_or(s.end_ns)));
        match verdict {
            Verdict::Parent(sid) => Some(sid),
            Verdict::None => None,
            Verdict::Ambiguous => {
                self.counters.ambiguous += 1;
                None
            }
            Verdict::Multiplexed => {
                self.counters.multiplexed += 1;
                None
            }
        }
    }
}

/// The transaction's name as an attribute, for every exporter (shared: no
/// copy per span).
fn mark(span: &mut Span) {
    if let Some(t) = &span.transaction {
        span.attributes.push((Key::BusinessTransactionName, Value::Shared(t.name.clone())));
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
