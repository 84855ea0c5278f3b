//! End-to-end: hostile bytes at a traced `python3 -m http.server`, inside a
//! network namespace the agent watches alone (`--netns`), so only this
//! test's traffic counts. Checked against what the clients themselves know:
//! - 2000 connections of random and mangled requests (tests/fixtures/
//!   fuzz_http.py): every span name, route and attribute is printable and
//!   bounded, routes come only from the paths the client judged valid,
//!   methods are known or `_OTHER`, and the service map holds the two
//!   services and socket addresses only (no node per ephemeral port, none
//!   named by `Host: a`), with every connection the client made counted once;
//! - `--output text` writes no control character to the terminal, even for
//!   a service name and a process name full of escape sequences;
//! - curl with an allow-listed header early in a head longer than the
//!   capture: the header is recorded; `-X FOO-BAR` is `_OTHER`.

mod common;

use std::{
    collections::BTreeSet,
    io::Read,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const CONNECTIONS: usize = 2000;
const KNOWN: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// A character that must not reach a terminal, by its own definition here:
/// C0 controls, DEL, C1 controls, bidi overrides and zero-width marks.
fn unsafe_char(c: char) -> bool {
    let u = c as u32;
    u < 0x20 || (0x7f..=0x9f).contains(&u) || matches!(u, 0x200b..=0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
}

fn printable(s: &str) -> bool {
    !s.chars().any(unsafe_char)
}

/// `python3 -m http.server` in `ns` with its own service name.
fn web(ns: &str, port: u16, name: &str) -> Proc {
    let dir = site(64);
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "env", &format!("OTEL_SERVICE_NAME={name}"), "python3", "-m", "http.server"])
            .args(["--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server"),
    );
    // Before the agent starts, so the probe connection is not seen.
    wait_listening(&format!("127.0.0.1:{port}"), Some(ns));
    p
}

fn topology(agent: &Agent) -> Value {
    let (status, body) = http_get(agent.api, "/api/topology?window=5m").expect("GET /api/topology");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/topology is not JSON ({e}): {body}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn fuzzed_server_keeps_names_routes_and_nodes_bounded_and_printable() {
    let ns = Namespace::create("hz");
    let port = 18300;
    let _web = web(&ns.name, port, "hostile-web");
    let agent = Agent::start(&["--netns", &ns.path()]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz_http.py");
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "env", "OTEL_SERVICE_NAME=hostile-fuzz", "python3", script])
        .args(["127.0.0.1", &port.to_string(), &CONNECTIONS.to_string(), "7"])
        .output()
        .expect("running fuzz_http.py");
    assert!(out.status.success(), "fuzz_http.py: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("fuzz_http.py prints JSON");
    let made = report["connections"].as_u64().unwrap();
    assert_eq!(made, CONNECTIONS as u64, "{report}");
    eprintln!("fuzz: {} in {:?}", report["kinds"], started.elapsed());
    let valid: BTreeSet<String> = report["valid_paths"].as_array().unwrap().iter().map(|p| s(p).to_string()).collect();

    // Every connection the client made lands on its one edge (connection
    // events are placed ~3 s after they happen).
    let deadline = Instant::now() + Duration::from_secs(30);
    let topo = loop {
        let t = topology(&agent);
        let opened: u64 = t["edges"].as_array().unwrap().iter().map(|e| e["tcp"]["opened"].as_u64().unwrap()).sum();
        if opened >= made || Instant::now() > deadline {
            break t;
        }
        thread::sleep(Duration::from_millis(500));
    };
    agent.assert_no_drops();
    // Nodes are the two services, and, for the requests whose two spans the
    // linker did not pair, the server's socket address and the client's IP:
    // never an ephemeral port, never a Host header's value.
    let server_sock = format!("127.0.0.1:{port}");
    let allowed = BTreeSet::from(["hostile-fuzz", "hostile-web", server_sock.as_str(), "127.0.0.1"]);
    let nodes: BTreeSet<&str> = topo["nodes"].as_array().unwrap().iter().map(|n| s(&n["name"])).collect();
    assert!(nodes.is_subset(&allowed), "nodes: {nodes:?}");
    assert!(nodes.contains("hostile-web") && nodes.contains("hostile-fuzz"), "nodes: {nodes:?}");
    // Every connection the client made is counted once, from its end.
    let opened: u64 = topo["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["client"] == "hostile-fuzz")
        .map(|e| e["tcp"]["opened"].as_u64().unwrap())
        .sum();
    assert_eq!(opened, made, "edges: {topo:#}");
    let requests: u64 = topo["edges"].as_array().unwrap().iter().map(|e| e["requests"].as_u64().unwrap()).sum();
    assert!(requests > 0 && requests <= 2 * made, "edges: {topo:#}");
    // Both ends of every request are traced here: each is paired (by
    // connection and TCP sequence, also when the client half-closed or reset)
    // and counted once, on the edge between the two services.
    let edges: Vec<(&str, &str, u64)> = topo["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["requests"].as_u64() > Some(0))
        .map(|e| (s(&e["client"]), s(&e["server"]), e["requests"].as_u64().unwrap()))
        .collect();
    eprintln!("fuzz: edges with requests {edges:?}");
    assert!(edges.iter().all(|(c, sv, _)| (*c, *sv) == ("hostile-fuzz", "hostile-web")), "{edges:?}");

    let spans = agent.spans();
    let ours: Vec<&Value> =
        spans.iter().filter(|v| matches!(s(&v["service"]), "hostile-web" | "hostile-fuzz")).collect();
    assert!(ours.len() > CONNECTIONS / 3, "{} spans of ours", ours.len());
    let mut routes = BTreeSet::new();
    for sp in &ours {
        let name = s(&sp["name"]);
        assert!(printable(name) && name.len() <= 7 + 1 + 256, "span name {name:?}");
        for (k, v) in sp["attributes"].as_object().unwrap() {
            let strings: Vec<&str> = match v {
                Value::String(x) => vec![x],
                Value::Array(a) => a.iter().map(s).collect(),
                _ => vec![],
            };
            for x in strings {
                assert!(printable(x) && x.len() <= 2048, "{k} = {x:?} in {sp}");
            }
        }
        let method = s(attr(sp, "http.request.method"));
        assert!(KNOWN.contains(&method) || method == "_OTHER", "{sp}");
        if let Some(orig) = attr(sp, "http.request.method_original").as_str() {
            assert!(orig.len() <= 20 && orig.bytes().all(|b| b.is_ascii_graphic()), "{orig:?}");
        }
        match attr(sp, "http.route").as_str() {
            Some(route) => {
                assert!(route.len() <= 256, "{route:?}");
                let path = s(attr(sp, "url.path"));
                assert!(valid.contains(path), "route {route:?} from {path:?}, which the client did not send as valid");
                assert_eq!(name, format!("{} {route}", if method == "_OTHER" { "HTTP" } else { method }));
                routes.insert(route.to_string());
            }
            // No route: the name is the method alone.
            None => assert!(KNOWN.contains(&name) || name == "HTTP", "{sp}"),
        }
    }
    // The valid requests of the fuzzer are there, templated.
    for want in ["/h/{id}", "/n"] {
        assert!(routes.contains(want), "route {want} missing from {routes:?}");
    }
    assert!(routes.len() <= valid.len(), "{routes:?}");
    // `Host: a` stays an attribute (the semantic conventions' server.address)
    // and names no node.
    let host_a = ours.iter().filter(|sp| sp["kind"] == "client" && attr(sp, "server.address") == "a").count();
    assert!(host_a > 0, "no CLIENT span with server.address a");
    agent.stop();
}

/// `tracer run --output text` in `ns`; what it printed, as raw bytes.
struct TextAgent {
    child: std::process::Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl TextAgent {
    fn start(ns: &Namespace) -> TextAgent {
        let api = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(TRACER)
            .args(["run", "--output", "text", "--api-addr", &api, "--netns", &ns.path()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the tracer");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(api.parse().unwrap(), "/readyz"), Ok((200, _))) {
            assert!(child.try_wait().unwrap().is_none(), "the tracer exited before it was ready");
            assert!(Instant::now() < deadline, "the tracer was not ready within 60 s");
            thread::sleep(Duration::from_millis(100));
        }
        TextAgent { child, out }
    }

    fn text(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }
}

impl Drop for TextAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A python client whose process name (comm) is full of escapes, sending
/// request lines with terminal sequences in them.
const NASTY_CLIENT: &str = r#"
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"c\x1b[2J\x07\x1b]0;", 0, 0, 0)
for line in [b"GET /\x1b]0;pwned\x07 HTTP/1.1", b"GET /ok\x1b[2J HTTP/1.1", b"PUT /\x00\x9b HTTP/1.1", b"GET /fine HTTP/1.1"]:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(line + b"\r\nHost: \x1b[31m\r\nUser-Agent: \xe2\x80\xaeevil\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
"#;

#[test]
fn text_output_writes_no_control_characters() {
    let ns = Namespace::create("ht");
    let port = 18301;
    let _web = web(&ns.name, port, "web\x1b]0;pwned\x07\x1b[2J");
    let agent = TextAgent::start(&ns);
    let st = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", NASTY_CLIENT, &port.to_string()])
        .status()
        .expect("running the client");
    assert!(st.success());
    let url = format!("http://127.0.0.1:{port}/index.html");
    let c = curl(&url, Some(&ns.name), &[]);
    assert_eq!(c.http_code, 200);
    // The spans of /fine and of curl's request are printed ~2 s after they end.
    // Identity drops control characters from names at the source
    // (identity/rules.rs); what is left is printed as it is.
    let want_service = b"web]0;pwned[2J";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = agent.text();
        let spans = t.split(|b| *b == b'\n').filter(|l| l.windows(6).any(|w| w == b" span ")).count();
        if spans >= 4 || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let t = agent.text();
    let text = String::from_utf8(t.clone()).expect("text output is UTF-8");
    for line in text.lines() {
        assert!(printable(line), "unescaped control character in {line:?}");
    }
    let find = |needle: &[u8]| t.windows(needle.len()).any(|w| w == needle);
    assert!(find(want_service), "the service name is shown without its control characters:\n{text}");
    assert!(find(b"c\\x1b[2J\\x07\\x1b]0;"), "the process name is shown escaped:\n{text}");
    assert!(find(b"GET /fine"), "the valid request is there:\n{text}");
    assert!(find(b"GET /index.html"), "curl's request is there:\n{text}");
}

#[test]
fn header_early_in_a_head_longer_than_the_capture_is_recorded() {
    let ns = Namespace::create("hh");
    let port = 18302;
    let _web = web(&ns.name, port, "hdr-web");
    let cfg = std::env::temp_dir().join(format!("tracer-e2e-hostile-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[http]\nrequest_headers = [\"x-request-id\", \"x-pad\"]\n").unwrap();
    let agent = Agent::start(&["--netns", &ns.path(), "--config", cfg.to_str().unwrap()]);
    let pad = "p".repeat(3000);
    let url = format!("http://127.0.0.1:{port}/index.html");
    let c = curl(&url, Some(&ns.name), &["-H", "X-Request-Id: 42", "-H", &format!("X-Pad: {pad}"), "-H", "Host: a"]);
    assert_eq!(c.http_code, 200);
    let m = curl(&format!("http://127.0.0.1:{port}/m"), Some(&ns.name), &["-X", "FOO-BAR"]);
    assert_eq!(m.http_code, 501, "http.server does not implement FOO-BAR");
    let got = agent.wait_spans("the long-head request, both ends", 2, |v| attr(v, "url.path") == "/index.html");
    for sp in &got {
        assert_eq!(attr(sp, "http.request.header.x-request-id"), &serde_json::json!(["42"]), "{sp}");
        assert!(attr(sp, "http.request.header.x-pad").is_null(), "a header cut by the capture is not made up: {sp}");
        assert_eq!(attr(sp, "tracer.http.request_head_truncated"), "true", "{sp}");
        assert_eq!(attr(sp, "server.address"), "a", "server.address keeps the Host header: {sp}");
    }
    let other = agent.wait_spans("FOO-BAR, both ends", 2, |v| attr(v, "url.path") == "/m");
    for sp in &other {
        assert_eq!(
            (attr(sp, "http.request.method"), attr(sp, "http.request.method_original")),
            (&"_OTHER".into(), &"FOO-BAR".into())
        );
        assert_eq!(sp["name"], "HTTP /m", "{sp}");
        assert_eq!(attr(sp, "http.response.status_code"), 501);
    }
    // Host: a names no node: curl's connection is on curl -> hdr-web.
    let deadline = Instant::now() + Duration::from_secs(15);
    let topo = loop {
        let t = topology(&agent);
        let opened: u64 = t["edges"].as_array().unwrap().iter().map(|e| e["tcp"]["opened"].as_u64().unwrap()).sum();
        if opened >= 2 || Instant::now() > deadline {
            break t;
        }
        thread::sleep(Duration::from_millis(300));
    };
    let nodes: BTreeSet<&str> = topo["nodes"].as_array().unwrap().iter().map(|n| s(&n["name"])).collect();
    assert_eq!(nodes, BTreeSet::from(["curl", "hdr-web"]), "{topo:#}");
    let _ = std::fs::remove_file(&cfg);
    agent.stop();
}

/// A protocol the agent does not know: once given up on, the kernel ships
/// its syscalls without payload (the per-socket verdict), bytes still
/// counted; a new connection to the same server starts over.
#[test]
fn unknown_protocol_sockets_ship_bytes_only_after_detection_gives_up() {
    let port = free_port();
    let server = format!(
        "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port})); s.listen(8)\n\
         while True:\n    c, _ = s.accept()\n    while True:\n        b = c.recv(65536)\n        if not b: break\n        c.sendall(b)\n    c.close()\n"
    );
    let _srv = Proc(Command::new("python3").args(["-c", &server]).spawn().expect("python3"));
    wait_listening(&format!("127.0.0.1:{port}"), None);
    let agent = Agent::start(&["--data-events"]);
    let client = format!(
        "import socket, time\n\
         for conn in range(2):\n    c = socket.create_connection(('127.0.0.1', {port}))\n    for i in range(40):\n        c.sendall(bytes([0, 1, 2, i]) * 75); c.recv(65536); time.sleep(0.002)\n    c.close()\n"
    );
    assert!(Command::new("python3").args(["-c", &client]).status().unwrap().success());
    let closed = |v: &Value| v["type"] == "connection" && v["event"] == "close" && port_of(&v["remote"]) == port;
    agent.wait_for("the first client connection's close", closed);
    std::thread::sleep(Duration::from_millis(500));
    let lines: Vec<Value> = agent.all_output().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    let conns: Vec<&Value> = lines.iter().filter(|v| closed(v)).collect();
    assert_eq!(conns.len(), 2, "two client connections");
    for c in &conns {
        assert_eq!(c["bytes_sent"], 40 * 300, "bytes are counted whatever is captured: {c}");
        let local = c["local"].as_str().unwrap();
        let sends: Vec<&Value> =
            lines.iter().filter(|v| v["type"] == "data" && v["local"] == local && v["direction"] == "egress").collect();
        assert_eq!(sends.len(), 40, "{local}");
        let with_payload = sends.iter().take_while(|d| d["payload_len"] != 0).count();
        assert!(with_payload >= 1, "a new connection is captured again from its first byte");
        // Detection gives up after 8 segments; the verdict reaches the
        // kernel with the connection stage's next batch (a few more under load).
        assert!(with_payload <= 30, "given up on after its first segments: {with_payload} of 40 with payload");
        assert!(sends[with_payload..].iter().all(|d| d["payload_len"] == 0), "no payload once given up on");
    }
    assert!(agent.metric("tracer_kernel_total{counter=\"payload_skipped\"}") >= 2 * 10);
    assert!(agent.metric("tracer_sock_verdicts_total{verdict=\"count_only\"}") >= 2);
    agent.stop();
}
