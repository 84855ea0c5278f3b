//! `GET /api/compare?service=S&baseline=V1&candidate=V2[&transaction=T][&window=15m]`
//! and `GET /api/rollouts`, as JSON.
//!
//! ```json
//! {"service": "shop", "baseline": "1.0", "candidate": "1.1", "transaction": null,
//!  "baseline_window": ["2025-01-01T12:00:00Z", "2025-01-01T12:15:00Z"], "candidate_window": [...],
//!  "verdict": "worse",                    // better | worse | no_difference | insufficient_data
//!  "thresholds": {"confidence": 0.99, "min_relative_change": 0.1, "min_error_rate_change": 0.01, "min_requests": 100},
//!  "service_kpis": {"verdict": "worse", "baseline_requests": 2400, "candidate_requests": 600, "alpha": 0.01,
//!    "kpis": [{"kpi": "p95_ms", "baseline": 12.1, "candidate": 61.0, "relative_change": 4.04,
//!              "test": "mann_whitney_u", "statistic": 101.5, "p_value": 1e-90, "verdict": "worse",
//!              "prob_candidate_slower": 0.98}, ...]},   // throughput_share, error_rate, p50/p95/p99_ms, apdex
//!  "transactions": [{"name": "shop GET /pay", "verdict": ..., "baseline_requests": ..., "kpis": [...]}]}
//! ```
//!
//! The window (1m..1h, default `[versions] compare_window`) ends with the
//! current minute and is the same for both versions. 400 names a missing or
//! bad parameter; 404 a version or transaction not seen.
//! `/api/rollouts`: `{"total", "delay", "window", "rollouts": [{"id",
//! "service", "old_version", "new_version", "at", "old_pids", "new_pids",
//! "old_pods", "new_pods", "compare_at", "verdict", "comparison"}]}`,
//! newest first (verdict and comparison null until it ran).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{
    Shared,
    compare::{Minutes, compare},
    now_ms,
};
use crate::store::TracesView;

pub const COMPARE_PATH: &str = "/api/compare";
pub const ROLLOUTS_PATH: &str = "/api/rollouts";

pub(super) fn routes(shared: Arc<Shared>, traces: Option<TracesView>) -> Router {
    let report = Router::new()
        .route(super::report::REPORT_PATH, get(super::report::report_view))
        .with_state((shared.clone(), traces));
    Router::new()
        .route(COMPARE_PATH, get(compare_view))
        .route(ROLLOUTS_PATH, get(rollouts_view))
        .with_state(shared)
        .merge(report)
}

#[derive(Deserialize)]
struct Params {
    service: Option<String>,
    baseline: Option<String>,
    candidate: Option<String>,
    transaction: Option<String>,
    window: Option<String>,
}

fn bad(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg + "\n").into_response()
}

/// The window's whole minutes (1..=60), from a humantime duration.
pub fn window_minutes(w: &str) -> Option<u64> {
    let d = humantime::parse_duration(w).ok()?;
    let m = d.as_secs().div_ceil(60);
    (1..=60).contains(&m).then_some(m)
}

async fn compare_view(State(s): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let (Some(service), Some(baseline), Some(candidate)) = (&p.service, &p.baseline, &p.candidate) else {
        return bad("service, baseline and candidate are required".into());
    };
    let w = p.window.clone().unwrap_or_else(|| s.cfg.compare_window.clone());
    let Some(minutes) = window_minutes(&w) else {
        return bad(format!("window: {w:?} must be a duration between 1m and 1h, such as 15m"));
    };
    let now = now_ms() / 60_000;
    let win = Minutes { from: now + 1 - minutes, to: now };
    let st = s.lock();
    match compare(&st.book, service, baseline, candidate, p.transaction.as_deref(), win, win, &s.cfg) {
        Ok(c) => Json(c).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    }
}

async fn rollouts_view(State(s): State<Arc<Shared>>) -> Response {
    let st = s.lock();
    let list: Vec<_> = st.rollouts.list.iter().rev().collect();
    Json(serde_json::json!({
        "total": st.rollouts.total,
        "delay": s.cfg.rollout_delay,
        "window": s.cfg.rollout_window,
        "rollouts": list,
    }))
    .into_response()
}
