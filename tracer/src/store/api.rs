//! GET /api/traces (recent traces, filtered) and GET /api/traces/{trace_id}
//! (every span of one trace), JSON. The lock on the store is held only to
//! copy out what the answer needs; serialization happens after.
//!
//! `GET /api/traces?service=&client=&server=&route=&status=error|ok&min_duration_ms=&limit=`
//! (every parameter optional; empty means no filter; limit defaults to 50,
//! at most 1000) answers, most recent first:
//!
//! ```json
//! {"traces": [{"trace_id": "4bf9…4736", "root_span_id": "00f0…02b7",
//!    "root_name": "GET /call/{id}/items/{id}", "root_service": "curl", "root_kind": "client",
//!    "start": "2025-01-02T03:04:05.123456Z", "duration_ms": 4.2, "span_count": 6,
//!    "error": false, "services": ["curl", "nginx", "frontend", "backend"]}],
//!  "stored_traces": 120, "stored_spans": 700}
//! ```
//!
//! `GET /api/traces/{trace_id}` (32 hex digits; 400 otherwise) answers 404
//! when the trace is not (or no longer) stored, else the list's fields for
//! it and its spans depth first in tree order (a waterfall's rows; `depth`
//! 0 for a root, `start_offset_ms` from the trace's start):
//!
//! ```json
//! {"trace_id": "…", "root_span_id": "…", "root_name": "…", "root_service": "curl", "root_kind": "client",
//!  "start": "…", "duration_ms": 4.2, "span_count": 6, "error": false, "services": ["curl", …],
//!  "spans": [{"span_id": "…", "parent_span_id": null, "depth": 0, "kind": "client",
//!    "name": "GET /call/{id}/items/{id}", "service": "curl", "service_version": null,
//!    "peer": "nginx", "pid": 1234, "comm": "curl",
//!    "start": "…", "start_offset_ms": 0.0, "duration_ms": 4.2, "time_to_first_byte_ms": 4.1,
//!    "status": "unset", "attributes": {"http.request.method": "GET", "http.response.status_code": 200, …}}]}
//! ```

use std::{sync::Arc, time::SystemTime};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize, Serializer, ser::SerializeMap as _};

use super::{
    Shared,
    traces::{Filter, Trace, peer_name},
};
use crate::span::{Key, Span, SpanKind, Status, TraceId, Value, hex};

/// Traces listed when the request names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

pub(super) fn routes(shared: Arc<Shared>) -> Router {
    Router::new().route("/api/traces", get(list)).route("/api/traces/{trace_id}", get(one)).with_state(shared)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    pub(super) service: Option<String>,
    pub(super) client: Option<String>,
    pub(super) server: Option<String>,
    pub(super) route: Option<String>,
    pub(super) status: Option<String>,
    pub(super) min_duration_ms: Option<String>,
    pub(super) limit: Option<String>,
}

impl ListQuery {
    /// The filter, or a message naming the parameter that is wrong.
    pub(super) fn filter(self) -> Result<Filter, String> {
        let some = |v: Option<String>| v.filter(|s| !s.is_empty());
        let error = match some(self.status).as_deref() {
            None => None,
            Some("error") => Some(true),
            Some("ok") => Some(false),
            Some(s) => return Err(format!("status={s}: expected error or ok")),
        };
        let min_duration_ns = match some(self.min_duration_ms) {
            None => 0,
            Some(v) => match v.parse::<f64>() {
                Ok(ms) if ms >= 0.0 && ms.is_finite() => (ms * 1e6) as u64,
                _ => return Err(format!("min_duration_ms={v}: expected a number of milliseconds >= 0")),
            },
        };
        let limit = match some(self.limit) {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => n.min(MAX_LIMIT),
                _ => return Err(format!("limit={v}: expected a number from 1 to {MAX_LIMIT}")),
            },
        };
        Ok(Filter {
            service: some(self.service),
            client: some(self.client),
            server: some(self.server),
            route: some(self.route),
            error,
            min_duration_ns,
            limit,
        })
    }
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": msg }))).into_response()
}

#[derive(Clone, Debug, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_span_id: String,
    pub root_name: String,
    pub root_service: String,
    pub root_kind: SpanKind,
    pub start: String,
    pub duration_ms: f64,
    pub span_count: usize,
    pub error: bool,
    pub services: Vec<String>,
}

#[derive(Serialize)]
pub(super) struct TraceList {
    traces: Vec<TraceSummary>,
    stored_traces: usize,
    stored_spans: usize,
}

async fn list(State(shared): State<Arc<Shared>>, Query(q): Query<ListQuery>) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    Json(list_traces(&shared, &filter)).into_response()
}

pub(super) fn list_traces(shared: &Shared, filter: &Filter) -> TraceList {
    let t = shared.lock();
    let mut traces: Vec<(u64, TraceSummary)> = t.query(filter).map(|tr| (tr.start_ns, summary(shared, tr))).collect();
    // Arrival order is release order (children end, and so arrive, first):
    // show the most recent start first.
    traces.sort_by_key(|t| std::cmp::Reverse(t.0));
    TraceList {
        traces: traces.into_iter().map(|(_, s)| s).collect(),
        stored_traces: t.len(),
        stored_spans: t.span_count(),
    }
}

pub(super) fn summary(shared: &Shared, t: &Trace) -> TraceSummary {
    let root = t.root();
    TraceSummary {
        trace_id: hex(&t.id),
        root_span_id: hex(&root.span_id),
        root_name: root.name.clone(),
        root_service: root.service.name.clone(),
        root_kind: root.kind,
        start: rfc3339(shared.clock.wall(t.start_ns)),
        duration_ms: ms(t.duration_ns()),
        span_count: t.spans.len(),
        error: t.error,
        services: t.services(),
    }
}

/// One trace, its spans copied out of the store (Arc clones) in tree order.
pub(super) struct TraceDetail {
    summary: TraceSummary,
    start_ns: u64,
    spans: Vec<(usize, Arc<Span>)>,
    wall: crate::clock::Clock,
}

async fn one(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(trace_id) = parse_trace_id(&id) else {
        return bad_request(format!("{id}: a trace id is 32 hex digits"));
    };
    match trace_detail(&shared, &trace_id) {
        Some(d) => Json(d).into_response(),
        None => {
            (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("trace {id} is not in the store") })))
                .into_response()
        }
    }
}

pub(super) fn trace_detail(shared: &Shared, id: &TraceId) -> Option<TraceDetail> {
    let t = shared.lock();
    let tr = t.get(id)?;
    Some(TraceDetail {
        summary: summary(shared, tr),
        start_ns: tr.start_ns,
        spans: tr.tree().into_iter().map(|(d, s)| (d, s.clone())).collect(),
        wall: shared.clock,
    })
}

pub(super) fn parse_trace_id(s: &str) -> Option<TraceId> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

impl Serialize for TraceDetail {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct SpanOut<'a> {
            span_id: String,
            parent_span_id: Option<String>,
            depth: usize,
            kind: SpanKind,
            name: &'a str,
            service: &'a str,
            service_version: Option<&'a str>,
            peer: Option<String>,
            pid: Option<u32>,
            comm: &'a str,
            start: String,
            start_offset_ms: f64,
            duration_ms: f64,
            time_to_first_byte_ms: Option<f64>,
            status: Status,
            attributes: Attributes<'a>,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            summary: &'a TraceSummary,
            spans: Vec<SpanOut<'a>>,
        }
        let spans = self
            .spans
            .iter()
            .map(|(depth, s)| SpanOut {
                span_id: hex(&s.span_id),
                parent_span_id: s.parent_span_id.map(|p| hex(&p)),
                depth: *depth,
                kind: s.kind,
                name: &s.name,
                service: &s.service.name,
                service_version: s.service.version.as_deref(),
                peer: peer_name(s),
                pid: s.pid,
                comm: &s.comm,
                start: rfc3339(self.wall.wall(s.start_ns)),
                start_offset_ms: ms(s.start_ns.saturating_sub(self.start_ns)),
                duration_ms: ms(s.end_ns.saturating_sub(s.start_ns)),
                time_to_first_byte_ms: s.response_first_ns.map(|r| ms(r.saturating_sub(s.start_ns))),
                status: s.status,
                attributes: Attributes(&s.attributes),
            })
            .collect();
        Out { summary: &self.summary, spans }.serialize(ser)
    }
}

/// A span's attributes as one JSON object (later duplicates win).
struct Attributes<'a>(&'a [(Key, Value)]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Milliseconds with microsecond precision (readable, and exact enough).
fn ms(ns: u64) -> f64 {
    (ns / 1000) as f64 / 1000.0
}

fn rfc3339(t: SystemTime) -> String {
    // Before the epoch only with a broken clock; clamp rather than panic.
    humantime::format_rfc3339_micros(t.max(SystemTime::UNIX_EPOCH)).to_string()
}
