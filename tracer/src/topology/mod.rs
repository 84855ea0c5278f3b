//! Live service topology: which service calls which, how much, how fast,
//! how often it fails, and the TCP health of each edge.
//!
//! ```text
//! chain stage --TopologySink (never blocks; chain_to_topology, bounded,
//!   drop newest when full, counted)--> run(): Aggregator (aggregate.rs:
//!   pairs the two spans of a request, names both ends) -> Graph (graph.rs:
//!   nodes, edges, caps; window.rs: 1m/5m/1h rings; histogram.rs)
//!   --> /api/topology JSON (api.rs)
//!   --> /metrics, servicegraph connector names (metrics.rs, a collector)
//!   --> OTLP metrics every OTEL_METRIC_EXPORT_INTERVAL (otlp.rs)
//! ```
//!
//! The graph sits behind one mutex: the aggregation task takes it once per
//! batch of inputs, the API and the scrape once per request; nothing on the
//! capture path ever waits on it.

mod aggregate;
mod api;
mod conn;
mod graph;
mod histogram;
mod metrics;
mod otlp;
mod pair;
mod window;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

pub(crate) use self::metrics::escape;
use self::{aggregate::Aggregator, conn::ConnFacts};
pub use self::{
    api::TOPOLOGY_PATH,
    graph::{NodeKind, OVERFLOW},
    histogram::{EXPORT_BOUNDS_S, Histogram},
    window::Window,
};
use crate::{
    clock::{Clock, monotonic_ns},
    conntrack::ConnRecord,
    export::{Sink, otlp::MetricsExporter},
    identity::Service,
    span::Span,
    telemetry::Telemetry,
};

/// `[topology]` config section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologyConfig {
    /// Nodes (services and virtual nodes) at most; a new one past it is
    /// counted on the node "__overflow__". Default 1000.
    pub max_nodes: usize,
    /// Edges at most; a new one past it is counted on the edge
    /// "__overflow__ -> __overflow__". Default 5000.
    pub max_edges: usize,
    /// Spans and connection events queued from the chain stage
    /// (chain_to_topology); past it they are dropped and counted. Default 65536.
    pub queue: usize,
    /// How long the CLIENT and SERVER spans of one request wait for each
    /// other before the one seen is counted alone. Default 5000 ms.
    pub pair_timeout_ms: u64,
    /// Requests waiting for their other span, and connection events waiting
    /// for their delay, at most (each); past it the oldest is counted at
    /// once. Default 100000.
    pub max_pending: usize,
    /// Connection events wait this long before they are placed on an edge,
    /// so that the spans of the same connection (held `[chain] hold_ms`)
    /// named its server first. Keep it above hold_ms. Default 3000 ms.
    pub conn_delay_ms: u64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            max_nodes: 1000,
            max_edges: 5000,
            queue: 65_536,
            pair_timeout_ms: 5000,
            max_pending: 100_000,
            conn_delay_ms: 3000,
        }
    }
}

/// State shared by the aggregation task, the API and the collector.
struct Shared {
    agg: Mutex<Aggregator>,
    clock: Clock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Aggregator> {
        self.agg.lock().expect("topology lock")
    }
}

enum Input {
    Span(Arc<Span>),
    Conn(ConnFacts),
}

/// The chain stage's handle: queues, never blocks.
struct TopologySink {
    tx: mpsc::Sender<Input>,
    telemetry: Arc<Telemetry>,
}

impl TopologySink {
    fn send(&self, i: Input) {
        match self.tx.try_send(i) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.telemetry.drop_event(QUEUE, "queue_full", 1),
            Err(mpsc::error::TrySendError::Closed(_)) => self.telemetry.drop_event(QUEUE, "shutdown", 1),
        }
    }
}

const QUEUE: &str = "chain_to_topology";

impl Sink for TopologySink {
    fn span(&self, span: &Arc<Span>) {
        self.send(Input::Span(span.clone()));
    }

    fn conn(&self, conn: &ConnRecord, service: Option<&Arc<Service>>) {
        if let Some(c) = ConnFacts::of(conn, service) {
            self.send(Input::Conn(c));
        }
    }
}

pub struct Topology {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Input>,
}

impl Topology {
    /// The topology and the sink the chain stage feeds. Registers the
    /// servicegraph metrics on /metrics (`telemetry`).
    pub fn new(cfg: TopologyConfig, telemetry: Arc<Telemetry>) -> (Topology, Arc<dyn Sink>) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let shared = Arc::new(Shared { agg: Mutex::new(Aggregator::new(&cfg, monotonic_ns())), clock: Clock::new() });
        telemetry.register_unprefixed_collector(Box::new(metrics::Collector::new(shared.clone())));
        let weak = tx.downgrade();
        telemetry.add_refresher(move |t| {
            let depth = weak.upgrade().map_or(0, |s| (s.max_capacity() - s.capacity()) as i64);
            t.queue_depth.get_or_create(&vec![("queue", QUEUE)]).set(depth);
        });
        let sink = Arc::new(TopologySink { tx, telemetry: telemetry.clone() });
        (Topology { shared, rx }, sink)
    }

    /// `GET /api/topology?window=1m|5m|1h` (see `api` for the schema).
    pub fn routes(&self) -> axum::Router {
        api::routes(self.shared.clone())
    }

    /// Aggregates until `shutdown` (or until every sink handle is gone);
    /// exports OTLP metrics every OTEL_METRIC_EXPORT_INTERVAL ms (default
    /// 60000) when `metrics` is Some, and once more at the end.
    pub async fn run(self, shutdown: watch::Receiver<bool>, metrics: Option<MetricsExporter>) -> anyhow::Result<()> {
        let Topology { shared, mut rx } = self;
        let every = export_interval(std::env::var("OTEL_METRIC_EXPORT_INTERVAL").ok().as_deref());
        let exporter = metrics.map(|m| {
            let task = tokio::spawn(otlp::export_loop(shared.clone(), m.clone(), every, shutdown.clone()));
            (m, task)
        });
        let mut tick = tokio::time::interval(Duration::from_secs(1));
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
                _ = tick.tick() => shared.lock().tick(monotonic_ns()),
                _ = &mut stopped => break,
            }
        }
        // What the chain stage handed over before stopping still counts.
        rx.close();
        while rx.recv_many(&mut batch, 256).await > 0 {
            apply(&shared, &mut batch);
        }
        shared.lock().flush(monotonic_ns());
        if let Some((m, task)) = exporter {
            if let Err(e) = task.await {
                tracing::warn!("topology: OTLP metrics task failed: {e}");
            }
            otlp::export_once(&shared, &m, shutdown).await;
        }
        Ok(())
    }
}

fn apply(shared: &Shared, batch: &mut Vec<Input>) {
    let now = monotonic_ns();
    let mut agg = shared.lock();
    for i in batch.drain(..) {
        match i {
            Input::Span(s) => agg.span(now, &s),
            Input::Conn(c) => agg.conn(now, c),
        }
    }
}

/// OTEL_METRIC_EXPORT_INTERVAL (ms, OpenTelemetry SDK variable); default
/// 60 s; a value that is not a positive number is reported and ignored.
pub(crate) fn export_interval(v: Option<&str>) -> Duration {
    let default = Duration::from_secs(60);
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                tracing::warn!("OTEL_METRIC_EXPORT_INTERVAL={v} is not a positive number of ms; using 60000");
                default
            }
        },
    }
}

#[cfg(test)]
mod tests;
