//! What the topology hands out: /metrics text, OTLP requests, the API route,
//! and the sink and task around the aggregator.

use std::{net::SocketAddr, sync::Arc};

use super::*;

#[test]
fn metrics_carry_the_connector_names_without_the_agent_prefix() {
    let t = Telemetry::new();
    let (topo, _sink) = Topology::new(TopologyConfig::default(), t.clone());
    {
        let mut a = topo.shared.lock();
        let [c, s] = both("nginx", "fron\"tend", "127.0.0.1:1000", "127.0.0.1:2000", 1, (false, true));
        a.span(T0, &c);
        a.span(T0, &s);
        a.span(T0, &span(SpanKind::Server, "backend", None, "127.0.0.1:9000", "10.1.2.3:5555", 4, 5, false));
        a.conn(T0, conn(ConnEventKind::ConnectFailed, Role::Client, "curl", "127.0.0.1:41000", "127.0.0.1:9"));
        a.flush(T0);
    }
    let text = t.render();
    let labels = r#"{client="nginx",server="fron\"tend",connection_type=""}"#;
    for line in [
        format!("traces_service_graph_request_total{labels} 1"),
        format!("traces_service_graph_request_failed_total{labels} 1"),
        r#"traces_service_graph_request_server_seconds_bucket{le="0.008",client="nginx",server="fron\"tend",connection_type=""} 1"#.into(),
        r#"traces_service_graph_request_client_seconds_bucket{le="0.008",client="nginx",server="fron\"tend",connection_type=""} 0"#.into(),
        r#"traces_service_graph_request_client_seconds_bucket{le="+Inf",client="nginx",server="fron\"tend",connection_type=""} 1"#.into(),
        r#"traces_service_graph_request_client_seconds_count{client="nginx",server="fron\"tend",connection_type=""} 1"#.into(),
        r#"traces_service_graph_request_total{client="10.1.2.3",server="backend",connection_type="virtual_node"} 1"#.into(),
        r#"traces_service_graph_tcp_connections_total{client="curl",server="127.0.0.1:9",connection_type="virtual_node",result="refused"} 1"#.into(),
        "tracer_topology_edges 3".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\nnot in:\n{text}");
    }
    assert!(!text.contains("tracer_traces_service_graph"), "{text}");
    assert!(
        text.contains("\ntracer_queue_depth{queue=\"chain_to_topology\"} 0\n"),
        "the agent's own metrics keep their prefix:\n{text}"
    );
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn otlp_requests_carry_the_connector_names() {
    use opentelemetry_proto::tonic::{
        common::v1::any_value,
        metrics::v1::{metric::Data, number_data_point},
    };
    let mut a = agg();
    let [c, s] = both("nginx", "frontend", "127.0.0.1:1000", "127.0.0.1:2000", 1, (true, false));
    a.span(T0, &c);
    a.span(T0, &s);
    a.conn(T0, conn(ConnEventKind::Close, Role::Client, "nginx", "127.0.0.1:1000", "127.0.0.1:2000"));
    a.flush(T0 + S);
    let clock = crate::clock::Clock::new();
    let extra = [("deployment.environment".to_string(), "prod".to_string())];
    let reqs = otlp::build(&a.graph, &clock, T0 + S, &crate::export::otlp::agent_resource("node-1", &extra));
    assert_eq!(reqs.len(), 1);
    let rm = &reqs[0].resource_metrics[0];
    let res: Vec<(&str, String)> = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str(), format!("{:?}", kv.value.as_ref().unwrap().value.as_ref().unwrap())))
        .collect();
    for (k, v) in [("service.name", "tracer"), ("host.name", "node-1"), ("deployment.environment", "prod")] {
        assert!(res.iter().any(|(rk, rv)| *rk == k && rv.contains(&format!("{v:?}"))), "{k}={v} in {res:?}");
    }
    let sm = &rm.scope_metrics[0];
    assert_eq!(sm.scope.as_ref().unwrap().name, "traces_service_graph");
    let by = |n: &str| sm.metrics.iter().find(|m| m.name == n).unwrap_or_else(|| panic!("{n}"));
    let Some(Data::Sum(total)) = &by("traces_service_graph_request_total").data else { panic!() };
    assert!(total.is_monotonic);
    let p = &total.data_points[0];
    let attrs: Vec<(String, String)> = p
        .attributes
        .iter()
        .map(|kv| match &kv.value.as_ref().unwrap().value {
            Some(any_value::Value::StringValue(v)) => (kv.key.clone(), v.clone()),
            v => panic!("{v:?}"),
        })
        .collect();
    assert_eq!(
        attrs,
        [
            ("client".into(), "nginx".into()),
            ("server".into(), "frontend".into()),
            ("connection_type".into(), String::new())
        ]
    );
    assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano < p.time_unix_nano);
    let Some(Data::Sum(failed)) = &by("traces_service_graph_request_failed_total").data else { panic!() };
    assert_eq!(failed.data_points[0].value, Some(number_data_point::Value::AsInt(1)));
    for name in ["traces_service_graph_request_server_seconds", "traces_service_graph_request_client_seconds"] {
        let Some(Data::Histogram(h)) = &by(name).data else { panic!() };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.explicit_bounds.len(), p.bucket_counts.len()), (1, 16, 17));
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 1);
    }
    let Some(Data::Sum(conns)) = &by("traces_service_graph_tcp_connections_total").data else { panic!() };
    assert_eq!(conns.data_points.len(), 5, "one point per result");
    let Some(Data::Gauge(srtt)) = &by("traces_service_graph_tcp_srtt_seconds").data else { panic!() };
    assert_eq!(srtt.data_points[0].value, Some(number_data_point::Value::AsDouble(0.0001)));
}

#[test]
fn the_sink_never_blocks_and_counts_what_it_drops() {
    let t = Telemetry::new();
    let cfg = TopologyConfig { queue: 2, ..Default::default() };
    let (_topo, sink) = Topology::new(cfg, t.clone());
    let s = Arc::new(span(SpanKind::Client, "a", None, "127.0.0.1:1", "127.0.0.1:2", 1, 1, false));
    for _ in 0..5 {
        sink.span(&s);
    }
    assert_eq!(t.dropped("chain_to_topology", "queue_full"), 3);
}

#[tokio::test]
async fn run_counts_what_was_queued_before_shutdown() {
    let t = Telemetry::new();
    let (topo, sink) = Topology::new(TopologyConfig::default(), t.clone());
    let shared = topo.shared.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(topo.run(stop_rx, None));
    for s in both("a", "b", "127.0.0.1:1000", "127.0.0.1:2000", 1, (false, false)) {
        sink.span(&Arc::new(s));
    }
    // A CLIENT span whose SERVER span never comes: counted at shutdown.
    sink.span(&Arc::new(span(SpanKind::Client, "a", Some("b"), "127.0.0.1:1000", "127.0.0.1:2000", 2, 1, false)));
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(shared.lock().graph.get("a", "b").unwrap().requests, 2);
}

/// GET over a real socket: status line and body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test]
async fn the_route_answers_json_for_each_window() {
    let (topo, _sink) = Topology::new(TopologyConfig::default(), Telemetry::new());
    {
        let mut a = topo.shared.lock();
        let now = crate::clock::monotonic_ns();
        a.span(now, &span(SpanKind::Server, "backend", None, "127.0.0.1:9000", "10.1.2.3:5555", 4, 5, true));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, topo.routes()).await });
    for w in ["1m", "5m", "1h"] {
        let (status, body) = get(addr, &format!("{TOPOLOGY_PATH}?window={w}")).await;
        assert!(status.contains("200"), "{status}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["window"], w);
        assert_eq!(v["edges"][0]["client"], "10.1.2.3");
        assert_eq!(v["edges"][0]["errors"], 1);
        assert!(v["generated_at"].as_str().unwrap().ends_with('Z'));
    }
    let (_, body) = get(addr, TOPOLOGY_PATH).await;
    assert!(body.contains(r#""window":"5m""#), "default window: {body}");
    let (status, body) = get(addr, &format!("{TOPOLOGY_PATH}?window=2m")).await;
    assert!(status.contains("400") && body.contains("1m, 5m or 1h"), "{status} {body}");
}
