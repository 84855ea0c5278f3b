//! Builds every stage and the bounded channels between them. Reading this
//! file tells how data flows:
//!
//! ```text
//! probes --ring buffer--> capture::reader --capture_to_conntrack--> conntrack
//!   (connection table + protocol parsers) --conntrack_to_chain--> chain (spans)
//!   --chain_to_export--> export::lines (stdout)
//!   and chain --Sink (bounded queues)--> export::otlp (OTLP/gRPC or HTTP),
//!                                        topology (service graph, /api/topology),
//!                                        business (transactions, /api/transactions),
//!                                        versions (versions compared, /api/compare, /api/rollouts),
//!                                        store (recent traces, /api/traces)
//! api (/healthz /readyz /metrics /api/* and the web page at /)
//! ```
//!
//! Every channel is bounded; a full channel drops (counted in
//! tracer_events_dropped_total{stage=<channel>,reason="queue_full"}) and
//! never blocks capture; a closed one (the next stage ended) counts
//! reason="closed". Every stage runs under the `Supervisor`: the first one
//! to end before shutdown is logged, turns /readyz to 503 naming it, and
//! stops the agent with its error.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use tokio::sync::{mpsc, watch};

use crate::{
    api,
    business::Business,
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
    supervisor::Supervisor,
    telemetry::{Telemetry, set_counter},
    topology::Topology,
    ui,
    versions::Versions,
};

pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    // Flags and library callers bypass `Config::from_file`: check again here.
    cfg.validate()?;
    let telemetry = Telemetry::new();
    let sup = Supervisor::new();
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
    let (business, business_sink, matcher) = Business::new(cfg.business.clone(), telemetry.clone());
    let (versions, versions_sink) = Versions::new(cfg.versions.clone(), cfg.business.clone(), telemetry.clone());
    let api_routes =
        vec![topology.routes(), store.routes(), business.routes(), versions.routes(Some(store.view())), ui::routes()];
    let api_task = sup.spawn("api", api::serve(listener, telemetry.clone(), sup.clone(), api_routes, stop_rx.clone()));

    let mut probes = Probes::load(&LoadOptions {
        capture_bytes: cfg.capture.capture_bytes,
        wakeup_bytes: cfg.capture.wakeup_bytes,
        accept_hook: cfg.capture.accept_hook,
        netns: cfg.capture.netns_inode()?,
        go: cfg.runtimes.go,
        tls: cfg.tls.openssl,
    })?;
    // What this kernel lacks stays visible on /readyz, not only in the log.
    for d in probes.degraded.clone() {
        telemetry.add_readiness_detail(move || Some(format!("degraded: {d}")));
    }
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
        // A stdout nobody reads any more (closed pipe) ends this stage, and
        // so the agent: its output is what it was asked for.
        let task = sup.spawn_blocking("output", move || {
            while let Some(r) = export_rx.blocking_recv() {
                writer.write(&r).context("writing to stdout")?;
                if export_rx.is_empty() {
                    writer.flush().context("writing to stdout")?;
                }
            }
            writer.flush().context("writing to stdout")
        });
        (Some(tx), Some(task))
    };
    // The exporter stops after the chain stage released its last spans.
    let (export_stop_tx, export_stop_rx) = watch::channel(false);
    let mut sinks: Vec<Arc<dyn Sink>> = vec![topology_sink, store_sink, business_sink, versions_sink];
    if let Some(o) = &otlp {
        sinks.push(Arc::new(o.sender()));
    }
    let metrics_exporter = otlp.as_ref().and_then(OtlpExporter::metrics_exporter);
    let topology_task = sup.spawn("topology", topology.run(export_stop_rx.clone(), metrics_exporter.clone()));
    let business_task = sup.spawn("business", business.run(export_stop_rx.clone(), metrics_exporter.clone()));
    let versions_task = sup.spawn("versions", versions.run(export_stop_rx.clone(), metrics_exporter));
    let store_task = sup.spawn("store", store.run(export_stop_rx.clone()));
    let otlp_task = otlp.map(|e| sup.spawn("otlp", e.run(export_stop_rx)));
    // What each process was started as: written by the reader (exec and fork
    // records), read by the chain stage's identity.
    let process_starts = ProcessStarts::new();
    identity_metrics(&telemetry, &process_starts);
    let chain_task = sup.spawn(
        "chain",
        chain::run(
            ChainConfig {
                describe: cfg.describe_config(),
                link: cfg.chain.clone(),
                sinks,
                k8s: k8s.clone(),
                starts: process_starts.clone(),
                classify: Some(Box::new(matcher)),
            },
            chain_rx,
            chain_to_export,
            telemetry.clone(),
        ),
    );
    let conntrack = conntrack::run(
        TableConfig {
            max_connections: cfg.conntrack.max_connections,
            idle_timeout: Duration::from_secs(cfg.conntrack.idle_timeout_secs),
            ..TableConfig::default()
        },
        conntrack_rx,
        conntrack_to_chain,
        telemetry.clone(),
        // Data records only exist to be printed.
        cfg.data_events && cfg.output != OutputFormat::None,
        cfg.protocol_config(),
        Some(conntrack::Verdicts::new(probes.take_sock_verdicts()?)),
    );
    let conntrack_task = sup.spawn("conntrack", async {
        conntrack.await;
        Ok(())
    });
    // Go processes, probed for goroutine ids (exec pids from the reader).
    let go_execs = probes.go.then(|| std::sync::mpsc::sync_channel(crate::runtimes::go::EXEC_QUEUE));
    // TLS libraries, probed as processes start (exec pids from the reader).
    let tls_execs = probes.tls.then(|| std::sync::mpsc::sync_channel(crate::tls::EXEC_QUEUE));
    let execs = [("capture_to_go_runtime", &go_execs), ("capture_to_tls_libs", &tls_execs)]
        .into_iter()
        .filter_map(|(stage, c)| Some((stage, c.as_ref()?.0.clone())))
        .collect();
    let reader_task = sup.spawn(
        "capture",
        Reader {
            ring,
            out: capture_to_conntrack,
            telemetry: telemetry.clone(),
            drain_interval: cfg.capture.drain_interval(),
            starts: process_starts.clone(),
            execs,
        }
        .run(stop_rx.clone()),
    );

    probes.attach_all()?;
    telemetry.probes_attached.set(probes.attached.len() as i64);
    let attached = probes.attached.len();
    let probes = Arc::new(std::sync::Mutex::new(probes));
    let go_watcher = match go_execs {
        Some((tx, rx)) => {
            Some(crate::runtimes::go::Watcher::spawn(probes.clone(), cfg.runtimes.node, tx, rx, telemetry.clone())?)
        }
        None => None,
    };
    let tls_watcher = match tls_execs {
        Some((tx, rx)) => {
            Some(crate::tls::Watcher::spawn(probes.clone(), cfg.tls.max_libraries, tx, rx, telemetry.clone())?)
        }
        None => None,
    };
    telemetry.set_ready();
    tracing::info!(probes = attached, "tracing TCP connections; web page and API at http://{api_addr}/");

    let failure = tokio::select! {
        () = shutdown => None,
        f = sup.failed() => Some(f),
    };
    if failure.is_some() {
        // /readyz names the stage meanwhile (the supervisor logged it).
        tokio::time::sleep(Duration::from_millis(cfg.api.failure_linger_ms)).await;
    }
    sup.stopping();
    tracing::info!("shutting down: detaching probes");
    if let Some(w) = go_watcher {
        w.stop();
    }
    if let Some(w) = tls_watcher {
        w.stop();
    }
    drop(probes);
    let _ = stop_tx.send(true);
    // Each stage ends when the one before it closes its channel. After a
    // failure the stages' results are that failure's consequences: the
    // supervisor logged them, the failure is the agent's error.
    let stages = async {
        tokio::time::timeout(Duration::from_secs(5), async {
            reader_task.await??;
            conntrack_task.await??;
            chain_task.await??;
            if let Some(t) = export_task {
                t.await??;
            }
            anyhow::Ok(())
        })
        .await
        .context("stages did not stop within 5 s")??;
        // Flush what is queued for the backend (bounded by its own timeout).
        let _ = export_stop_tx.send(true);
        if let Some(t) = otlp_task {
            t.await??;
        }
        topology_task.await??;
        business_task.await??;
        versions_task.await??;
        store_task.await??;
        api_task.await??;
        anyhow::Ok(())
    };
    let stopped = stages.await;
    match failure {
        Some(f) => Err(anyhow::anyhow!(f)),
        None => stopped,
    }
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
