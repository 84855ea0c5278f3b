//! The business view as OTLP metrics (cumulative temporality; a duration
//! series starts when its (transaction, service, version) was first seen):
//!
//! - `business.transaction.duration`: histogram, seconds; attributes
//!   business.transaction.name, service.name, service.version, error (bool)
//! - `business.transaction.apdex`: gauge, Apdex(T) over the last 5 minutes;
//!   business.transaction.name
//! - `slo.error_budget.remaining`: gauge; slo.name, business.transaction.name
//! - `slo.burn_rate`: gauge; slo.name, slo.window (1h, 6h, 3d)
//!
//! Sent through the OTLP exporter's metrics client every export interval.

use std::{sync::Arc, time::Duration, time::UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram as PHistogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use tokio::{sync::watch, time::Instant};

use super::{Shared, ledger::Ledger, metrics::APDEX_GAUGE_MINUTES, now_minute, slo::BURN_WINDOWS};
use crate::{
    clock::{Clock, monotonic_ns},
    export::otlp::{AGENT_VERSION, MetricsExporter},
    topology::EXPORT_BOUNDS_S,
};

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
            _ = shutdown.wait_for(|v| *v) => return,
        }
        next = Instant::now() + every;
        export_once(&shared, &m, shutdown.clone()).await;
    }
}

pub(super) async fn export_once(shared: &Shared, m: &MetricsExporter, shutdown: watch::Receiver<bool>) {
    let req = {
        let ledger = shared.lock();
        if ledger.transactions().is_empty() {
            return;
        }
        build(&ledger, &shared.clock, monotonic_ns(), now_minute(), m.resource())
    };
    // Delivery and drops are counted by the exporter (tracer_otlp_*{signal="metrics"}).
    m.export_metrics(req, shutdown).await;
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

fn gauge(name: &str, description: &str, unit: &str, data_points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(Data::Gauge(Gauge { data_points })),
        ..Default::default()
    }
}

/// One request with every transaction's figures at `now_ns` (monotonic) and
/// unix minute `minute`.
pub fn build(
    ledger: &Ledger,
    clock: &Clock,
    now_ns: u64,
    minute: u64,
    resource: &Resource,
) -> ExportMetricsServiceRequest {
    let now = unix_ns(clock, now_ns);
    let point = |attributes: Vec<KeyValue>, v: f64| NumberDataPoint {
        attributes,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let (mut durations, mut apdex, mut budget, mut burn) = (vec![], vec![], vec![], vec![]);
    for tx in ledger.transactions() {
        let name = kv("business.transaction.name", &tx.t.name);
        for v in &tx.versions {
            for (error, h) in v.durations.iter().enumerate() {
                if h.count() == 0 {
                    continue;
                }
                let error = KeyValue {
                    key: "error".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::BoolValue(error == 1)) }),
                    ..Default::default()
                };
                durations.push(HistogramDataPoint {
                    attributes: vec![
                        name.clone(),
                        kv("service.name", &v.service),
                        kv("service.version", &v.version),
                        error,
                    ],
                    start_time_unix_nano: unix_ns(clock, v.created_ns),
                    time_unix_nano: now,
                    count: h.count(),
                    sum: Some(h.sum_ns as f64 / 1e9),
                    bucket_counts: h.export_counts().to_vec(),
                    explicit_bounds: EXPORT_BOUNDS_S.to_vec(),
                    ..Default::default()
                });
            }
        }
        if let Some(a) = tx.kpis.summary(minute, APDEX_GAUGE_MINUTES).apdex {
            apdex.push(point(vec![name.clone()], a));
        }
        for s in &tx.slos {
            if let Some(b) = s.slo.budget_remaining(minute) {
                budget.push(point(vec![kv("slo.name", &s.name), name.clone()], b));
            }
            for (w, m) in BURN_WINDOWS {
                if let Some(b) = s.slo.burn_rate(minute, m) {
                    burn.push(point(vec![kv("slo.name", &s.name), kv("slo.window", w)], b));
                }
            }
        }
    }
    let mut metrics = vec![Metric {
        name: "business.transaction.duration".into(),
        description: "Duration of the requests that start each business transaction (entry SERVER spans)".into(),
        unit: "s".into(),
        data: Some(Data::Histogram(PHistogram {
            data_points: durations,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }];
    metrics.push(gauge(
        "business.transaction.apdex",
        "Apdex(T) of the business transaction over the last 5 minutes",
        "1",
        apdex,
    ));
    metrics.push(gauge("slo.error_budget.remaining", "Share of the SLO window's error budget left", "1", budget));
    metrics.push(gauge(
        "slo.burn_rate",
        "Error rate over slo.window divided by the rate the objective allows",
        "1",
        burn,
    ));
    metrics.retain(|m| match &m.data {
        Some(Data::Histogram(h)) => !h.data_points.is_empty(),
        Some(Data::Gauge(g)) => !g.data_points.is_empty(),
        _ => true,
    });
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "tracer.business".into(),
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
