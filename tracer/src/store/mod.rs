//! Embedded store of recent traces, so the tracer is useful with no backend:
//! released spans come in through a [`Sink`] (a bounded queue, never
//! blocking the chain stage), are grouped by trace within size caps
//! (`traces`), and are served as JSON on /api/traces (`api`).
//!
//! ```text
//! chain --StoreSink (chain_to_store, bounded, drop newest)--> Store::run
//!   --> Traces (Mutex; held per batch or per query) <-- GET /api/traces[/{id}]
//! ```
//!
//! Why a queue and not a mutex in the sink: a query walks up to every
//! stored trace while holding the lock; the chain stage must never wait on
//! that, so it only `try_send`s, and a full queue drops the span, counted in
//! `tracer_events_dropped_total{stage="chain_to_store",reason="queue_full"}`.

pub mod api;
#[cfg(test)]
mod tests;
pub mod traces;

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use self::traces::{Limits, Traces};
use crate::{clock::Clock, export::Sink, span::Span, telemetry::Telemetry};

/// `[store]`: how much recent history the embedded store keeps. The oldest
/// trace is evicted whole when any cap is passed
/// (`tracer_store_evicted_traces_total`, `tracer_store_evicted_spans_total`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Spans kept at most, over all traces. Default: 50000.
    pub max_spans: usize,
    /// Traces kept at most. Default: 10000.
    pub max_traces: usize,
    /// Estimated bytes of the kept spans at most. Default: 64 MiB.
    pub max_bytes: usize,
    /// Spans kept per trace; later ones are dropped (counted in
    /// tracer_events_dropped_total{stage="store",reason="trace_full"}). Default: 1000.
    pub max_spans_per_trace: usize,
    /// Spans queued between the chain stage and the store. Default: 4096.
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_spans: 50_000,
            max_traces: 10_000,
            max_bytes: 64 << 20,
            max_spans_per_trace: 1000,
            queue: 4096,
        }
    }
}

/// State shared by the store task, the API handlers and the metrics.
#[derive(Debug)]
struct Shared {
    traces: Mutex<Traces>,
    /// Monotonic span times to wall time for the API.
    clock: Clock,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Traces> {
        // A panic while holding the lock leaves consistent counts behind
        // (insert updates them last); keep serving.
        self.traces.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stored traces as another stage's view reads them.
#[derive(Clone)]
pub struct TracesView(Arc<Shared>);

impl TracesView {
    /// The `n` slowest stored traces that started in `[from, to)` and hold
    /// a span of `service` (or whose peer it is; any trace when None),
    /// slowest first.
    pub fn slowest(
        &self,
        service: Option<&str>,
        from: std::time::SystemTime,
        to: std::time::SystemTime,
        n: usize,
    ) -> Vec<api::TraceSummary> {
        let filter = traces::Filter { service: service.map(str::to_string), limit: usize::MAX, ..Default::default() };
        let t = self.0.lock();
        let mut found: Vec<&traces::Trace> = t
            .query(&filter)
            .filter(|tr| {
                let start = self.0.clock.wall(tr.start_ns);
                start >= from && start < to
            })
            .collect();
        found.sort_by_key(|tr| std::cmp::Reverse(tr.duration_ns()));
        found.into_iter().take(n).map(|tr| api::summary(&self.0, tr)).collect()
    }
}

pub struct Store {
    shared: Arc<Shared>,
    from_chain: mpsc::Receiver<Arc<Span>>,
    telemetry: Arc<Telemetry>,
}

impl Store {
    /// The store, and the sink the chain stage feeds it through. Registers
    /// the store's metrics and its queue depth on `telemetry`.
    pub fn new(cfg: StoreConfig, telemetry: Arc<Telemetry>) -> (Store, Arc<dyn Sink>) {
        let shared = Arc::new(Shared {
            traces: Mutex::new(Traces::new(Limits {
                max_spans: cfg.max_spans,
                max_traces: cfg.max_traces,
                max_bytes: cfg.max_bytes,
                max_spans_per_trace: cfg.max_spans_per_trace,
            })),
            clock: Clock::new(),
        });
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let weak = tx.downgrade();
        telemetry.add_refresher(move |t| {
            let depth = weak.upgrade().map_or(0, |s| (s.max_capacity() - s.capacity()) as i64);
            t.queue_depth.get_or_create(&vec![("queue", "chain_to_store")]).set(depth);
        });
        telemetry.register_collector(Box::new(StoreMetrics(shared.clone())));
        let sink = Arc::new(StoreSink { tx, telemetry: telemetry.clone() });
        (Store { shared, from_chain: rx, telemetry }, sink)
    }

    /// Read access to the stored traces for other views (the report).
    pub fn view(&self) -> TracesView {
        TracesView(self.shared.clone())
    }

    /// GET /api/traces and GET /api/traces/{trace_id}, with their own state.
    pub fn routes(&self) -> axum::Router {
        api::routes(self.shared.clone())
    }

    /// Take spans from the chain stage until it closes the queue or
    /// `shutdown` is set (the store is memory only: nothing to flush).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                n = self.from_chain.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        return Ok(());
                    }
                    let refused = {
                        let mut t = self.shared.lock();
                        let before = t.refused_spans;
                        for s in batch.drain(..) {
                            t.insert(s);
                        }
                        t.refused_spans - before
                    };
                    if refused > 0 {
                        self.telemetry.drop_event("store", "trace_full", refused);
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The chain stage's handle on the store: never blocks.
struct StoreSink {
    tx: mpsc::Sender<Arc<Span>>,
    telemetry: Arc<Telemetry>,
}

impl Sink for StoreSink {
    fn span(&self, span: &Arc<Span>) {
        match self.tx.try_send(span.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.telemetry.drop_event("chain_to_store", "queue_full", 1),
            // The store stopped at shutdown: the process is exiting and the
            // store keeps nothing past it, so there is nothing to lose.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The store's fill level and evictions, read at each scrape.
#[derive(Debug)]
struct StoreMetrics(Arc<Shared>);

impl Collector for StoreMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (traces, spans, bytes, ev_traces, ev_spans) = {
            let t = self.0.lock();
            (t.len(), t.span_count(), t.bytes(), t.evicted_traces, t.evicted_spans)
        };
        for (name, help, v) in [
            ("store_traces", "Traces held by the embedded store", traces),
            ("store_spans", "Spans held by the embedded store", spans),
            ("store_bytes", "Estimated bytes of the spans held by the embedded store", bytes),
        ] {
            let g = ConstGauge::new(v as i64);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        for (name, help, v) in [
            (
                "store_evicted_traces",
                "Traces evicted from the embedded store (oldest first) to stay within [store] max_spans, max_traces, max_bytes",
                ev_traces,
            ),
            ("store_evicted_spans", "Spans evicted from the embedded store with their traces", ev_spans),
        ] {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
