//! Local HTTP API: /healthz (process alive), /readyz (200 once every probe is
//! attached), /metrics (OpenMetrics/Prometheus text of the self-metrics).

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use axum::{Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get};
use tokio::sync::watch;

use crate::telemetry::Telemetry;

pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the API address {addr} (--api-addr)"))
}

/// Serve /healthz, /readyz, /metrics and the routes other modules bring
/// (topology, traces, the web page), each with its own state.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    extra: Vec<Router>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(telemetry);
    let app = extra.into_iter().fold(app, Router::merge);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
        .context("API server")
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    if t.is_ready() {
        // Degradations that do not stop tracing are reported, still 200.
        let mut body = "ready\n".to_string();
        for d in t.readiness_details() {
            body.push_str(&d);
            body.push('\n');
        }
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "probes not attached yet\n".to_string())
    }
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || t.render()).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}
