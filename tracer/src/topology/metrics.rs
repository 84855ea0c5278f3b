//! The topology on /metrics: a prometheus-client collector that encodes the
//! graph's cumulative edge totals at each scrape. Names are the
//! OpenTelemetry Collector servicegraph connector's, without the agent's
//! `tracer_` prefix (registered with `register_unprefixed_collector`), so
//! Grafana/Tempo service-graph queries work unchanged:
//!
//! - `traces_service_graph_request_total{client,server,connection_type}`
//! - `traces_service_graph_request_failed_total{...}`: either span had
//!   status error
//! - `traces_service_graph_request_server_seconds` and
//!   `..._client_seconds` histograms (bounds 2 ms ... 15 s, the connector's)
//!
//! `connection_type` is `virtual_node` when one end is a virtual node, else
//! empty (the connector's unset value). TCP health, on the same edges:
//!
//! - `traces_service_graph_tcp_connections_total{...,result}`: result =
//!   opened (established), refused, timeout (connect timed out or
//!   unreachable), failed_other (connect failed otherwise), reset
//!   (established, ended abnormally: RST, retransmission timeout, error)
//! - `traces_service_graph_tcp_retransmits_total{...}`: segments
//!   retransmitted (the kernel's count at close)
//! - `traces_service_graph_tcp_srtt_seconds{...}`: smoothed RTT (EWMA over
//!   closed connections)
//!
//! And the topology's own health: `tracer_topology_nodes`,
//! `tracer_topology_edges`, `tracer_topology_overflow_total{cap}`,
//! `tracer_topology_unpaired_total{side}`,
//! `tracer_topology_expired_edges_total`, `tracer_topology_waiting{what}`.

use std::{fmt, sync::Arc};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use super::{Shared, graph::Edge, histogram::Histogram};

pub struct Collector {
    shared: Arc<Shared>,
}

impl Collector {
    pub(super) fn new(shared: Arc<Shared>) -> Collector {
        Collector { shared }
    }
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("topology::Collector")
    }
}

type Labels = Vec<(&'static str, String)>;

/// Label values escaped for the text format (prometheus-client writes them
/// as given; a service name comes from a process's environment).
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', r#"\""#).replace('\n', r"\n")
}

fn labels(e: &Edge) -> Labels {
    vec![
        ("client", escape(&e.client)),
        ("server", escape(&e.server)),
        ("connection_type", e.connection_type().to_string()),
    ]
}

/// A family with no series is left out, as prometheus-client does.
fn counters(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, u64)]) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    if let [(l, v)] = rows
        && l.is_empty()
    {
        return ConstCounter::new(*v).encode(m);
    }
    for (l, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(l)?)?;
    }
    Ok(())
}

fn histograms(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, &Histogram)]) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (l, h) in rows {
        let mut f = m.encode_family(l)?;
        f.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count(), &h.export_buckets(), None)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let agg = self.shared.lock();
        let g = &agg.graph;
        let mut edges: Vec<&Edge> = g.edges().collect();
        edges.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        let req: Vec<&Edge> = edges.iter().copied().filter(|e| e.requests > 0).collect();
        let tcp: Vec<&Edge> = edges.iter().copied().filter(|e| !e.tcp.is_empty()).collect();

        let rows = |f: fn(&Edge) -> u64, es: &[&Edge]| es.iter().map(|e| (labels(e), f(e))).collect::<Vec<_>>();
        counters(
            &mut enc,
            "traces_service_graph_request",
            "Requests from client to server, each counted once",
            &rows(|e| e.requests, &req),
        )?;
        counters(
            &mut enc,
            "traces_service_graph_request_failed",
            "Failed requests from client to server (either span has status error)",
            &rows(|e| e.failed, &req),
        )?;
        let hist = |f: fn(&Edge) -> &Histogram| req.iter().map(|e| (labels(e), f(e))).collect::<Vec<_>>();
        histograms(
            &mut enc,
            "traces_service_graph_request_server_seconds",
            "Request duration seen by the server (by the client when the server is not traced)",
            &hist(|e| &e.server_seconds),
        )?;
        histograms(
            &mut enc,
            "traces_service_graph_request_client_seconds",
            "Request duration seen by the client (by the server when the client is not traced)",
            &hist(|e| &e.client_seconds),
        )?;

        let mut conns = Vec::with_capacity(tcp.len() * 5);
        for e in &tcp {
            let t = &e.tcp;
            for (r, v) in [
                ("opened", t.opened),
                ("refused", t.refused),
                ("timeout", t.timeout),
                ("failed_other", t.failed_other),
                ("reset", t.reset),
            ] {
                let mut l = labels(e);
                l.push(("result", r.to_string()));
                conns.push((l, v));
            }
        }
        counters(
            &mut enc,
            "traces_service_graph_tcp_connections",
            "TCP connections from client to server by result: opened; connect refused, timeout (or unreachable), failed_other; reset (established, ended abnormally)",
            &conns,
        )?;
        counters(
            &mut enc,
            "traces_service_graph_tcp_retransmits",
            "TCP segments retransmitted on connections from client to server",
            &rows(|e| e.tcp.retransmits, &tcp),
        )?;
        let srtt: Vec<(Labels, f64)> = tcp.iter().filter_map(|e| Some((labels(e), e.tcp.srtt_us? / 1e6))).collect();
        if !srtt.is_empty() {
            let mut m = enc.encode_descriptor(
                "traces_service_graph_tcp_srtt_seconds",
                "Smoothed TCP round-trip time of connections from client to server (EWMA over closed connections)",
                None,
                MetricType::Gauge,
            )?;
            for (l, v) in &srtt {
                ConstGauge::new(*v).encode(m.encode_family(l)?)?;
            }
        }

        // The topology's own health.
        let c = &g.counters;
        let gauge = |enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Vec<(&str, &str)>, i64)]| {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            if let [(l, v)] = rows
                && l.is_empty()
            {
                return ConstGauge::new(*v).encode(m);
            }
            for (l, v) in rows {
                ConstGauge::new(*v).encode(m.encode_family(l)?)?;
            }
            fmt::Result::Ok(())
        };
        gauge(&mut enc, "tracer_topology_nodes", "Nodes in the service graph", &[(vec![], g.node_count() as i64)])?;
        gauge(&mut enc, "tracer_topology_edges", "Edges in the service graph", &[(vec![], g.edge_count() as i64)])?;
        let (pairs, conns) = agg.waiting();
        gauge(
            &mut enc,
            "tracer_topology_waiting",
            "Requests waiting for their other span (what=spans), connection events waiting for their delay (what=connections)",
            &[(vec![("what", "spans")], pairs as i64), (vec![("what", "connections")], conns as i64)],
        )?;
        let own = |l: Vec<(&'static str, String)>, v: u64| (l, v);
        counters(
            &mut enc,
            "tracer_topology_overflow",
            "Requests and TCP events counted on __overflow__ because a cap was hit (cap=nodes|edges)",
            &[
                own(vec![("cap", "nodes".into())], c.overflow_nodes),
                own(vec![("cap", "edges".into())], c.overflow_edges),
            ],
        )?;
        counters(
            &mut enc,
            "tracer_topology_unpaired",
            "Requests between two traced processes counted from one span because the other did not arrive in time (side=client|server)",
            &[
                own(vec![("side", "client".into())], c.unpaired_client),
                own(vec![("side", "server".into())], c.unpaired_server),
            ],
        )?;
        counters(
            &mut enc,
            "tracer_topology_expired_edges",
            "Edges dropped after an hour without traffic",
            &[own(vec![], c.expired_edges)],
        )
    }
}
