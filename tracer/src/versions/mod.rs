//! Versions compared (issue 17): two versions of a service judged with
//! evidence, per transaction and for the service (`compare`, with the
//! tests of `stats`), rollouts detected and compared on their own
//! (`rollout`), `GET /api/compare` and `GET /api/rollouts` (`api`), the
//! verdicts on /metrics and as OTLP metrics (`export`), and the client of
//! `tracer compare` (`cli`), the report of a window (`report`).
//!
//! ```text
//! chain stage --VersionsSink (inbound spans; chain_to_versions, bounded,
//!   drop newest when full, counted)--> run(): Book (book.rs: per service
//!   and version, per transaction, 1-minute KPI rings of an hour)
//!   --> Rollouts (rollout.rs, every 5 s) --> /api/rollouts, /metrics, OTLP
//!   --> /api/compare (api.rs, compare.rs on request)
//! ```
//!
//! The store sits behind one mutex, taken once per batch, per request, per
//! scrape and per tick.

pub mod api;
pub mod bins;
pub mod book;
pub mod cli;
pub mod compare;
pub mod config;
mod export;
pub mod report;
pub mod rollout;
pub mod stats;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{mpsc, watch};

pub use self::config::VersionsConfig;
use self::{
    book::{Book, Request},
    rollout::Rollouts,
};
use crate::{
    business::BusinessConfig,
    clock::Clock,
    export::{Sink, otlp::MetricsExporter},
    span::Span,
    telemetry::Telemetry,
};

pub struct State {
    pub book: Book,
    pub rollouts: Rollouts,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    cfg: VersionsConfig,
    clock: Clock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("versions lock")
    }
}

const QUEUE: &str = "chain_to_versions";

struct VersionsSink {
    tx: mpsc::Sender<Arc<Span>>,
    telemetry: Arc<Telemetry>,
}

impl Sink for VersionsSink {
    fn span(&self, span: &Arc<Span>) {
        if !span.kind.is_inbound() {
            return;
        }
        match self.tx.try_send(span.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.telemetry.drop_event(QUEUE, "queue_full", 1),
            Err(mpsc::error::TrySendError::Closed(_)) => self.telemetry.drop_event(QUEUE, "shutdown", 1),
        }
    }
}

pub struct Versions {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Arc<Span>>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

impl Versions {
    /// The stage and the sink the chain stage feeds (`business` gives the
    /// Apdex T of each transaction). Registers its series on /metrics.
    pub fn new(cfg: VersionsConfig, business: BusinessConfig, telemetry: Arc<Telemetry>) -> (Versions, Arc<dyn Sink>) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                book: Book::new(cfg.max_versions, cfg.max_transactions_per_version, business),
                rollouts: Rollouts::default(),
            }),
            cfg,
            clock: Clock::new(),
        });
        telemetry.register_unprefixed_collector(Box::new(export::Collector::new(shared.clone())));
        let weak = tx.downgrade();
        telemetry.add_refresher(move |t| {
            let depth = weak.upgrade().map_or(0, |s| (s.max_capacity() - s.capacity()) as i64);
            t.queue_depth.get_or_create(&vec![("queue", QUEUE)]).set(depth);
        });
        (Versions { shared, rx }, Arc::new(VersionsSink { tx, telemetry }))
    }

    /// `GET /api/compare`, `GET /api/rollouts` (see `api`), `GET
    /// /api/report` (see `report`; its slowest traces from `traces`).
    pub fn routes(&self, traces: Option<crate::store::TracesView>) -> axum::Router {
        api::routes(self.shared.clone(), traces)
    }

    /// Records inbound spans until `shutdown`; every 5 s detects rollouts'
    /// due comparisons; exports OTLP metrics every OTEL_METRIC_EXPORT_INTERVAL
    /// when `metrics` is Some.
    pub async fn run(self, shutdown: watch::Receiver<bool>, metrics: Option<MetricsExporter>) -> anyhow::Result<()> {
        let Versions { shared, mut rx } = self;
        let every = crate::topology::export_interval(std::env::var("OTEL_METRIC_EXPORT_INTERVAL").ok().as_deref());
        let exporter = metrics.map(|m| tokio::spawn(export::export_loop(shared.clone(), m, every, shutdown.clone())));
        let mut tick = tokio::time::interval(Duration::from_secs(5));
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
                _ = tick.tick() => evaluate(&shared),
                _ = &mut stopped => break,
            }
        }
        rx.close();
        while rx.recv_many(&mut batch, 256).await > 0 {
            apply(&shared, &mut batch);
        }
        if let Some(task) = exporter
            && let Err(e) = task.await
        {
            tracing::warn!("versions: OTLP metrics task failed: {e}");
        }
        Ok(())
    }
}

fn apply(shared: &Shared, batch: &mut Vec<Arc<Span>>) {
    let mut st = shared.lock();
    let State { book, rollouts } = &mut *st;
    for s in batch.drain(..) {
        if let Some(r) = Request::of(&s, unix_ms(shared.clock.wall(s.end_ns))) {
            book.record(&r);
        }
    }
    rollouts.detect(book, &shared.cfg);
}

fn evaluate(shared: &Shared) {
    let mut st = shared.lock();
    let State { book, rollouts } = &mut *st;
    rollouts.evaluate(book, now_ms(), &shared.cfg);
}
