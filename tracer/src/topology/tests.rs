//! Topology unit tests: spans and connection records in (time passed in),
//! graph and windows out. What leaves (/metrics text, OTLP requests, the
//! API, the sink and the task) is tested in `tests/output.rs`.

use std::{net::SocketAddr, sync::Arc};

use super::{
    aggregate::Aggregator,
    api::{Health, snapshot},
    graph::{End, Graph, NodeKind, OVERFLOW},
    otlp, *,
};
use crate::{
    capture::event::TcpStats,
    conntrack::{
        CloseReason, Role,
        table::{ConnEventKind, SeenFrom},
    },
    span::{Key, SpanKind, Status, Value},
};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// A monotonic time far from zero, on a minute boundary.
const T0: u64 = 10_000 * 60 * S;

fn svc(n: &str) -> Arc<Service> {
    Arc::new(Service { name: n.into(), ..Default::default() })
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A span of `service` on the connection (local, remote); `peer` is the
/// traced service at the other end, if any.
#[expect(clippy::too_many_arguments, reason = "a test table reads better flat")]
fn span(
    kind: SpanKind,
    service: &str,
    peer: Option<&str>,
    local: &str,
    remote: &str,
    seq: u32,
    dur_ms: u64,
    error: bool,
) -> Span {
    let (local, remote) = (addr(local), addr(remote));
    let mut attributes: Vec<(Key, Value)> = Vec::new();
    let server = if kind == SpanKind::Client { remote } else { local };
    attributes.push(("server.address".into(), Value::Str(server.ip().to_string().into())));
    attributes.push(("server.port".into(), Value::Int(server.port().into())));
    if kind == SpanKind::Server {
        attributes.push(("client.address".into(), Value::Str(remote.ip().to_string().into())));
    }
    Span {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: None,
        kind,
        name: "GET /".into(),
        protocol: "http",
        start_ns: T0,
        end_ns: T0 + dur_ms * MS,
        response_first_ns: None,
        status: if error { Status::Error } else { Status::Unset },
        attributes,
        service: svc(service),
        pid: Some(1),
        comm: service.into(),
        request_tid: 1,
        response_tid: None,
        request_goid: 0,
        response_goid: 0,
        request_seq: Some(seq),
        local,
        remote,
        context_from_header: false,
        peer_service: peer.map(svc),
        transaction: None,
        business_entry: false,
    }
}

/// Both spans of one request from `client` (on `caddr`) to `server` (on `saddr`).
fn both(client: &str, server: &str, caddr: &str, saddr: &str, seq: u32, errors: (bool, bool)) -> [Span; 2] {
    [
        span(SpanKind::Client, client, Some(server), caddr, saddr, seq, 10, errors.0),
        span(SpanKind::Server, server, Some(client), saddr, caddr, seq, 8, errors.1),
    ]
}

fn set_attr(s: &mut Span, k: &'static str, v: Value) {
    s.attributes.retain(|(key, _)| key.as_str() != k);
    s.attributes.push((k.into(), v));
}

fn conn(event: ConnEventKind, role: Role, service: &str, local: &str, remote: &str) -> ConnFacts {
    let (reason, tcp) = match event {
        ConnEventKind::Open => (None, None),
        ConnEventKind::ConnectFailed => (Some(CloseReason::Refused), Some(TcpStats::default())),
        ConnEventKind::Close => (
            Some(CloseReason::Normal),
            Some(TcpStats { srtt_us: 100, total_retrans: 2, bytes_received: 0, bytes_acked: 0 }),
        ),
    };
    let r = ConnRecord {
        event,
        ts_ns: T0,
        pid: Some(1),
        comm: service.into(),
        role,
        local: local.into(),
        remote: remote.into(),
        start_ns: T0,
        duration_ns: 0,
        bytes_sent: 0,
        bytes_received: 0,
        calls_sent: 0,
        calls_received: 0,
        close_reason: reason,
        sk_err: None,
        tcp,
        seen_from: SeenFrom::Handshake,
        protocol: None,
        l7_stopped: None,
        tls: false,
    };
    ConnFacts::of(&r, Some(&svc(service))).expect("placeable")
}

fn agg() -> Aggregator {
    Aggregator::new(&TopologyConfig::default(), T0)
}

fn edge_names(g: &Graph) -> Vec<(String, String)> {
    let mut v: Vec<_> = g.edges().map(|e| (e.client.to_string(), e.server.to_string())).collect();
    v.sort();
    v
}

#[test]
fn a_request_between_two_traced_processes_counts_once() {
    let mut a = agg();
    let [c, s] = both("nginx", "frontend", "127.0.0.1:40000", "127.0.0.1:8080", 7, (false, false));
    // The SERVER span ends first and is usually released first.
    a.span(T0, &s);
    assert_eq!(a.graph.edge_count(), 0, "waits for its CLIENT span");
    a.span(T0, &c);
    assert_eq!(edge_names(&a.graph), [("nginx".into(), "frontend".into())]);
    let e = a.graph.get("nginx", "frontend").unwrap();
    assert_eq!((e.requests, e.failed), (1, 0));
    assert_eq!(e.client_seconds.sum_ns, 10 * MS, "client_seconds from the CLIENT span");
    assert_eq!(e.server_seconds.sum_ns, 8 * MS, "server_seconds from the SERVER span");
    assert_eq!(e.connection_type(), "");
    assert_eq!(a.graph.node_kind("frontend"), Some(NodeKind::Service));
    assert_eq!(a.waiting(), (0, 0));
    // Another request on the same connection: the same edge.
    let [c, s] = both("nginx", "frontend", "127.0.0.1:40000", "127.0.0.1:8080", 900, (false, false));
    a.span(T0, &c);
    a.span(T0, &s);
    assert_eq!(a.graph.get("nginx", "frontend").unwrap().requests, 2);
    assert_eq!(a.graph.edge_count(), 1);
}

#[test]
fn untraced_peers_become_virtual_nodes() {
    let mut a = agg();
    // CLIENT span, server not traced: the remote socket, whatever the Host
    // header (server.address) said.
    let mut c = span(SpanKind::Client, "frontend", None, "127.0.0.1:40000", "10.0.0.9:8443", 1, 5, false);
    set_attr(&mut c, "server.address", Value::Str("api.example.com".into()));
    a.span(T0, &c);
    let mut c = span(SpanKind::Client, "frontend", None, "127.0.0.1:40003", "10.0.0.9:8443", 5, 5, false);
    set_attr(&mut c, "server.address", Value::Str("a".into()));
    a.span(T0, &c);
    // Without the attributes, the remote socket; IPv6 literals in brackets.
    let mut c = span(SpanKind::Client, "frontend", None, "127.0.0.1:40001", "10.0.0.9:80", 2, 5, false);
    c.attributes.clear();
    a.span(T0, &c);
    let mut c = span(SpanKind::Client, "frontend", None, "[::1]:40002", "[::1]:80", 3, 5, false);
    set_attr(&mut c, "server.address", Value::Str("::1".into()));
    a.span(T0, &c);
    // SERVER span, client not traced: client.address.
    a.span(T0, &span(SpanKind::Server, "backend", None, "127.0.0.1:9000", "10.1.2.3:5555", 4, 5, false));
    assert_eq!(
        edge_names(&a.graph),
        [
            ("10.1.2.3".into(), "backend".into()),
            ("frontend".into(), "10.0.0.9:80".into()),
            ("frontend".into(), "10.0.0.9:8443".into()),
            ("frontend".into(), "[::1]:80".into()),
        ]
    );
    let e = a.graph.get("frontend", "10.0.0.9:8443").unwrap();
    assert_eq!(e.connection_type(), "virtual_node");
    assert_eq!(e.requests, 2);
    assert_eq!(e.server_seconds.sum_ns, 10 * MS, "the one side's duration stands for both");
    assert_eq!(a.graph.node_kind("10.1.2.3"), Some(NodeKind::Virtual));
    assert_eq!(a.graph.node_kind("backend"), Some(NodeKind::Service));
}

#[test]
fn an_address_a_dns_answer_named_is_that_name_with_the_port() {
    let mut a = agg();
    let mut c = span(SpanKind::Client, "frontend", None, "127.0.0.1:40000", "10.3.7.12:443", 1, 5, false);
    set_attr(&mut c, "tracer.peer.name", Value::Shared("api.example.com".into()));
    a.span(T0, &c);
    assert_eq!(edge_names(&a.graph), [("frontend".into(), "api.example.com:443".into())]);
    assert_eq!(a.graph.node_kind("api.example.com:443"), Some(NodeKind::Virtual));
}

#[test]
fn a_request_fails_when_either_span_is_an_error() {
    let mut a = agg();
    let cases = [(false, false), (true, false), (false, true), (true, true)];
    for (i, errs) in cases.into_iter().enumerate() {
        let [c, s] = both("a", "b", "127.0.0.1:1000", "127.0.0.1:2000", i as u32, errs);
        a.span(T0, &c);
        a.span(T0, &s);
    }
    let e = a.graph.get("a", "b").unwrap();
    assert_eq!((e.requests, e.failed), (4, 3));
    // Virtual ends: the one span decides.
    a.span(T0, &span(SpanKind::Server, "b", None, "127.0.0.1:2000", "10.0.0.1:1", 9, 1, true));
    assert_eq!(a.graph.get("10.0.0.1", "b").unwrap().failed, 1);
}

#[test]
fn a_span_whose_partner_never_comes_is_counted_alone() {
    let mut a = agg();
    let [c, _] = both("a", "b", "127.0.0.1:1000", "127.0.0.1:2000", 1, (false, false));
    let [_, s] = both("c", "d", "127.0.0.1:1001", "127.0.0.1:2001", 2, (false, true));
    a.span(T0, &c);
    a.span(T0, &s);
    a.tick(T0 + 4 * S);
    assert_eq!(a.graph.edge_count(), 0, "still within pair_timeout_ms");
    a.tick(T0 + 5 * S);
    assert_eq!(a.graph.get("a", "b").unwrap().requests, 1);
    let e = a.graph.get("c", "d").unwrap();
    assert_eq!((e.requests, e.failed), (1, 1));
    assert_eq!((a.graph.counters.unpaired_client, a.graph.counters.unpaired_server), (1, 1));
    // At shutdown nothing waits.
    let [c, _] = both("a", "b", "127.0.0.1:1000", "127.0.0.1:2000", 3, (false, false));
    a.span(T0 + 6 * S, &c);
    a.flush(T0 + 6 * S);
    assert_eq!(a.graph.get("a", "b").unwrap().requests, 2);
}

#[test]
fn windows_roll_with_the_clock() {
    let mut a = agg();
    for (i, at) in [T0, T0 + 30 * S, T0 + 30 * S].into_iter().enumerate() {
        let [c, s] = both("a", "b", "127.0.0.1:1000", "127.0.0.1:2000", i as u32, (i == 0, false));
        a.span(at, &c);
        a.span(at, &s);
    }
    let one = |a: &Aggregator, w, now| {
        let v = snapshot(&a.graph, w, now);
        v.edges.iter().find(|e| e.client == "a").map(|e| (e.requests, e.errors))
    };
    assert_eq!(one(&a, Window::M1, T0 + 40 * S), Some((3, 1)));
    assert_eq!(one(&a, Window::M1, T0 + 65 * S), Some((2, 0)), "the first request left the 1 min window");
    assert_eq!(one(&a, Window::M5, T0 + 65 * S), Some((3, 1)));
    assert_eq!(one(&a, Window::M1, T0 + 120 * S), None);
    assert_eq!(one(&a, Window::H1, T0 + 3_000 * S), Some((3, 1)));
    // Cumulative totals do not roll.
    a.tick(T0 + 120 * S);
    assert_eq!(a.graph.get("a", "b").unwrap().requests, 3);
    // An hour without traffic: the edge and its nodes are gone.
    a.tick(T0 + 30 * S + 3_600 * S);
    assert_eq!(a.graph.edge_count(), 0);
    assert_eq!(a.graph.node_count(), 0);
    assert_eq!(a.graph.counters.expired_edges, 1);
}

#[test]
fn caps_put_new_nodes_and_edges_on_overflow() {
    let req = |g: &mut Graph, c: &str, s: &str| g.request(T0, End::service(c), End::service(s), MS, MS, false);
    // Node cap 3: a, b, c fit; d goes to __overflow__.
    let mut g = Graph::new(3, 100, T0);
    req(&mut g, "a", "b");
    req(&mut g, "a", "c");
    req(&mut g, "a", "d");
    req(&mut g, "a", "e");
    assert_eq!(g.get("a", OVERFLOW).unwrap().requests, 2);
    assert_eq!(g.counters.overflow_nodes, 2);
    assert!(g.get("a", OVERFLOW).unwrap().virtual_node);
    // Edge cap 2: a third edge is counted on __overflow__ -> __overflow__.
    let mut g = Graph::new(100, 2, T0);
    req(&mut g, "a", "b");
    req(&mut g, "b", "c");
    for _ in 0..3 {
        req(&mut g, "c", "d");
    }
    req(&mut g, "a", "b");
    assert_eq!(g.edge_count(), 3, "the overflow edge is exempt from the cap");
    assert_eq!(g.get(OVERFLOW, OVERFLOW).unwrap().requests, 3);
    assert_eq!(g.counters.overflow_edges, 3);
    assert_eq!(g.get("a", "b").unwrap().requests, 2);
    assert!(g.get("c", "d").is_none());
    // Nothing is lost from the totals.
    assert_eq!(g.edges().map(|e| e.requests).sum::<u64>(), 6);
}

#[test]
fn a_refused_connect_is_a_failed_connection_on_its_edge() {
    let mut a = agg();
    a.conn(T0, conn(ConnEventKind::ConnectFailed, Role::Client, "curl", "127.0.0.1:41000", "127.0.0.1:9"));
    a.tick(T0 + S);
    assert_eq!(a.graph.edge_count(), 0, "connection events wait conn_delay_ms");
    a.tick(T0 + 3 * S);
    let e = a.graph.get("curl", "127.0.0.1:9").expect("edge curl -> 127.0.0.1:9");
    assert_eq!((e.tcp.refused, e.tcp.failed(), e.tcp.opened, e.requests), (1, 1, 0, 0));
    assert_eq!(e.connection_type(), "virtual_node");
    let v = snapshot(&a.graph, Window::M1, T0 + 3 * S);
    assert_eq!((v.edges[0].tcp.failed, v.edges[0].tcp.refused), (1, 1));
    let node = v.nodes.iter().find(|n| n.name == "127.0.0.1:9").unwrap();
    assert_eq!(node.health, Health::Failing);
}

#[test]
fn connections_land_on_the_edges_their_spans_named() {
    let mut a = agg();
    // frontend -> backend, both traced; the connection events come before
    // the spans (which the linker holds), and are placed after them.
    let (fe, be) = ("127.0.0.1:50000", "127.0.0.1:8000");
    a.conn(T0, conn(ConnEventKind::Open, Role::Client, "frontend", fe, be));
    a.conn(T0, conn(ConnEventKind::Open, Role::Server, "backend", be, fe));
    let [c, s] = both("frontend", "backend", fe, be, 1, (false, false));
    a.span(T0 + 2 * S, &s);
    a.span(T0 + 2 * S, &c);
    a.conn(T0 + 2 * S, conn(ConnEventKind::Close, Role::Client, "frontend", fe, be));
    a.conn(T0 + 2 * S, conn(ConnEventKind::Close, Role::Server, "backend", be, fe));
    // A client that is not traced here (another host).
    a.conn(T0 + 2 * S, conn(ConnEventKind::Open, Role::Server, "backend", be, "10.0.0.5:4000"));
    // An untraced server: its connections go where its spans went, the
    // socket's address (a Host header names no node).
    let mut v = span(SpanKind::Client, "frontend", None, "127.0.0.1:50001", "127.0.0.1:8080", 2, 1, false);
    set_attr(&mut v, "server.address", Value::Str("localhost".into()));
    a.span(T0 + 2 * S, &v);
    a.conn(T0 + 2 * S, conn(ConnEventKind::Open, Role::Client, "frontend", "127.0.0.1:50001", "127.0.0.1:8080"));
    a.tick(T0 + 10 * S);
    assert_eq!(
        edge_names(&a.graph),
        [
            ("10.0.0.5".into(), "backend".into()),
            ("frontend".into(), "127.0.0.1:8080".into()),
            ("frontend".into(), "backend".into()),
        ],
        "the server end of frontend's connection is not counted again"
    );
    let t = &a.graph.get("frontend", "backend").unwrap().tcp;
    assert_eq!((t.opened, t.retransmits, t.srtt_us), (1, 2, Some(100.0)));
    assert_eq!(a.graph.get("10.0.0.5", "backend").unwrap().tcp.opened, 1);
    assert_eq!(a.graph.get("frontend", "127.0.0.1:8080").unwrap().tcp.opened, 1);
    let v = snapshot(&a.graph, Window::M1, T0 + 10 * S);
    let e = v.edges.iter().find(|e| e.server == "backend" && e.client == "frontend").unwrap();
    assert_eq!((e.requests, e.tcp.opened, e.tcp.srtt_ms), (1, 1, Some(0.1)));
}

#[test]
fn snapshot_nodes_and_edges() {
    let mut a = agg();
    for i in 0..100 {
        let [c, s] = both("nginx", "frontend", "127.0.0.1:1000", "127.0.0.1:2000", i, (false, i < 3));
        a.span(T0 + 10 * S, &c);
        a.span(T0 + 10 * S, &s);
    }
    a.span(
        T0 + 10 * S,
        &span(SpanKind::Client, "curl", Some("nginx"), "127.0.0.1:3000", "127.0.0.1:1000", 1, 1, false),
    );
    a.flush(T0 + 10 * S);
    let v = snapshot(&a.graph, Window::M1, T0 + 20 * S);
    assert_eq!(v.window, "1m");
    assert_eq!(v.window_seconds, 20.0);
    let e = v.edges.iter().find(|e| e.client == "nginx").unwrap();
    assert_eq!((e.requests, e.errors, e.error_rate, e.rate_per_s), (100, 3, 0.03, 5.0));
    assert_eq!(e.p50_ms, Some(9.0), "10 ms CLIENT spans: the (8 ms, 10 ms] bucket, interpolated");
    let fe = v.nodes.iter().find(|n| n.name == "frontend").unwrap();
    assert_eq!((fe.kind, fe.health, fe.requests, fe.errors), (NodeKind::Service, Health::Degraded, 100, 3));
    let ngx = v.nodes.iter().find(|n| n.name == "nginx").unwrap();
    assert_eq!((ngx.requests, ngx.requests_out, ngx.errors_out), (1, 100, 3));
    assert_eq!(ngx.health, Health::Ok);
    let curl = v.nodes.iter().find(|n| n.name == "curl").unwrap();
    assert_eq!(curl.health, Health::Unknown);
    let json = serde_json::to_value(&v).unwrap();
    for k in ["window", "window_seconds", "generated_at", "nodes", "edges", "overflow"] {
        assert!(json.get(k).is_some(), "{k} in {json}");
    }
    let e = &json["edges"][0];
    for k in [
        "client",
        "server",
        "connection_type",
        "requests",
        "errors",
        "error_rate",
        "rate_per_s",
        "p50_ms",
        "p90_ms",
        "p99_ms",
    ] {
        assert!(e.get(k).is_some(), "{k} in {e}");
    }
    for k in ["opened", "failed", "refused", "timeout", "reset", "retransmits", "srtt_ms"] {
        assert!(e["tcp"].get(k).is_some(), "tcp.{k} in {e}");
    }
    assert_eq!(json["nodes"][0]["kind"], "service");
}

mod output;

/// In a cluster the chain stage names a pod or Service peer (`peer.service`
/// from Kubernetes metadata): the virtual node carries that name, not an IP.
#[test]
fn kubernetes_names_peers() {
    let mut a = agg();
    let mut c = span(SpanKind::Client, "checkout", None, "10.0.0.5:40000", "10.96.0.12:80", 1, 5, false);
    set_attr(&mut c, "peer.service", Value::Str("payments".into()));
    a.span(T0, &c);
    let mut s = span(SpanKind::Server, "payments", None, "10.0.0.7:8080", "10.0.1.9:5555", 2, 5, false);
    set_attr(&mut s, "peer.service", Value::Str("gateway".into()));
    a.span(T0, &s);
    assert_eq!(edge_names(&a.graph), [("checkout".into(), "payments".into()), ("gateway".into(), "payments".into())]);
}

#[test]
fn server_ends_that_conntrack_marked_client_make_no_ephemeral_nodes() {
    // The sequence seen with python http.server under a hostile client: a
    // send returns after the peer's RST closed the socket (local port 0, a
    // mid-stream entry of role client), then the kernel reuses that socket
    // for the next accepted connection, which inherits the client role.
    let mut a = agg();
    let (srv, c1, c2) = ("127.0.0.1:18300", "127.0.0.1:36756", "127.0.0.1:36784");
    // web was seen serving there before (a client from elsewhere).
    a.conn(T0, conn(ConnEventKind::Open, Role::Server, "web", srv, "10.0.0.7:1000"));
    a.tick(T0 + 10 * S);
    a.conn(T0, conn(ConnEventKind::Open, Role::Client, "fuzz", c1, srv));
    a.conn(T0, conn(ConnEventKind::Open, Role::Server, "web", srv, c1));
    a.conn(T0, conn(ConnEventKind::Close, Role::Client, "fuzz", c1, srv));
    a.conn(T0, conn(ConnEventKind::Close, Role::Server, "web", srv, c1));
    a.conn(T0, conn(ConnEventKind::Open, Role::Client, "web", "127.0.0.1:0", c1));
    a.conn(T0, conn(ConnEventKind::Open, Role::Client, "fuzz", c2, srv));
    a.conn(T0, conn(ConnEventKind::Close, Role::Client, "fuzz", c2, srv));
    a.conn(T0, conn(ConnEventKind::Close, Role::Client, "web", srv, c2));
    // The same taken over by another process's entry: not placed at all.
    a.conn(T0, conn(ConnEventKind::Close, Role::Client, "fuzz", srv, "127.0.0.1:36790"));
    // A refused connect keeps local port 0 and still counts.
    a.conn(T0, conn(ConnEventKind::ConnectFailed, Role::Client, "fuzz", "127.0.0.1:0", "127.0.0.1:9"));
    a.tick(T0 + 20 * S);
    assert_eq!(
        edge_names(&a.graph),
        [("10.0.0.7".into(), "web".into()), ("fuzz".into(), "127.0.0.1:9".into()), ("fuzz".into(), "web".into())],
        "no node for an ephemeral port"
    );
    let t = &a.graph.get("fuzz", "web").unwrap().tcp;
    assert_eq!(t.opened, 2, "each connection once, from the client's end");
}

#[test]
fn database_servers_are_marked_with_their_system() {
    let mut a = agg();
    // Untraced database: the virtual node of the socket.
    let mut c = span(SpanKind::Client, "orders", None, "127.0.0.1:40000", "10.0.0.5:5432", 1, 2, false);
    set_attr(&mut c, "db.system.name", Value::Str("postgresql".into()));
    a.span(T0, &c);
    // Traced on this node: both spans name the server process.
    let mut c =
        span(SpanKind::Client, "orders", Some("redis-server"), "127.0.0.1:40001", "127.0.0.1:6379", 2, 1, false);
    set_attr(&mut c, "db.system.name", Value::Str("redis".into()));
    let mut s =
        span(SpanKind::Server, "redis-server", Some("orders"), "127.0.0.1:6379", "127.0.0.1:40001", 2, 1, false);
    set_attr(&mut s, "db.system.name", Value::Str("redis".into()));
    a.span(T0, &c);
    a.span(T0, &s);
    assert_eq!(a.graph.get("orders", "redis-server").unwrap().requests, 1, "counted once");
    let v = snapshot(&a.graph, Window::M1, T0 + S);
    let system = |n: &str| v.nodes.iter().find(|x| x.name == n).and_then(|x| x.db_system.clone());
    assert_eq!(system("10.0.0.5:5432").as_deref(), Some("postgresql"));
    assert_eq!(system("redis-server").as_deref(), Some("redis"));
    assert_eq!(system("orders"), None);
}
