//! End-to-end HTTP: curl -> nginx (reverse proxy) -> python backend, on the
//! real kernel. Every span's method, route, status, sizes and kind are
//! checked, and its duration against the client's own measurement.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use common::*;
use serde_json::Value;

fn agent_with_headers() -> Agent {
    let cfg = std::env::temp_dir().join(format!("tracer-e2e-http-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        "output = \"json\"\n[http]\nrequest_headers = [\"authorization\", \"x-request-id\", \"cookie\"]\n",
    )
    .unwrap();
    Agent::start(&["--config", cfg.to_str().unwrap()])
}

/// (kind, method, route, status) of a span.
fn shape(s: &Value) -> (String, String, String, i64) {
    (
        s["kind"].as_str().unwrap().to_string(),
        attr(s, "http.request.method").as_str().unwrap().to_string(),
        attr(s, "http.route").as_str().unwrap().to_string(),
        attr(s, "http.response.status_code").as_i64().unwrap_or(0),
    )
}

fn service_kind(s: &Value, service: &str, kind: &str) -> bool {
    s["service"] == service && s["kind"] == kind
}

fn sorted(mut v: Vec<(String, String, String, i64)>) -> Vec<(String, String, String, i64)> {
    v.sort();
    v
}

struct Transfer {
    code: u16,
    time_ns: u64,
    local_port: u16,
}

/// curl one or more URLs on one connection; curl's own account of each.
fn curl_many(args: &[&str]) -> Vec<Transfer> {
    let out = Command::new("curl")
        .args(["-sS", "-w", "%{http_code} %{time_total} %{local_port}\\n"])
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Transfer {
                code: f[0].parse().unwrap(),
                time_ns: (f[1].parse::<f64>().unwrap() * 1e9) as u64,
                local_port: f[2].parse().unwrap(),
            }
        })
        .collect()
}

fn duration(s: &Value) -> u64 {
    s["duration_ns"].as_u64().unwrap()
}

fn route_is(s: &Value, route: &str) -> bool {
    attr(s, "http.route") == route
}

#[test]
fn reverse_proxy_keep_alive_post_errors_and_secrets() {
    let agent = agent_with_headers();
    let (bport, nport) = (free_port(), free_port());
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let _nginx = nginx_proxy(nport, bport);
    let base = format!("http://127.0.0.1:{nport}");

    // Four GETs on one keep-alive connection, with a secret that must not leak.
    let urls: Vec<String> =
        ["/items/1", "/items/2", "/missing", "/fail"].iter().map(|p| format!("{base}{p}")).collect();
    let mut args =
        vec!["-H", "Authorization: Bearer s3cr3t-token", "-H", "X-Request-Id: r-1", "-H", "Cookie: sid=c00kie"];
    for u in &urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let gets = curl_many(&args);
    assert_eq!(gets.iter().map(|t| t.code).collect::<Vec<_>>(), vec![200, 200, 404, 500]);
    assert!(gets.iter().all(|t| t.local_port == gets[0].local_port), "curl reused its connection");

    // A POST with a 5000-byte body (curl sends Expect: 100-continue).
    let body = std::env::temp_dir().join(format!("tracer-e2e-body-{}", std::process::id()));
    std::fs::write(&body, vec![b'x'; 5000]).unwrap();
    let data = format!("@{}", body.display());
    let post = curl_many(&["-o", "/dev/null", "--data-binary", &data, &format!("{base}/items")]);
    assert_eq!(post[0].code, 201);

    let s = |k: &str, m: &str, r: &str, c: i64| (k.to_string(), m.to_string(), r.to_string(), c);
    let expect = |kind: &str| {
        sorted(vec![
            s(kind, "GET", "/items/{id}", 200),
            s(kind, "GET", "/items/{id}", 200),
            s(kind, "GET", "/missing", 404),
            s(kind, "GET", "/fail", 500),
            s(kind, "POST", "/items", 201),
        ])
    };
    let curl_spans = agent.wait_spans("curl client spans", 5, |v| service_kind(v, "curl", "client"));
    let nginx_in = agent.wait_spans("nginx server spans", 5, |v| service_kind(v, "nginx", "server"));
    let nginx_out = agent.wait_spans("nginx client spans", 5, |v| service_kind(v, "nginx", "client"));
    let back = agent.wait_spans("backend server spans", 5, |v| service_kind(v, "backend", "server"));
    assert_eq!(sorted(curl_spans.iter().map(shape).collect()), expect("client"));
    assert_eq!(sorted(nginx_in.iter().map(shape).collect()), expect("server"));
    assert_eq!(sorted(nginx_out.iter().map(shape).collect()), expect("client"));
    assert_eq!(sorted(back.iter().map(shape).collect()), expect("server"));

    // Status: 5xx is an error on both kinds, 4xx only on client spans.
    for sp in curl_spans.iter().chain(&nginx_in).chain(&nginx_out).chain(&back) {
        let code = attr(sp, "http.response.status_code").as_i64().unwrap();
        let error = code >= 500 || (code >= 400 && sp["kind"] == "client");
        assert_eq!(sp["status"] == "error", error, "{sp}");
        if error {
            assert_eq!(attr(sp, "error.type"), &Value::from(code.to_string()));
        }
        assert_eq!(attr(sp, "url.scheme"), "http");
        assert_eq!(attr(sp, "network.protocol.version"), "1.1");
    }
    // Names follow "{method} {route}".
    assert!(curl_spans.iter().any(|v| v["name"] == "GET /items/{id}"));

    // Sizes.
    for sp in [&curl_spans, &nginx_in, &back].into_iter().flatten().filter(|v| route_is(v, "/items")) {
        assert_eq!(attr(sp, "http.request.body.size"), 5000, "{sp}");
    }
    for sp in [&curl_spans, &back].into_iter().flatten().filter(|v| attr(v, "url.path") == "/items/1") {
        assert_eq!(attr(sp, "http.response.body.size"), r#"{"id": "1"}"#.len(), "{sp}");
    }
    let curl_get = curl_spans.iter().find(|v| attr(v, "url.path") == "/items/1").unwrap();
    assert_eq!(attr(curl_get, "server.port"), nport);
    assert_eq!(attr(curl_get, "network.peer.port"), nport);
    let back_get = back.iter().find(|v| attr(v, "url.path") == "/items/1").unwrap();
    assert_eq!(attr(back_get, "server.port"), bport);
    assert_eq!(attr(back_get, "client.address"), "127.0.0.1");

    // Each span lies within the time its client measured: curl's own
    // time_total bounds curl's spans; each hop's server span lies within the
    // client span of the hop before.
    for (t, path) in gets.iter().zip(["/items/1", "/items/2", "/missing", "/fail"]) {
        let c = curl_spans.iter().find(|v| attr(v, "url.path") == path).unwrap();
        assert!(duration(c) <= t.time_ns, "curl span {} ns > curl's {} ns: {c}", duration(c), t.time_ns);
        let ni = nginx_in.iter().find(|v| attr(v, "url.path") == path).unwrap();
        assert!(duration(ni) <= duration(c), "nginx server span longer than curl's: {ni}");
        let no = nginx_out.iter().find(|v| attr(v, "url.path") == path).unwrap();
        assert!(duration(no) <= duration(ni), "nginx client span longer than its server span: {no}");
        let b = back.iter().find(|v| attr(v, "url.path") == path).unwrap();
        assert!(duration(b) <= duration(no), "backend span longer than nginx's call: {b}");
    }
    let post_span = curl_spans.iter().find(|v| route_is(v, "/items")).unwrap();
    assert!(duration(post_span) <= post[0].time_ns);

    // Secrets never leave the node; allow-listed headers do.
    let all = agent.all_output();
    assert!(!all.contains("s3cr3t-token"), "the Authorization value leaked");
    assert!(!all.contains("c00kie"), "the Cookie value leaked");
    assert_eq!(attr(back_get, "http.request.header.authorization"), &serde_json::json!(["REDACTED"]));
    assert_eq!(attr(back_get, "http.request.header.cookie"), &serde_json::json!(["REDACTED"]));
    assert_eq!(attr(back_get, "http.request.header.x-request-id"), &serde_json::json!(["r-1"]));
    agent.assert_no_drops();
    agent.stop();
}

#[test]
fn chunked_response_through_the_proxy() {
    let agent = Agent::start(&[]);
    let (bport, nport) = (free_port(), free_port());
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let _nginx = nginx_proxy(nport, bport);
    let t = curl_many(&["-o", "/dev/null", &format!("http://127.0.0.1:{nport}/chunked")]);
    assert_eq!(t[0].code, 200);
    let b = agent.wait_spans("backend chunked", 1, |v| service_kind(v, "backend", "server") && route_is(v, "/chunked"));
    assert_eq!(attr(&b[0], "http.response.body.size"), 600, "{}", b[0]);
    let c = agent.wait_spans("curl chunked", 1, |v| service_kind(v, "curl", "client") && route_is(v, "/chunked"));
    assert_eq!(attr(&c[0], "http.response.status_code"), 200);
    assert!(duration(&c[0]) <= t[0].time_ns);
    // The last chunk arrives ~20 ms after the first: the span covers it.
    assert!(duration(&b[0]) >= 15_000_000, "{}", b[0]);
    agent.stop();
}

/// Three requests written in one send before any response (pipelining).
#[test]
fn pipelined_requests() {
    let agent = Agent::start(&[]);
    let bport = free_port();
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let mut s = TcpStream::connect(("127.0.0.1", bport)).unwrap();
    let local = s.local_addr().unwrap().port();
    let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: b\r\n\r\n");
    let all = req("/items/1") + &req("/nope") + &req("/items/3");
    s.write_all(all.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(4).filter(|w| *w == b"\r\n\r\n").count() < 3 || !got.ends_with(b"}") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "backend closed early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let server = agent.wait_spans("backend spans", 3, |v| {
        service_kind(v, "backend", "server") && attr(v, "network.peer.port") == local
    });
    let mut paths: Vec<(String, i64)> = server
        .iter()
        .map(|v| {
            (attr(v, "url.path").as_str().unwrap().to_string(), attr(v, "http.response.status_code").as_i64().unwrap())
        })
        .collect();
    paths.sort();
    assert_eq!(paths, vec![("/items/1".into(), 200), ("/items/3".into(), 200), ("/nope".into(), 404)]);
    // The test itself is the client: its spans pair the same way.
    let client = agent.wait_spans("test client spans", 3, |v| {
        v["kind"] == "client" && attr(v, "network.peer.port") == bport && v["pid"] == std::process::id()
    });
    assert_eq!(client.len(), 3);
    agent.stop();
}

/// A client that half-closes (`nc -N`: the request, then shutdown(SHUT_WR),
/// then the response): the kernel closes its socket when the server's FIN
/// arrives, often before nc has read the response queued ahead of it. Each
/// request is still one paired exchange: nc's CLIENT span has the response
/// and is the server span's parent, the late read belongs to the same
/// connection (no phantom with local port 0), and the topology counts each
/// request once, on the edge to the real service.
#[test]
fn half_closed_client_is_one_exchange() {
    const N: usize = 20;
    let agent = Agent::start(&[]);
    let port = free_port();
    let _server = backend(port, &[("OTEL_SERVICE_NAME", "halfserver")]);
    for i in 0..N {
        let req = format!("printf 'GET /items/hc-{i} HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n' | nc -N 127.0.0.1 {port}");
        let out = Command::new("bash").args(["-c", &req]).output().expect("nc (apt install netcat-openbsd)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "nc got: {text}");
    }
    let mine = |v: &Value| attr(v, "url.path").as_str().is_some_and(|p| p.starts_with("/items/hc-"));
    let clients = agent.wait_spans("nc's client spans", N, |v| v["kind"] == "client" && mine(v));
    let servers = agent.wait_spans("server spans", N, |v| v["kind"] == "server" && mine(v));
    for c in &clients {
        assert_eq!(attr(c, "http.response.status_code"), 200, "the response is paired: {c}");
        assert!(attr(c, "error.type").is_null(), "{c}");
    }
    for s in &servers {
        let parent = s["parent_span_id"].as_str().unwrap_or_default();
        let c = clients.iter().find(|c| c["span_id"] == parent);
        let c = c.unwrap_or_else(|| {
            let same: Vec<&Value> = clients.iter().filter(|c| attr(c, "url.path") == attr(s, "url.path")).collect();
            panic!("server span without nc's span as parent: {s}\nnc's spans of that path: {same:#?}")
        });
        assert_eq!(attr(c, "url.path"), attr(s, "url.path"));
    }
    // Every connection of nc's closes once, with its own port.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let closes = loop {
        let closes: Vec<Value> = agent
            .all_output()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "close" && v["comm"] == "nc" && port_of(&v["remote"]) == port)
            .collect();
        if closes.len() >= N || std::time::Instant::now() > deadline {
            break closes;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(closes.len(), N, "one close per connection: {closes:#?}");
    for c in &closes {
        assert_ne!(port_of(&c["local"]), 0, "a phantom connection: {c}");
        assert_eq!(c["seen_from"], "handshake", "{c}");
    }
    let phantom = agent
        .all_output()
        .lines()
        .filter(|l| l.contains("\"mid_stream\"") && l.contains(&format!(":{port}\"")))
        .count();
    assert_eq!(phantom, 0, "no connection seen mid-stream to the server");
    // Counted once, on the edge to the service (not on a virtual node).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = http_get(agent.api, "/api/topology?window=5m").expect("GET /api/topology");
        let t: Value = serde_json::from_str(&body).unwrap();
        let edges = t["edges"].as_array().unwrap();
        let to = |server: &str| -> u64 {
            edges.iter().filter(|e| e["server"] == server).map(|e| e["requests"].as_u64().unwrap_or(0)).sum()
        };
        let (real, virt) = (to("halfserver"), to(&format!("127.0.0.1:{port}")));
        if real >= N as u64 {
            assert_eq!((real, virt), (N as u64, 0), "each request once, on the real service: {body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "topology never counted {N} requests: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.stop();
}
