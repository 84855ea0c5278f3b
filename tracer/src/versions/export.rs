//! Rollout verdicts for a backend to alert on, on /metrics (a
//! prometheus-client collector encoded at each scrape) and as OTLP metrics
//! (scope `tracer.versions`, sent every export interval):
//!
//! - `version_rollout_verdict{service_name, baseline_version,
//!   candidate_version, verdict}` = 1 (OTLP `version.rollout.verdict`, a
//!   gauge with service.name, version.baseline, version.candidate, verdict,
//!   rollout.id): one per compared rollout kept, the newest per pair
//! - `version_rollouts_total` (OTLP `version.rollouts`, a cumulative sum):
//!   rollouts detected
//! - `tracer_versions_series`, `tracer_versions_overflow_total{cap}` (cap =
//!   versions: requests of an untracked version; transactions: requests
//!   counted for their version only)

use std::{fmt, sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
        number_data_point,
    },
    resource::v1::Resource,
};
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};
use tokio::{sync::watch, time::Instant};

use super::{Shared, State, now_ms, rollout::Rollout};
use crate::{
    export::otlp::{AGENT_VERSION, MetricsExporter},
    topology::escape,
};

/// The newest compared rollout of each (service, old, new).
fn verdicts(st: &State) -> Vec<&Rollout> {
    let mut out: Vec<&Rollout> = vec![];
    for r in st.rollouts.list.iter().rev().filter(|r| r.verdict.is_some()) {
        if !out
            .iter()
            .any(|o| o.service == r.service && o.old_version == r.old_version && o.new_version == r.new_version)
        {
            out.push(r);
        }
    }
    out
}

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
        f.write_str("versions::Collector")
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let st = self.shared.lock();
        let v = verdicts(&st);
        if !v.is_empty() {
            let mut m = enc.encode_descriptor(
                "version_rollout_verdict",
                "1 for the verdict of the newest automatic comparison of each rollout (candidate = the new version)",
                None,
                MetricType::Gauge,
            )?;
            for r in v {
                let l = vec![
                    ("service_name", escape(&r.service)),
                    ("baseline_version", escape(&r.old_version)),
                    ("candidate_version", escape(&r.new_version)),
                    ("verdict", r.verdict.map_or("", |v| v.label()).to_string()),
                ];
                ConstGauge::new(1i64).encode(m.encode_family(&l)?)?;
            }
        }
        let m = enc.encode_descriptor(
            "version_rollouts",
            "Rollouts detected: a service's new service.version first seen after another",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(st.rollouts.total).encode(m)?;
        let m = enc.encode_descriptor(
            "tracer_versions_series",
            "(service, service.version) pairs tracked for comparisons",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(st.book.series().len() as i64).encode(m)?;
        let mut m = enc.encode_descriptor(
            "tracer_versions_overflow",
            "Past a cap: requests of an untracked version (cap=versions), requests counted for their version only (cap=transactions)",
            None,
            MetricType::Counter,
        )?;
        let c = st.book.counters;
        for (cap, v) in [("versions", c.overflow_versions), ("transactions", c.overflow_transactions)] {
            ConstCounter::new(v).encode(m.encode_family(&vec![("cap", cap)])?)?;
        }
        Ok(())
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// One request with every rollout verdict; None before the first rollout.
pub(super) fn build(
    st: &State,
    now_ns: u64,
    start_ns: u64,
    resource: &Resource,
) -> Option<ExportMetricsServiceRequest> {
    if st.rollouts.total == 0 {
        return None;
    }
    let point = |attributes, v: f64, start: u64| NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now_ns,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let verdict_points: Vec<NumberDataPoint> = verdicts(st)
        .into_iter()
        .map(|r| {
            let mut a = vec![
                kv("service.name", &r.service),
                kv("version.baseline", &r.old_version),
                kv("version.candidate", &r.new_version),
                kv("verdict", r.verdict.map_or("", |v| v.label())),
            ];
            a.push(KeyValue {
                key: "rollout.id".into(),
                value: Some(AnyValue { value: Some(any_value::Value::IntValue(r.id as i64)) }),
                ..Default::default()
            });
            point(a, 1.0, 0)
        })
        .collect();
    let mut metrics = vec![Metric {
        name: "version.rollouts".into(),
        description: "Rollouts detected: a service's new service.version first seen after another".into(),
        unit: "1".into(),
        data: Some(Data::Sum(Sum {
            data_points: vec![point(vec![], st.rollouts.total as f64, start_ns)],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }];
    if !verdict_points.is_empty() {
        metrics.push(Metric {
            name: "version.rollout.verdict".into(),
            description: "1 for the verdict of each rollout's automatic comparison (candidate = the new version)"
                .into(),
            unit: "1".into(),
            data: Some(Data::Gauge(Gauge { data_points: verdict_points })),
            ..Default::default()
        });
    }
    Some(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "tracer.versions".into(),
                    version: AGENT_VERSION.into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

pub(super) async fn export_loop(
    shared: Arc<Shared>,
    m: MetricsExporter,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let start_ns = now_ms() * 1_000_000;
    let mut next = Instant::now() + every;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep_until(next) => false,
            _ = shutdown.wait_for(|v| *v) => true,
        };
        next = Instant::now() + every;
        let req = build(&shared.lock(), now_ms() * 1_000_000, start_ns, m.resource());
        if let Some(req) = req {
            // Delivery and drops are counted by the exporter.
            m.export_metrics(req, shutdown.clone()).await;
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::{book::Book, compare::Verdict, rollout::Rollouts};

    #[test]
    fn verdicts_newest_per_pair_on_both_forms() {
        let mut rollouts = Rollouts::default();
        for (id, v) in [(1, Verdict::Worse), (2, Verdict::NoDifference)] {
            rollouts.list.push_back(Rollout {
                id,
                service: "shop".into(),
                old_version: "1.0".into(),
                new_version: "1.1".into(),
                at_ms: 0,
                at: String::new(),
                old_pids: vec![],
                new_pids: vec![],
                old_pods: vec![],
                new_pods: vec![],
                compare_at: String::new(),
                due_ms: 0,
                verdict: Some(v),
                comparison: None,
            });
        }
        rollouts.total = 2;
        let st = State { book: Book::new(1, 1, Default::default()), rollouts };
        let v = verdicts(&st);
        assert_eq!((v.len(), v[0].id), (1, 2));
        let req = build(&st, 2, 1, &Resource::default()).unwrap();
        let names: Vec<&str> =
            req.resource_metrics[0].scope_metrics[0].metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["version.rollouts", "version.rollout.verdict"]);
    }
}
