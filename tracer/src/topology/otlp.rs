//! The topology as OTLP metrics, named and labelled as the OpenTelemetry
//! Collector servicegraph connector names them, so Tempo/Grafana
//! service-graph views read them unchanged. In: the graph's cumulative
//! edge totals. Out: `ExportMetricsServiceRequest`s (cumulative
//! temporality; each series starts when its edge was created) sent through
//! the OTLP exporter's metrics client every export interval.
//!
//! Metrics (attributes client, server, connection_type = "virtual_node"
//! when one end is a virtual node, else ""):
//! - traces_service_graph_request_total, ..._request_failed_total (sums)
//! - traces_service_graph_request_server_seconds, ..._client_seconds
//!   (histograms, the connector's default bounds 2 ms ... 15 s)
//! - traces_service_graph_tcp_connections_total{result=opened|refused|
//!   timeout|failed_other|reset}, ..._tcp_retransmits_total (sums),
//!   ..._tcp_srtt_seconds (gauge): TCP health beside them (see metrics.rs).

use std::{sync::Arc, time::Duration, time::UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram as PHistogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use tokio::{sync::watch, time::Instant};

use super::{
    Shared,
    graph::{Edge, Graph},
    histogram::{EXPORT_BOUNDS_S, Histogram},
};
use crate::{
    clock::{Clock, monotonic_ns},
    export::otlp::{AGENT_VERSION, MetricsExporter},
};

/// Edges per request: a full histogram edge is ~1.5 KiB encoded, so a
/// request stays well under the usual 4 MiB limit.
const EDGES_PER_REQUEST: usize = 500;

/// Export every `every` until shutdown (the final export is the caller's,
/// after the last inputs were counted).
pub(super) async fn export_loop(
    shared: Arc<Shared>,
    m: MetricsExporter,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = Instant::now() + every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = fired(&mut shutdown) => return,
        }
        next = Instant::now() + every;
        export_once(&shared, &m, shutdown.clone()).await;
    }
}

async fn fired(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

pub(super) async fn export_once(shared: &Shared, m: &MetricsExporter, shutdown: watch::Receiver<bool>) {
    let requests = {
        let agg = shared.lock();
        build(&agg.graph, &shared.clock, monotonic_ns(), m.resource())
    };
    for r in requests {
        // Delivery and drops are counted by the exporter (tracer_otlp_*{signal="metrics"}).
        m.export_metrics(r, shutdown.clone()).await;
    }
}

/// Requests with every edge's cumulative figures at `now_ns` (monotonic),
/// each under the agent's `resource` (export::otlp::agent_resource).
pub fn build(g: &Graph, clock: &Clock, now_ns: u64, resource: &Resource) -> Vec<ExportMetricsServiceRequest> {
    let mut edges: Vec<&Edge> = g.edges().filter(|e| e.requests > 0 || !e.tcp.is_empty()).collect();
    edges.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
    let now = unix_ns(clock, now_ns);
    edges.chunks(EDGES_PER_REQUEST).map(|chunk| request(chunk, clock, now, resource)).collect()
}

fn request(edges: &[&Edge], clock: &Clock, now: u64, resource: &Resource) -> ExportMetricsServiceRequest {
    let point = |e: &Edge, extra: Option<(&str, &str)>, v: number_data_point::Value| NumberDataPoint {
        attributes: attrs(e, extra),
        start_time_unix_nano: unix_ns(clock, e.created_ns),
        time_unix_nano: now,
        value: Some(v),
        ..Default::default()
    };
    let int = |v: u64| number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX));
    let req: Vec<&Edge> = edges.iter().copied().filter(|e| e.requests > 0).collect();
    let tcp: Vec<&Edge> = edges.iter().copied().filter(|e| !e.tcp.is_empty()).collect();
    let mut metrics = vec![
        sum(
            "traces_service_graph_request_total",
            "Requests from client to server",
            req.iter().map(|e| point(e, None, int(e.requests))),
        ),
        sum(
            "traces_service_graph_request_failed_total",
            "Failed requests from client to server (either span has status error)",
            req.iter().map(|e| point(e, None, int(e.failed))),
        ),
        histogram(
            "traces_service_graph_request_server_seconds",
            "Request duration seen by the server (by the client when the server is not traced)",
            req.iter().map(|e| hist_point(e, &e.server_seconds, clock, now)),
        ),
        histogram(
            "traces_service_graph_request_client_seconds",
            "Request duration seen by the client (by the server when the client is not traced)",
            req.iter().map(|e| hist_point(e, &e.client_seconds, clock, now)),
        ),
    ];
    let results = |e: &Edge| {
        let t = &e.tcp;
        [
            ("opened", t.opened),
            ("refused", t.refused),
            ("timeout", t.timeout),
            ("failed_other", t.failed_other),
            ("reset", t.reset),
        ]
    };
    metrics.push(sum(
        "traces_service_graph_tcp_connections_total",
        "TCP connections from client to server by result: opened, connect refused/timeout/failed_other, reset",
        tcp.iter().flat_map(|e| results(e).map(|(r, v)| point(e, Some(("result", r)), int(v)))),
    ));
    metrics.push(sum(
        "traces_service_graph_tcp_retransmits_total",
        "TCP segments retransmitted on connections from client to server",
        tcp.iter().map(|e| point(e, None, int(e.tcp.retransmits))),
    ));
    // A gauge has no start time.
    let srtt: Vec<NumberDataPoint> = tcp
        .iter()
        .filter_map(|e| {
            let v = number_data_point::Value::AsDouble(e.tcp.srtt_us? / 1e6);
            Some(NumberDataPoint { start_time_unix_nano: 0, ..point(e, None, v) })
        })
        .collect();
    metrics.push(Metric {
        name: "traces_service_graph_tcp_srtt_seconds".into(),
        description: "Smoothed TCP round-trip time of connections from client to server (EWMA over closes)".into(),
        unit: "s".into(),
        data: Some(Data::Gauge(Gauge { data_points: srtt })),
        ..Default::default()
    });
    metrics.retain(|m| match &m.data {
        Some(Data::Sum(s)) => !s.data_points.is_empty(),
        Some(Data::Histogram(h)) => !h.data_points.is_empty(),
        Some(Data::Gauge(g)) => !g.data_points.is_empty(),
        _ => true,
    });
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                // The connector's scope name, so pipelines filtering on it work.
                scope: Some(InstrumentationScope {
                    name: "traces_service_graph".into(),
                    version: AGENT_VERSION.into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn sum(name: &str, description: &str, points: impl Iterator<Item = NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        data: Some(Data::Sum(Sum {
            data_points: points.collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn histogram(name: &str, description: &str, points: impl Iterator<Item = HistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: "s".into(),
        data: Some(Data::Histogram(PHistogram {
            data_points: points.collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn hist_point(e: &Edge, h: &Histogram, clock: &Clock, now: u64) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: attrs(e, None),
        start_time_unix_nano: unix_ns(clock, e.created_ns),
        time_unix_nano: now,
        count: h.count(),
        sum: Some(h.sum_ns as f64 / 1e9),
        bucket_counts: h.export_counts().to_vec(),
        explicit_bounds: EXPORT_BOUNDS_S.to_vec(),
        ..Default::default()
    }
}

fn attrs(e: &Edge, extra: Option<(&str, &str)>) -> Vec<KeyValue> {
    let mut a = vec![kv("client", &e.client), kv("server", &e.server), kv("connection_type", e.connection_type())];
    if let Some((k, v)) = extra {
        a.push(kv(k, v));
    }
    a
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn unix_ns(clock: &Clock, mono_ns: u64) -> u64 {
    clock.wall(mono_ns).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
