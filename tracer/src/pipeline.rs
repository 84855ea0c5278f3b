//! Builds every stage and the bounded channels between them. Reading this
//! file tells how data flows:
//!
//! ```text
//! probes --ring buffer--> capture::reader --capture_to_conntrack--> conntrack
//!   (connection table + protocol parsers) --conntrack_to_chain--> chain (spans)
//!   --chain_to_export--> export::lines (stdout)
//!   and chain --Sink (bounded queues)--> export::otlp (OTLP/gRPC or HTTP),
//!                                        topology (service graph, /api/topology),
//!                                        store (recent traces, /api/traces)
//! api (/healthz /readyz /metrics /api/* and the web page at /)
//! ```
//!
//! Every channel is bounded; a full channel drops (counted in
//! tracer_events_dropped_total{stage=<channel>}) and never blocks capture.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use tokio::sync::{mpsc, watch};

use crate::{
    api,
    capture::reader::Reader,
    chain::{self, ChainConfig},
    config::Config,
    conntrack::{self, TableConfig},
    export::{
        Sink,
        lines::{LineWriter, OutputFormat},
        otlp::{OtlpExporter, resolve_from_env},
    },
    identity::{ProcessStarts, starts::identity_metrics},
    k8s::K8sMetadata,
    probes::{LoadOptions, Probes},
    store::Store,
    telemetry::{Telemetry, set_counter},
    topology::Topology,
    ui,
};

pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let telemetry = Telemetry::new();
    // Bind first: a taken port is reported before anything is loaded.
    let listener = api::bind(cfg.api.addr).await?;
    let api_addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Bad export settings are an error at start, not a silent loss.
    let otlp = match resolve_from_env(&cfg.otlp)? {
        Some(r) => Some(OtlpExporter::new(r, telemetry.clone()).await?),
        None => {
            tracing::info!("no OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT): spans are not exported");
            None
        }
    };
    // Pod metadata when in a cluster (None elsewhere); names appear as the
    // API server answers, an unreachable one is retried in the background.
    let k8s = match K8sMetadata::start(&cfg.kubernetes, &telemetry).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("{e:#}; continuing without pod metadata");
            None
        }
    };
    if let Some(k) = k8s.clone() {
        telemetry.add_readiness_detail(move || k.readiness_detail());
    }
    let (topology, topology_sink) = Topology::new(cfg.topology.clone(), telemetry.clone());
    let (store, store_sink) = Store::new(cfg.store.clone(), telemetry.clone());
    let api_routes = vec![topology.routes(), store.routes(), ui::routes()];
    let api_task = tokio::spawn(api::serve(listener, telemetry.clone(), api_routes, stop_rx.clone()));

    let mut probes = Probes::load(&LoadOptions {
        capture_bytes: cfg.capture.capture_bytes,
        wakeup_bytes: cfg.capture.wakeup_bytes,
        accept_hook: cfg.capture.accept_hook,
        netns: cfg.capture.netns_inode()?,
    })?;
    let ring = probes.take_events()?;
    let kernel_counters = probes.take_counters()?;
    telemetry.add_refresher(move |t| {
        for (c, v) in kernel_counters.read() {
            set_counter(&t.kernel.get_or_create(&vec![("counter", c.name())]), v);
        }
    });

    // Consumers start before the probes attach, so nothing waits on them.
    let (capture_to_conntrack, conntrack_rx) = mpsc::channel(cfg.capture.queue_batches.max(1));
    let (conntrack_to_chain, chain_rx) = mpsc::channel((cfg.conntrack.output_queue / 256).max(4));
    queue_depth(&telemetry, "capture_to_conntrack", &capture_to_conntrack);
    queue_depth(&telemetry, "conntrack_to_chain", &conntrack_to_chain);

    // Lines on stdout; with `--output none` there is no such stage at all.
    let (chain_to_export, export_task) = if cfg.output == OutputFormat::None {
        (None, None)
    } else {
        let (tx, mut export_rx) = mpsc::channel(cfg.conntrack.output_queue.max(1));
        queue_depth(&telemetry, "chain_to_export", &tx);
        let mut writer = LineWriter::new(cfg.output);
        let task = tokio::task::spawn_blocking(move || {
            while let Some(r) = export_rx.blocking_recv() {
                writer.write(&r);
                if export_rx.is_empty() {
                    writer.flush();
                }
            }
            writer.flush();
        });
        (Some(tx), Some(task))
    };
    // The exporter stops after the chain stage released its last spans.
    let (export_stop_tx, export_stop_rx) = watch::channel(false);
    let mut sinks: Vec<Arc<dyn Sink>> = vec![topology_sink, store_sink];
    if let Some(o) = &otlp {
        sinks.push(Arc::new(o.sender()));
    }
    let metrics_exporter = otlp.as_ref().and_then(OtlpExporter::metrics_exporter);
    let topology_task = tokio::spawn(topology.run(export_stop_rx.clone(), metrics_exporter));
    let store_task = tokio::spawn(store.run(export_stop_rx.clone()));
    let otlp_task = otlp.map(|e| tokio::spawn(e.run(export_stop_rx)));
    // What each process was started as: written by the reader (exec and fork
    // records), read by the chain stage's identity.
    let process_starts = ProcessStarts::new();
    identity_metrics(&telemetry, &process_starts);
    let chain_task = tokio::spawn(chain::run(
        ChainConfig {
            span: cfg.http.span_config(),
            routes: cfg.http.routes.clone(),
            link: cfg.chain.clone(),
            sinks,
            k8s: k8s.clone(),
            starts: process_starts.clone(),
        },
        chain_rx,
        chain_to_export,
        telemetry.clone(),
    ));
    let conntrack_task = tokio::spawn(conntrack::run(
        TableConfig {
            max_connections: cfg.conntrack.max_connections,
            idle_timeout: Duration::from_secs(cfg.conntrack.idle_timeout_secs),
        },
        conntrack_rx,
        conntrack_to_chain,
        telemetry.clone(),
        // Data records only exist to be printed.
        cfg.data_events && cfg.output != OutputFormat::None,
        cfg.http.protocol_config(),
    ));
    let reader_task = tokio::spawn(
        Reader {
            ring,
            out: capture_to_conntrack,
            telemetry: telemetry.clone(),
            drain_interval: cfg.capture.drain_interval(),
            starts: process_starts.clone(),
        }
        .run(stop_rx.clone()),
    );

    probes.attach_all()?;
    telemetry.probes_attached.set(probes.attached.len() as i64);
    telemetry.set_ready();
    tracing::info!(probes = probes.attached.len(), "tracing TCP connections; web page and API at http://{api_addr}/");

    shutdown.await;
    tracing::info!("shutting down: detaching probes");
    drop(probes);
    let _ = stop_tx.send(true);
    // Each stage ends when the one before it closes its channel.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        reader_task.await.context("reader task")??;
        conntrack_task.await.context("conntrack task")?;
        chain_task.await.context("chain task")??;
        if let Some(t) = export_task {
            t.await.context("export task")?;
        }
        anyhow::Ok(())
    })
    .await
    .context("stages did not stop within 5 s")?;
    // Flush what is queued for the backend (bounded by its own timeout).
    let _ = export_stop_tx.send(true);
    if let Some(t) = otlp_task {
        t.await.context("OTLP exporter task")??;
    }
    topology_task.await.context("topology task")??;
    store_task.await.context("store task")??;
    api_task.await.context("api task")??;
    Ok(())
}

/// Report a channel's fill level on /metrics. Holds a weak handle, so the
/// channel still closes at shutdown.
fn queue_depth<T: Send + 'static>(telemetry: &Arc<Telemetry>, name: &'static str, tx: &mpsc::Sender<T>) {
    let weak = tx.downgrade();
    telemetry.add_refresher(move |t| {
        let depth = weak.upgrade().map_or(0, |s| (s.max_capacity() - s.capacity()) as i64);
        t.queue_depth.get_or_create(&vec![("queue", name)]).set(depth);
    });
}
