//! Local HTTP API: /healthz (process alive), /readyz (200 once every probe is
//! attached; 503 naming the stage once one has failed, and while stopping),
//! /metrics (the self-metrics as Prometheus text 0.0.4 or OpenMetrics, as the
//! Accept header asks: see `exposition`).

pub mod exposition;

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::sync::watch;

use crate::{supervisor::Supervisor, telemetry::Telemetry};

pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the API address {addr} (--api-addr)"))
}

#[derive(Clone)]
struct Health {
    telemetry: Arc<Telemetry>,
    supervisor: Arc<Supervisor>,
}

/// Serve /healthz, /readyz, /metrics and the routes other modules bring
/// (topology, traces, the web page), each with its own state.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    supervisor: Arc<Supervisor>,
    extra: Vec<Router>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Health { telemetry, supervisor });
    let app = extra.into_iter().fold(app, Router::merge);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
        .context("API server")
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if let Some(f) = h.supervisor.failure() {
        // A failed stage means nothing after it runs: not ready, and say which.
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{f}\n"));
    }
    if h.supervisor.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_string());
    }
    if !h.telemetry.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "probes not attached yet\n".to_string());
    }
    // Degradations that do not stop tracing are reported, still 200.
    let mut body = "ready\n".to_string();
    for d in h.telemetry.readiness_details() {
        body.push_str(&d);
        body.push('\n');
    }
    (StatusCode::OK, body)
}

async fn metrics(State(h): State<Health>, headers: HeaderMap) -> impl IntoResponse {
    let format = exposition::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let t = h.telemetry;
    let body = tokio::task::spawn_blocking(move || {
        let om = t.render();
        match format {
            exposition::Format::OpenMetrics => om,
            exposition::Format::Text => exposition::to_text_004(&om),
        }
    })
    .await
    .unwrap_or_default();
    ([(header::CONTENT_TYPE, format.content_type())], body)
}
