//! Span -> proto encoding, resource grouping, request splitting.

use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;

use super::*;
use crate::{identity::Service, span::Key};

pub(crate) fn test_span(service: &Arc<Service>, pid: u32, name: &str) -> Span {
    Span {
        trace_id: [0x4b; 16],
        span_id: [7; 8],
        parent_span_id: Some([9; 8]),
        kind: SpanKind::Server,
        name: name.into(),
        protocol: "http",
        start_ns: 1_000_000_000,
        end_ns: 1_250_000_000,
        response_first_ns: Some(1_200_000_000),
        status: Status::Error,
        attributes: vec![
            (Key::named("http.request.method"), Value::Str("GET".into())),
            (Key::named("http.response.status_code"), Value::Int(500)),
            (Key::named("http.request.header.x-request-id"), Value::StrArray(vec!["r-1".into()])),
        ],
        service: service.clone(),
        pid: Some(pid),
        comm: "python3".into(),
        request_tid: pid,
        response_tid: Some(pid),
        request_goid: 0,
        response_goid: 0,
        request_seq: Some(1),
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: "127.0.0.1:50000".parse().unwrap(),
        context_from_header: true,
        peer_service: None,
        transaction: None,
        business_entry: false,
    }
}

fn svc(name: &str) -> Arc<Service> {
    Arc::new(Service {
        name: name.into(),
        version: Some("1.2.3".into()),
        attributes: vec![
            ("deployment.environment".into(), "staging".into()),
            ("service.instance.id".into(), "own-id".into()),
        ],
    })
}

fn encoder(max: usize) -> Encoder {
    Encoder::new(
        Clock::new(),
        "node-1".into(),
        vec![("deployment.environment".into(), "prod".into()), ("k8s.cluster.name".into(), "c1".into())],
        max,
    )
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, AV> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap().value.unwrap())).collect()
}

fn s(v: &str) -> AV {
    AV::StringValue(v.into())
}

#[test]
fn span_fields_and_typed_attributes() {
    let e = encoder(4 << 20);
    let sp = test_span(&svc("backend"), 42, "GET /items/{id}");
    let p = e.span(&sp);
    assert_eq!(p.trace_id, vec![0x4b; 16]);
    assert_eq!(p.span_id, vec![7; 8]);
    assert_eq!(p.parent_span_id, vec![9; 8]);
    assert_eq!(p.kind, PKind::Server as i32);
    assert_eq!(p.name, "GET /items/{id}");
    assert_eq!(p.status.unwrap().code, StatusCode::Error as i32);
    assert_eq!(p.flags, FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE);
    // Monotonic -> unix ns: the 250 ms duration survives, the epoch is recent.
    assert_eq!(p.end_time_unix_nano - p.start_time_unix_nano, 250_000_000);
    assert!(p.start_time_unix_nano > 1_600_000_000_000_000_000);
    let a = attrs(&p.attributes);
    assert_eq!(a["http.request.method"], s("GET"));
    assert_eq!(a["http.response.status_code"], AV::IntValue(500));
    assert_eq!(
        a["http.request.header.x-request-id"],
        AV::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s("r-1")) }] })
    );

    let mut client = sp.clone();
    client.kind = SpanKind::Client;
    client.status = Status::Unset;
    client.parent_span_id = None;
    let p = e.span(&client);
    assert_eq!(p.kind, PKind::Client as i32);
    assert!(p.status.is_none() && p.parent_span_id.is_empty());
    assert_eq!(p.flags, FLAG_SAMPLED | FLAG_HAS_IS_REMOTE);
}

#[test]
fn resource_of_a_service_instance() {
    let e = encoder(4 << 20);
    let r = e.resource(&test_span(&svc("backend"), 42, "x"));
    let a = attrs(&r.attributes);
    assert_eq!(a["service.name"], s("backend"));
    assert_eq!(a["service.version"], s("1.2.3"));
    assert_eq!(a["process.pid"], AV::IntValue(42));
    assert_eq!(a["process.executable.name"], s("python3"));
    assert_eq!(a["host.name"], s("node-1"));
    // The process's own attributes win over the agent's; the agent's fill the rest.
    assert_eq!(a["service.instance.id"], s("own-id"));
    assert_eq!(a["deployment.environment"], s("staging"));
    assert_eq!(a["k8s.cluster.name"], s("c1"));
    assert_eq!(a["telemetry.distro.name"], s("tracer"));
    assert!(!a.contains_key("telemetry.sdk.name"));
    assert_eq!(r.attributes.len(), a.len(), "no key twice");

    let bare = Arc::new(Service { name: "curl".into(), version: None, attributes: vec![] });
    let a = attrs(&e.resource(&test_span(&bare, 7, "x")).attributes);
    assert_eq!(a["service.instance.id"], s("node-1-7"));
    assert!(!a.contains_key("service.version"));
}

#[test]
fn one_resource_per_service_instance() {
    let e = encoder(4 << 20);
    let (a, b) = (svc("a"), svc("b"));
    let spans: Vec<Arc<Span>> = [(&a, 1), (&b, 2), (&a, 1), (&a, 3), (&b, 2)]
        .iter()
        .map(|(sv, pid)| Arc::new(test_span(sv, *pid, "s")))
        .collect();
    let enc = e.encode(&spans);
    assert_eq!(enc.requests.len(), 1);
    let (req, n) = &enc.requests[0];
    assert_eq!(*n, 5);
    let shape: Vec<(AV, AV, usize)> = req
        .resource_spans
        .iter()
        .map(|rs| {
            let a = attrs(&rs.resource.as_ref().unwrap().attributes);
            assert_eq!(rs.scope_spans.len(), 1);
            assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "tracer");
            (a["service.name"].clone(), a["process.pid"].clone(), rs.scope_spans[0].spans.len())
        })
        .collect();
    assert_eq!(shape, vec![(s("a"), AV::IntValue(1), 2), (s("b"), AV::IntValue(2), 2), (s("a"), AV::IntValue(3), 1)]);
}

#[test]
fn requests_stay_under_the_limit() {
    let max = 64 << 10;
    let e = encoder(max);
    let (a, b) = (svc("a"), svc("b"));
    let mut spans = Vec::new();
    for i in 0..2000u32 {
        let mut sp = test_span(if i % 3 == 0 { &b } else { &a }, 1 + i % 5, "GET /x");
        sp.attributes.push((Key::named("url.path"), Value::Str("/p".repeat(1 + (i as usize % 50)).into())));
        spans.push(Arc::new(sp));
    }
    // One span bigger than a whole request: dropped and counted, not sent.
    let mut huge = test_span(&a, 1, "huge");
    huge.attributes.push((Key::named("big"), Value::Str("x".repeat(max).into())));
    spans.insert(1000, Arc::new(huge));

    let enc = e.encode(&spans);
    assert_eq!(enc.too_large, 1);
    assert!(enc.requests.len() > 5, "{} requests", enc.requests.len());
    let mut total = 0;
    for (req, n) in &enc.requests {
        let len = req.encoded_len();
        assert!(len <= max, "request of {len} bytes over {max}");
        assert!(len > max / 2 || std::ptr::eq(req, &enc.requests.last().unwrap().0), "requests are filled ({len})");
        let counted: usize = req.resource_spans.iter().map(|rs| rs.scope_spans[0].spans.len()).sum();
        assert_eq!(counted, *n);
        total += n;
    }
    assert_eq!(total, 2000);
}

#[test]
fn estimate_bounds_the_encoded_size() {
    // The single-request fast path relies on estimate >= encoded size.
    let e = encoder(4 << 20);
    for i in 0..200usize {
        let mut sp = test_span(&svc("a"), 1, &"n".repeat(i * 7));
        sp.attributes.extend([
            (Key::named(&"k".repeat(i)), Value::Str("v".repeat(i * 13).into())),
            (Key::named("i"), Value::Int(-(i as i64) * 1_000_000_007)),
            (Key::named("a"), Value::StrArray((0..i % 9).map(|j| "x".repeat(j * 300)).collect())),
        ]);
        let est = estimate_bytes(&sp);
        let real = field_len(e.span(&sp).encoded_len());
        assert!(est >= real && est < real * 8 + 512, "span {i}: estimate {est}, encoded {real}");
    }
}

/// Throughput of span encoding (release: `cargo test --release -p tracer
/// --lib encode_throughput -- --ignored --nocapture`).
#[test]
#[ignore = "measurement, not a test"]
fn encode_throughput() {
    let e = encoder((4 << 20) - (64 << 10));
    let services: Vec<Arc<Service>> = (0..20).map(|i| svc(&format!("svc-{i}"))).collect();
    let spans: Vec<Arc<Span>> = (0..512 * 200)
        .map(|i| {
            let mut sp = test_span(&services[i % 20], (i % 20) as u32, "GET /items/{id}");
            sp.attributes.extend([
                (Key::named("url.path"), Value::Str(format!("/items/{i}").into())),
                (Key::named("server.address"), Value::Str("backend.default.svc".into())),
                (Key::named("server.port"), Value::Int(8080)),
                (Key::named("network.peer.address"), Value::Str("10.0.0.12".into())),
                (Key::named("user_agent.original"), Value::Str("curl/8.5.0".into())),
            ]);
            Arc::new(sp)
        })
        .collect();
    // Thread CPU time: the figure is per core even on a busy machine.
    let cpu = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    };
    let (wall, c0) = (Instant::now(), cpu());
    let mut bytes = 0;
    for batch in spans.chunks(512) {
        for (req, _) in e.encode(batch).requests {
            bytes += req.encode_to_vec().len();
        }
    }
    let (secs, wall) = (cpu() - c0, wall.elapsed().as_secs_f64());
    println!(
        "encoded {} spans in {secs:.3} s of CPU ({wall:.3} s wall): {:.0} spans/s per core, {:.0} bytes/span (batches of 512, 20 services, proto bytes included)",
        spans.len(),
        spans.len() as f64 / secs,
        bytes as f64 / spans.len() as f64
    );
}
