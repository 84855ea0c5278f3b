//! Spans -> OTLP trace requests, with the official prost types of the
//! `opentelemetry-proto` crate. In: a batch of `span::Span`. Out:
//! `ExportTraceServiceRequest`s, each under the request size limit, with one
//! resource per traced service instance (service + pid) and this agent as
//! the instrumentation scope.

use std::{collections::HashMap, sync::Arc, time::UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{
        ResourceSpans, ScopeSpans, Span as PSpan, Status as PStatus, span::SpanKind as PKind, status::StatusCode,
    },
};
use prost::Message as _;

use crate::{
    clock::Clock,
    span::{Span, SpanKind, Status, Value},
};

/// Name of this agent: instrumentation scope and `telemetry.distro.name`.
/// Not `telemetry.sdk.name`, which belongs to the official SDKs.
pub const AGENT_NAME: &str = "tracer";
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

// W3C trace flags and the OTLP span flags bits (trace.proto SpanFlags).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// Requests of one batch, and what could not be encoded.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Each request and the number of spans in it.
    pub requests: Vec<(ExportTraceServiceRequest, usize)>,
    /// Spans that alone exceed the request limit (dropped, counted).
    pub too_large: usize,
}

pub struct Encoder {
    clock: Clock,
    host: String,
    /// The agent's OTEL_RESOURCE_ATTRIBUTES and `[otlp] resource_attributes`.
    extra: Vec<(String, String)>,
    max_request_bytes: usize,
}

/// The agent's own resource, on the OTLP metrics it exports (the service
/// graph): service.name "tracer", its version and host.name, then the
/// agent's OTEL_RESOURCE_ATTRIBUTES and `[otlp] resource_attributes` by the
/// same rule as on spans (`with_agent_attributes`).
pub fn agent_resource(host: &str, extra: &[(String, String)]) -> Resource {
    let a =
        vec![kv_str("service.name", AGENT_NAME), kv_str("service.version", AGENT_VERSION), kv_str("host.name", host)];
    with_agent_attributes(a, extra)
}

/// One rule for every resource the agent exports: the keys it detected
/// (`detected`) stay; the agent's OTEL_RESOURCE_ATTRIBUTES and `[otlp]
/// resource_attributes` (`extra`) add the keys not set yet; then
/// telemetry.distro.*. So a `deployment.environment` set for the agent is on
/// every span and metric, and its `service.name` never renames anything.
fn with_agent_attributes(mut detected: Vec<KeyValue>, extra: &[(String, String)]) -> Resource {
    let add = |a: &mut Vec<KeyValue>, k: &str, v: &str| {
        if !a.iter().any(|x| x.key == k) {
            a.push(kv_str(k, v));
        }
    };
    for (k, v) in extra {
        add(&mut detected, k, v);
    }
    add(&mut detected, "telemetry.distro.name", AGENT_NAME);
    add(&mut detected, "telemetry.distro.version", AGENT_VERSION);
    Resource { attributes: detected, ..Default::default() }
}

impl Encoder {
    pub fn new(clock: Clock, host: String, extra: Vec<(String, String)>, max_request_bytes: usize) -> Self {
        Encoder { clock, host, extra, max_request_bytes }
    }

    pub fn scope() -> InstrumentationScope {
        InstrumentationScope { name: AGENT_NAME.into(), version: AGENT_VERSION.into(), ..Default::default() }
    }

    /// The resource of the service instance a span belongs to. Detected keys
    /// first; then the process's own OTEL_RESOURCE_ATTRIBUTES, then the
    /// agent's, each only for keys not set yet: the agent's service.name must
    /// never rename every traced service.
    pub fn resource(&self, span: &Span) -> Resource {
        let svc = &span.service;
        let mut a: Vec<KeyValue> = Vec::with_capacity(10 + svc.attributes.len() + self.extra.len());
        a.push(kv_str("service.name", &svc.name));
        if let Some(v) = &svc.version {
            a.push(kv_str("service.version", v));
        }
        if let Some(pid) = span.pid {
            a.push(kv_int("process.pid", i64::from(pid)));
        }
        if !span.comm.is_empty() {
            a.push(kv_str("process.executable.name", &span.comm));
        }
        a.push(kv_str("host.name", &self.host));
        let add = |a: &mut Vec<KeyValue>, k: &str, v: &str| {
            if !a.iter().any(|x| x.key == k) {
                a.push(kv_str(k, v));
            }
        };
        for (k, v) in &svc.attributes {
            add(&mut a, k, v);
        }
        // Stable per process and node; the process's own id wins (added above).
        let instance = match span.pid {
            Some(pid) => format!("{}-{pid}", self.host),
            None => format!("{}-{}", self.host, svc.name),
        };
        add(&mut a, "service.instance.id", &instance);
        with_agent_attributes(a, &self.extra)
    }

    pub fn span(&self, s: &Span) -> PSpan {
        let nanos =
            |mono: u64| self.clock.wall(mono).duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
        if s.parent_span_id.is_some() && s.context_from_header {
            // The parent came in a traceparent header: it lives in another process.
            flags |= FLAG_IS_REMOTE;
        }
        PSpan {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags,
            name: s.name.clone(),
            kind: match s.kind {
                SpanKind::Server => PKind::Server,
                SpanKind::Client => PKind::Client,
                SpanKind::Producer => PKind::Producer,
                SpanKind::Consumer => PKind::Consumer,
            } as i32,
            start_time_unix_nano: nanos(s.start_ns),
            end_time_unix_nano: nanos(s.end_ns.max(s.start_ns)),
            attributes: s
                .attributes
                .iter()
                .map(|(k, v)| KeyValue { key: k.to_string(), value: Some(any(v)), ..Default::default() })
                .collect(),
            status: match s.status {
                Status::Error => Some(PStatus { code: StatusCode::Error as i32, message: String::new() }),
                Status::Unset => None,
            },
            ..Default::default()
        }
    }

    /// Encode a batch: group by service instance (first-seen order), then cut
    /// into requests whose encoded size stays under the limit.
    pub fn encode(&self, spans: &[Arc<Span>]) -> Encoded {
        // (pid, service name, version) names an instance; attributes of one
        // instance do not change while its pid lives.
        let mut index: HashMap<(Option<u32>, &str, Option<&str>), usize> = HashMap::new();
        let mut groups: Vec<(&Span, Vec<PSpan>)> = Vec::new();
        // `estimate_bytes` is never below a span's encoded size, so a batch
        // whose estimate fits needs no exact per-span sizes (the usual case:
        // a 512-span batch is a few hundred KiB): one request, one pass less.
        let mut estimate = 0usize;
        for s in spans {
            let key = (s.pid, s.service.name.as_str(), s.service.version.as_deref());
            let i = *index.entry(key).or_insert_with(|| {
                groups.push((s, Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(self.span(s));
            estimate += estimate_bytes(s);
        }
        let scope = Self::scope();
        let resources: Vec<Resource> = groups.iter().map(|(first, _)| self.resource(first)).collect();
        let fixed: usize = resources.iter().map(|r| field_len(r.encoded_len()) + 64).sum();
        if estimate + fixed <= self.max_request_bytes {
            let n = spans.len();
            let resource_spans = groups
                .into_iter()
                .zip(resources)
                .map(|((_, pspans), resource)| ResourceSpans {
                    resource: Some(resource),
                    scope_spans: vec![ScopeSpans { scope: Some(scope.clone()), spans: pspans, ..Default::default() }],
                    ..Default::default()
                })
                .collect();
            let requests = if n > 0 { vec![(ExportTraceServiceRequest { resource_spans }, n)] } else { vec![] };
            return Encoded { requests, too_large: 0 };
        }
        let mut out = Encoded::default();
        let mut cur: Vec<ResourceSpans> = Vec::new();
        let (mut cur_bytes, mut cur_spans) = (0usize, 0usize);
        for ((_, pspans), resource) in groups.into_iter().zip(resources) {
            // Bytes of an empty ResourceSpans entry with this resource and scope.
            let overhead = field_len(
                ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans { scope: Some(scope.clone()), ..Default::default() }],
                    ..Default::default()
                }
                .encoded_len(),
            ) + 16;
            let mut open: Option<ResourceSpans> = None;
            for ps in pspans {
                let n = field_len(ps.encoded_len());
                if overhead + n > self.max_request_bytes {
                    out.too_large += 1;
                    continue;
                }
                let need = n + if open.is_some() { 0 } else { overhead };
                if cur_bytes + need > self.max_request_bytes {
                    cur.extend(open.take());
                    out.requests
                        .push((ExportTraceServiceRequest { resource_spans: std::mem::take(&mut cur) }, cur_spans));
                    (cur_bytes, cur_spans) = (0, 0);
                }
                let rs = open.get_or_insert_with(|| {
                    cur_bytes += overhead;
                    ResourceSpans {
                        resource: Some(resource.clone()),
                        scope_spans: vec![ScopeSpans { scope: Some(scope.clone()), ..Default::default() }],
                        ..Default::default()
                    }
                });
                rs.scope_spans[0].spans.push(ps);
                cur_bytes += n;
                cur_spans += 1;
            }
            cur.extend(open);
        }
        if cur_spans > 0 {
            out.requests.push((ExportTraceServiceRequest { resource_spans: cur }, cur_spans));
        }
        out
    }
}

/// Bytes a message of `len` takes as a length-delimited field (tag + length + body).
fn field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// Estimated memory of a queued span (its size in the queue's byte bound).
/// Cheap and close to the encoded size; not exact.
pub fn estimate_bytes(s: &Span) -> usize {
    let attrs: usize = s
        .attributes
        .iter()
        .map(|(k, v)| {
            k.as_str().len()
                + 16
                + match v {
                    Value::Str(x) => x.len(),
                    Value::Shared(x) => x.len(),
                    Value::Int(_) => 8,
                    Value::Ip(_) => 39,
                    Value::StrArray(xs) => xs.iter().map(|x| x.len() + 8).sum(),
                }
        })
        .sum();
    std::mem::size_of::<Span>() + s.name.len() + s.comm.len() + attrs
}

fn any(v: &Value) -> AnyValue {
    AnyValue {
        value: Some(match v {
            Value::Str(s) => any_value::Value::StringValue(s.to_string()),
            Value::Shared(s) => any_value::Value::StringValue(s.to_string()),
            Value::Int(i) => any_value::Value::IntValue(*i),
            Value::Ip(ip) => any_value::Value::StringValue(ip.to_string()),
            Value::StrArray(xs) => any_value::Value::ArrayValue(ArrayValue {
                values: xs.iter().map(|x| AnyValue { value: Some(any_value::Value::StringValue(x.clone())) }).collect(),
            }),
        }),
    }
}

fn kv_str(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
pub(crate) mod tests;
