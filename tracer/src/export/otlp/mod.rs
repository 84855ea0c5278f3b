//! OTLP export of spans (and, through the same client and retry logic,
//! metrics) to any OpenTelemetry backend, configured by the standard
//! OTEL_* variables with `[otlp]` on top.
//!
//! ```text
//! chain stage --SpanSender::send (never blocks)--> queue (bounded by count
//!   and bytes, drop oldest) --batches (size or delay)--> encode (one
//!   resource per service instance, requests < 4 MiB) --> client (gRPC or
//!   HTTP/protobuf) with retry (retryable codes only, backoff + jitter,
//!   Retry-After) --> backend
//! ```
//!
//! Every span that does not reach the backend is counted in
//! `tracer_otlp_dropped_total{signal,reason}`; delivered ones in
//! `tracer_otlp_exported_total`. At shutdown `run` flushes the queue within
//! the shutdown timeout, then returns.

mod client;
mod config;
mod encode;
mod queue;
mod retry;

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
pub use config::{Compression, Endpoint, OtlpConfig, Protocol, ResolvedOtlp, Signal, TlsFiles, parse_key_values};
pub use encode::{AGENT_NAME, AGENT_VERSION, Encoder, agent_resource};
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use queue::SpanQueue;
pub use queue::SpanSender;
pub use retry::Delivery;
use retry::{Backoff, Stop, deliver};
use tokio::{sync::watch, time::Instant};

use crate::{clock::Clock, span::Span, telemetry::Telemetry};

const TRACES: &str = "traces";

pub struct OtlpExporter {
    cfg: ResolvedOtlp,
    telemetry: Arc<Telemetry>,
    queue: Arc<SpanQueue>,
    traces: Option<Arc<client::SignalClient>>,
    metrics: Option<Arc<client::SignalClient>>,
    encoder: Encoder,
}

impl OtlpExporter {
    /// Validates the settings (endpoint scheme, TLS files, headers) and
    /// builds the clients. Connects lazily: the backend need not be up.
    pub async fn new(cfg: ResolvedOtlp, telemetry: Arc<Telemetry>) -> Result<OtlpExporter> {
        let traces = cfg.traces.as_ref().map(client::SignalClient::new).transpose()?.map(Arc::new);
        let metrics = cfg.metrics.as_ref().map(client::SignalClient::new).transpose()?.map(Arc::new);
        for ep in [&cfg.traces, &cfg.metrics].into_iter().flatten() {
            tracing::info!(
                signal = ep.signal.label(),
                endpoint = %ep.url,
                protocol = ?ep.protocol,
                compression = ?ep.compression,
                "OTLP export"
            );
        }
        let own = match &cfg.traces {
            Some(ep) => backend_addrs(&ep.url).await,
            None => Vec::new(),
        };
        let queue =
            SpanQueue::new(cfg.max_queue_size, cfg.max_queue_bytes, cfg.max_export_batch_size, own, telemetry.clone());
        let encoder = Encoder::new(Clock::new(), hostname(), cfg.resource_attributes.clone(), cfg.max_request_bytes);
        Ok(OtlpExporter { cfg, telemetry, queue, traces, metrics, encoder })
    }

    /// The capture side's handle. `send` never blocks; with no traces
    /// endpoint (metrics only) it discards, as nothing is to be exported.
    pub fn sender(&self) -> SpanSender {
        if self.traces.is_some() { self.queue.sender() } else { SpanSender::disabled() }
    }

    /// A handle to send metrics through the same client and retry logic,
    /// when a metrics endpoint is configured.
    pub fn metrics_exporter(&self) -> Option<MetricsExporter> {
        Some(MetricsExporter {
            client: self.metrics.clone()?,
            backoff: self.backoff(),
            budget: self.cfg.export_timeout,
            shutdown_timeout: self.cfg.shutdown_timeout,
            telemetry: self.telemetry.clone(),
            resource: agent_resource(&hostname(), &self.cfg.resource_attributes),
        })
    }

    pub fn settings(&self) -> &ResolvedOtlp {
        &self.cfg
    }

    fn backoff(&self) -> Backoff {
        Backoff { initial: self.cfg.initial_backoff, max: self.cfg.max_backoff }
    }

    /// Batch and export until `shutdown` fires; then flush what is queued
    /// (bounded by the shutdown timeout), count the rest as dropped, return.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut stop = Stop::new(shutdown, self.cfg.shutdown_timeout);
        let Some(client) = self.traces.clone() else {
            stop.fired().await;
            return Ok(());
        };
        let delay = self.cfg.schedule_delay;
        let mut due = Instant::now() + delay;
        loop {
            if !self.queue.has_full_batch() {
                tokio::select! {
                    _ = self.queue.full_batch() => {}
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop.fired() => {}
                }
            }
            if stop.stopping() {
                break;
            }
            // A full batch goes at once; a partial one when the delay is up.
            if self.queue.has_full_batch() || Instant::now() >= due {
                due = Instant::now() + delay;
                let batch = self.queue.take_batch();
                self.export(&client, &batch, &mut stop).await;
            }
        }
        let deadline = stop.deadline().expect("stopping");
        // The chain stage may still hand over its last spans after the
        // signal: keep draining until its senders are gone or it is quiet.
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline {
            let batch = self.queue.take_batch();
            if !batch.is_empty() {
                self.export(&client, &batch, &mut stop).await;
                quiet_since = Instant::now();
                continue;
            }
            if self.queue.senders() == 0 || quiet_since.elapsed() >= Duration::from_millis(200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.queue.drop_all("shutdown");
        if left > 0 {
            tracing::warn!(spans = left, "OTLP: shutdown timeout reached; spans still queued were dropped");
        }
        Ok(())
    }

    async fn export(&self, client: &client::SignalClient, batch: &[Arc<Span>], stop: &mut Stop) {
        if batch.is_empty() {
            return;
        }
        let m = &self.telemetry.otlp;
        let encoded = self.encoder.encode(batch);
        m.drop_items(TRACES, "too_large", encoded.too_large as u64);
        for (req, n) in encoded.requests {
            let prepared = client.prepare_traces(req);
            let p = &prepared;
            let d = deliver(|| client.send(p), self.backoff(), self.cfg.export_timeout, stop, &self.telemetry, TRACES)
                .await;
            account(&self.telemetry, TRACES, n as u64, d);
        }
    }
}

/// Count a finished request: exported, partially rejected, or dropped.
fn account(t: &Telemetry, signal: &'static str, n: u64, d: Delivery) {
    let m = &t.otlp;
    match d {
        Delivery::Sent { rejected, message } => {
            let rejected = rejected.min(n);
            m.exported.get_or_create(&vec![("signal", signal)]).inc_by(n - rejected);
            if rejected > 0 {
                m.drop_items(signal, "partial_success", rejected);
                tracing::warn!(signal, rejected, "OTLP backend refused part of a request: {message}");
            }
        }
        Delivery::Dropped { reason, detail } => {
            m.drop_items(signal, reason, n);
            tracing::warn!(signal, items = n, reason, "OTLP export failed, dropped: {detail}");
        }
    }
}

/// Sends metrics requests through the metrics endpoint's client, with the
/// same retry rules as traces. Cheap to clone.
#[derive(Clone)]
pub struct MetricsExporter {
    client: Arc<client::SignalClient>,
    backoff: Backoff,
    budget: Duration,
    shutdown_timeout: Duration,
    telemetry: Arc<Telemetry>,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
}

impl MetricsExporter {
    /// The resource every metrics request carries (`agent_resource`).
    pub fn resource(&self) -> &opentelemetry_proto::tonic::resource::v1::Resource {
        &self.resource
    }

    /// Export one request (retried within the export timeout; cut short by
    /// `shutdown` plus the shutdown timeout). Data points are counted in
    /// the `signal="metrics"` series.
    pub async fn export_metrics(&self, req: ExportMetricsServiceRequest, shutdown: watch::Receiver<bool>) -> Delivery {
        let n = data_points(&req);
        let mut stop = Stop::new(shutdown, self.shutdown_timeout);
        let prepared = self.client.prepare_metrics(req);
        let p = &prepared;
        let d = deliver(|| self.client.send(p), self.backoff, self.budget, &mut stop, &self.telemetry, "metrics").await;
        account(&self.telemetry, "metrics", n, d.clone());
        d
    }
}

fn data_points(req: &ExportMetricsServiceRequest) -> u64 {
    let metrics = req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics);
    metrics
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

/// Where the traces backend listens, when it resolves now (it need not:
/// the backend may come up later; then its spans are simply not filtered).
async fn backend_addrs(url: &reqwest::Url) -> Vec<std::net::SocketAddr> {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { return Vec::new() };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lookup = tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((host, port)));
    match lookup.await {
        Ok(Ok(addrs)) => addrs.collect(),
        _ => Vec::new(),
    }
}

/// This node's name (host.name on every resource).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `OtlpConfig::resolve` with the process environment, for the wiring.
pub fn resolve_from_env(file: &OtlpConfig) -> Result<Option<ResolvedOtlp>> {
    OtlpConfig::resolve(file, &|k| std::env::var(k).ok()).context("OTLP export settings")
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
