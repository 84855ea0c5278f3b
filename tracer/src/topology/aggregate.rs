//! Spans and connection events in, graph updates out: names both ends of
//! every request, counts each request once, applies the failure rule.
//!
//! Counting once (a request between two processes traced on this node has
//! two spans):
//! - CLIENT span, server not traced here (no `peer_service`): one request on
//!   (client service -> virtual remote socket address `ip:port`; not the
//!   Host header, see `virtual_server`).
//! - SERVER span, client not traced here: one request on (virtual
//!   `client.address`, else the remote IP -> server service).
//! - Both traced (the linker set `peer_service` on both spans): the two
//!   spans are paired by the request's (server, client, TCP sequence) key
//!   and make one request on (client service -> server service):
//!   client_seconds from the CLIENT span, server_seconds from the SERVER
//!   span. A span whose partner does not come within `pair_timeout_ms` is
//!   counted alone (tracer_topology_unpaired_total{side}).
//!
//! Failure rule (as the servicegraph connector): a request is failed when
//! either of its spans has status error. Span status follows the HTTP
//! conventions: 5xx on either side, 4xx on the CLIENT side only, and a
//! request left without response.
//!
//! Latency: with one side traced, that side's duration is recorded as both
//! client_seconds and server_seconds (the best figure there is, as the
//! connector does for databases), so service-graph views show latency on
//! every edge. The windowed p50/p90/p99 of the API are the client-side
//! durations (what the caller waited).

use std::sync::Arc;

use super::{
    TopologyConfig,
    conn::{ConnFacts, Conns},
    graph::{End, Graph},
    pair::{Done, Half, Pairs},
};
use crate::{
    chain::link::PeerKey,
    span::{Key, Span, SpanKind, Status, Value},
};

/// Server addresses and client tuples remembered for connection naming.
const MAX_ADDRS: usize = 65_536;

pub struct Aggregator {
    pub graph: Graph,
    pairs: Pairs,
    conns: Conns,
    done: Vec<Done>,
}

impl Aggregator {
    pub fn new(cfg: &TopologyConfig, now_ns: u64) -> Aggregator {
        let ms = 1_000_000;
        Aggregator {
            graph: Graph::new(cfg.max_nodes, cfg.max_edges, now_ns),
            pairs: Pairs::new(cfg.pair_timeout_ms.saturating_mul(ms), cfg.max_pending),
            conns: Conns::new(cfg.conn_delay_ms.saturating_mul(ms), cfg.max_pending, MAX_ADDRS, MAX_ADDRS),
            done: Vec::new(),
        }
    }

    pub fn span(&mut self, now_ns: u64, s: &Span) {
        let dur = s.end_ns.saturating_sub(s.start_ns);
        let error = s.status == Status::Error;
        let svc = s.service.name.as_str();
        if let Some(system) = s.db_system() {
            // The server end of a database call is the database.
            match (s.kind.is_inbound(), &s.peer_service) {
                (true, _) => self.graph.mark_db(End::service(svc), system),
                (false, Some(peer)) => self.graph.mark_db(End::service(&peer.name), system),
                (false, None) => self.graph.mark_db(End::virtual_node(&virtual_server(s)), system),
            }
        }
        match (s.kind, s.peer_service.as_ref().zip(PeerKey::of(s))) {
            (SpanKind::Client | SpanKind::Producer, None) => {
                let server = virtual_server(s);
                self.conns.learn_server(svc, s.remote, End::virtual_node(&server));
                self.graph.request(now_ns, End::service(svc), End::virtual_node(&server), dur, dur, error);
            }
            (SpanKind::Server | SpanKind::Consumer, None) => {
                self.conns.learn_listener(s.local, svc);
                let client = virtual_client(s);
                self.graph.request(now_ns, End::virtual_node(&client), End::service(svc), dur, dur, error);
            }
            (kind, Some((peer, key))) => {
                match kind {
                    SpanKind::Client | SpanKind::Producer => {
                        self.conns.learn_server(svc, s.remote, End::service(&peer.name))
                    }
                    SpanKind::Server | SpanKind::Consumer => self.conns.learn_listener(s.local, svc),
                }
                let half = Half { service: s.service.clone(), peer: Arc::clone(peer), duration_ns: dur, error };
                self.pairs.offer(now_ns, key, kind, half, &mut self.done);
                self.settle(now_ns);
            }
        }
    }

    pub fn conn(&mut self, now_ns: u64, c: ConnFacts) {
        self.conns.push(now_ns, c, &mut self.graph);
    }

    /// Periodic work: halves that waited too long, connection events whose
    /// delay is over, idle edges.
    pub fn tick(&mut self, now_ns: u64) {
        self.pairs.expire(now_ns, &mut self.done);
        self.settle(now_ns);
        self.conns.release_due(now_ns, &mut self.graph);
        self.graph.expire(now_ns);
    }

    /// Shutdown: count everything still waiting.
    pub fn flush(&mut self, now_ns: u64) {
        self.pairs.expire(u64::MAX, &mut self.done);
        self.settle(now_ns);
        self.conns.flush(now_ns, &mut self.graph);
    }

    /// Requests waiting for their other span, and connection events
    /// waiting for their delay.
    pub fn waiting(&self) -> (usize, usize) {
        (self.pairs.len(), self.conns.queued())
    }

    fn settle(&mut self, now_ns: u64) {
        let g = &mut self.graph;
        for d in self.done.drain(..) {
            match d {
                Done::Pair { client: c, server: s } => {
                    let (cn, sn) = (End::service(&c.service.name), End::service(&s.service.name));
                    g.request(now_ns, cn, sn, c.duration_ns, s.duration_ns, c.error || s.error);
                }
                Done::Alone(SpanKind::Client | SpanKind::Producer, h) => {
                    g.counters.unpaired_client += 1;
                    let (cn, sn) = (End::service(&h.service.name), End::service(&h.peer.name));
                    g.request(now_ns, cn, sn, h.duration_ns, h.duration_ns, h.error);
                }
                Done::Alone(SpanKind::Server | SpanKind::Consumer, h) => {
                    g.counters.unpaired_server += 1;
                    let (cn, sn) = (End::service(&h.peer.name), End::service(&h.service.name));
                    g.request(now_ns, cn, sn, h.duration_ns, h.duration_ns, h.error);
                }
            }
        }
    }
}

/// Virtual server node of a CLIENT span: `peer.service` (the pod's or
/// Service's name from Kubernetes metadata, looked up by the socket's
/// address), else the remote socket address `ip:port` (IPv6 in brackets).
/// Never the Host header: any program may send any Host (`Host: a` would
/// pin every connection to that address on a node `a:port`, and random
/// Hosts make one node each), while the socket says where the bytes went.
/// The header stays in the span's `server.address`, as the HTTP
/// conventions ask. An address a DNS answer named (`tracer.peer.name`,
/// `crate::chain::names`) is that name with the port: `api.example.com:443`.
pub fn virtual_server(s: &Span) -> String {
    if let Some(Value::Str(name)) = s.attr(&Key::PeerService) {
        return name.to_string();
    }
    if let Some(name) = s.attr_text(&Key::TracerPeerName) {
        return format!("{name}:{}", s.remote.port());
    }
    s.remote.to_string()
}

/// Virtual client node of a SERVER span: `peer.service` (Kubernetes
/// metadata), else `client.address`, else the peer IP.
pub fn virtual_client(s: &Span) -> String {
    if let Some(Value::Str(name)) = s.attr(&Key::PeerService) {
        return name.to_string();
    }
    match s.attr_text(&Key::ClientAddress) {
        Some(a) => a.into_owned(),
        None => s.remote.ip().to_string(),
    }
}
