//! `GET /api/transactions?window=1h` and `GET /api/transactions/{name}?window=&version=`
//! (window: 5m, 15m, 1h, 6h or 24h; default 1h), as JSON.
//!
//! ```json
//! {
//!   "window": "1h", "window_minutes": 60, "generated_at": "2025-01-01T12:00:00.000Z",
//!   "relative_error": 0.01,              // of every percentile (DDSketch)
//!   "overflow": {"transactions": 0, "versions": 0},   // entry spans / requests past the caps
//!   "transactions": [{
//!     "name": "checkout", "source": "rule",          // "rule" | "default" ({service} {method} {route})
//!     "apdex_t_ms": 500,
//!     "kpis": {"count": 120, "errors": 3, "error_rate": 0.025, "rate_per_s": 0.03,
//!              "p50_ms": 12.1, "p90_ms": 40.2, "p95_ms": 51.0, "p99_ms": 80.3,
//!              "apdex": 0.97, "satisfied": 115, "tolerating": 2, "frustrated": 3},
//!     "targets": [{"kpi": "p95_ms", "target": 300.0, "value": 51.0, "met": true}],  // met null without data
//!     "slos": [{"name": "checkout availability", "kind": "availability", "objective": 99.0,
//!               "latency_ms": null, "window": "28d", "budget_remaining": 0.75,
//!               "burn_rates": {"1h": 2.5, "6h": 0.4, "3d": 0.1},
//!               "alerts": [{"rule": "page", "firing": false, "since": null}]}],
//!     "versions": [{"service": "shop", "version": "1.2.0", "kpis": {...}}]  // window at most 1h
//!   }]
//! }
//! ```
//!
//! The detail adds `"points"`: one per minute with requests, `{"t": unix s,
//! "count", "errors", "apdex", "p95_ms"}` (p95 null beyond the last hour),
//! of the transaction or, with `version=`, of that version (1 h kept).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{
    Shared,
    config::Targets,
    kpi::{HOUR, Kpis, Point, RELATIVE_ERROR, Summary},
    ledger::{Ledger, SloKind, TxnState},
    now_minute, overflow,
    slo::BURN_WINDOWS,
};

pub const TRANSACTIONS_PATH: &str = "/api/transactions";

pub(super) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(TRANSACTIONS_PATH, get(list))
        // Names hold spaces and slashes (`shop GET /users/{id}`): the rest of the path.
        .route("/api/transactions/{*name}", get(detail))
        .with_state(shared)
}

const WINDOWS: [(&str, u64); 5] = [("5m", 5), ("15m", 15), ("1h", 60), ("6h", 360), ("24h", 1440)];

/// The window asked for (default 1h), None when it is not one of WINDOWS.
fn window(w: Option<&str>) -> Option<(&'static str, u64)> {
    match w {
        None => Some(("1h", 60)),
        Some(w) => WINDOWS.iter().find(|(n, _)| *n == w).copied(),
    }
}

fn bad_window() -> Response {
    (StatusCode::BAD_REQUEST, "window must be 5m, 15m, 1h, 6h or 24h\n").into_response()
}

#[derive(Deserialize)]
struct Params {
    window: Option<String>,
    version: Option<String>,
}

#[derive(Serialize)]
pub struct ListView {
    pub window: &'static str,
    pub window_minutes: u64,
    pub generated_at: String,
    pub relative_error: f64,
    pub overflow: OverflowView,
    pub transactions: Vec<TxnView>,
}

#[derive(Serialize)]
pub struct OverflowView {
    pub transactions: u64,
    pub versions: u64,
}

#[derive(Serialize)]
pub struct TxnView {
    pub name: String,
    pub source: &'static str,
    pub apdex_t_ms: u64,
    pub kpis: Summary,
    pub targets: Vec<TargetView>,
    pub slos: Vec<SloView>,
    pub versions: Vec<VersionView>,
}

#[derive(Serialize)]
pub struct TargetView {
    pub kpi: &'static str,
    pub target: f64,
    pub value: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Serialize)]
pub struct SloView {
    pub name: String,
    pub kind: &'static str,
    pub objective: f64,
    pub latency_ms: Option<u64>,
    pub window: String,
    pub budget_remaining: Option<f64>,
    pub burn_rates: std::collections::BTreeMap<&'static str, Option<f64>>,
    pub alerts: Vec<AlertView>,
}

#[derive(Serialize)]
pub struct AlertView {
    pub rule: &'static str,
    pub firing: bool,
    pub since: Option<String>,
}

#[derive(Serialize)]
pub struct VersionView {
    pub service: String,
    pub version: String,
    pub kpis: Summary,
}

#[derive(Serialize)]
struct DetailView {
    name: String,
    window: &'static str,
    version: Option<String>,
    kpis: Summary,
    points: Vec<Point>,
}

/// Each target with its value over the window; met is null without data.
pub fn targets(t: &Targets, s: &Summary) -> Vec<TargetView> {
    let upper = |kpi, target: Option<f64>, value: Option<f64>| {
        target.map(|target| TargetView { kpi, target, value, met: value.map(|v| v <= target) })
    };
    [
        upper("p50_ms", t.p50_ms, s.p50_ms),
        upper("p90_ms", t.p90_ms, s.p90_ms),
        upper("p95_ms", t.p95_ms, s.p95_ms),
        upper("p99_ms", t.p99_ms, s.p99_ms),
        upper("error_rate", t.error_rate, s.error_rate),
        t.apdex.map(|target| TargetView { kpi: "apdex", target, value: s.apdex, met: s.apdex.map(|v| v >= target) }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn rfc3339(minute: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(minute * 60)).to_string()
}

pub fn txn_view(tx: &TxnState, now: u64, minutes: u64) -> TxnView {
    let kpis = tx.kpis.summary(now, minutes);
    let slos = tx
        .slos
        .iter()
        .map(|s| SloView {
            name: s.name.clone(),
            kind: s.kind.label(),
            objective: s.slo.objective * 100.0,
            latency_ms: (s.kind == SloKind::Latency).then_some(tx.slo_cfg.latency_ms),
            window: tx.slo_cfg.window.clone(),
            budget_remaining: s.slo.budget_remaining(now),
            burn_rates: BURN_WINDOWS.iter().map(|(w, m)| (*w, s.slo.burn_rate(now, *m))).collect(),
            alerts: s
                .alerts
                .iter()
                .map(|a| AlertView { rule: a.rule, firing: a.firing, since: a.since_minute.map(rfc3339) })
                .collect(),
        })
        .collect();
    TxnView {
        name: tx.t.name.to_string(),
        source: if tx.t.rule.is_some() { "rule" } else { "default" },
        apdex_t_ms: tx.apdex_t.as_millis() as u64,
        targets: targets(&tx.targets, &kpis),
        kpis,
        slos,
        versions: tx
            .versions
            .iter()
            .map(|v| VersionView {
                service: v.service.clone(),
                version: v.version.clone(),
                kpis: v.kpis.summary(now, minutes.min(HOUR)),
            })
            .collect(),
    }
}

pub fn list_view(ledger: &Ledger, overflow: u64, w: &'static str, minutes: u64, now: u64) -> ListView {
    let mut transactions: Vec<TxnView> = ledger.transactions().iter().map(|t| txn_view(t, now, minutes)).collect();
    transactions.sort_by(|a, b| a.name.cmp(&b.name));
    ListView {
        window: w,
        window_minutes: minutes,
        generated_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        relative_error: RELATIVE_ERROR,
        overflow: OverflowView { transactions: overflow, versions: ledger.counters.overflow_versions },
        transactions,
    }
}

async fn list(State(s): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let Some((w, minutes)) = window(p.window.as_deref()) else { return bad_window() };
    let view = list_view(&s.lock(), overflow(&s), w, minutes, now_minute());
    Json(view).into_response()
}

async fn detail(State(s): State<Arc<Shared>>, Path(name): Path<String>, Query(p): Query<Params>) -> Response {
    let Some((w, minutes)) = window(p.window.as_deref()) else { return bad_window() };
    let now = now_minute();
    let ledger = s.lock();
    let Some(tx) = ledger.get(&name) else {
        return (StatusCode::NOT_FOUND, format!("no transaction {name:?}\n")).into_response();
    };
    let kpis: &Kpis = match &p.version {
        None => &tx.kpis,
        Some(v) => match tx.versions.iter().find(|x| &x.version == v) {
            Some(x) => &x.kpis,
            None => {
                return (StatusCode::NOT_FOUND, format!("transaction {name:?} has no version {v:?}\n")).into_response();
            }
        },
    };
    Json(DetailView {
        name: tx.t.name.to_string(),
        window: w,
        version: p.version.clone(),
        kpis: kpis.summary(now, minutes),
        points: kpis.points(now, minutes),
    })
    .into_response()
}
