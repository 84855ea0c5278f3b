//! `GET /api/topology?window=1m|5m|1h` (default 5m): the graph's nodes and
//! edges with their figures over the window, as JSON.
//!
//! ```json
//! {
//!   "window": "5m",
//!   "window_seconds": 300.0,          // time the window covers (less while the agent is younger)
//!   "generated_at": "2025-01-01T12:00:00.000Z",
//!   "nodes": [{
//!     "id": "frontend",               // = name, unique
//!     "name": "frontend",
//!     "kind": "service",              // "service" (traced process) | "virtual" (peer not traced: addr:port or addr)
//!     "db_system": "postgresql",      // present when the node serves a database or cache (db.system.name of its calls)
//!     "health": "ok",                 // "ok" | "degraded" | "failing" | "unknown" (nothing inbound), from inbound edges
//!     "requests": 120, "errors": 3,   // inbound (this node as server)
//!     "error_rate": 0.025, "rate_per_s": 0.4,
//!     "p50_ms": 1.2, "p90_ms": 4.0, "p99_ms": 9.6,   // inbound latency, null without requests
//!     "requests_out": 118, "errors_out": 3           // outbound (this node as client)
//!   }],
//!   "edges": [{
//!     "client": "nginx", "server": "frontend",
//!     "connection_type": "",          // "virtual_node" when one end is virtual, else ""
//!     "requests": 120, "errors": 3, "error_rate": 0.025, "rate_per_s": 0.4,
//!     "p50_ms": 1.2, "p90_ms": 4.0, "p99_ms": 9.6,   // client-side durations; null without requests
//!     "tcp": {"opened": 4, "failed": 0, "refused": 0, "timeout": 0, "reset": 0,
//!             "retransmits": 0, "srtt_ms": 0.05}      // srtt_ms null without closed connections
//!   }],
//!   "overflow": {"nodes": 0, "edges": 0}   // requests/TCP events put on "__overflow__" since start
//! }
//! ```
//!
//! Health of a node, from its inbound requests and connections in the
//! window: failing when the error rate or the failed-connection rate is at
//! least 5 %; degraded when either is at least 1 % or a connection was
//! reset; ok otherwise; unknown with nothing inbound.

use foldhash::{HashMap, HashMapExt};
use std::{sync::Arc, time::SystemTime};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{
    Shared,
    graph::{Graph, NodeKind},
    histogram::SlotHistogram,
    window::{SlotStats, Window},
};
use crate::clock::monotonic_ns;

pub const TOPOLOGY_PATH: &str = "/api/topology";

pub(super) fn routes(shared: Arc<Shared>) -> Router {
    Router::new().route(TOPOLOGY_PATH, get(topology)).with_state(shared)
}

#[derive(Deserialize)]
struct Params {
    window: Option<String>,
}

async fn topology(State(s): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let w = match p.window.as_deref().map(Window::parse) {
        None => Window::M5,
        Some(Some(w)) => w,
        Some(None) => return (StatusCode::BAD_REQUEST, "window must be 1m, 5m or 1h\n").into_response(),
    };
    let view = {
        let agg = s.lock();
        snapshot(&agg.graph, w, monotonic_ns())
    };
    let generated_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    Json(TopologyView { generated_at, ..view }).into_response()
}

#[derive(Debug, Serialize)]
pub struct TopologyView {
    pub window: &'static str,
    pub window_seconds: f64,
    pub generated_at: String,
    pub nodes: Vec<NodeView>,
    pub edges: Vec<EdgeView>,
    pub overflow: Overflow,
}

#[derive(Debug, Serialize)]
pub struct Overflow {
    pub nodes: u64,
    pub edges: u64,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub name: String,
    pub kind: NodeKind,
    /// The database or cache system the node serves (`db.system.name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_system: Option<String>,
    pub health: Health,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub rate_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub requests_out: u64,
    pub errors_out: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Degraded,
    Failing,
    Unknown,
}

#[derive(Debug, Serialize)]
pub struct EdgeView {
    pub client: String,
    pub server: String,
    pub connection_type: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub rate_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub tcp: TcpView,
}

#[derive(Debug, Serialize)]
pub struct TcpView {
    pub opened: u64,
    pub failed: u64,
    pub refused: u64,
    pub timeout: u64,
    pub reset: u64,
    pub retransmits: u64,
    pub srtt_ms: Option<f64>,
}

/// Round for display: figures are estimates, six digits say nothing more.
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { r3(a as f64 / b as f64) }
}

fn quantiles(h: &SlotHistogram) -> [Option<f64>; 3] {
    [0.5, 0.9, 0.99].map(|q| h.quantile_ms(q).map(r3))
}

/// The graph over window `w` at `now_ns` (`generated_at` left empty).
pub fn snapshot(g: &Graph, w: Window, now_ns: u64) -> TopologyView {
    let (stats, covered) = g.window(w, now_ns);
    let rate = |n: u64| if covered > 0.0 { r3(n as f64 / covered) } else { 0.0 };
    let mut edges = Vec::with_capacity(stats.len());
    // Per node: (inbound figures summed, outbound requests, outbound errors).
    let mut nodes: HashMap<&str, (SlotStats, u64, u64)> = HashMap::new();
    for (id, s) in &stats {
        let Some(e) = g.edge_by_id(*id) else { continue };
        let [p50_ms, p90_ms, p99_ms] = quantiles(&s.latency);
        let t = &s.tcp;
        let (requests, errors) = (u64::from(s.requests), u64::from(s.errors));
        edges.push(EdgeView {
            client: e.client.to_string(),
            server: e.server.to_string(),
            connection_type: e.connection_type(),
            requests,
            errors,
            error_rate: ratio(errors, requests),
            rate_per_s: rate(requests),
            p50_ms,
            p90_ms,
            p99_ms,
            tcp: TcpView {
                opened: t.opened.into(),
                failed: t.failed.into(),
                refused: t.refused.into(),
                timeout: t.timeout.into(),
                reset: t.reset.into(),
                retransmits: t.retransmits.into(),
                srtt_ms: (t.srtt_n > 0).then(|| r3(t.srtt_sum_us as f64 / f64::from(t.srtt_n) / 1e3)),
            },
        });
        nodes.entry(&e.server).or_default().0.merge(s);
        let out = nodes.entry(&e.client).or_default();
        out.1 += requests;
        out.2 += errors;
    }
    edges.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
    let mut nodes: Vec<NodeView> = nodes
        .into_iter()
        .map(|(name, (s, requests_out, errors_out))| {
            let [p50_ms, p90_ms, p99_ms] = quantiles(&s.latency);
            let (requests, errors) = (u64::from(s.requests), u64::from(s.errors));
            NodeView {
                id: name.to_string(),
                name: name.to_string(),
                kind: g.node_kind(name).unwrap_or(NodeKind::Virtual),
                db_system: g.db_system(name).map(str::to_owned),
                health: health(&s),
                requests,
                errors,
                error_rate: ratio(errors, requests),
                rate_per_s: rate(requests),
                p50_ms,
                p90_ms,
                p99_ms,
                requests_out,
                errors_out,
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let c = &g.counters;
    TopologyView {
        window: w.label(),
        window_seconds: r3(covered),
        generated_at: String::new(),
        nodes,
        edges,
        overflow: Overflow { nodes: c.overflow_nodes, edges: c.overflow_edges },
    }
}

/// Health from a node's inbound figures (rule in the module doc).
fn health(s: &SlotStats) -> Health {
    let t = &s.tcp;
    let attempts = u64::from(t.opened) + u64::from(t.failed);
    if s.requests == 0 && attempts == 0 {
        return Health::Unknown;
    }
    let err = if s.requests > 0 { f64::from(s.errors) / f64::from(s.requests) } else { 0.0 };
    let conn = if attempts > 0 { f64::from(t.failed) / attempts as f64 } else { 0.0 };
    let worst = err.max(conn);
    if worst >= 0.05 {
        Health::Failing
    } else if worst >= 0.01 || t.reset > 0 {
        Health::Degraded
    } else {
        Health::Ok
    }
}
