//! End-to-end service topology on the real kernel: curl -> nginx -> frontend
//! -> backend, with some requests failing (500) and one connection refused,
//! all inside a network namespace the agent watches alone (`--netns`), so
//! nothing else on the machine adds edges. Checked: /api/topology has
//! exactly the expected edges with the request and error counts sent and the
//! refused connection as a failed connection on its edge; /metrics shows the
//! servicegraph connector's series with the same figures; the OTLP receiver
//! (official opentelemetry-proto definitions) gets them as OTLP metrics.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use serde_json::Value;

const OK: u64 = 20;
const FAILED: u64 = 5;

/// (client, server) -> the edge's JSON.
fn edges(topology: &Value) -> BTreeMap<(String, String), Value> {
    let s = |v: &Value| v.as_str().unwrap().to_string();
    topology["edges"].as_array().unwrap().iter().map(|e| ((s(&e["client"]), s(&e["server"])), e.clone())).collect()
}

fn topology(agent: &Agent, window: &str) -> Value {
    let (status, body) = http_get(agent.api, &format!("/api/topology?window={window}")).expect("GET /api/topology");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/topology is not JSON ({e}): {body}"))
}

/// A data point's attributes as {key: string value}.
fn point_attrs(p: &Value) -> BTreeMap<String, String> {
    p["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| (kv["key"].as_str().unwrap().into(), kv["value"]["stringValue"].as_str().unwrap_or("").into()))
        .collect()
}

fn int(v: &Value) -> u64 {
    v.as_str().map_or_else(|| v.as_u64().unwrap_or(0), |s| s.parse().unwrap())
}

/// The newest value the receiver got for each (metric, client, server) of
/// the servicegraph metrics: sums as their value, histograms as their count.
fn servicegraph_at_receiver(rx: &OtlpReceiver) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for r in rx.requests().iter().filter(|r| r["signal"] == "metrics") {
        for rm in r["request"]["resourceMetrics"].as_array().into_iter().flatten() {
            // The connector's scope only (the business view exports too).
            let scopes = rm["scopeMetrics"].as_array().into_iter().flatten();
            for sm in scopes.filter(|sm| sm["scope"]["name"] == "traces_service_graph") {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap().to_string();
                    let (points, field) = if m.get("sum").is_some() {
                        (&m["sum"]["dataPoints"], "asInt")
                    } else if m.get("histogram").is_some() {
                        (&m["histogram"]["dataPoints"], "count")
                    } else {
                        continue;
                    };
                    for p in points.as_array().into_iter().flatten() {
                        let a = point_attrs(p);
                        let mut key_name = name.clone();
                        if let Some(r) = a.get("result") {
                            key_name = format!("{name}{{result={r}}}");
                        }
                        out.insert((key_name, a["client"].clone(), a["server"].clone()), int(&p[field]));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn curl_nginx_frontend_backend_topology() {
    let ns = Namespace::create("topo");
    let net = ns.name.clone();
    let (bport, fport, nport, closed) = (free_port(), free_port(), free_port(), free_port());
    // Servers first: the probes of wait_listening are not part of the test.
    let _backend = backend_in(&net, bport, &[("OTEL_SERVICE_NAME", "backend")]);
    let _frontend = backend_in(&net, fport, &[("OTEL_SERVICE_NAME", "frontend")]);
    let _nginx = nginx_proxy_in(&net, nport, fport);
    let rx = OtlpReceiver::start();
    let endpoint = format!("http://127.0.0.1:{}", rx.grpc);
    let agent = Agent::start_env(
        &["--netns", &ns.path()],
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );

    for i in 0..OK + FAILED {
        let path = if i % 5 == 4 { "fail".to_string() } else { format!("items/{i}") };
        let t = curl(&format!("http://127.0.0.1:{nport}/call/{bport}/{path}"), Some(&net), &[]);
        assert_eq!(t.http_code, if path == "fail" { 500 } else { 200 }, "{path}");
    }
    // Nothing listens on `closed`: the connect is refused.
    let t = curl(&format!("http://127.0.0.1:{closed}/"), Some(&net), &[]);
    assert_eq!(t.http_code, 0);

    let n = OK + FAILED;
    let refused_edge = ("curl".to_string(), format!("127.0.0.1:{closed}"));
    let chain = [("curl", "nginx"), ("nginx", "frontend"), ("frontend", "backend")];
    let got = wait_until("every request and the refused connect in /api/topology", Duration::from_secs(20), || {
        let e = edges(&topology(&agent, "5m"));
        let done =
            chain.iter().all(|(c, s)| e.get(&(c.to_string(), s.to_string())).is_some_and(|x| x["requests"] == n))
                && e.get(&refused_edge).is_some_and(|x| x["tcp"]["refused"] == 1);
        (done, e)
    });
    let mut expected: Vec<(String, String)> = chain.iter().map(|(c, s)| (c.to_string(), s.to_string())).collect();
    expected.push(refused_edge.clone());
    expected.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), expected, "exactly the expected edges: {got:#?}");
    for (c, s) in chain {
        let e = &got[&(c.to_string(), s.to_string())];
        assert_eq!((e["requests"].as_u64(), e["errors"].as_u64()), (Some(n), Some(FAILED)), "{c} -> {s}: {e}");
        assert_eq!(e["connection_type"], "", "both ends traced: {e}");
        assert!(e["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{e}");
        assert!(e["tcp"]["opened"].as_u64().unwrap() >= 1, "its connections are on the same edge: {e}");
        assert_eq!(e["tcp"]["failed"], 0, "{e}");
    }
    // curl and the python frontend open one connection per request; nginx keeps them alive.
    assert_eq!(got[&("curl".into(), "nginx".into())]["tcp"]["opened"], n);
    assert_eq!(got[&("frontend".into(), "backend".into())]["tcp"]["opened"], n);
    let r = &got[&refused_edge];
    assert_eq!((r["requests"].as_u64(), r["connection_type"].as_str()), (Some(0), Some("virtual_node")), "{r}");
    assert_eq!((r["tcp"]["failed"].as_u64(), r["tcp"]["opened"].as_u64()), (Some(1), Some(0)), "{r}");
    // The windows agree while everything is recent; nodes carry kinds.
    let t1 = topology(&agent, "1h");
    assert_eq!(edges(&t1).keys().cloned().collect::<Vec<_>>(), expected);
    let kinds: BTreeMap<String, String> = t1["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().into(), n["kind"].as_str().unwrap().into()))
        .collect();
    assert_eq!(kinds[&refused_edge.1], "virtual");
    for s in ["curl", "nginx", "frontend", "backend"] {
        assert_eq!(kinds[s], "service", "{kinds:?}");
    }

    // /metrics: the connector's names and labels, the same figures.
    let m = agent.metrics();
    for (c, s) in chain {
        let l = format!(r#"{{client="{c}",server="{s}",connection_type=""}}"#);
        assert_eq!(agent.metric(&format!("traces_service_graph_request_total{l}")), n, "{c} -> {s}\n{m}");
        assert_eq!(agent.metric(&format!("traces_service_graph_request_failed_total{l}")), FAILED, "{c} -> {s}");
        assert_eq!(agent.metric(&format!("traces_service_graph_request_client_seconds_count{l}")), n);
        assert_eq!(agent.metric(&format!("traces_service_graph_request_server_seconds_count{l}")), n);
    }
    let refused = format!(
        r#"traces_service_graph_tcp_connections_total{{client="curl",server="127.0.0.1:{closed}",connection_type="virtual_node",result="refused"}}"#
    );
    assert_eq!(agent.metric(&refused), 1, "{m}");

    // OTLP: the receiver gets the same cumulative figures.
    let rx_key = |metric: &str, c: &str, s: &str| (metric.to_string(), c.to_string(), s.to_string());
    let at_rx = wait_until("the servicegraph metrics at the OTLP receiver", Duration::from_secs(15), || {
        let got = servicegraph_at_receiver(&rx);
        let done = chain.iter().all(|(c, s)| got.get(&rx_key("traces_service_graph_request_total", c, s)) == Some(&n))
            && got.get(&rx_key("traces_service_graph_tcp_connections_total{result=refused}", "curl", &refused_edge.1))
                == Some(&1);
        (done, got)
    });
    for (c, s) in chain {
        assert_eq!(at_rx[&rx_key("traces_service_graph_request_failed_total", c, s)], FAILED, "{c} -> {s}");
        assert_eq!(at_rx[&rx_key("traces_service_graph_request_server_seconds", c, s)], n, "{c} -> {s}");
        assert_eq!(at_rx[&rx_key("traces_service_graph_request_client_seconds", c, s)], n, "{c} -> {s}");
    }
    agent.assert_no_drops();
    agent.stop();
}
