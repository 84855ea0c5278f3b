//! The service graph: nodes (services, and virtual nodes for peers that are
//! not traced processes) and directed edges client -> server, each with
//! cumulative totals (for /metrics and OTLP) and rolling windows (for the
//! API). In: requests and TCP events whose two ends are already named (see
//! `aggregate`). Out: edges, nodes, window sums.
//!
//! Bounded: at most `max_nodes` nodes and `max_edges` edges. A new node past
//! the cap is replaced by the node `__overflow__`; a new edge past the cap
//! is counted on the edge `__overflow__ -> __overflow__` (exempt from the
//! caps, so nothing is lost from the totals); both are counted in
//! `tracer_topology_overflow_total{cap}`. Edges idle for the longest window
//! (1 h) are dropped, and nodes left without edges with them.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use serde::Serialize;

use super::{
    histogram::Histogram,
    window::{EdgeId, SlotStats, Window, Windows},
};
use crate::conntrack::CloseReason;

/// Name of the node that stands for every node or edge past the caps.
pub const OVERFLOW: &str = "__overflow__";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A process traced on this node, named by its service name.
    Service,
    /// A peer that is not a traced process: `address:port` for a server,
    /// `address` for a client (and the overflow node).
    Virtual,
}

/// One end of a request or connection, named.
#[derive(Clone, Copy, Debug)]
pub struct End<'a> {
    pub name: &'a str,
    pub kind: NodeKind,
}

impl<'a> End<'a> {
    pub fn service(name: &'a str) -> Self {
        End { name, kind: NodeKind::Service }
    }

    pub fn virtual_node(name: &'a str) -> Self {
        End { name, kind: NodeKind::Virtual }
    }
}

/// Cumulative TCP figures of an edge. `failed` = refused + timeout +
/// failed_other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TcpTotals {
    /// Connections established.
    pub opened: u64,
    /// connect() answered by a RST (nothing listens).
    pub refused: u64,
    /// connect() timed out, or the host/network was unreachable.
    pub timeout: u64,
    /// connect() failed otherwise (aborted by the caller, other errors).
    pub failed_other: u64,
    /// Established connections that ended abnormally: reset, retransmission
    /// timeout, or another socket error.
    pub reset: u64,
    /// Segments retransmitted (the kernel's total_retrans at close).
    pub retransmits: u64,
    /// Smoothed RTT of closed connections (EWMA, weight 1/8 per close), µs.
    pub srtt_us: Option<f64>,
}

impl TcpTotals {
    pub fn failed(&self) -> u64 {
        self.refused + self.timeout + self.failed_other
    }

    pub fn is_empty(&self) -> bool {
        self.opened == 0 && self.failed() == 0 && self.reset == 0 && self.retransmits == 0 && self.srtt_us.is_none()
    }
}

/// A TCP event on an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    Opened,
    /// connect() did not establish.
    ConnectFailed {
        reason: Option<CloseReason>,
        retransmits: u32,
    },
    Closed {
        reason: Option<CloseReason>,
        retransmits: u32,
        srtt_us: u32,
    },
}

pub struct Edge {
    pub client: Arc<str>,
    pub server: Arc<str>,
    /// One end is a virtual node (connection_type="virtual_node").
    pub virtual_node: bool,
    pub requests: u64,
    pub failed: u64,
    pub server_seconds: Histogram,
    pub client_seconds: Histogram,
    pub tcp: TcpTotals,
    /// Monotonic ns of creation (start of the cumulative series) and of the
    /// last update (idle expiry).
    pub created_ns: u64,
    pub last_ns: u64,
}

impl Edge {
    pub fn connection_type(&self) -> &'static str {
        if self.virtual_node { "virtual_node" } else { "" }
    }
}

pub struct Node {
    pub kind: NodeKind,
    /// The database or cache system the node serves (`db.system.name` of
    /// the calls to it), so maps can draw it as one.
    pub db_system: Option<Box<str>>,
}

impl Node {
    fn of(kind: NodeKind) -> Node {
        Node { kind, db_system: None }
    }
}

/// Counters of the graph and its feeders (shown as tracer_topology_*).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests or TCP events put on the overflow node (new node past the cap).
    pub overflow_nodes: u64,
    /// Requests or TCP events put on the overflow edge (new edge past the cap).
    pub overflow_edges: u64,
    /// Edges dropped after an hour without traffic.
    pub expired_edges: u64,
    /// Requests whose other side never arrived (CLIENT or SERVER span alone
    /// although the peer was traced), counted from the one side seen.
    pub unpaired_client: u64,
    pub unpaired_server: u64,
}

pub struct Graph {
    max_nodes: usize,
    max_edges: usize,
    nodes: HashMap<Arc<str>, Node>,
    ids: HashMap<(Arc<str>, Arc<str>), EdgeId>,
    edges: HashMap<EdgeId, Edge>,
    next_id: EdgeId,
    windows: Windows,
    pub counters: Counters,
}

impl Graph {
    pub fn new(max_nodes: usize, max_edges: usize, now_ns: u64) -> Graph {
        Graph {
            max_nodes: max_nodes.max(2),
            max_edges: max_edges.max(1),
            nodes: HashMap::new(),
            ids: HashMap::new(),
            edges: HashMap::new(),
            next_id: 1,
            windows: Windows::new(now_ns),
            counters: Counters::default(),
        }
    }

    /// Count one request. Durations in ns; `failed` by the rule in `aggregate`.
    pub fn request(&mut self, now_ns: u64, client: End, server: End, client_ns: u64, server_ns: u64, failed: bool) {
        let id = self.edge(client, server, now_ns);
        let e = self.edges.get_mut(&id).expect("edge just resolved");
        e.requests += 1;
        e.failed += u64::from(failed);
        e.client_seconds.record(client_ns);
        e.server_seconds.record(server_ns);
        e.last_ns = now_ns;
        self.windows.add(now_ns, id, |s| {
            s.requests += 1;
            s.errors += u32::from(failed);
            s.latency.record(client_ns);
        });
    }

    /// Count one TCP event of a connection between `client` and `server`.
    pub fn tcp(&mut self, now_ns: u64, client: End, server: End, ev: TcpEvent) {
        let id = self.edge(client, server, now_ns);
        let e = self.edges.get_mut(&id).expect("edge just resolved");
        e.last_ns = now_ns;
        let t = &mut e.tcp;
        let mut slot = SlotStats::default();
        let s = &mut slot.tcp;
        match ev {
            TcpEvent::Opened => {
                t.opened += 1;
                s.opened = 1;
            }
            TcpEvent::ConnectFailed { reason, retransmits } => {
                s.failed = 1;
                match reason {
                    Some(CloseReason::Refused) => {
                        t.refused += 1;
                        s.refused = 1;
                    }
                    Some(CloseReason::Timeout | CloseReason::Unreachable) => {
                        t.timeout += 1;
                        s.timeout = 1;
                    }
                    _ => t.failed_other += 1,
                }
                t.retransmits += u64::from(retransmits);
                s.retransmits = retransmits;
            }
            TcpEvent::Closed { reason, retransmits, srtt_us } => {
                let abnormal = matches!(
                    reason,
                    Some(CloseReason::Reset | CloseReason::Timeout | CloseReason::Unreachable | CloseReason::Error)
                );
                t.reset += u64::from(abnormal);
                s.reset = u32::from(abnormal);
                t.retransmits += u64::from(retransmits);
                s.retransmits = retransmits;
                if srtt_us > 0 {
                    let v = f64::from(srtt_us);
                    t.srtt_us = Some(t.srtt_us.map_or(v, |old| old + (v - old) / 8.0));
                    s.srtt_sum_us = u64::from(srtt_us);
                    s.srtt_n = 1;
                }
            }
        }
        self.windows.add(now_ns, id, |x| x.merge(&slot));
    }

    /// The edge between two ends, created if new (or the overflow one).
    fn edge(&mut self, client: End, server: End, now_ns: u64) -> EdgeId {
        if let Some(id) = self.find(client.name, server.name) {
            return id;
        }
        if self.edges.len() >= self.max_edges + usize::from(self.find(OVERFLOW, OVERFLOW).is_some()) {
            self.counters.overflow_edges += 1;
            return self.overflow_edge(now_ns);
        }
        let c = self.node(client);
        let s = self.node(server);
        if c.is_none() || s.is_none() {
            self.counters.overflow_nodes += 1;
        }
        let overflow = || (Arc::<str>::from(OVERFLOW), NodeKind::Virtual);
        let (c, ck) = c.unwrap_or_else(overflow);
        let (s, sk) = s.unwrap_or_else(overflow);
        if let Some(id) = self.ids.get(&(c.clone(), s.clone())) {
            return *id;
        }
        self.nodes.entry(c.clone()).or_insert(Node::of(ck));
        self.nodes.entry(s.clone()).or_insert(Node::of(sk));
        self.insert_edge(c, s, ck == NodeKind::Virtual || sk == NodeKind::Virtual, now_ns)
    }

    fn find(&self, client: &str, server: &str) -> Option<EdgeId> {
        let (c, _) = self.nodes.get_key_value(client)?;
        let (s, _) = self.nodes.get_key_value(server)?;
        self.ids.get(&(c.clone(), s.clone())).copied()
    }

    /// The node of one end: existing, new within the cap, or None past it.
    fn node(&mut self, end: End) -> Option<(Arc<str>, NodeKind)> {
        if let Some((name, n)) = self.nodes.get_key_value(end.name) {
            return Some((name.clone(), n.kind));
        }
        let held = self.nodes.len() - usize::from(self.nodes.contains_key(OVERFLOW));
        (held < self.max_nodes).then(|| (Arc::from(end.name), end.kind))
    }

    fn overflow_edge(&mut self, now_ns: u64) -> EdgeId {
        if let Some(id) = self.find(OVERFLOW, OVERFLOW) {
            return id;
        }
        let o: Arc<str> = Arc::from(OVERFLOW);
        self.nodes.insert(o.clone(), Node::of(NodeKind::Virtual));
        self.insert_edge(o.clone(), o, true, now_ns)
    }

    fn insert_edge(&mut self, client: Arc<str>, server: Arc<str>, virtual_node: bool, now_ns: u64) -> EdgeId {
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert((client.clone(), server.clone()), id);
        let edge = Edge {
            client,
            server,
            virtual_node,
            requests: 0,
            failed: 0,
            server_seconds: Histogram::default(),
            client_seconds: Histogram::default(),
            tcp: TcpTotals::default(),
            created_ns: now_ns,
            last_ns: now_ns,
        };
        self.edges.insert(id, edge);
        id
    }

    /// Drop edges idle for the longest window, then nodes without edges;
    /// free window slots that aged out.
    pub fn expire(&mut self, now_ns: u64) {
        let before = self.edges.len();
        self.edges.retain(|_, e| now_ns.saturating_sub(e.last_ns) < Window::LONGEST_NS);
        let expired = before - self.edges.len();
        if expired > 0 {
            self.counters.expired_edges += expired as u64;
            let edges = &self.edges;
            self.ids.retain(|_, id| edges.contains_key(id));
            let mut used: HashMap<&str, ()> = HashMap::new();
            for e in self.edges.values() {
                used.insert(&e.client, ());
                used.insert(&e.server, ());
            }
            self.nodes.retain(|name, _| used.contains_key(&**name));
        }
        self.windows.advance(now_ns);
    }

    pub fn edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges.values()
    }

    pub fn edge_by_id(&self, id: EdgeId) -> Option<&Edge> {
        self.edges.get(&id)
    }

    /// `end` serves `system` (a database or cache): remembered on its node,
    /// created within the cap if the request that makes its edge is still
    /// waiting for its other span.
    pub fn mark_db(&mut self, end: End, system: &str) {
        if let Some(n) = self.nodes.get_mut(end.name) {
            if n.db_system.as_deref() != Some(system) {
                n.db_system = Some(system.into());
            }
            return;
        }
        if let Some((name, kind)) = self.node(end) {
            self.nodes.insert(name, Node { kind, db_system: Some(system.into()) });
        }
    }

    pub fn db_system(&self, name: &str) -> Option<&str> {
        self.nodes.get(name).and_then(|n| n.db_system.as_deref())
    }

    pub fn node_kind(&self, name: &str) -> Option<NodeKind> {
        self.nodes.get(name).map(|n| n.kind)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Each edge active in the window with its summed figures, and the
    /// seconds the window covers.
    pub fn window(&self, w: Window, now_ns: u64) -> (HashMap<EdgeId, SlotStats>, f64) {
        self.windows.sum(w, now_ns)
    }

    #[cfg(test)]
    /// The edge between two nodes, by names.
    pub fn get(&self, client: &str, server: &str) -> Option<&Edge> {
        self.find(client, server).and_then(|id| self.edges.get(&id))
    }
}
