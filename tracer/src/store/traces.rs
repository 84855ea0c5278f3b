//! The store's data: released spans grouped by trace id, within caps on
//! spans, traces and estimated bytes. When a cap is passed the oldest trace
//! (by arrival of its first span) goes first, whole, so what remains is
//! always complete recent history rather than fragments of every trace.
//! Pure data structure: no locks, no clock, no I/O (unit-tested alone).

use foldhash::{HashMap, HashMapExt, HashSet};
use std::{collections::VecDeque, sync::Arc};

use crate::span::{Key, Span, SpanId, SpanKind, Status, TraceId, Value};

/// Caps of the store (from `StoreConfig`, each at least 1).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_spans: usize,
    pub max_traces: usize,
    pub max_bytes: usize,
    pub max_spans_per_trace: usize,
}

/// One trace as stored: its spans in arrival order and running figures.
#[derive(Debug)]
pub struct Trace {
    pub id: TraceId,
    pub spans: Vec<Arc<Span>>,
    pub bytes: usize,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
}

impl Trace {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// The span the trace starts from: one without a parent in the trace
    /// (absent, or not stored), the earliest such; else the earliest span.
    pub fn root(&self) -> &Arc<Span> {
        let ids: HashSet<SpanId> = self.spans.iter().map(|s| s.span_id).collect();
        let is_root = |s: &&Arc<Span>| s.parent_span_id.is_none_or(|p| !ids.contains(&p));
        let earliest =
            |a: &&Arc<Span>, b: &&Arc<Span>| a.start_ns.cmp(&b.start_ns).then(a.end_ns.cmp(&b.end_ns).reverse());
        self.spans
            .iter()
            .filter(is_root)
            .min_by(earliest)
            .or_else(|| self.spans.iter().min_by(earliest))
            .expect("a stored trace has at least one span")
    }

    /// Service names of the trace, in order of their first span's start.
    pub fn services(&self) -> Vec<String> {
        let mut by_start: Vec<&Arc<Span>> = self.spans.iter().collect();
        by_start.sort_by_key(|s| s.start_ns);
        let mut out: Vec<String> = Vec::new();
        for s in by_start {
            if !out.contains(&s.service.name) {
                out.push(s.service.name.clone());
            }
        }
        out
    }

    /// The spans as a tree, depth first, children by start time: the order
    /// of a waterfall. Each with its depth. A span whose parent is not in
    /// the trace is a root; a cycle (never made by the linker) is cut.
    pub fn tree(&self) -> Vec<(usize, &Arc<Span>)> {
        let index: HashMap<SpanId, usize> = self.spans.iter().enumerate().map(|(i, s)| (s.span_id, i)).collect();
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, s) in self.spans.iter().enumerate() {
            match s.parent_span_id.and_then(|p| index.get(&p)).filter(|p| **p != i) {
                Some(p) => children.entry(*p).or_default().push(i),
                None => roots.push(i),
            }
        }
        let by_start =
            |v: &mut Vec<usize>| v.sort_by_key(|i| (self.spans[*i].start_ns, std::cmp::Reverse(self.spans[*i].end_ns)));
        by_start(&mut roots);
        children.values_mut().for_each(by_start);
        let mut out = Vec::with_capacity(self.spans.len());
        let mut seen = vec![false; self.spans.len()];
        // Spans left unvisited are on a cycle: start again from the earliest.
        let mut rest: Vec<usize> = (0..self.spans.len()).collect();
        by_start(&mut rest);
        for start in roots.into_iter().chain(rest) {
            let mut stack = vec![(start, 0)];
            while let Some((i, depth)) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                out.push((depth, &self.spans[i]));
                if let Some(c) = children.get(&i) {
                    stack.extend(c.iter().rev().map(|c| (*c, depth + 1)));
                }
            }
        }
        out
    }
}

/// What GET /api/traces filters on. Empty strings are no filter.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// A span of this service, or a span whose peer is this node.
    pub service: Option<String>,
    /// With `server`: one span on the edge client -> server (see `on_edge`).
    pub client: Option<String>,
    pub server: Option<String>,
    /// A span whose http.route (or name) is this.
    pub route: Option<String>,
    /// Some(true): traces with an error span; Some(false): without.
    pub error: Option<bool>,
    pub min_duration_ns: u64,
    pub limit: usize,
}

impl Filter {
    fn matches(&self, t: &Trace) -> bool {
        if self.error.is_some_and(|e| e != t.error) || t.duration_ns() < self.min_duration_ns {
            return false;
        }
        let any = |f: &dyn Fn(&Span) -> bool| t.spans.iter().any(|s| f(s));
        if let Some(svc) = &self.service
            && !any(&|s| s.service.name == *svc || peer_is(s, svc))
        {
            return false;
        }
        if let Some(r) = &self.route
            && !any(&|s| s.name == *r || s.attr(&Key::HttpRoute).is_some_and(|v| v.is_text(r)))
        {
            return false;
        }
        if (self.client.is_some() || self.server.is_some())
            && !any(&|s| on_edge(s, self.client.as_deref(), self.server.as_deref()))
        {
            return false;
        }
        true
    }
}

/// A span lies on the edge client -> server (either side may be open):
/// a CLIENT span of service `client` whose peer is `server`, or a SERVER
/// span of service `server` whose peer is `client`.
pub fn on_edge(s: &Span, client: Option<&str>, server: Option<&str>) -> bool {
    let (own, other) = match s.kind {
        SpanKind::Client | SpanKind::Producer => (client, server),
        SpanKind::Server | SpanKind::Consumer => (server, client),
    };
    own.is_none_or(|n| s.service.name == n) && other.is_none_or(|n| peer_is(s, n))
}

/// Whether the other end of the span can be called `name` on the service
/// map: the traced peer's service name; for an untraced peer, the virtual
/// node's name, as `address:port` or `address` (server.address, then
/// network.peer.address, then tracer.peer.name on a CLIENT span; client.address, then
/// network.peer.address on a SERVER span, whose port is ephemeral).
pub fn peer_is(s: &Span, name: &str) -> bool {
    if let Some(p) = &s.peer_service {
        return p.name == name;
    }
    let (host, port) = match name.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.trim_start_matches('[').trim_end_matches(']'), p.parse::<i64>().ok())
        }
        _ => (name, None),
    };
    let str_is = |k: Key, v: &str| s.attr(&k).is_some_and(|x| x.is_text(v));
    let int_is = |k: Key, v: Option<i64>| v.is_none_or(|v| s.attr_int(&k) == Some(v));
    match s.kind {
        SpanKind::Client | SpanKind::Producer => {
            (str_is(Key::ServerAddress, host) && int_is(Key::ServerPort, port))
                || (str_is(Key::NetworkPeerAddress, host) && int_is(Key::NetworkPeerPort, port))
                // The topology's node of an address a DNS answer named.
                || (str_is(Key::TracerPeerName, host) && int_is(Key::NetworkPeerPort, port))
        }
        SpanKind::Server | SpanKind::Consumer => {
            port.is_none() && (str_is(Key::ClientAddress, host) || str_is(Key::NetworkPeerAddress, host))
        }
    }
}

/// The name the other end of a span goes by: the traced peer's service,
/// else `server.address:server.port` (CLIENT) or `client.address` (SERVER).
pub fn peer_name(s: &Span) -> Option<String> {
    if let Some(p) = &s.peer_service {
        return Some(p.name.clone());
    }
    let str_of = |k: Key| s.attr_text(&k).map(|v| v.into_owned());
    match s.kind {
        SpanKind::Client | SpanKind::Producer => {
            let host = str_of(Key::ServerAddress)?;
            Some(match s.attr_int(&Key::ServerPort) {
                Some(p) if host.contains(':') => format!("[{host}]:{p}"),
                Some(p) => format!("{host}:{p}"),
                _ => host,
            })
        }
        SpanKind::Server | SpanKind::Consumer => str_of(Key::ClientAddress),
    }
}

/// Estimated heap and inline bytes of one span, for the byte cap. The
/// service is shared by every span of its process and not counted.
pub fn span_bytes(s: &Span) -> usize {
    let value = |v: &Value| match v {
        Value::Str(x) => x.len(),
        // Shared with every span of its transaction.
        Value::Shared(_) | Value::Int(_) | Value::Ip(_) => 0,
        Value::StrArray(a) => a.iter().map(|x| x.len() + size_of::<String>()).sum(),
    };
    let attrs: usize = s
        .attributes
        .iter()
        .map(|(k, v)| size_of::<(Key, Value)>() + if let Key::Other(k) = k { k.len() } else { 0 } + value(v))
        .sum();
    size_of::<Span>() + size_of::<Arc<Span>>() + s.name.len() + s.comm.len() + attrs
}

/// Recent traces within `Limits`, with counts of what was let go.
#[derive(Debug)]
pub struct Traces {
    limits: Limits,
    map: HashMap<TraceId, Trace>,
    /// Trace ids by arrival of their first span, oldest first.
    order: VecDeque<TraceId>,
    spans: usize,
    bytes: usize,
    /// Traces (and their spans) evicted to stay within the caps.
    pub evicted_traces: u64,
    pub evicted_spans: u64,
    /// Spans refused because their trace already held max_spans_per_trace.
    pub refused_spans: u64,
}

impl Traces {
    pub fn new(limits: Limits) -> Self {
        let max_spans = limits.max_spans.max(1);
        let limits = Limits {
            max_spans,
            max_traces: limits.max_traces.max(1),
            max_bytes: limits.max_bytes.max(1),
            // One trace may not push out everything else.
            max_spans_per_trace: limits.max_spans_per_trace.clamp(1, max_spans),
        };
        Traces {
            limits,
            map: HashMap::new(),
            order: VecDeque::new(),
            spans: 0,
            bytes: 0,
            evicted_traces: 0,
            evicted_spans: 0,
            refused_spans: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn span_count(&self) -> usize {
        self.spans
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Add a released span to its trace, then evict the oldest traces until
    /// every cap holds again.
    pub fn insert(&mut self, span: Arc<Span>) {
        let size = span_bytes(&span);
        match self.map.get_mut(&span.trace_id) {
            Some(t) if t.spans.len() >= self.limits.max_spans_per_trace => {
                self.refused_spans += 1;
                return;
            }
            Some(t) => {
                t.start_ns = t.start_ns.min(span.start_ns);
                t.end_ns = t.end_ns.max(span.end_ns);
                t.error |= span.status == Status::Error;
                t.bytes += size;
                t.spans.push(span);
            }
            None => {
                self.order.push_back(span.trace_id);
                let t = Trace {
                    id: span.trace_id,
                    start_ns: span.start_ns,
                    end_ns: span.end_ns,
                    error: span.status == Status::Error,
                    bytes: size,
                    spans: vec![span],
                };
                self.map.insert(t.id, t);
            }
        }
        self.spans += 1;
        self.bytes += size;
        while self.spans > self.limits.max_spans
            || self.bytes > self.limits.max_bytes
            || self.map.len() > self.limits.max_traces
        {
            let Some(id) = self.order.pop_front() else { break };
            if let Some(t) = self.map.remove(&id) {
                self.spans -= t.spans.len();
                self.bytes -= t.bytes;
                self.evicted_traces += 1;
                self.evicted_spans += t.spans.len() as u64;
            }
        }
    }

    pub fn get(&self, id: &TraceId) -> Option<&Trace> {
        self.map.get(id)
    }

    /// Traces matching `f`, most recent arrival first, at most `f.limit`.
    pub fn query<'a>(&'a self, f: &'a Filter) -> impl Iterator<Item = &'a Trace> + 'a {
        self.order.iter().rev().filter_map(|id| self.map.get(id)).filter(|t| f.matches(t)).take(f.limit)
    }
}
