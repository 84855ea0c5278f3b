//! End-to-end OTLP export: the real agent traces real programs (curl ->
//! nginx -> python backend) and exports to a receiver built from the
//! official definitions (tests/fixtures/otlp_receiver.py, on the Python
//! packages opentelemetry-proto and grpcio). Checked: spans arrive complete
//! over gRPC, HTTP and gzip; a receiver down then up (queue bound, drop
//! accounting, memory, capture goes on); Retry-After then 400; SIGTERM
//! flush; bad settings fail at start.

mod common;

use std::{
    collections::HashMap,
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::{Map, Value};

struct Receiver {
    _proc: Proc,
    out: PathBuf,
    grpc: u16,
    http: u16,
}

impl Receiver {
    fn start(script: &str) -> Receiver {
        Self::start_on(free_port(), free_port(), script, None)
    }

    /// `script_service`: only requests carrying that service take scripted answers.
    fn start_on(grpc: u16, http: u16, script: &str, script_service: Option<&str>) -> Receiver {
        let out = std::env::temp_dir().join(format!("tracer-otlp-rx-{}-{http}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&out);
        let script_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otlp_receiver.py");
        let proc = Proc(
            Command::new("python3")
                .arg(script_path)
                .args(["--grpc-port", &grpc.to_string(), "--http-port", &http.to_string(), "--script", script])
                .args(script_service.map(|s| ["--script-service", s]).into_iter().flatten())
                .arg("--out")
                .arg(&out)
                .stdout(Stdio::null())
                .spawn()
                .expect("starting the OTLP receiver (python3 -m pip install opentelemetry-proto grpcio googleapis-common-protos)"),
        );
        wait_listening(&format!("127.0.0.1:{grpc}"), None);
        wait_listening(&format!("127.0.0.1:{http}"), None);
        Receiver { _proc: proc, out, grpc, http }
    }

    fn endpoint(&self, protocol: &str) -> String {
        let port = if protocol == "grpc" { self.grpc } else { self.http };
        format!("http://127.0.0.1:{port}")
    }

    /// Every request received so far, decoded.
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("receiver line is JSON")).collect()
    }

    /// Spans of accepted trace requests.
    fn spans(&self) -> Vec<RxSpan> {
        let mut out = Vec::new();
        for r in self.requests().iter().filter(|r| r["signal"] == "traces" && r["answer"] == "ok") {
            for rs in r["request"]["resourceSpans"].as_array().into_iter().flatten() {
                let resource = attrs(&rs["resource"]["attributes"]);
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for sp in ss["spans"].as_array().into_iter().flatten() {
                        out.push(RxSpan {
                            transport: r["transport"].as_str().unwrap().into(),
                            resource: resource.clone(),
                            scope: ss["scope"].clone(),
                            span: sp.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    fn wait_spans(&self, what: &str, n: usize, timeout: Duration, pred: impl Fn(&RxSpan) -> bool) -> Vec<RxSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let got: Vec<RxSpan> = self.spans().into_iter().filter(|s| pred(s)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{what}: {} of {n} spans at the receiver within {timeout:?}", got.len());
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[derive(Clone, Debug)]
struct RxSpan {
    transport: String,
    resource: Map<String, Value>,
    scope: Value,
    span: Value,
}

/// OTLP/JSON KeyValue list -> {key: plain JSON value}.
fn attrs(kvs: &Value) -> Map<String, Value> {
    kvs.as_array()
        .into_iter()
        .flatten()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), plain(&kv["value"])))
        .collect()
}

fn plain(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        s.clone()
    } else if let Some(i) = v.get("intValue") {
        // int64 is a string in protobuf JSON.
        Value::from(i.as_str().map_or_else(|| i.as_i64().unwrap(), |s| s.parse::<i64>().unwrap()))
    } else if let Some(a) = v.get("arrayValue") {
        Value::from(a["values"].as_array().into_iter().flatten().map(plain).collect::<Vec<_>>())
    } else {
        panic!("unexpected AnyValue {v}")
    }
}

fn num(v: &Value) -> u64 {
    v.as_str().map_or_else(|| v.as_u64().unwrap(), |s| s.parse().unwrap())
}

/// (enqueued, exported, dropped for every reason) from one scrape.
fn accounting(agent: &Agent) -> (u64, u64, u64) {
    let m = agent.metrics();
    let get = |prefix: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .sum()
    };
    (
        get("tracer_otlp_enqueued_total{signal=\"traces\"}"),
        get("tracer_otlp_exported_total{signal=\"traces\"}"),
        get("tracer_otlp_dropped_total{signal=\"traces\""),
    )
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn otlp_env<'a>(endpoint: &'a str, protocol: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=e2e"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=e2e,k8s.cluster.name=test"),
    ];
    v.extend_from_slice(extra);
    v
}

/// One agent span line matches one received span, field by field.
fn assert_same(agent: &Value, rx: &RxSpan) {
    let s = &rx.span;
    let ctx = format!("agent span {agent}\nreceived {s}");
    assert_eq!(s["traceId"], agent["trace_id"], "{ctx}");
    assert_eq!(s.get("parentSpanId").cloned(), agent["parent_span_id"].as_str().map(Value::from), "{ctx}");
    assert_eq!(s["name"], agent["name"], "{ctx}");
    let kind = if agent["kind"] == "server" { "SPAN_KIND_SERVER" } else { "SPAN_KIND_CLIENT" };
    assert_eq!(s["kind"], kind, "{ctx}");
    let error = agent["status"] == "error";
    assert_eq!(s["status"]["code"] == "STATUS_CODE_ERROR", error, "{ctx}");
    assert_eq!(
        num(&s["endTimeUnixNano"]) - num(&s["startTimeUnixNano"]),
        agent["duration_ns"].as_u64().unwrap(),
        "{ctx}"
    );
    assert_eq!(&attrs(&s["attributes"]), agent["attributes"].as_object().unwrap(), "{ctx}");
    let r = &rx.resource;
    assert_eq!(r["service.name"], agent["service"], "{ctx}");
    assert_eq!(r["process.pid"], agent["pid"], "{ctx}");
    assert_eq!(r["process.executable.name"], agent["comm"], "{ctx}");
    assert!(r["host.name"].as_str().is_some_and(|h| !h.is_empty()), "{ctx}");
    assert_eq!(r["service.instance.id"], format!("{}-{}", r["host.name"].as_str().unwrap(), agent["pid"]), "{ctx}");
    assert_eq!(r["telemetry.distro.name"], "tracer", "{ctx}");
    assert!(!r.contains_key("telemetry.sdk.name"), "{ctx}");
    assert_eq!(r["k8s.cluster.name"], "test", "{ctx}");
    assert_eq!(rx.scope["name"], "tracer", "{ctx}");
}

#[test]
fn spans_arrive_complete_over_grpc_http_and_gzip() {
    for (protocol, compression) in
        [("grpc", "none"), ("http/protobuf", "none"), ("http/protobuf", "gzip"), ("grpc", "gzip")]
    {
        eprintln!("--- {protocol}, compression {compression}");
        let rx = Receiver::start("");
        let endpoint = rx.endpoint(protocol);
        let agent =
            Agent::start_env(&[], &otlp_env(&endpoint, protocol, &[("OTEL_EXPORTER_OTLP_COMPRESSION", compression)]));
        let (bport, nport) = (free_port(), free_port());
        let _backend = backend(
            bport,
            &[
                ("OTEL_SERVICE_NAME", "backend"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.version=2.0.1,deployment.environment=blue"),
            ],
        );
        let _nginx = nginx_proxy(nport, bport);
        let tp = format!("traceparent: 00-{TRACE}-{PARENT}-01");
        for path in ["/items/7", "/fail"] {
            curl(&format!("http://127.0.0.1:{nport}{path}"), None, &["-H", &tp]);
        }
        let ours = |v: &Value| ["curl", "nginx", "backend"].contains(&v["service"].as_str().unwrap_or(""));
        let printed = agent.wait_spans("curl, nginx and backend spans", 8, ours);
        let got = rx.wait_spans("exported spans", 8, Duration::from_secs(10), |s| {
            ["curl", "nginx", "backend"].contains(&s.resource["service.name"].as_str().unwrap_or(""))
        });
        let by_id: HashMap<&str, &RxSpan> = got.iter().map(|s| (s.span["spanId"].as_str().unwrap(), s)).collect();
        for a in printed.iter().filter(|v| ours(v)) {
            let rx_span =
                by_id.get(a["span_id"].as_str().unwrap()).unwrap_or_else(|| panic!("span {a} was not exported"));
            assert_same(a, rx_span);
            assert!(protocol.starts_with(&rx_span.transport), "{} via {}", protocol, rx_span.transport);
        }
        // The traceparent curl sent: its client span is a child of the given parent.
        let curl_spans: Vec<&RxSpan> = got.iter().filter(|s| s.resource["service.name"] == "curl").collect();
        let seen: Vec<String> =
            printed.iter().map(|v| format!("{} {} {} pid {}", v["service"], v["kind"], v["name"], v["pid"])).collect();
        assert_eq!(curl_spans.len(), 2, "printed: {seen:#?}");
        for s in &curl_spans {
            assert_eq!((s.span["traceId"].as_str(), s.span["parentSpanId"].as_str()), (Some(TRACE), Some(PARENT)));
            assert_eq!(s.span["kind"], "SPAN_KIND_CLIENT");
        }
        // The backend's own resource attributes, and the agent's only where it set none.
        let b = got.iter().find(|s| s.resource["service.name"] == "backend").unwrap();
        assert_eq!(b.resource["service.version"], "2.0.1");
        assert_eq!(b.resource["deployment.environment"], "blue");
        let c = curl_spans[0];
        assert_eq!(c.resource["deployment.environment"], "e2e");
        // One resource per service instance, in every request.
        for r in rx.requests() {
            let mut seen = std::collections::HashSet::new();
            for rs in r["request"]["resourceSpans"].as_array().unwrap() {
                let a = attrs(&rs["resource"]["attributes"]);
                assert!(seen.insert(a["service.instance.id"].clone()), "one resource per instance in a request: {r}");
            }
            assert_eq!(r["headers"]["x-tenant"], "e2e", "OTEL_EXPORTER_OTLP_HEADERS sent");
            if r["transport"] == "http" {
                let gz = r["content_encoding"] == "gzip";
                assert_eq!(gz, compression == "gzip", "content encoding of {r}");
            }
        }
        assert!(agent.metric("tracer_otlp_exported_total{signal=\"traces\"}") >= 8);
        agent.stop();
    }
}

/// The request carries a resource of `service`.
fn carries(r: &Value, service: &str) -> bool {
    r["request"]["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rs| attrs(&rs["resource"]["attributes"])["service.name"] == service)
}

#[test]
fn retry_after_is_honoured_then_400_is_not_retried() {
    for protocol in ["http/protobuf", "grpc"] {
        eprintln!("--- {protocol}");
        // Scripted answers only for requests with the backend's spans: the
        // machine's other traffic is traced and exported too.
        let rx = Receiver::start_on(free_port(), free_port(), "503:2,400", Some("backend"));
        let endpoint = rx.endpoint(protocol);
        // Both spans of one curl call fall in one batch.
        let agent = Agent::start_env(&[], &otlp_env(&endpoint, protocol, &[("OTEL_BSP_SCHEDULE_DELAY", "1500")]));
        let bport = free_port();
        let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
        curl(&format!("http://127.0.0.1:{bport}/items/1"), None, &[]);
        agent.wait_spans("curl and backend spans", 2, |v| v["service"] == "curl" || v["service"] == "backend");

        let backend_requests = || rx.requests().into_iter().filter(|r| carries(r, "backend")).collect::<Vec<_>>();
        let deadline = Instant::now() + Duration::from_secs(15);
        while backend_requests().len() < 2 {
            assert!(Instant::now() < deadline, "503 then 400: got {:?}", backend_requests());
            thread::sleep(Duration::from_millis(100));
        }
        // Nothing else comes for this batch: the 400 is final.
        thread::sleep(Duration::from_secs(3));
        let reqs = backend_requests();
        assert_eq!(reqs.len(), 2, "the 400 was not retried: {reqs:?}");
        assert_eq!((reqs[0]["answer"].as_str(), reqs[1]["answer"].as_str()), (Some("503:2"), Some("400")));
        assert_eq!(reqs[0]["request"], reqs[1]["request"], "the retry resends the same request");
        let gap = reqs[1]["time"].as_f64().unwrap() - reqs[0]["time"].as_f64().unwrap();
        assert!((1.95..3.5).contains(&gap), "retried {gap:.2} s after a 503 with Retry-After 2");
        let n: u64 = reqs[0]["request"]["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rs| rs["scopeSpans"][0]["spans"].as_array().unwrap().len() as u64)
            .sum();
        assert_eq!(agent.metric("tracer_otlp_retries_total{signal=\"traces\"}"), 1, "{}", agent.metrics());
        assert_eq!(
            agent.metric("tracer_otlp_dropped_total{signal=\"traces\",reason=\"rejected\"}"),
            n,
            "{}",
            agent.metrics()
        );

        // The exporter goes on: the next batch is accepted.
        curl(&format!("http://127.0.0.1:{bport}/items/2"), None, &[]);
        let more = rx
            .wait_spans("spans after the 400", 1, Duration::from_secs(10), |s| s.resource["service.name"] == "backend");
        assert!(more.iter().all(|s| s.span["attributes"].to_string().contains("/items/2")));
        agent.stop();
    }
}

#[test]
fn receiver_down_then_up_keeps_the_newest_within_the_bound() {
    const QUEUE: usize = 40;
    const BATCH: usize = 10;
    let (grpc, http) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{http}");
    let cfg = std::env::temp_dir().join(format!("tracer-e2e-otlp-{}.toml", std::process::id()));
    // Fast retries so the recovery is seen within a second; a long budget so
    // the batch in flight outlives the outage.
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(b"[otlp]\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000\n")
        .unwrap();
    // In a network namespace of its own, the agent sees this test's traffic
    // only: the queue's content is known (no harness or machine traffic).
    let ns = Namespace::create("otlp");
    let agent = Agent::start_env(
        &["--config", cfg.to_str().unwrap(), "--netns", &ns.path()],
        &otlp_env(
            &endpoint,
            "http/protobuf",
            &[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "40"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "120000"),
            ],
        ),
    );
    let bport = free_port();
    let _backend = backend_in(&ns.name, bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let url = format!("http://127.0.0.1:{bport}/items/1");
    let rss_start = agent.rss_kib();
    let mut rss_max = rss_start;
    let mut events = agent.metric_sum("tracer_events_received_total");
    // 30 s without a receiver, with traffic all along (10 requests a second on one connection).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let mut args = vec!["netns", "exec", &ns.name, "curl", "-sS"];
        for _ in 0..10 {
            args.extend(["-o", "/dev/null", url.as_str()]);
        }
        assert!(Command::new("ip").args(&args).status().unwrap().success());
        thread::sleep(Duration::from_millis(1000));
        let now = agent.metric_sum("tracer_events_received_total");
        assert!(now > events, "capture goes on while the backend is down ({events} -> {now})");
        events = now;
        rss_max = rss_max.max(agent.rss_kib());
    }
    // The chain linker holds spans (2 s) for their parents: wait until all are out.
    let mut printed = 0;
    while agent.spans().len() != printed {
        printed = agent.spans().len();
        thread::sleep(Duration::from_millis(2500));
    }
    let outage =
        agent.wait_spans("spans during the outage", 300, |v| v["service"] == "backend" || v["service"] == "curl");
    assert!(agent.metric("tracer_otlp_dropped_total{signal=\"traces\",reason=\"queue_full\"}") > 0);
    assert!(agent.metric("tracer_otlp_queue_items") <= QUEUE as u64);
    assert!(
        rss_max < rss_start + 32 * 1024,
        "agent memory grew from {rss_start} KiB to {rss_max} KiB during the outage"
    );

    let rx = Receiver::start_on(grpc, http, "", None);
    // Every span handed to the exporter is exported or counted as dropped,
    // and the receiver holds exactly what the agent counts as exported.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (enqueued, exported, dropped) = accounting(&agent);
        let received = rx.spans().len() as u64;
        if enqueued == exported + dropped && received == exported && agent.metric("tracer_otlp_queue_items") == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "enqueued {enqueued}, exported {exported}, dropped {dropped}, received {received}:\n{}",
            agent.metrics()
        );
        thread::sleep(Duration::from_millis(300));
    }
    // Of the outage's spans, the queue's worth and the batch in flight (at
    // most a batch, taken when the delay was up) arrive; the rest were dropped.
    let got = rx.spans();
    let ids: std::collections::HashSet<&Value> = got.iter().map(|s| &s.span["spanId"]).collect();
    let delivered = outage.iter().filter(|v| ids.contains(&v["span_id"])).count();
    let (enqueued, exported, dropped) = accounting(&agent);
    eprintln!(
        "outage: {} spans of curl/backend, {delivered} delivered; enqueued {enqueued} = exported {exported} + dropped {dropped}; RSS {rss_start} -> max {rss_max} KiB",
        outage.len()
    );
    assert!(
        (QUEUE..=QUEUE + BATCH).contains(&delivered) && enqueued == outage.len() as u64,
        "{delivered} of {} outage spans delivered ({enqueued} enqueued); queue {QUEUE}, batch {BATCH}",
        outage.len()
    );
    // Drop oldest: the newest span of the outage is among those delivered.
    let newest = outage.iter().max_by_key(|v| v["end_ns"].as_u64().unwrap()).unwrap();
    assert!(ids.contains(&newest["span_id"]), "the newest span was delivered");
    agent.stop();
}

#[test]
fn sigterm_flushes_what_is_queued() {
    let rx = Receiver::start("");
    // A schedule delay longer than the test: only the shutdown flush sends.
    let endpoint = rx.endpoint("grpc");
    let agent = Agent::start_env(&[], &otlp_env(&endpoint, "grpc", &[("OTEL_BSP_SCHEDULE_DELAY", "600000")]));
    let bport = free_port();
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    for i in 0..5 {
        curl(&format!("http://127.0.0.1:{bport}/items/{i}"), None, &[]);
    }
    let printed = agent.wait_spans("spans", 10, |v| v["service"] == "backend" || v["service"] == "curl");
    thread::sleep(Duration::from_millis(500));
    assert!(rx.requests().is_empty(), "nothing sent before shutdown");
    agent.stop();
    let got = rx.spans();
    for p in &printed {
        assert!(got.iter().any(|s| s.span["spanId"] == p["span_id"]), "span {p} flushed at SIGTERM");
    }
}

#[test]
fn bad_settings_fail_at_start_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("tracer-e2e-otlp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("ca.pem");
    std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
    let junk = junk.to_str().unwrap();
    // (environment, what the error must name)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")], &["OTEL_EXPORTER_OTLP_ENDPOINT", "http:// or https://"]),
        (&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://127.0.0.1:4318")], &["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")],
            &["OTEL_EXPORTER_OTLP_PROTOCOL", "grpc or http/protobuf"],
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
            ],
            &["/nonexistent/ca.pem", "OTEL_EXPORTER_OTLP_CERTIFICATE"],
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4317"), ("OTEL_EXPORTER_OTLP_CERTIFICATE", junk)],
            &[junk, "not valid PEM"],
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4317"), ("OTEL_EXPORTER_OTLP_CLIENT_KEY", junk)],
            &[junk, "private key"],
        ),
    ];
    for (env, needles) in cases {
        let (status, stderr) = tracer_fails(&[], env);
        assert!(!status.success(), "{env:?}: the tracer should refuse to start");
        for n in *needles {
            assert!(stderr.contains(n), "{env:?}: the error should name {n:?}:\n{stderr}");
        }
    }
}
