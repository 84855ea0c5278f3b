//! The business view: transactions (named on entry spans by `matcher`,
//! carried along their chains by the linker), their KPIs per minute with
//! Apdex, targets and SLOs with error budgets and burn-rate alerts (issue 16).
//!
//! ```text
//! chain stage: Linker + Matcher (entry SERVER span -> Transaction, on
//!   every span of its chain: business.transaction.name)
//!   --BusinessSink (entry spans only; chain_to_business, bounded, drop
//!   newest when full, counted)--> run(): Ledger (ledger.rs: per
//!   transaction and version, kpi.rs rings, slo.rs)
//!   --> /api/transactions (api.rs)
//!   --> /metrics, Prometheus names (metrics.rs, a collector)
//!   --> OTLP metrics every OTEL_METRIC_EXPORT_INTERVAL (otlp.rs)
//!   --every 10 s, the minutes recorded since (snapshot.rs)-->
//!     business_to_history (bounded, drop newest, counted) --> history.rs
//!     (redb file, own thread) --> at start: back into the ledger;
//!     baseline.rs and the 7d window read it
//! ```
//!
//! Time is the span's end in wall-clock unix minutes; the SLO alerts are
//! re-evaluated every 10 s (a transition is logged). The ledger sits behind
//! one mutex, taken once per batch, per API request and per scrape.

pub mod apdex;
mod api;
pub mod baseline;
pub mod config;
pub mod history;
#[cfg(test)]
mod history_tests;
pub mod kpi;
pub mod ledger;
pub mod matcher;
mod metrics;
mod otlp;
pub mod record;
pub mod slo;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod test_span;

use std::{
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{mpsc, watch};

pub use self::{
    api::TRANSACTIONS_PATH,
    config::BusinessConfig,
    history::HistoryConfig,
    ledger::Ledger,
    matcher::{Matcher, Transaction},
};
use crate::{
    clock::{Clock, monotonic_ns},
    export::{Sink, otlp::MetricsExporter},
    span::Span,
    telemetry::Telemetry,
};

struct Shared {
    ledger: Mutex<Ledger>,
    clock: Clock,
    /// Entry spans the matcher left without a transaction (cap hit).
    overflow_transactions: Arc<AtomicU64>,
    /// Set once by `run` (opening reads the file): the store, or why not.
    /// Unset while starting and when `[business.history] enabled = false`.
    history: OnceLock<Result<Arc<history::History>, String>>,
    baselines: baseline::Cache,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("business lock")
    }

    fn history(&self) -> Option<Arc<history::History>> {
        self.history.get().and_then(|h| h.as_ref().ok()).cloned()
    }

    /// Why the history is not kept (for /readyz and the API); None when it
    /// is, while starting, or when turned off in the config.
    fn history_problem(&self) -> Option<String> {
        match self.history.get()? {
            Err(e) => Some(e.clone()),
            Ok(h) => h.failing(),
        }
    }
}

const HISTORY_QUEUE: &str = "business_to_history";

const QUEUE: &str = "chain_to_business";

/// The chain stage's handle: queues entry spans, never blocks.
struct BusinessSink {
    tx: mpsc::Sender<Arc<Span>>,
    telemetry: Arc<Telemetry>,
}

impl Sink for BusinessSink {
    fn span(&self, span: &Arc<Span>) {
        if !span.business_entry || span.transaction.is_none() {
            return;
        }
        match self.tx.try_send(span.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.telemetry.drop_event(QUEUE, "queue_full", 1),
            Err(mpsc::error::TrySendError::Closed(_)) => self.telemetry.drop_event(QUEUE, "shutdown", 1),
        }
    }
}

pub struct Business {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Arc<Span>>,
    telemetry: Arc<Telemetry>,
}

impl Business {
    /// The stage, the sink the chain stage feeds, and the matcher the
    /// linker names entry spans with. Registers the metrics on /metrics.
    pub fn new(cfg: BusinessConfig, telemetry: Arc<Telemetry>) -> (Business, Arc<dyn Sink>, Matcher) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let matcher = Matcher::new(&cfg);
        let shared = Arc::new(Shared {
            ledger: Mutex::new(Ledger::new(cfg)),
            clock: Clock::new(),
            overflow_transactions: matcher.overflow.clone(),
            history: OnceLock::new(),
            baselines: baseline::Cache::default(),
        });
        telemetry.register_unprefixed_collector(Box::new(metrics::Collector::new(shared.clone())));
        let s = shared.clone();
        telemetry.add_readiness_detail(move || s.history_problem().map(|e| format!("business history off: {e}")));
        let weak = tx.downgrade();
        telemetry.add_refresher(move |t| {
            let depth = weak.upgrade().map_or(0, |s| (s.max_capacity() - s.capacity()) as i64);
            t.queue_depth.get_or_create(&vec![("queue", QUEUE)]).set(depth);
        });
        (Business { shared, rx, telemetry: telemetry.clone() }, Arc::new(BusinessSink { tx, telemetry }), matcher)
    }

    /// `GET /api/transactions`, `GET /api/transactions/{name}` (see `api`).
    pub fn routes(&self) -> axum::Router {
        api::routes(self.shared.clone())
    }

    /// Counts entry spans until `shutdown` (or until the sink is gone);
    /// exports OTLP metrics every OTEL_METRIC_EXPORT_INTERVAL ms (default
    /// 60000) when `metrics` is Some, and once more at the end.
    pub async fn run(self, shutdown: watch::Receiver<bool>, metrics: Option<MetricsExporter>) -> anyhow::Result<()> {
        let Business { shared, mut rx, telemetry } = self;
        open_history(&shared).await;
        evaluate(&shared);
        let every = crate::topology::export_interval(std::env::var("OTEL_METRIC_EXPORT_INTERVAL").ok().as_deref());
        let exporter = metrics.map(|m| {
            let task = tokio::spawn(otlp::export_loop(shared.clone(), m.clone(), every, shutdown.clone()));
            (m, task)
        });
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(256);
        let mut stop = shutdown.clone();
        let stopped = async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    apply(&shared, &mut batch);
                }
                _ = tick.tick() => {
                    evaluate(&shared);
                    persist(&shared, &telemetry);
                }
                _ = &mut stopped => break,
            }
        }
        rx.close();
        while rx.recv_many(&mut batch, 256).await > 0 {
            apply(&shared, &mut batch);
        }
        evaluate(&shared);
        if let Some(h) = shared.history() {
            // The last minutes, written before the agent ends.
            let last = snapshot::take(&mut shared.lock(), now_minute());
            if tokio::task::spawn_blocking(move || h.close(last)).await.is_err() {
                tracing::error!("business history: closing the store failed");
            }
        }
        if let Some((m, task)) = exporter {
            if let Err(e) = task.await {
                tracing::warn!("business: OTLP metrics task failed: {e}");
            }
            otlp::export_once(&shared, &m, shutdown).await;
        }
        Ok(())
    }
}

/// Opens the history (off the async workers) and puts its last days back
/// into the ledger; a history that cannot be opened is logged and left off.
async fn open_history(shared: &Arc<Shared>) {
    let (cfg, slo_minutes) = {
        let l = shared.lock();
        (l.config().history.clone(), l.config().longest_slo_minutes())
    };
    if !cfg.enabled {
        return;
    }
    let retention = cfg.retention_minutes();
    let limits = history::Limits {
        retention_minutes: retention,
        hour_retention_minutes: slo_minutes.max(retention),
        max_bytes: cfg.max_bytes,
    };
    let now = now_minute();
    let path = cfg.path.display().to_string();
    let opened = tokio::task::spawn_blocking(move || {
        let h = history::History::open(&cfg, limits)?;
        let loaded = h.load(now, slo_minutes);
        Ok::<_, String>((h, loaded))
    })
    .await
    .unwrap_or_else(|e| Err(format!("opening the history: {e}")));
    let set = match opened {
        Ok((h, loaded)) => {
            let n = snapshot::restore(&mut shared.lock(), &loaded, now, monotonic_ns());
            tracing::info!(
                "business history: {path}: {n} transactions restored from {} minute and {} hour records",
                loaded.minutes.len(),
                loaded.hours.len()
            );
            Ok(Arc::new(h))
        }
        Err(e) => {
            tracing::error!("business history off: {e}; tracing goes on, KPIs are kept in memory only");
            Err(e)
        }
    };
    let _ = shared.history.set(set);
}

/// Hands the minutes recorded since the last call to the history's writer;
/// a full queue drops the batch (counted) and keeps its minutes marked.
fn persist(shared: &Shared, telemetry: &Telemetry) {
    let Some(h) = shared.history() else { return };
    let mut ledger = shared.lock();
    let batch = snapshot::take(&mut ledger, now_minute());
    if batch.marks.is_empty() && batch.alerts.is_empty() {
        return;
    }
    if let Err(b) = h.submit(batch) {
        ledger.mark_dirty(b.marks);
        telemetry.drop_event(HISTORY_QUEUE, "queue_full", 1);
    }
}

/// Unix minute of a wall-clock time.
fn unix_minute(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

fn now_minute() -> u64 {
    unix_minute(SystemTime::now())
}

fn apply(shared: &Shared, batch: &mut Vec<Arc<Span>>) {
    let now = monotonic_ns();
    let mut ledger = shared.lock();
    for s in batch.drain(..) {
        ledger.record(&s, unix_minute(shared.clock.wall(s.end_ns)), now);
    }
}

fn evaluate(shared: &Shared) {
    let changes = shared.lock().evaluate(now_minute());
    for (slo, rule, firing) in changes {
        if firing {
            tracing::warn!(slo = %slo, rule, "SLO burn-rate alert firing");
        } else {
            tracing::info!(slo = %slo, rule, "SLO burn-rate alert cleared");
        }
    }
}

/// Entry spans not given a transaction because the cap was hit.
fn overflow(shared: &Shared) -> u64 {
    shared.overflow_transactions.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{identity::Service, span::Status};

    /// An entry span of `checkout` ending now, `ms` long.
    fn entry(t: &Arc<Transaction>, ms: u64, error: bool) -> Arc<Span> {
        let mut s = test_span::span("shop", "POST", "/checkout");
        s.service = Arc::new(Service { name: "shop".into(), version: Some("1.2".into()), ..Default::default() });
        s.end_ns = monotonic_ns();
        s.start_ns = s.end_ns - ms * 1_000_000;
        s.status = if error { Status::Error } else { Status::Unset };
        s.transaction = Some(t.clone());
        s.business_entry = true;
        Arc::new(s)
    }

    #[test]
    fn entry_spans_reach_metrics_api_and_otlp() {
        let telemetry = Telemetry::new();
        let (b, sink, _) = Business::new(BusinessConfig::default(), telemetry.clone());
        let t = Arc::new(Transaction { name: "checkout".into(), rule: None });
        for i in 0..100u64 {
            sink.span(&entry(&t, if i < 90 { 100 } else { 1000 }, i >= 95));
        }
        // Not an entry: ignored.
        let mut child = (*entry(&t, 5, false)).clone();
        child.business_entry = false;
        sink.span(&Arc::new(child));
        let Business { shared, mut rx, .. } = b;
        let mut batch = vec![];
        while let Ok(s) = rx.try_recv() {
            batch.push(s);
        }
        assert_eq!(batch.len(), 100);
        apply(&shared, &mut batch);
        evaluate(&shared);

        let view = api::list_view(&shared.lock(), 0, "1h", 60, now_minute(), &Default::default(), Default::default());
        let tx = &view.transactions[0];
        assert_eq!((tx.kpis.count, tx.kpis.errors), (100, 5));
        // 90 satisfied, 5 tolerating (1 s <= 2 s), 5 frustrated (errors).
        assert_eq!((tx.kpis.satisfied, tx.kpis.tolerating, tx.kpis.frustrated), (90, 5, 5));
        assert_eq!(tx.kpis.apdex, Some(0.925));
        assert_eq!(tx.versions[0].version, "1.2");
        // 5 % errors over a 1 % allowance: burn 5 on every window.
        let burn = tx.slos[0].burn_rates["1h"].unwrap();
        assert!((burn - 5.0).abs() < 1e-9, "{burn}");

        let text = telemetry.render();
        for want in [
            "business_transaction_duration_seconds_count{business_transaction_name=\"checkout\",service_name=\"shop\",service_version=\"1.2\",error=\"false\"} 95",
            "business_transaction_apdex{business_transaction_name=\"checkout\"} 0.925",
            "slo_burn_rate{slo_name=\"checkout availability\",slo_window=\"1h\"} 4.99",
            "slo_error_budget_remaining{slo_name=\"checkout availability\"",
            "# HELP slo_alert_firing",
            "tracer_business_overflow_total{cap=\"transactions\"} 0",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }

        let req = otlp::build(&shared.lock(), &shared.clock, monotonic_ns(), now_minute(), &Default::default());
        let names: Vec<&str> =
            req.resource_metrics[0].scope_metrics[0].metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "business.transaction.duration",
                "business.transaction.apdex",
                "slo.error_budget.remaining",
                "slo.burn_rate"
            ]
        );
    }
}
