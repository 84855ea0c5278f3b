//! End-to-end call chains on the real kernel: spans linked into one trace
//! within a process (thread rule), between processes (peer socket), across
//! "nodes" (two network namespaces, two agents), and with a traceparent.

mod common;

use std::{collections::HashMap, process::Command};

use common::*;
use serde_json::Value;

fn id(v: &Value, key: &str) -> String {
    v[key].as_str().map(str::to_owned).unwrap_or_default()
}

fn one<'a>(spans: &'a [Value], service: &str, kind: &str) -> &'a Value {
    let m: Vec<&Value> = spans.iter().filter(|v| v["service"] == service && v["kind"] == kind).collect();
    assert_eq!(m.len(), 1, "one {kind} span of {service}: {m:?}");
    m[0]
}

/// curl -> nginx -> frontend (threaded python) -> backend: one trace of six
/// spans, each parent right.
#[test]
fn curl_nginx_frontend_backend_is_one_trace() {
    let agent = Agent::start(&[]);
    let (bport, fport, nport) = (free_port(), free_port(), free_port());
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let _frontend = backend(fport, &[("OTEL_SERVICE_NAME", "frontend")]);
    let _nginx = nginx_proxy(nport, fport);
    let t = curl(&format!("http://127.0.0.1:{nport}/call/{bport}/items/7"), None, &[]);
    assert_eq!(t.http_code, 200);

    let spans =
        agent.wait_spans("six spans", 6, |v| attr(v, "url.path").as_str().is_some_and(|p| p.ends_with("/items/7")));
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let curl_c = one(&spans, "curl", "client");
    let ngx_s = one(&spans, "nginx", "server");
    let ngx_c = one(&spans, "nginx", "client");
    let fe_s = one(&spans, "frontend", "server");
    let fe_c = one(&spans, "frontend", "client");
    let be_s = one(&spans, "backend", "server");
    let trace = id(curl_c, "trace_id");
    let dump: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} span {} parent {} tid? start {} end {}",
                s["service"],
                s["kind"],
                id(s, "trace_id"),
                id(s, "span_id"),
                id(s, "parent_span_id"),
                s["start_ns"],
                s["end_ns"]
            )
        })
        .collect();
    for s in &spans {
        assert_eq!(id(s, "trace_id"), trace, "one trace:\n{}", dump.join("\n"));
    }
    assert!(curl_c["parent_span_id"].is_null(), "curl is the root");
    assert_eq!(id(ngx_s, "parent_span_id"), id(curl_c, "span_id"), "nginx server <- curl (peer socket)");
    assert_eq!(id(ngx_c, "parent_span_id"), id(ngx_s, "span_id"), "nginx call <- nginx request (thread)");
    assert_eq!(id(fe_s, "parent_span_id"), id(ngx_c, "span_id"), "frontend server <- nginx call (peer)");
    assert_eq!(id(fe_c, "parent_span_id"), id(fe_s, "span_id"), "frontend call <- frontend request (thread)");
    assert_eq!(id(be_s, "parent_span_id"), id(fe_c, "span_id"), "backend <- frontend call (peer)");
    agent.stop();
}

/// 20 concurrent clients x 50 requests through the threaded frontend; every
/// request carries a unique id, so the test knows the truth. No link may be
/// wrong (precision 1.0); recall is printed.
#[test]
fn precision_and_recall_under_concurrency() {
    let agent = Agent::start(&[]);
    let (bport, fport) = (free_port(), free_port());
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let _frontend = backend(fport, &[("OTEL_SERVICE_NAME", "frontend")]);
    let script = format!(
        r#"
import http.client, threading
def client(c):
    conn = http.client.HTTPConnection("127.0.0.1", {fport})
    for r in range(50):
        conn.request("GET", "/call/{bport}/items/%d-%d" % (c, r))
        resp = conn.getresponse(); resp.read()
        assert resp.status == 200, resp.status
    conn.close()
ts = [threading.Thread(target=client, args=(c,)) for c in range(20)]
[t.start() for t in ts]; [t.join() for t in ts]
"#
    );
    let st = Command::new("python3").args(["-c", &script]).env("OTEL_SERVICE_NAME", "loadgen").status().unwrap();
    assert!(st.success());
    let n = 1000;
    let fe_server =
        agent.wait_spans("frontend server spans", n, |v| v["service"] == "frontend" && v["kind"] == "server");
    let fe_client =
        agent.wait_spans("frontend client spans", n, |v| v["service"] == "frontend" && v["kind"] == "client");
    let be_server = agent.wait_spans("backend server spans", n, |v| v["service"] == "backend" && v["kind"] == "server");

    let uniq = |v: &Value| attr(v, "url.path").as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let server_by_id: HashMap<String, &Value> = fe_server.iter().map(|v| (id(v, "span_id"), v)).collect();
    let (mut linked, mut correct) = (0usize, 0usize);
    for c in &fe_client {
        let Some(parent) = c["parent_span_id"].as_str() else { continue };
        linked += 1;
        let p =
            server_by_id.get(parent).unwrap_or_else(|| panic!("parent {parent} is not a frontend server span: {c}"));
        if uniq(p) == uniq(c) && id(p, "trace_id") == id(c, "trace_id") {
            correct += 1;
        }
    }
    let precision = correct as f64 / linked.max(1) as f64;
    let recall = correct as f64 / fe_client.len() as f64;
    // The hop between processes: backend server <- frontend client.
    let client_by_id: HashMap<String, &Value> = fe_client.iter().map(|v| (id(v, "span_id"), v)).collect();
    let (mut peer_linked, mut peer_correct) = (0usize, 0usize);
    for b in &be_server {
        let Some(c) = b["parent_span_id"].as_str().and_then(|p| client_by_id.get(p)) else { continue };
        peer_linked += 1;
        if uniq(c) == uniq(b) {
            peer_correct += 1;
        }
    }
    eprintln!(
        "chain linking, 20 clients x 50 requests: thread rule precision {precision:.3} recall {recall:.3} ({correct}/{} calls); peer rule {peer_correct}/{peer_linked} correct of {} server spans",
        fe_client.len(),
        be_server.len()
    );
    assert_eq!(precision, 1.0, "a wrong parent is worse than none");
    assert_eq!(peer_correct, peer_linked, "peer links are exact");
    assert!(recall >= 0.9, "recall {recall}");
    assert!(peer_linked as f64 >= 0.99 * be_server.len() as f64);
    agent.assert_no_drops();
    agent.stop();
}

/// A request that arrives with a W3C traceparent keeps its trace id.
#[test]
fn traceparent_is_kept() {
    let agent = Agent::start(&[]);
    let (bport, nport) = (free_port(), free_port());
    let _backend = backend(bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let _nginx = nginx_proxy(nport, bport);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let t = curl(&format!("http://127.0.0.1:{nport}/items/9"), None, &["-H", &format!("traceparent: {tp}")]);
    assert_eq!(t.http_code, 200);
    let spans = agent.wait_spans("spans", 4, |v| attr(v, "url.path") == "/items/9");
    for s in &spans {
        assert_eq!(id(s, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736", "{s}");
    }
    let ngx_s = one(&spans, "nginx", "server");
    assert_eq!(id(ngx_s, "parent_span_id"), "00f067aa0ba902b7");
    agent.stop();
}

/// Two network namespaces stand for two nodes, each watched by its own agent
/// (--netns): the server span's parent is the client span's id although two
/// agents made them, and each agent sees only its own namespace.
#[test]
fn two_nodes_two_agents() {
    let ns = Netns::create();
    let path = |n: &str| format!("/var/run/netns/{n}");
    let agent_a = Agent::start(&["--netns", &path(&ns.names[0])]);
    let agent_b = Agent::start(&["--netns", &path(&ns.names[1])]);
    let port = free_port();
    let _server = http_server("10.213.0.2", port, Some(&ns.names[1]), &site(100));
    let c = curl(&format!("http://10.213.0.2:{port}/index.html"), Some(&ns.names[0]), &[]);
    assert_eq!(c.http_code, 200);
    let client = agent_a
        .wait_spans("client span (node a)", 1, |v| v["kind"] == "client" && attr(v, "network.peer.port") == port);
    let server =
        agent_b.wait_spans("server span (node b)", 1, |v| v["kind"] == "server" && attr(v, "server.port") == port);
    assert_eq!(id(&server[0], "parent_span_id"), id(&client[0], "span_id"));
    assert_eq!(id(&server[0], "trace_id"), id(&client[0], "trace_id"), "a root client's trace joins across nodes");
    assert!(
        agent_a.spans().iter().all(|v| v["kind"] != "server" || attr(v, "server.port") != port),
        "node a sees no server span"
    );
    assert!(
        agent_b.spans().iter().all(|v| v["kind"] != "client" || attr(v, "network.peer.port") != port),
        "node b sees no client span"
    );
    agent_a.stop();
    agent_b.stop();
}
