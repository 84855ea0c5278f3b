//! The business view on /metrics (a prometheus-client collector, encoded at
//! each scrape from the ledger), the OTLP names in Prometheus form:
//!
//! - `business_transaction_duration_seconds{business_transaction_name,
//!   service_name, service_version, error}`: histogram of entry-span
//!   durations since start (bounds 2 ms ... 15 s)
//! - `business_transaction_apdex{business_transaction_name}`: Apdex(T) over
//!   the last 5 minutes
//! - `slo_error_budget_remaining{slo_name, business_transaction_name}`:
//!   share of the SLO window's error budget left (negative when overspent)
//! - `slo_burn_rate{slo_name, slo_window}`: error rate over the window
//!   (1h, 6h, 3d) divided by the rate the objective allows
//! - `slo_alert_firing{slo_name, rule}`: 1 while a multi-window burn-rate
//!   alert (page: 14.4x over 1 h and 5 min; ticket: 6x over 6 h and 30 min) fires
//! - `tracer_business_transactions`, `tracer_business_overflow_total{cap}`
//!   (cap = transactions: entry spans left unnamed; versions: requests on
//!   version `__overflow__`)
//! - `tracer_business_history_stored_bytes`, `..._evicted_total{reason}`
//!   (age: past the retention; cap: past max_bytes), `..._records_written_total`,
//!   `..._write_errors_total`, `..._bad_records_total` (records that did not
//!   decode), `tracer_business_history_up` (0 while writes fail or it is off)

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use super::{Shared, now_minute, overflow, slo::BURN_WINDOWS};
use crate::topology::escape;

/// Minutes the Apdex gauge covers.
pub const APDEX_GAUGE_MINUTES: u64 = 5;

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
        f.write_str("business::Collector")
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauges(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, f64)]) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (l, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(l)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let now = now_minute();
        let ledger = self.shared.lock();
        let mut txns: Vec<_> = ledger.transactions().iter().collect();
        txns.sort_by(|a, b| a.t.name.cmp(&b.t.name));

        let mut hists = vec![];
        for tx in &txns {
            for v in &tx.versions {
                for (error, h) in v.durations.iter().enumerate() {
                    if h.count() == 0 {
                        continue;
                    }
                    let l: Labels = vec![
                        ("business_transaction_name", escape(&tx.t.name)),
                        ("service_name", escape(&v.service)),
                        ("service_version", escape(&v.version)),
                        ("error", (error == 1).to_string()),
                    ];
                    hists.push((l, h));
                }
            }
        }
        if !hists.is_empty() {
            let mut m = enc.encode_descriptor(
                "business_transaction_duration_seconds",
                "Duration of the requests that start each business transaction (entry SERVER spans), by service version and error",
                None,
                MetricType::Histogram,
            )?;
            for (l, h) in &hists {
                let mut f = m.encode_family(l)?;
                f.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count(), &h.export_buckets(), None)?;
            }
        }
        let name = |tx: &super::ledger::TxnState| ("business_transaction_name", escape(&tx.t.name));
        let apdex: Vec<(Labels, f64)> = txns
            .iter()
            .filter_map(|tx| Some((vec![name(tx)], tx.kpis.summary(now, APDEX_GAUGE_MINUTES).apdex?)))
            .collect();
        gauges(
            &mut enc,
            "business_transaction_apdex",
            "Apdex(T) of each business transaction over the last 5 minutes: (satisfied + tolerating / 2) / requests",
            &apdex,
        )?;
        let slos = || txns.iter().flat_map(|tx| tx.slos.iter().map(move |s| (*tx, s)));
        let budget: Vec<(Labels, f64)> = slos()
            .filter_map(|(tx, s)| Some((vec![("slo_name", escape(&s.name)), name(tx)], s.slo.budget_remaining(now)?)))
            .collect();
        gauges(
            &mut enc,
            "slo_error_budget_remaining",
            "Share of the error budget left over the SLO window (1 = untouched, below 0 = overspent)",
            &budget,
        )?;
        let mut burn = vec![];
        for (_, s) in slos() {
            for (w, m) in BURN_WINDOWS {
                if let Some(b) = s.slo.burn_rate(now, m) {
                    burn.push((vec![("slo_name", escape(&s.name)), ("slo_window", w.to_string())], b));
                }
            }
        }
        gauges(
            &mut enc,
            "slo_burn_rate",
            "Error rate over the window divided by the rate the SLO objective allows (1 = budget spent exactly over the SLO window)",
            &burn,
        )?;
        let alerts: Vec<(Labels, f64)> = slos()
            .flat_map(|(_, s)| {
                s.alerts.iter().map(|a| {
                    (vec![("slo_name", escape(&s.name)), ("rule", a.rule.to_string())], f64::from(u8::from(a.firing)))
                })
            })
            .collect();
        gauges(
            &mut enc,
            "slo_alert_firing",
            "1 while a multi-window burn-rate alert fires (page: 14.4x over 1h and 5m; ticket: 6x over 6h and 30m)",
            &alerts,
        )?;
        let mut m = enc.encode_descriptor(
            "tracer_business_transactions",
            "Business transactions tracked",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(txns.len() as i64).encode(m)?;
        m = enc.encode_descriptor(
            "tracer_business_overflow",
            "Past a cap: entry spans left without a transaction (cap=transactions), requests counted on version __overflow__ (cap=versions)",
            None,
            MetricType::Counter,
        )?;
        for (cap, v) in [("transactions", overflow(&self.shared)), ("versions", ledger.counters.overflow_versions)] {
            ConstCounter::new(v).encode(m.encode_family(&vec![("cap", cap)])?)?;
        }
        drop(ledger);
        self.history(&mut enc)
    }
}

impl Collector {
    fn history(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let up = self.shared.history().is_some() && self.shared.history_problem().is_none();
        let m = enc.encode_descriptor(
            "tracer_business_history_up",
            "1 while the business history is written (0: off, or writes fail; /readyz says why)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(up)).encode(m)?;
        let Some(h) = self.shared.history() else { return Ok(()) };
        let c = &h.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let m = enc.encode_descriptor(
            "tracer_business_history_stored_bytes",
            "Bytes of records (keys and values) in the business history (capped by max_bytes)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(load(&c.stored_bytes) as i64).encode(m)?;
        let mut m = enc.encode_descriptor(
            "tracer_business_history_evicted",
            "Records evicted from the business history: past the retention (reason=age) or the size cap (reason=cap)",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in [("age", load(&c.evicted_age)), ("cap", load(&c.evicted_cap))] {
            ConstCounter::new(v).encode(m.encode_family(&vec![("reason", reason)])?)?;
        }
        for (name, help, v) in [
            (
                "tracer_business_history_records_written",
                "Minute records written to the business history (each a minute of one transaction; rewritten while the minute fills)",
                &c.minutes_written,
            ),
            (
                "tracer_business_history_write_errors",
                "Failed writes of the business history (disk full, read-only)",
                &c.write_errors,
            ),
            ("tracer_business_history_bad_records", "History records that did not decode (skipped)", &c.bad_records),
        ] {
            let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(load(v)).encode(m)?;
        }
        Ok(())
    }
}
