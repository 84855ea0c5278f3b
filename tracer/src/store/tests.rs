//! Store unit tests: caps and eviction order, per-trace cap, filters (service,
//! edge with traced and virtual peers, route, status, duration, limit),
//! trace assembly (root, tree order), the JSON answers, and the sink's drop
//! accounting.

use std::sync::Arc;

use crate::span::Key;

use super::{
    api::{ListQuery, list_traces, parse_trace_id, trace_detail},
    traces::{Filter, Limits, Trace, Traces, on_edge, peer_is, span_bytes},
    *,
};
use crate::{
    identity::Service,
    span::{SpanKind, Status, Value},
};

fn svc(name: &str) -> Arc<Service> {
    Arc::new(Service { name: name.into(), ..Default::default() })
}

/// A span of trace `t`, id `id`, parent `parent` (0: none), `start..end` ns.
fn span(t: u8, id: u8, parent: u8, kind: SpanKind, service: &str, start: u64, end: u64) -> Span {
    Span {
        trace_id: [t; 16],
        span_id: [id; 8],
        parent_span_id: (parent != 0).then_some([parent; 8]),
        kind,
        name: format!("GET /{service}"),
        protocol: "http",
        start_ns: start,
        end_ns: end,
        response_first_ns: Some(end - 1),
        status: Status::Unset,
        attributes: vec![
            (Key::named("http.route"), Value::Str(format!("/{service}").into())),
            (Key::named("server.address"), Value::Str("10.0.0.9".into())),
            (Key::named("server.port"), Value::Int(8080)),
            (Key::named("client.address"), Value::Str("10.0.0.1".into())),
            (Key::named("network.peer.address"), Value::Str("10.0.0.9".into())),
            (Key::named("network.peer.port"), Value::Int(8080)),
        ],
        service: svc(service),
        pid: Some(42),
        comm: service.into(),
        request_tid: 1,
        response_tid: Some(1),
        request_goid: 0,
        response_goid: 0,
        request_seq: None,
        local: "127.0.0.1:1".parse().unwrap(),
        remote: "127.0.0.1:2".parse().unwrap(),
        context_from_header: false,
        peer_service: None,
        transaction: None,
        business_entry: false,
    }
}

fn limits(max_spans: usize, max_traces: usize) -> Limits {
    Limits { max_spans, max_traces, max_bytes: usize::MAX, max_spans_per_trace: 1000 }
}

/// curl -> nginx -> backend as trace `t` starting at `at` (ns), released
/// leaf first as the linker does.
fn chain(store: &mut Traces, t: u8, at: u64) {
    let (curl, nginx, backend) = (svc("curl"), svc("nginx"), svc("backend"));
    let mut s = vec![
        span(t, 6, 5, SpanKind::Server, "backend", at + 30, at + 40),
        span(t, 5, 4, SpanKind::Client, "nginx", at + 20, at + 50),
        span(t, 4, 3, SpanKind::Server, "nginx", at + 10, at + 60),
        span(t, 3, 0, SpanKind::Client, "curl", at, at + 70),
    ];
    for (x, (own, peer)) in s.iter_mut().zip([(&backend, &nginx), (&nginx, &backend), (&nginx, &curl), (&curl, &nginx)])
    {
        x.service = own.clone();
        x.peer_service = Some(peer.clone());
    }
    for x in s {
        store.insert(Arc::new(x));
    }
}

fn ids<'a>(it: impl Iterator<Item = &'a Trace>) -> Vec<u8> {
    it.map(|t| t.id[0]).collect()
}

fn all() -> Filter {
    Filter { limit: 100, ..Default::default() }
}

#[test]
fn evicts_oldest_traces_first_within_span_and_trace_caps() {
    let mut s = Traces::new(limits(10, 100));
    for t in 1..=3 {
        chain(&mut s, t, u64::from(t) * 1000);
    }
    // 12 spans > 10: trace 1 went, whole.
    assert_eq!((s.len(), s.span_count()), (2, 8));
    assert_eq!((s.evicted_traces, s.evicted_spans), (1, 4));
    assert_eq!(ids(s.query(&all())), vec![3, 2], "newest first");

    let mut s = Traces::new(limits(1000, 2));
    for t in 1..=5 {
        chain(&mut s, t, u64::from(t) * 1000);
    }
    assert_eq!(ids(s.query(&all())), vec![5, 4]);
    assert_eq!((s.evicted_traces, s.evicted_spans), (3, 12));
}

#[test]
fn byte_cap_and_per_trace_cap() {
    let one = span_bytes(&span(1, 1, 0, SpanKind::Server, "a", 0, 1));
    assert!(one > size_of::<Span>(), "counts the strings too");
    let mut s = Traces::new(Limits { max_spans: 1000, max_traces: 1000, max_bytes: one * 5, max_spans_per_trace: 3 });
    for id in 1..=4 {
        s.insert(Arc::new(span(1, id, 0, SpanKind::Server, "a", 0, 1)));
    }
    assert_eq!((s.span_count(), s.refused_spans), (3, 1), "fourth span of one trace refused");
    for t in 2..=3 {
        s.insert(Arc::new(span(t, 1, 0, SpanKind::Server, "a", 0, 1)));
    }
    // 5 spans fit in 5 spans' bytes; the next one evicts trace 1 (3 spans).
    assert_eq!(s.span_count(), 5);
    s.insert(Arc::new(span(4, 1, 0, SpanKind::Server, "a", 0, 1)));
    assert_eq!(ids(s.query(&all())), vec![4, 3, 2]);
    assert!(s.bytes() <= one * 5);
    assert_eq!(s.bytes(), one * 3);
}

#[test]
fn assembles_root_tree_and_services() {
    let mut s = Traces::new(limits(100, 100));
    chain(&mut s, 7, 1000);
    // An orphan whose parent was never seen is a root of its own.
    s.insert(Arc::new(span(7, 9, 99, SpanKind::Client, "cron", 1005, 1008)));
    let t = s.get(&[7; 16]).unwrap();
    assert_eq!(t.root().service.name, "curl");
    assert_eq!((t.start_ns, t.end_ns, t.duration_ns()), (1000, 1070, 70));
    let order: Vec<(usize, &str)> = t.tree().iter().map(|(d, s)| (*d, s.service.name.as_str())).collect();
    assert_eq!(order, vec![(0, "curl"), (1, "nginx"), (2, "nginx"), (3, "backend"), (0, "cron")]);
    assert_eq!(t.services(), vec!["curl", "cron", "nginx", "backend"]);
    assert!(!t.error);
    let mut e = span(7, 10, 6, SpanKind::Client, "backend", 1032, 1033);
    e.status = Status::Error;
    s.insert(Arc::new(e));
    assert!(s.get(&[7; 16]).unwrap().error);
}

#[test]
fn a_cycle_is_cut_not_looped() {
    let mut s = Traces::new(limits(100, 100));
    s.insert(Arc::new(span(1, 1, 2, SpanKind::Server, "a", 0, 10)));
    s.insert(Arc::new(span(1, 2, 1, SpanKind::Client, "a", 1, 5)));
    let t = s.get(&[1; 16]).unwrap();
    assert_eq!(t.tree().len(), 2);
    assert_eq!(t.root().span_id, [1; 8], "earliest span when every span has a parent");
}

#[test]
fn filters() {
    let mut s = Traces::new(limits(1000, 1000));
    chain(&mut s, 1, 1000);
    chain(&mut s, 2, 2000);
    // Trace 3: an error from an untraced peer, and slow (5 ms).
    let mut e = span(3, 1, 0, SpanKind::Server, "backend", 3000, 5_003_000);
    e.status = Status::Error;
    s.insert(Arc::new(e));
    // Trace 4: nginx calls an untraced server (virtual node 10.0.0.9:8080).
    s.insert(Arc::new(span(4, 1, 0, SpanKind::Client, "nginx", 4000, 4010)));
    let q = |f: Filter| ids(s.query(&Filter { limit: if f.limit == 0 { 100 } else { f.limit }, ..f }));
    let some = |v: &str| Some(v.to_string());

    assert_eq!(q(Filter::default()), vec![4, 3, 2, 1]);
    assert_eq!(q(Filter { limit: 2, ..Default::default() }), vec![4, 3]);
    assert_eq!(q(Filter { service: some("curl"), ..Default::default() }), vec![2, 1]);
    // A virtual node is found through the spans that name it as their peer.
    assert_eq!(q(Filter { service: some("10.0.0.9:8080"), ..Default::default() }), vec![4]);
    assert_eq!(q(Filter { client: some("nginx"), server: some("backend"), ..Default::default() }), vec![2, 1]);
    assert_eq!(q(Filter { client: some("curl"), server: some("backend"), ..Default::default() }), Vec::<u8>::new());
    assert_eq!(q(Filter { client: some("nginx"), server: some("10.0.0.9:8080"), ..Default::default() }), vec![4]);
    assert_eq!(q(Filter { client: some("10.0.0.1"), server: some("backend"), ..Default::default() }), vec![3]);
    assert_eq!(q(Filter { server: some("nginx"), ..Default::default() }), vec![2, 1]);
    assert_eq!(q(Filter { route: some("/backend"), ..Default::default() }), vec![3, 2, 1]);
    assert_eq!(q(Filter { route: some("GET /curl"), ..Default::default() }), vec![2, 1]);
    assert_eq!(q(Filter { error: Some(true), ..Default::default() }), vec![3]);
    assert_eq!(q(Filter { error: Some(false), ..Default::default() }), vec![4, 2, 1]);
    assert_eq!(q(Filter { min_duration_ns: 1_000_000, ..Default::default() }), vec![3]);
}

#[test]
fn peer_names_of_virtual_nodes() {
    let c = span(1, 1, 0, SpanKind::Client, "nginx", 0, 1);
    assert!(peer_is(&c, "10.0.0.9:8080") && peer_is(&c, "10.0.0.9") && !peer_is(&c, "10.0.0.9:80"));
    let sv = span(1, 2, 0, SpanKind::Server, "backend", 0, 1);
    assert!(peer_is(&sv, "10.0.0.1") && !peer_is(&sv, "10.0.0.1:5555"));
    assert!(on_edge(&sv, Some("10.0.0.1"), Some("backend")) && !on_edge(&sv, Some("10.0.0.1"), Some("nginx")));
    assert_eq!(super::traces::peer_name(&c).as_deref(), Some("10.0.0.9:8080"));
    assert_eq!(super::traces::peer_name(&sv).as_deref(), Some("10.0.0.1"));
    // A DNS-named address: its node is `name:port`, whatever the Host said.
    let mut named = c.clone();
    named.attributes.push((Key::TracerPeerName, Value::Shared("api.example.test".into())));
    assert!(peer_is(&named, "api.example.test:8080") && !peer_is(&c, "api.example.test:8080"));
}

#[test]
fn query_parameters() {
    let q = |status: &str, min: &str, limit: &str| {
        ListQuery {
            status: Some(status.into()),
            min_duration_ms: Some(min.into()),
            limit: Some(limit.into()),
            service: Some(String::new()),
            ..Default::default()
        }
        .filter()
    };
    let f = q("error", "2.5", "5000").unwrap();
    assert_eq!((f.error, f.min_duration_ns, f.limit, f.service), (Some(true), 2_500_000, 1000, None));
    assert_eq!(q("", "", "").unwrap().limit, 50);
    assert!(q("bad", "", "").unwrap_err().contains("status=bad"));
    assert!(q("ok", "-1", "").unwrap_err().contains("min_duration_ms"));
    assert!(q("ok", "", "0").unwrap_err().contains("limit"));
    assert_eq!(parse_trace_id(&"ab".repeat(16)), Some([0xab; 16]));
    assert_eq!(parse_trace_id("xyz"), None);
}

#[test]
fn json_answers() {
    let telemetry = Telemetry::new();
    let (store, _sink) = Store::new(StoreConfig::default(), telemetry.clone());
    chain(&mut store.shared.lock(), 1, 1_000_000);
    let list = serde_json::to_value(list_traces(&store.shared, &Filter { limit: 10, ..Default::default() })).unwrap();
    let t = &list["traces"][0];
    assert_eq!(t["trace_id"], "01".repeat(16));
    assert_eq!((t["root_service"].as_str(), t["root_kind"].as_str()), (Some("curl"), Some("client")));
    assert_eq!((t["span_count"].as_u64(), t["error"].as_bool()), (Some(4), Some(false)));
    assert_eq!(t["services"], serde_json::json!(["curl", "nginx", "backend"]));
    assert!(t["start"].as_str().unwrap().ends_with('Z'));
    assert_eq!((list["stored_traces"].as_u64(), list["stored_spans"].as_u64()), (Some(1), Some(4)));

    let d = serde_json::to_value(trace_detail(&store.shared, &[1; 16]).unwrap()).unwrap();
    let spans = d["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 4);
    assert_eq!(d["trace_id"], "01".repeat(16));
    let b = &spans[3];
    assert_eq!(
        (b["service"].as_str(), b["kind"].as_str(), b["depth"].as_u64()),
        (Some("backend"), Some("server"), Some(3))
    );
    assert_eq!(b["parent_span_id"], "05".repeat(8));
    assert_eq!(b["peer"], "nginx");
    assert_eq!(b["attributes"]["server.port"], 8080);
    assert_eq!(b["attributes"]["http.route"], "/backend");
    assert!(spans[0]["parent_span_id"].is_null());
    assert!(trace_detail(&store.shared, &[2; 16]).is_none());

    let m = telemetry.render();
    assert!(m.contains("tracer_store_spans 4"), "{m}");
    assert!(m.contains("tracer_store_evicted_traces_total 0"), "{m}");
}

#[tokio::test]
async fn sink_never_blocks_and_counts_drops() {
    let telemetry = Telemetry::new();
    let cfg = StoreConfig { queue: 2, ..Default::default() };
    let (store, sink) = Store::new(cfg, telemetry.clone());
    for id in 1..=5 {
        sink.span(&Arc::new(span(1, id, 0, SpanKind::Server, "a", 0, 1)));
    }
    assert_eq!(telemetry.dropped("chain_to_store", "queue_full"), 3);
    let shared = store.shared.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(store.run(stop_rx));
    drop(sink);
    task.await.unwrap().unwrap();
    assert_eq!(shared.lock().span_count(), 2, "queued spans stored, then the closed queue ends the task");
    drop(stop_tx);
}

#[test]
fn config_defaults_and_unknown_keys() {
    let c: StoreConfig = toml::from_str("max_spans = 10").unwrap();
    assert_eq!((c.max_spans, c.max_traces, c.queue), (10, 10_000, 4096));
    assert!(toml::from_str::<StoreConfig>("max_span = 10").is_err());
}
