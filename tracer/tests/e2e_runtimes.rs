//! Call chains through real middle tiers of each runtime, on the real
//! kernel: a python load generator (20 threads x 50 requests, a unique id in
//! each path) -> middle -> python backend. The test knows which backend call
//! belongs to which request (the id), so it measures the precision and
//! recall of the middle's CLIENT spans under its SERVER spans, and checks
//! that every backend span shares its parent's trace id. Precision 1.0 is
//! the invariant on every runtime; recall is what the runtime's threads
//! allow (README "Call chains"), or in Go its goroutines (the agent's Go
//! probes: README "Go goroutines"; recall >= 0.95 at 20-way expected).

mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use common::*;
use serde_json::Value;

const CLIENTS: usize = 20;
const PER_CLIENT: usize = 50;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/middles").join(name)
}

/// Test programs, built once per test binary run into target/test-programs.
struct Programs {
    go_middle: PathBuf,
    /// The same, linked with `-s -w` (no symbol table, no DWARF).
    go_middle_stripped: PathBuf,
    java_classes: PathBuf,
    tokio_middle: PathBuf,
    /// node_modules with express (npm).
    node_path: PathBuf,
}

fn programs() -> &'static Programs {
    static P: OnceLock<Programs> = OnceLock::new();
    P.get_or_init(|| {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-programs");
        std::fs::create_dir_all(&out).unwrap();
        let go_middle = out.join("go-middle");
        let go_middle_stripped = out.join("go-middle-stripped");
        for (bin, ldflags) in [(&go_middle, ""), (&go_middle_stripped, "-s -w")] {
            let st = Command::new("go")
                .arg("build")
                .arg(format!("-ldflags={ldflags}"))
                .arg("-o")
                .arg(bin)
                .arg(fixture("middle.go"))
                .env("CGO_ENABLED", "0")
                .env("GOFLAGS", "-mod=mod")
                .env("GO111MODULE", "off")
                .status()
                .expect("go (apt install golang-go)");
            assert!(st.success(), "go build of the middle");
        }
        let java_classes = out.join("java");
        std::fs::create_dir_all(&java_classes).unwrap();
        let st = Command::new("javac")
            .arg("-d")
            .arg(&java_classes)
            .arg(fixture("Middle.java"))
            .status()
            .expect("javac (apt install openjdk-17-jdk-headless)");
        assert!(st.success(), "javac of the middle");
        // The tokio middle is an example of this crate: its dependencies are
        // the agent's, already built.
        let st = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "tracer", "--example", "tokio_middle"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example tokio_middle");
        assert!(st.success(), "building the tokio middle");
        let tokio_middle = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/examples/tokio_middle");
        let node = out.join("node");
        if !node.join("node_modules/express/package.json").is_file() {
            let st = Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&node)
                .arg("express@4")
                .status()
                .expect("npm (apt install npm)");
            assert!(st.success(), "npm install express");
        }
        Programs { go_middle, go_middle_stripped, java_classes, tokio_middle, node_path: node.join("node_modules") }
    })
}

fn spawn(mut c: Command, port: u16) -> Proc {
    let p = Proc(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starting a middle"));
    wait_listening(&format!("127.0.0.1:{port}"), None);
    p
}

/// Wait (10 s at most) until `series` reaches `at_least`.
fn wait_metric(agent: &Agent, series: &str, at_least: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while agent.metric(series) < at_least {
        assert!(std::time::Instant::now() < deadline, "{series} stayed below {at_least}:\n{}", agent.metrics());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn id(v: &Value, key: &str) -> String {
    v[key].as_str().map(str::to_owned).unwrap_or_default()
}

/// The request id at the end of a span's path.
fn request_id(v: &Value) -> String {
    attr(v, "url.path").as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_string()
}

/// `clients` concurrent keep-alive clients x `per_client` requests to the
/// path the python expression `path` makes of client `c` and request `r`.
fn load(port: u16, path: &str, clients: usize, per_client: usize) {
    let script = format!(
        r#"
import http.client, threading
def client(c):
    conn = http.client.HTTPConnection("127.0.0.1", {port})
    for r in range({per_client}):
        conn.request("GET", {path})
        resp = conn.getresponse(); resp.read()
        assert resp.status == 200, resp.status
    conn.close()
ts = [threading.Thread(target=client, args=(c,)) for c in range({clients})]
[t.start() for t in ts]; [t.join() for t in ts]
"#
    );
    let st = Command::new("python3").args(["-c", &script]).env("OTEL_SERVICE_NAME", "loadgen").status().unwrap();
    assert!(st.success(), "load generator failed against port {port}");
}

struct Measured {
    calls: usize,
    linked: usize,
    correct: usize,
    backend: usize,
    split: usize,
    ended_after_parent: usize,
}

/// Run the load through `service` (already listening) and measure three
/// passes: 20-way and sequential with opaque request ids (`go-3-17`, which
/// are no identifiers: only threads can link), then 20-way with numeric
/// order ids (`30003017`) that the middle repeats in its call (rule 2b).
fn measure(agent: &Agent, service: &str, k: u64, port: u16, bport: u16, via_call: bool) -> [Measured; 3] {
    let prefix = if via_call { format!("/call/{bport}/items/") } else { "/items/".to_string() };
    [0, 1, 2].map(|pass| {
        let (clients, per_client) = if pass == 1 { (1, PER_CLIENT) } else { (CLIENTS, PER_CLIENT) };
        let n = clients * per_client;
        if pass < 2 {
            let tag = format!("m{k}p{pass}");
            load(port, &format!("\"{prefix}{tag}-%d-%d\" % (c, r)"), clients, per_client);
            measure_one(agent, service, n, |id| id.starts_with(&format!("{tag}-")))
        } else {
            let base = k * 10_000_000;
            load(port, &format!("\"{prefix}%d\" % ({base} + c * 1000 + r)"), clients, per_client);
            measure_one(agent, service, n, |id| id.parse::<u64>().is_ok_and(|v| v / 10_000_000 == k))
        }
    })
}

fn measure_one(agent: &Agent, service: &str, n: usize, mine_id: impl Fn(&str) -> bool) -> Measured {
    let mine = |v: &Value| mine_id(&request_id(v));
    let servers = agent.wait_spans(&format!("{service} server spans"), n, |v| {
        v["service"] == service && v["kind"] == "server" && mine(v)
    });
    let calls = agent.wait_spans(&format!("{service} client spans"), n, |v| {
        v["service"] == service && v["kind"] == "client" && mine(v)
    });
    let backend =
        agent.wait_spans("backend server spans", n, |v| v["service"] == "backend" && v["kind"] == "server" && mine(v));
    let server_by_id: HashMap<String, &Value> = servers.iter().map(|v| (id(v, "span_id"), v)).collect();
    let (mut linked, mut correct) = (0, 0);
    for c in &calls {
        let Some(parent) = c["parent_span_id"].as_str() else { continue };
        linked += 1;
        let p =
            server_by_id.get(parent).unwrap_or_else(|| panic!("parent {parent} is not a {service} server span: {c}"));
        if request_id(p) == request_id(c) && id(p, "trace_id") == id(c, "trace_id") {
            correct += 1;
        } else {
            eprintln!("WRONG PARENT on {service}: call {} under request {}", request_id(c), request_id(p));
        }
    }
    // Every backend span is the child of the call that carried its id, in
    // the same trace, whichever of the two ended (and was released) first.
    let call_by_id: HashMap<String, &Value> = calls.iter().map(|v| (id(v, "span_id"), v)).collect();
    let (mut split, mut ended_after_parent) = (0, 0);
    for b in &backend {
        let parent = b["parent_span_id"].as_str().and_then(|p| call_by_id.get(p));
        let parent = parent.unwrap_or_else(|| panic!("backend span without its {service} call as parent: {b}"));
        assert_eq!(request_id(parent), request_id(b), "peer link by connection and TCP sequence is exact");
        if id(parent, "trace_id") != id(b, "trace_id") {
            split += 1;
        }
        if b["end_ns"].as_u64() > parent["end_ns"].as_u64() {
            ended_after_parent += 1;
        }
    }
    Measured { calls: calls.len(), linked, correct, backend: backend.len(), split, ended_after_parent }
}

fn report(name: &str, m: &Measured) -> (f64, f64) {
    let precision = if m.linked == 0 { 1.0 } else { m.correct as f64 / m.linked as f64 };
    let recall = m.correct as f64 / m.calls as f64;
    eprintln!(
        "{name:<64} precision {precision:.3} recall {recall:.3} ({}/{} calls linked, {} correct); backend spans {} (split traces {}, ended after their parent {})",
        m.linked, m.calls, m.correct, m.backend, m.split, m.ended_after_parent
    );
    (precision, recall)
}

/// One agent, one backend, each runtime's middle in turn.
#[test]
fn no_wrong_parent_on_any_runtime() {
    let p = programs();
    // Node.js callback tasks are off by default (a race sometimes leaves a
    // Node process unlinked, README "Node.js callback tasks"): on here, so
    // their precision is checked on every run.
    let cfg = std::env::temp_dir().join(format!("tracer-e2e-runtimes-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[runtimes]\nnode = true\n").unwrap();
    let agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    let bport = free_port();
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let mut results = Vec::new();

    // Thread per request: the thread is the request.
    let port = free_port();
    let _py = backend(port, &[("OTEL_SERVICE_NAME", "mid-python")]);
    results.push(("python ThreadingHTTPServer", measure(&agent, "mid-python", 1, port, bport, true), 0.9));

    // Go: goroutines move between threads, so the linker keys on the
    // goroutine (ids read in the kernel, net/http's hand-offs followed by
    // uprobes: the client's writeLoop writes for the handler's goroutine).
    // The stripped build (-s -w) has no symbols and no DWARF: the goid offset
    // comes from the Go version, the functions from the pclntab.
    for (n, (name, service, k, pooled, bin)) in [
        ("go net/http + http.Get", "mid-go", 2, false, &p.go_middle),
        ("go net/http + pooled client", "mid-gopool", 3, true, &p.go_middle),
        ("go net/http + pooled client, -s -w", "mid-gostrip", 11, true, &p.go_middle_stripped),
    ]
    .into_iter()
    .enumerate()
    {
        let port = free_port();
        let mut c = Command::new(bin);
        c.args(["-port", &port.to_string()]).env("OTEL_SERVICE_NAME", service);
        if pooled {
            c.arg("-pooled");
        }
        let _go = spawn(c, port);
        // Traffic from the process's first milliseconds, before the agent
        // has read its binary, is not linked: start once it is probed.
        wait_metric(&agent, "tracer_runtime_go_total{what=\"probed\"}", n as u64 + 1);
        // Its executable's two net/http hand-off uprobes.
        wait_metric(&agent, "tracer_runtime_go_uprobes", 2);
        results.push((name, measure(&agent, service, k, port, bport, true), 0.95));
    }
    // Every Go data event carried its goroutine, every call its caller.
    for counter in ["go_goid_read_failed", "go_handoff_missed"] {
        let n = agent.metric(&format!("tracer_kernel_total{{counter=\"{counter}\"}}"));
        assert_eq!(n, 0, "{counter}");
    }

    // Java: a 16-thread pool, the blocking client on the request's thread.
    let port = free_port();
    let mut c = Command::new("java");
    c.arg("-cp").arg(&p.java_classes).args(["Middle", &port.to_string()]).env("OTEL_SERVICE_NAME", "mid-java");
    let _java = spawn(c, port);
    results.push(("java HttpServer + HttpURLConnection", measure(&agent, "mid-java", 4, port, bport, true), 0.0));

    // Java: the same server, java.net.http.HttpClient (its selector thread
    // writes the call: a hand-off).
    let port = free_port();
    let mut c = Command::new("java");
    c.arg("-cp").arg(&p.java_classes).args(["Middle", &port.to_string(), "httpclient"]);
    c.env("OTEL_SERVICE_NAME", "mid-javahc");
    let _java_hc = spawn(c, port);
    results.push(("java HttpServer + HttpClient", measure(&agent, "mid-javahc", 7, port, bport, true), 0.0));

    // Node.js: one event loop.
    let port = free_port();
    let mut c = Command::new("node");
    c.arg(fixture("middle.js")).arg(port.to_string()).env("OTEL_SERVICE_NAME", "mid-node");
    let _node = spawn(c, port);
    // Callback tasks by uprobes on the event loop (README "Node.js"):
    // 0.80-0.95 measured, and 0.000 in one run of three before the fix of
    // the race (connects made before the process was marked Node); 0.984
    // in the first run after it. No recall floor until more runs confirm
    // it; precision 1.0 holds.
    results.push(("node http", measure(&agent, "mid-node", 5, port, bport, true), 0.0));

    // Node.js with express (npm).
    let port = free_port();
    let mut c = Command::new("node");
    c.arg(fixture("middle_express.js")).arg(port.to_string()).env("OTEL_SERVICE_NAME", "mid-express");
    c.env("NODE_PATH", &p.node_path);
    let _express = spawn(c, port);
    results.push(("node express", measure(&agent, "mid-express", 8, port, bport, true), 0.0));

    // Python asyncio: aiohttp server and ClientSession (PyPI).
    let port = free_port();
    let mut c = Command::new("python3");
    c.arg(fixture("middle_aiohttp.py")).arg(port.to_string()).env("OTEL_SERVICE_NAME", "mid-aiohttp");
    let _aiohttp = spawn(c, port);
    results.push(("python aiohttp + ClientSession", measure(&agent, "mid-aiohttp", 9, port, bport, true), 0.0));

    // tokio: axum on 4 worker threads, hyper's pooled client.
    let port = free_port();
    let mut c = Command::new(&p.tokio_middle);
    c.arg(port.to_string()).env("OTEL_SERVICE_NAME", "mid-tokio");
    let _tokio = spawn(c, port);
    results.push(("tokio axum + hyper client", measure(&agent, "mid-tokio", 10, port, bport, true), 0.0));

    // nginx (one worker, an event loop) proxying straight to the backend:
    // each upstream call repeats its request's whole target (rule 2b).
    let port = free_port();
    let _nginx = nginx_proxy(port, bport);
    results.push(("nginx proxy (1 worker)", measure(&agent, "nginx", 6, port, bport, false), 0.95));

    let mut failures = Vec::new();
    for (name, [concurrent, sequential, with_ids], min_recall) in &results {
        // With an identifier repeated in each call, every runtime links.
        for (m, how, min) in [
            (concurrent, "20-way", *min_recall),
            (sequential, "sequential", 0.0),
            (with_ids, "20-way, order id in the call", 0.95),
        ] {
            let name = format!("{name}, {how}");
            let (precision, recall) = report(&name, m);
            if precision < 1.0 {
                failures.push(format!("{name}: precision {precision:.3}"));
            }
            if recall < min {
                failures.push(format!("{name}: recall {recall:.3} < {min}"));
            }
            if m.split > 0 {
                failures.push(format!("{name}: {} backend spans in another trace than their parent", m.split));
            }
        }
    }
    // The order that used to split traces (the child's span ending, and so
    // released, after its parent's) happened, and split none.
    let ended_after: usize = results.iter().flat_map(|(_, m, _)| m.iter()).map(|m| m.ended_after_parent).sum();
    eprintln!("backend spans that ended after their parent: {ended_after}, every one in its parent's trace");
    assert!(ended_after > 0, "the run never had a child end after its parent: nothing shown about split traces");
    assert!(failures.is_empty(), "{failures:#?}");
    agent.assert_no_drops();
    agent.stop();
}
