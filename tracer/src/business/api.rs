//! `GET /api/transactions?window=1h` and `GET /api/transactions/{name}?window=&version=`
//! (window: 5m, 15m, 1h, 6h, 24h or 7d; default 1h), as JSON. Up to 24h
//! the KPIs come from memory; 7d adds the history's whole hours before the
//! current one (503 when the history is off).
//!
//! ```json
//! {
//!   "window": "1h", "window_minutes": 60, "generated_at": "2025-01-01T12:00:00.000Z",
//!   "relative_error": 0.01,              // of every percentile (DDSketch)
//!   "overflow": {"transactions": 0, "versions": 0},   // entry spans / requests past the caps
//!   "history": {"path": "/var/lib/tracer/history.redb", "off": null},  // off: why not kept
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
//!     "versions": [{"service": "shop", "version": "1.2.0", "kpis": {...}}],  // window at most 1h
//!     "baseline": {                      // null with the history off, and for 7d
//!       "yesterday": {kpis...}, "week_ago": null,  // the same window 1 and 7 days ago
//!       "days": 5,                       // of the last 7 with requests in this window
//!       "band_note": null,               // why there is no band (fewer than 3 days)
//!       "kpis": {"p95_ms": {"now": 51.0, "vs_yesterday": 1.1, "vs_week_ago": null,
//!                "band": {"median": 48.0, "low": 40.1, "high": 55.9}, "flag": "inside"}, ...}}
//!   }]
//! }
//! ```
//! (see `baseline` for the band).
//!
//! The detail adds `"points"`: one per minute with requests, `{"t": unix s,
//! "count", "errors", "apdex", "p95_ms"}` (p95 null beyond the last hour),
//! of the transaction or, with `version=`, of that version (1 h kept); for
//! 7d one per hour. Without `version=` it adds the transaction's `"baseline"`.

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
    baseline::{self, BaselineView, Days},
    config::Targets,
    history::History,
    kpi::{Accum, DAY, HOUR, Kpis, Point, RELATIVE_ERROR, Summary},
    ledger::{Ledger, SloKind, TxnState},
    now_minute, overflow,
    record::TxnRecord,
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

const WINDOWS: [(&str, u64); 6] = [("5m", 5), ("15m", 15), ("1h", 60), ("6h", 360), ("24h", 1440), ("7d", 7 * 1440)];

/// The window asked for (default 1h), None when it is not one of WINDOWS.
fn window(w: Option<&str>) -> Option<(&'static str, u64)> {
    match w {
        None => Some(("1h", 60)),
        Some(w) => WINDOWS.iter().find(|(n, _)| *n == w).copied(),
    }
}

fn bad_window() -> Response {
    (StatusCode::BAD_REQUEST, "window must be 5m, 15m, 1h, 6h, 24h or 7d\n").into_response()
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
    pub history: HistoryView,
    pub transactions: Vec<TxnView>,
}

#[derive(Serialize, Default)]
pub struct HistoryView {
    /// The store's file; null when the history is off or not opened yet.
    pub path: Option<String>,
    /// Why KPIs are not kept across restarts (open or write failure).
    pub off: Option<String>,
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
    pub baseline: Option<BaselineView>,
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
    baseline: Option<BaselineView>,
}

/// What the history adds to one request: the baseline days (windows up
/// to 24 h) or the hours before the current one (7d).
#[derive(Default)]
pub struct Past {
    pub days: Option<Arc<Days>>,
    /// Per transaction: the whole hours of the window from the history,
    /// and the first of them (unix hour).
    pub hours: Option<std::collections::BTreeMap<String, (Accum, u64)>>,
}

/// The hours of the window of `minutes` before the current hour. Blocking.
pub fn past_hours(h: &History, now: u64, minutes: u64) -> std::collections::BTreeMap<String, (Accum, u64)> {
    let mut out = std::collections::BTreeMap::<String, (Accum, u64)>::new();
    let first = (now + 1).saturating_sub(minutes) / 60;
    for (hour, name, r) in h.hours(first, (now / 60).saturating_sub(1)) {
        let e = out.entry(name).or_insert_with(|| (Accum::default(), hour));
        e.0.add(&r.kpis);
    }
    out
}

/// KPIs over a window longer than the rings: the history's hours plus the
/// current hour from memory.
fn long_summary(tx: &TxnState, hours: Option<&(Accum, u64)>, now: u64, minutes: u64) -> Summary {
    let mut a = tx.kpis.accum(now, now % 60 + 1);
    let mut first = tx.kpis.first_minute.unwrap_or(now);
    if let Some((h, first_hour)) = hours {
        a.merge(h);
        first = first.min(first_hour * 60);
    }
    a.summary((now.saturating_sub(first) + 1).min(minutes))
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

pub fn txn_view(tx: &TxnState, now: u64, minutes: u64, past: &Past) -> TxnView {
    let kpis = match &past.hours {
        Some(h) if minutes > DAY => long_summary(tx, h.get(&*tx.t.name), now, minutes),
        _ => tx.kpis.summary(now, minutes),
    };
    let baseline = past.days.as_ref().map(|d| baseline::view(&kpis, d.get(&*tx.t.name).map_or(&[], |v| v)));
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
        baseline,
    }
}

pub fn list_view(
    ledger: &Ledger,
    overflow: u64,
    w: &'static str,
    minutes: u64,
    now: u64,
    past: &Past,
    history: HistoryView,
) -> ListView {
    let mut transactions: Vec<TxnView> =
        ledger.transactions().iter().map(|t| txn_view(t, now, minutes, past)).collect();
    transactions.sort_by(|a, b| a.name.cmp(&b.name));
    ListView {
        window: w,
        window_minutes: minutes,
        generated_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        relative_error: RELATIVE_ERROR,
        overflow: OverflowView { transactions: overflow, versions: ledger.counters.overflow_versions },
        history,
        transactions,
    }
}

fn history_view(s: &Shared) -> HistoryView {
    HistoryView { path: s.history().map(|h| h.path().display().to_string()), off: s.history_problem() }
}

/// Reads what the window needs from the history (off the async workers);
/// Err: a 7d window with no history.
async fn past(s: &Shared, now: u64, minutes: u64) -> Result<Past, Response> {
    let Some(h) = s.history() else {
        if minutes > DAY {
            let why = s.history_problem().unwrap_or_else(|| "[business.history] enabled = false".into());
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("window 7d needs the history, which is off: {why}\n"),
            )
                .into_response());
        }
        return Ok(Past::default());
    };
    if minutes > DAY {
        let hours = tokio::task::spawn_blocking(move || past_hours(&h, now, minutes)).await.unwrap_or_default();
        return Ok(Past { days: None, hours: Some(hours) });
    }
    Ok(Past { days: Some(s.baselines.get(h, now, minutes).await), hours: None })
}

async fn list(State(s): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let Some((w, minutes)) = window(p.window.as_deref()) else { return bad_window() };
    let now = now_minute();
    let past = match past(&s, now, minutes).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let view = list_view(&s.lock(), overflow(&s), w, minutes, now, &past, history_view(&s));
    Json(view).into_response()
}

/// Hourly points of a 7d window: the history's `rows` (this transaction's
/// hours), then the current hour's from memory.
fn hourly_points(rows: Vec<(u64, String, TxnRecord)>, kpis: &Kpis, now: u64) -> Vec<Point> {
    let point = |hour: u64, a: &Accum| {
        let s = a.summary(60);
        Point { t: hour * 3600, count: s.count, errors: s.errors, apdex: s.apdex, p95_ms: s.p95_ms }
    };
    let mut out: Vec<Point> = rows
        .into_iter()
        .map(|(hour, _, r)| {
            let mut a = Accum::default();
            a.add(&r.kpis);
            point(hour, &a)
        })
        .collect();
    let current = kpis.accum(now, now % 60 + 1);
    if current.count > 0 {
        out.push(point(now / 60, &current));
    }
    out
}

async fn detail(State(s): State<Arc<Shared>>, Path(name): Path<String>, Query(p): Query<Params>) -> Response {
    let Some((w, minutes)) = window(p.window.as_deref()) else { return bad_window() };
    let now = now_minute();
    if minutes > DAY && p.version.is_some() {
        return (StatusCode::BAD_REQUEST, "a version's KPIs are kept 1 h: ask a window up to 1h\n").into_response();
    }
    let mut past = match past(&s, now, minutes).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let hourly = match (minutes > DAY, s.history()) {
        (true, Some(h)) => {
            let n = name.clone();
            let first = (now + 1).saturating_sub(minutes) / 60;
            let read = move || {
                let rows = h.hours(first, (now / 60).saturating_sub(1));
                rows.into_iter().filter(|(_, x, _)| *x == n).collect::<Vec<_>>()
            };
            Some(tokio::task::spawn_blocking(read).await.unwrap_or_default())
        }
        _ => None,
    };
    let ledger = s.lock();
    let Some(tx) = ledger.get(&name) else {
        return (StatusCode::NOT_FOUND, format!("no transaction {name:?}\n")).into_response();
    };
    let kpis: &Kpis = match &p.version {
        None => &tx.kpis,
        Some(v) => match tx.versions.iter().find(|x| &x.version == v) {
            Some(x) => {
                past.days = None;
                &x.kpis
            }
            None => {
                return (StatusCode::NOT_FOUND, format!("transaction {name:?} has no version {v:?}\n")).into_response();
            }
        },
    };
    let view = txn_view(tx, now, minutes, &past);
    let (summary, points) = match (&p.version, hourly) {
        (None, Some(rows)) => (view.kpis.clone(), hourly_points(rows, kpis, now)),
        (None, None) => (view.kpis.clone(), kpis.points(now, minutes)),
        (Some(_), _) => (kpis.summary(now, minutes), kpis.points(now, minutes)),
    };
    Json(DetailView {
        name: tx.t.name.to_string(),
        window: w,
        version: p.version.clone(),
        kpis: summary,
        points,
        baseline: view.baseline.filter(|_| p.version.is_none()),
    })
    .into_response()
}
