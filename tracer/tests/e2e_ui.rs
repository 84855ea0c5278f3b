//! The web page in a real browser (Debian's headless Chromium, driven over
//! WebDriver by chromedriver; `.ci/run` installs both):
//!
//! - `page_shows_the_live_chain`: the real agent on the real kernel traces
//!   curl -> nginx -> frontend -> backend (in their own network namespace,
//!   so the browser's own traffic stays off the map) while the page is open;
//!   the expected nodes and edges are drawn, a click on an edge lists its
//!   traces, a click on a trace opens its waterfall with every span and its
//!   attributes; the screenshot goes to target/ui-screenshot.png.
//! - `map_of_200_nodes_stays_usable`: the page against an in-process API
//!   serving a 200-node topology: every node drawn, none overlapping, the
//!   layout computed in well under a second, and still clickable.
//!
//! The WebDriver client is a few lines over std's TcpStream: no browser
//! automation library to install.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One HTTP/1.1 exchange with chromedriver: (status, JSON body).
fn http_json(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connecting to chromedriver: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        r.read_exact(&mut out).unwrap();
    } else {
        r.read_to_end(&mut out).unwrap();
    }
    (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
}

/// A headless Chromium session. Dropping it ends the session and the driver.
struct Browser {
    _driver: Proc,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Browser {
    fn start(width: u32, height: u32) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver (.ci/run does)"
            );
        }
        let port = free_port();
        let driver = Proc(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromedriver"),
        );
        wait_listening(&format!("127.0.0.1:{port}"), None);
        // A fresh profile: no state from another run, nothing to sync.
        let profile = std::env::temp_dir().join(format!("tracer-e2e-chromium-{}-{port}", std::process::id()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Console messages, read back when a wait fails.
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--no-proxy-server", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let (status, v) = http_json(port, "POST", "/session", Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start Chromium (HTTP {status}): {v}"))
            .to_string();
        Browser { _driver: driver, port, session, profile }
    }

    /// A WebDriver command; panics with the driver's error.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = http_json(self.port, method, &format!("/session/{}{path}", self.session), body.as_ref());
        assert!(status == 200, "WebDriver {method} {path}: HTTP {status}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Run `script` (a function body: `return ...`) in the page.
    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// Poll `script` until it returns something other than null/false.
    fn wait(&self, what: &str, secs: u64, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.js(script);
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.js(
                    "return {topology: document.body.dataset.topology, error: document.body.dataset.jsError || null, \
                     banner: document.querySelector('#banner').textContent, \
                     nodes: [...document.querySelectorAll('g.node')].map(n => n.dataset.node), \
                     edges: [...document.querySelectorAll('g.edge')].map(e => e.dataset.client + '->' + e.dataset.server), \
                     traces: document.querySelectorAll('#trace-list tr.trace').length, \
                     note: document.querySelector('#trace-note').textContent}",
                );
                let (_, log) = http_json(
                    self.port,
                    "POST",
                    &format!("/session/{}/se/log", self.session),
                    Some(&json!({"type": "browser"})),
                );
                panic!("{what}: not within {secs} s; the page shows {page:#}\nbrowser console: {:#}", log["value"]);
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// A real click (pointer events at the element's centre), as a user's.
    fn click(&self, css: &str) {
        let e = self.cmd("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        let id = e[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {e}")).to_string();
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("screenshot as base64"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http_json(self.port, "DELETE", &format!("/session/{}", self.session), None);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(val).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, v)| acc | (u32::from(*v) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
}

/// The edges of the agent's /api/topology, as "client->server".
fn topology_edges(agent: &Agent) -> Result<Vec<String>, String> {
    let (status, body) = http_get(agent.api, "/api/topology?window=5m").map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("GET /api/topology: HTTP {status} {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(v["edges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{}->{}", e["client"].as_str().unwrap_or("?"), e["server"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default())
}

#[test]
fn page_shows_the_live_chain() {
    let ns = Namespace::create("ui");
    let (bport, fport, nport) = (18081, 18082, 18080);
    let _backend = backend_in(&ns.name, bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let _frontend = backend_in(&ns.name, fport, &[("OTEL_SERVICE_NAME", "frontend")]);
    let _nginx = nginx_proxy_in(&ns.name, nport, fport);
    let agent = Agent::start(&["--netns", &ns.path()]);

    // Traffic all along the test: through to the backend, served by the
    // frontend alone, and now and then a 500 from the backend.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, ns) = (stop.clone(), ns.name.clone());
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = match i % 20 {
                    19 => format!("/call/{bport}/fail"),
                    n if n % 3 == 0 => format!("/items/{i}"),
                    _ => format!("/call/{bport}/items/{i}"),
                };
                curl(&format!("http://127.0.0.1:{nport}{path}"), Some(&ns), &["--max-time", "5"]);
                i += 1;
                thread::sleep(Duration::from_millis(100));
            }
            i
        })
    };

    let expected_edges = ["curl->nginx", "nginx->frontend", "frontend->backend"];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let edges = topology_edges(&agent);
        if edges.as_ref().is_ok_and(|e| expected_edges.iter().all(|x| e.contains(&x.to_string()))) {
            break;
        }
        assert!(Instant::now() < deadline, "the agent's topology lacks {expected_edges:?} after 30 s: {edges:?}");
        thread::sleep(Duration::from_millis(500));
    }

    let browser = Browser::start(1440, 900);
    browser.goto(&format!("http://{}/", agent.api));
    // Nodes and edges drawn, with data-* attributes naming them.
    browser.wait(
        "the chain's nodes and edges on the map",
        20,
        r#"const has = (s) => !!document.querySelector(s);
           return ['curl', 'nginx', 'frontend', 'backend'].every(n => has(`g.node[data-node="${n}"]`))
             && [['curl','nginx'], ['nginx','frontend'], ['frontend','backend']]
                  .every(([c, s]) => has(`g.edge[data-client="${c}"][data-server="${s}"]`));"#,
    );
    let health = browser.js("return document.querySelector('g.node[data-node=\"backend\"]').dataset.health");
    assert!(["ok", "warn", "error"].contains(&health.as_str().unwrap()), "backend has requests: {health}");
    let label = browser.js(
        "return document.querySelector('g.edge[data-client=\"frontend\"][data-server=\"backend\"] .edge-label text').textContent",
    );
    assert!(label.as_str().unwrap().contains("/s") && label.as_str().unwrap().contains("p99"), "edge label: {label}");

    // A node lists its traces.
    browser.click("g.node[data-node=\"nginx\"]");
    browser.wait(
        "nginx's traces",
        15,
        "return document.querySelector('#selection h2')?.textContent === 'nginx' \
         && document.querySelectorAll('#trace-list tr.trace').length > 0",
    );

    // An edge lists its traces; a complete one (six spans) opens as a waterfall.
    browser.click("g.edge[data-client=\"frontend\"][data-server=\"backend\"] .edge-label");
    browser.wait(
        "a six-span trace through frontend -> backend",
        15,
        "return document.querySelector('#selection h2')?.textContent === 'frontend → backend' \
         && !!document.querySelector('#trace-list tr.trace[data-span-count=\"6\"]')",
    );
    browser.click("#trace-list tr.trace[data-span-count=\"6\"] td.root");
    let rows = browser.wait(
        "the waterfall of the trace",
        15,
        "const rows = [...document.querySelectorAll('#waterfall .span-row')]; \
         return rows.length ? rows.map(r => [r.dataset.service, r.dataset.kind, Number(r.dataset.depth)]) : null",
    );
    let rows: Vec<(String, String, u64)> = serde_json::from_value(rows).unwrap();
    let want: Vec<(String, String, u64)> = [
        ("curl", "client"),
        ("nginx", "server"),
        ("nginx", "client"),
        ("frontend", "server"),
        ("frontend", "client"),
        ("backend", "server"),
    ]
    .iter()
    .enumerate()
    .map(|(d, (s, k))| (s.to_string(), k.to_string(), d as u64))
    .collect();
    assert_eq!(rows, want, "one row per span, in call order, each one level deeper");
    // Every span shows its attributes.
    let attrs = browser.js("return [...document.querySelectorAll('#waterfall .attrs')].map(a => \
           [...a.querySelectorAll('.k')].map(k => k.dataset.key))");
    for (i, keys) in attrs.as_array().unwrap().iter().enumerate() {
        for k in ["span_id", "http.request.method", "http.route", "url.path", "http.response.status_code"] {
            assert!(keys.as_array().unwrap().iter().any(|x| x == k), "span {i} shows {k}: {keys}");
        }
    }
    assert_eq!(browser.js("return document.body.dataset.jsError || null"), Value::Null, "no script error");
    browser.screenshot(&target_dir().join("ui-screenshot.png"));
    // The waterfall alone, attributes folded: every span on one screen.
    browser.click("#toggle-attrs");
    browser.wait(
        "attributes folded",
        5,
        "return getComputedStyle(document.querySelector('#waterfall .attrs')).display === 'none'",
    );
    browser.screenshot(&target_dir().join("ui-screenshot-waterfall.png"));

    // The store reports itself on /metrics, and kept up with the traffic.
    assert!(agent.metric("tracer_store_spans") > 0, "tracer_store_spans on /metrics");
    assert_eq!(agent.metric("tracer_events_dropped_total{stage=\"chain_to_store\",reason=\"queue_full\"}"), 0);

    stop.store(true, Ordering::Relaxed);
    let sent = traffic.join().unwrap();
    assert!(sent > 10, "traffic kept flowing during the test ({sent} requests)");
    drop(browser);
    agent.stop();
}

/// Spans of one synthetic trace gateway -> svc-NN -> leaf-NN-MM (5 spans).
fn synthetic_trace(t: u8, svc: usize, leaf: usize) -> Vec<tracer::span::Span> {
    use tracer::{
        identity::Service,
        span::{Span, SpanKind, Status, Value},
    };
    let now = tracer::clock::monotonic_ns() - 2_000_000_000 + u64::from(t) * 50_000_000;
    let mid = format!("svc-{svc:02}");
    let leaf = format!("leaf-{svc:02}-{leaf:02}");
    let service = |n: &str| Arc::new(Service { name: n.to_string(), ..Default::default() });
    let span = |id: u8, parent: u8, kind, own: &str, peer: &str, start: u64, end: u64| Span {
        trace_id: [t; 16],
        span_id: [id; 8],
        parent_span_id: (parent != 0).then_some([parent; 8]),
        kind,
        name: format!("GET /{own}/{{id}}"),
        protocol: "http",
        start_ns: now + start * 1000,
        end_ns: now + end * 1000,
        response_first_ns: Some(now + end * 1000 - 500),
        status: Status::Unset,
        attributes: vec![
            ("http.request.method".into(), Value::Str("GET".into())),
            ("url.path".into(), Value::Str(format!("/{own}/{t}").into())),
            ("http.route".into(), Value::Str(format!("/{own}/{{id}}").into())),
            ("http.response.status_code".into(), Value::Int(200)),
        ],
        service: service(own),
        pid: Some(1000 + u32::from(id)),
        comm: own.to_string(),
        request_tid: 1,
        response_tid: Some(1),
        request_goid: 0,
        response_goid: 0,
        request_seq: None,
        local: "127.0.0.1:1000".parse().unwrap(),
        remote: "127.0.0.1:2000".parse().unwrap(),
        context_from_header: false,
        peer_service: Some(service(peer)),
        transaction: None,
        business_entry: false,
    };
    vec![
        span(5, 4, SpanKind::Server, &leaf, &mid, 300, 700),
        span(4, 3, SpanKind::Client, &mid, &leaf, 250, 750),
        span(3, 2, SpanKind::Server, &mid, "gateway", 200, 900),
        span(2, 1, SpanKind::Client, "gateway", &mid, 100, 1000),
        span(1, 0, SpanKind::Server, "gateway", "10.9.0.1", 0, 1100),
    ]
}

/// 200 nodes: a gateway, 15 services, 12 leaves each, 4 untraced peers;
/// a few calls across, and one cycle.
fn big_topology() -> Value {
    let mut nodes =
        vec![json!({"id": "gateway", "name": "gateway", "kind": "service", "requests": 90000, "errors": 12})];
    let mut edges = Vec::new();
    let edge = |c: &str, s: &str, requests: u64, errors: u64| {
        json!({"client": c, "server": s, "connection_type": if s.starts_with("10.") { "virtual_node" } else { "" },
               "requests": requests, "errors": errors, "error_rate": errors as f64 / requests as f64,
               "rate_per_s": requests as f64 / 300.0, "p50_ms": 2.1, "p90_ms": 8.4, "p99_ms": 31.0,
               "tcp": {"opened": 10, "failed": u64::from(s == "10.9.0.3:443"), "refused": 0, "timeout": 0, "reset": 0, "retransmits": 2, "srtt_ms": 0.08}})
    };
    for e in 0..4 {
        let id = format!("10.9.0.{e}:443");
        nodes.push(json!({"id": id, "name": id, "kind": "virtual", "requests": 0, "errors": 0}));
    }
    for s in 0..15 {
        let mid = format!("svc-{s:02}");
        let errors = [0, 0, 30, 0, 900][s % 5];
        nodes.push(json!({"id": mid, "name": mid, "kind": "service", "requests": 6000, "errors": errors}));
        edges.push(edge("gateway", &mid, 6000, errors));
        edges.push(edge(&mid, &format!("10.9.0.{}:443", s % 4), 500, 0));
        for l in 0..12 {
            let leaf = format!("leaf-{s:02}-{l:02}");
            nodes.push(json!({"id": leaf, "name": leaf, "kind": "service", "requests": 400, "errors": 0}));
            edges.push(edge(&mid, &leaf, 400, 0));
        }
    }
    for (c, s) in [("leaf-03-00", "svc-07"), ("svc-14", "svc-02"), ("svc-05", "svc-06"), ("svc-06", "svc-05")] {
        edges.push(edge(c, s, 100, 0));
    }
    json!({"window": "5m", "generated_at": "2025-01-01T00:00:00Z", "nodes": nodes, "edges": edges})
}

#[test]
fn map_of_200_nodes_stays_usable() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, sink) = tracer::store::Store::new(Default::default(), tracer::telemetry::Telemetry::new());
    let topo = big_topology();
    let (n_nodes, n_edges) = (topo["nodes"].as_array().unwrap().len(), topo["edges"].as_array().unwrap().len());
    assert_eq!(n_nodes, 200);
    let app = axum::Router::new()
        .route("/api/topology", axum::routing::get(move || std::future::ready(axum::Json(topo.clone()))))
        .merge(store.routes())
        .merge(tracer::ui::routes());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    rt.spawn(store.run(stop_rx));
    for t in 1..=4u8 {
        for s in synthetic_trace(t, 3, usize::from(t)) {
            sink.span(&Arc::new(s));
        }
    }

    let browser = Browser::start(1440, 900);
    browser.goto(&format!("http://{addr}/"));
    let drawn = browser.wait(
        "200 nodes drawn",
        20,
        r#"const m = document.querySelector('#map');
           return m.dataset.nodeCount === '200' ? [Number(m.dataset.edgeCount), Number(m.dataset.layoutMs)] : null"#,
    );
    assert_eq!(drawn[0], n_edges as u64, "every edge drawn");
    let layout_ms = drawn[1].as_f64().unwrap();
    assert!(layout_ms < 500.0, "layout of 200 nodes took {layout_ms} ms");
    eprintln!("layout of 200 nodes, {n_edges} edges: {layout_ms} ms");
    browser.screenshot(&target_dir().join("ui-200-nodes.png"));
    // No two nodes overlap.
    let overlaps = browser.js(
        r#"const ps = [...document.querySelectorAll('g.node')].map((g) => {
             const m = g.transform.baseVal.consolidate().matrix;
             return [g.dataset.node, m.e, m.f];
           });
           const out = [];
           for (let i = 0; i < ps.length; i++)
             for (let j = i + 1; j < ps.length; j++)
               if (Math.abs(ps[i][1] - ps[j][1]) < 172 && Math.abs(ps[i][2] - ps[j][2]) < 44) out.push([ps[i][0], ps[j][0]]);
           return out;"#,
    );
    assert_eq!(overlaps, json!([]), "overlapping nodes");
    // Callers left of callees (the cycle and the back edge aside).
    let order = browser.js(
        r#"const x = (n) => document.querySelector(`g.node[data-node="${n}"]`).transform.baseVal.consolidate().matrix.e;
           return [x('gateway'), x('svc-03'), x('leaf-03-04')];"#,
    );
    let xs: Vec<f64> = serde_json::from_value(order).unwrap();
    assert!(xs[0] < xs[1] && xs[1] < xs[2], "layered left to right: {xs:?}");

    // Still clickable at the zoom that fits 200 nodes; the trace opens.
    browser.click("g.node[data-node=\"svc-03\"]");
    browser.wait(
        "svc-03's traces",
        10,
        r#"return document.querySelector('#selection h2')?.textContent === 'svc-03'
             && document.querySelectorAll('#trace-list tr.trace').length === 4"#,
    );
    browser.click("#trace-list tr.trace td.root");
    browser.wait("the waterfall", 10, "return document.querySelectorAll('#waterfall .span-row').length === 5");
    // Finding a service selects and centres it.
    let find = browser.cmd("POST", "/element", Some(json!({"using": "css selector", "value": "#find"})));
    let id = find[ELEMENT].as_str().unwrap().to_string();
    browser.cmd("POST", &format!("/element/{id}/value"), Some(json!({"text": "leaf-11-07\u{E007}"})));
    browser.wait(
        "find selects leaf-11-07",
        10,
        "return document.querySelector('#selection h2')?.textContent === 'leaf-11-07'",
    );
    assert_eq!(browser.js("return document.body.dataset.jsError || null"), Value::Null, "no script error");
    browser.screenshot(&target_dir().join("ui-200-nodes-find.png"));
}
