//! `GET /api/report?from=&to=[&service=][&format=json|csv|html]`: the
//! report of a window (a load test, a release): per service, every version
//! seen with its KPIs side by side, for the service and per transaction;
//! each version judged against the one that served most (the same tests
//! as `/api/compare`); the slowest stored traces that started in it.
//! `from`/`to`: RFC 3339 or unix seconds; default the last hour. The
//! versions' minutes are kept an hour, so a window is clamped to it
//! (`clamped: true`); whole minutes, `to`'s included.
//!
//! ```json
//! {"from": "...", "to": "...", "clamped": false,
//!  "services": [{"service": "shop", "baseline": "1.0",
//!    "versions": [{"version": "1.0", "pids": [..], "pods": [..], "kpis": {"count", "errors", "error_rate",
//!                  "rate_per_s", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "apdex", ...},
//!                  "verdict": null}, {"version": "1.1", ..., "verdict": "worse"}],
//!    "transactions": [{"name": "shop GET /pay/{id}", "versions": [{"version": "1.0", "kpis": {..}}]}],
//!    "slowest": [{"trace_id", "root_name", "duration_ms", "start", "error", ...}]}]}
//! ```
//!
//! CSV: one row per (service, transaction or `*` for the service, version).
//! HTML: the same tables, printable, every name escaped.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use super::{
    Shared, State as VersionsState,
    book::Series,
    compare::{Minutes, Verdict, compare},
    now_ms,
};
use crate::{
    business::kpi::{HOUR, Summary},
    store::{TracesView, api::TraceSummary},
};

pub const REPORT_PATH: &str = "/api/report";
/// Slowest traces listed per service.
const SLOWEST: usize = 10;

#[derive(Deserialize)]
pub(super) struct Params {
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
    format: Option<String>,
}

#[derive(Clone, Serialize)]
pub struct VersionRow {
    pub version: String,
    pub pids: Vec<u32>,
    pub pods: Vec<String>,
    pub kpis: Summary,
    /// Against the service's baseline (null for the baseline itself).
    pub verdict: Option<Verdict>,
}

#[derive(Clone, Serialize)]
pub struct TxnRow {
    pub name: String,
    pub versions: Vec<(String, Summary)>,
}

#[derive(Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    /// The version that served most in the window.
    pub baseline: String,
    pub versions: Vec<VersionRow>,
    pub transactions: Vec<TxnRow>,
    pub slowest: Vec<TraceSummary>,
}

#[derive(Clone, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub clamped: bool,
    pub services: Vec<ServiceReport>,
}

/// A time given as RFC 3339 or unix seconds.
fn instant(s: &str) -> Option<SystemTime> {
    if let Ok(secs) = s.parse::<u64>() {
        return Some(UNIX_EPOCH + Duration::from_secs(secs));
    }
    humantime::parse_rfc3339_weak(s).ok()
}

fn unix_minute(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

fn rfc3339_minute(m: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(m * 60)).to_string()
}

/// The report over whole minutes `win` (both ends included).
pub fn build(
    st: &VersionsState,
    cfg: &super::VersionsConfig,
    traces: Option<&TracesView>,
    service: Option<&str>,
    win: Minutes,
    clamped: bool,
) -> Report {
    let minutes = win.to + 1 - win.from;
    let summary = |k: &crate::business::kpi::Kpis| k.summary(win.to, minutes);
    let mut names: Vec<&str> = st.book.series().iter().map(|s| s.service.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let (from_t, to_t) =
        (UNIX_EPOCH + Duration::from_secs(win.from * 60), UNIX_EPOCH + Duration::from_secs((win.to + 1) * 60));
    let services = names
        .into_iter()
        .filter(|n| service.is_none_or(|s| s == *n))
        .filter_map(|name| {
            let mut series: Vec<(&Series, Summary)> =
                st.book.versions_of(name).map(|s| (s, summary(&s.all))).filter(|(_, k)| k.count > 0).collect();
            if series.is_empty() {
                return None;
            }
            // The most served first: the baseline the others are judged against.
            series.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.version.cmp(&b.0.version)));
            let baseline = series[0].0.version.clone();
            let versions = series
                .iter()
                .enumerate()
                .map(|(i, (s, k))| VersionRow {
                    version: s.version.clone(),
                    pids: s.pids.clone(),
                    pods: s.pods.clone(),
                    kpis: k.clone(),
                    verdict: (i > 0).then(|| {
                        compare(&st.book, name, &baseline, &s.version, None, win, win, cfg)
                            .map_or(Verdict::InsufficientData, |c| c.verdict)
                    }),
                })
                .collect();
            let mut txn_names: Vec<&str> = series.iter().flat_map(|(s, _)| s.txns.iter().map(|(n, _)| &**n)).collect();
            txn_names.sort_unstable();
            txn_names.dedup();
            let transactions = txn_names
                .into_iter()
                .filter_map(|t| {
                    let versions: Vec<(String, Summary)> = series
                        .iter()
                        .filter_map(|(s, _)| {
                            let k = summary(&s.txns.iter().find(|(n, _)| **n == *t)?.1);
                            (k.count > 0).then(|| (s.version.clone(), k))
                        })
                        .collect();
                    (!versions.is_empty()).then(|| TxnRow { name: t.to_string(), versions })
                })
                .collect();
            let slowest = traces.map_or_else(Vec::new, |v| v.slowest(Some(name), from_t, to_t, SLOWEST));
            Some(ServiceReport { service: name.to_string(), baseline, versions, transactions, slowest })
        })
        .collect();
    Report { from: rfc3339_minute(win.from), to: rfc3339_minute(win.to + 1), clamped, services }
}

/// The window asked for, in whole minutes within the hour kept.
fn window(p: &Params, now_minute: u64) -> Result<(Minutes, bool), String> {
    let parse = |k: &str, v: &Option<String>| -> Result<Option<u64>, String> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| instant(s).map(unix_minute).ok_or(format!("{k}: {s:?} is not RFC 3339 or unix seconds")))
            .transpose()
    };
    let to = parse("to", &p.to)?.unwrap_or(now_minute).min(now_minute);
    let from = parse("from", &p.from)?.unwrap_or(to + 1 - HOUR.min(to + 1));
    if from > to {
        return Err("from must be before to".into());
    }
    let oldest = now_minute + 1 - HOUR;
    if to < oldest {
        return Err("the window ended over an hour ago: versions' minutes are kept an hour".into());
    }
    Ok((Minutes { from: from.max(oldest), to }, from < oldest))
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x:.3}"))
}

/// CSV of the report: one row per (service, transaction, version).
pub fn csv(r: &Report) -> String {
    let mut out = String::from(
        "service,transaction,version,requests,errors,error_rate,rate_per_s,p50_ms,p90_ms,p95_ms,p99_ms,apdex,verdict\n",
    );
    let field = |s: &str| {
        // RFC 4180 quoting; a leading formula character is defused for spreadsheets.
        let s = crate::printable::escape(s);
        let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
        format!("\"{}\"", s.replace('"', "\"\""))
    };
    let mut row = |svc: &str, txn: &str, version: &str, k: &Summary, verdict: Option<Verdict>| {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.3},{},{},{},{},{},{}",
            field(svc),
            field(txn),
            field(version),
            k.count,
            k.errors,
            opt(k.error_rate),
            k.rate_per_s,
            opt(k.p50_ms),
            opt(k.p90_ms),
            opt(k.p95_ms),
            opt(k.p99_ms),
            opt(k.apdex),
            verdict.map_or("", Verdict::label)
        );
    };
    for s in &r.services {
        for v in &s.versions {
            row(&s.service, "*", &v.version, &v.kpis, v.verdict);
        }
        for t in &s.transactions {
            for (v, k) in &t.versions {
                row(&s.service, &t.name, v, k, None);
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in crate::printable::escape(s).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn kpi_cells(k: &Summary) -> String {
    let pct = |v: Option<f64>| v.map_or("–".into(), |x| format!("{:.2} %", x * 100.0));
    let ms = |v: Option<f64>| v.map_or("–".into(), |x| format!("{x:.1}"));
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td>",
        k.count,
        pct(k.error_rate),
        ms(k.p50_ms),
        ms(k.p95_ms),
        ms(k.p99_ms),
        k.apdex.map_or("–".into(), |a| format!("{a:.3}")),
        k.rate_per_s
    )
}

/// A self-contained printable page of the report.
pub fn html(r: &Report) -> String {
    const HEAD: &str = "<th>requests</th><th>errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>\
                        <th>Apdex</th><th>req/s</th>";
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tracer report {} – {}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
         .worse{{color:#b00;font-weight:bold}}.better{{color:#070;font-weight:bold}}code{{font-size:12px}}\
         @media print{{body{{margin:0}}}}</style></head><body><h1>Report {} – {}</h1>",
        esc(&r.from),
        esc(&r.to),
        esc(&r.from),
        esc(&r.to)
    );
    if r.clamped {
        o.push_str("<p>The window was clamped to the last hour (the versions' minutes are kept an hour).</p>");
    }
    if r.services.is_empty() {
        o.push_str("<p>No request in this window.</p>");
    }
    for s in &r.services {
        let _ = write!(
            o,
            "<h2>{}</h2><p>Baseline: version <b>{}</b> (the one that served most).</p>\
             <table><tr><th>version</th>{HEAD}<th>verdict</th><th>processes</th></tr>",
            esc(&s.service),
            esc(&s.baseline)
        );
        for v in &s.versions {
            let verdict = v.verdict.map_or("baseline", Verdict::label);
            let pids: Vec<String> = v.pids.iter().map(u32::to_string).collect();
            let _ = write!(
                o,
                "<tr><td>{}</td>{}<td class=\"{verdict}\">{verdict}</td><td>{}</td></tr>",
                esc(&v.version),
                kpi_cells(&v.kpis),
                pids.join(" ")
            );
        }
        o.push_str("</table>");
        if !s.transactions.is_empty() {
            let _ = write!(o, "<h3>Transactions</h3><table><tr><th>transaction</th><th>version</th>{HEAD}</tr>");
            for t in &s.transactions {
                for (v, k) in &t.versions {
                    let _ = write!(o, "<tr><td>{}</td><td>{}</td>{}</tr>", esc(&t.name), esc(v), kpi_cells(k));
                }
            }
            o.push_str("</table>");
        }
        if !s.slowest.is_empty() {
            o.push_str("<h3>Slowest traces</h3><table><tr><th>trace</th><th>root</th><th>started</th><th>ms</th><th>error</th></tr>");
            for t in &s.slowest {
                let _ = write!(
                    o,
                    "<tr><td><a href=\"/#trace={id}\"><code>{id}</code></a></td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
                    esc(&t.root_name),
                    esc(&t.start),
                    t.duration_ms,
                    if t.error { "yes" } else { "" },
                    id = esc(&t.trace_id)
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str("</body></html>\n");
    o
}

pub(super) async fn report_view(
    State((s, traces)): State<(Arc<Shared>, Option<TracesView>)>,
    Query(p): Query<Params>,
) -> Response {
    let (win, clamped) = match window(&p, now_ms() / 60_000) {
        Ok(w) => w,
        Err(e) => return (StatusCode::BAD_REQUEST, e + "\n").into_response(),
    };
    let r = {
        let st = s.lock();
        build(&st, &s.cfg, traces.as_ref(), p.service.as_deref(), win, clamped)
    };
    match p.format.as_deref().unwrap_or("json") {
        "json" => Json(r).into_response(),
        "csv" => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv(&r)).into_response(),
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html(&r)).into_response(),
        f => (StatusCode::BAD_REQUEST, format!("format: {:?} is not json, csv or html\n", crate::printable::escape(f)))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: Option<&str>, to: Option<&str>) -> Params {
        Params { from: from.map(str::to_string), to: to.map(str::to_string), service: None, format: None }
    }

    #[test]
    fn windows_default_to_the_hour_and_are_clamped_to_it() {
        let now = 29_000_000;
        assert_eq!(window(&params(None, None), now).unwrap(), (Minutes { from: now - 59, to: now }, false));
        let t = |m: u64| (m * 60).to_string();
        let w = window(&params(Some(&t(now - 10)), Some(&t(now - 5))), now).unwrap();
        assert_eq!(w, (Minutes { from: now - 10, to: now - 5 }, false));
        let w = window(&params(Some(&t(now - 300)), None), now).unwrap();
        assert_eq!(w, (Minutes { from: now - 59, to: now }, true));
        assert!(window(&params(Some("yesterday"), None), now).unwrap_err().starts_with("from:"));
        assert!(window(&params(Some(&t(now - 1)), Some(&t(now - 5))), now).is_err());
        let at = |rfc: &str| unix_minute(instant(rfc).unwrap());
        let now = at("2025-02-01T10:40:00Z");
        let rfc = window(&params(Some("2025-02-01T10:00:00Z"), Some("2025-02-01T10:30:00Z")), now).unwrap();
        assert_eq!(rfc, (Minutes { from: now - 40, to: now - 10 }, false));
        assert!(window(&params(Some("2025-01-01T10:00:00Z"), Some("2025-01-01T10:30:00Z")), now).is_err());
    }

    #[test]
    fn csv_and_html_never_carry_markup_or_formulas_from_names() {
        let k = Summary { count: 3, errors: 1, error_rate: Some(1.0 / 3.0), ..Default::default() };
        let r = Report {
            from: "a".into(),
            to: "b".into(),
            clamped: false,
            services: vec![ServiceReport {
                service: "<script>x\"".into(),
                baseline: "=cmd|' /C calc'!A0".into(),
                versions: vec![VersionRow {
                    version: "=cmd|' /C calc'!A0".into(),
                    pids: vec![1],
                    pods: vec![],
                    kpis: k.clone(),
                    verdict: None,
                }],
                transactions: vec![TxnRow { name: "t\u{1b}[31m".into(), versions: vec![("1".into(), k)] }],
                slowest: vec![],
            }],
        };
        let c = csv(&r);
        assert!(c.contains("\"<script>x\"\"\",\"*\",\"'=cmd|' /C calc'!A0\",3,1,0.333,"), "{c}");
        assert!(!c.contains('\u{1b}'), "{c}");
        let h = html(&r);
        assert!(!h.contains("<script>") && h.contains("&lt;script&gt;x&quot;"), "{h}");
        assert!(!h.contains('\u{1b}'), "{h}");
    }
}
