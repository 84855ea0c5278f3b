//! End-to-end databases and caches on the real kernel: Debian's
//! redis-server 7, PostgreSQL 15 and MariaDB 10.11, each started by the test
//! in a temporary directory, driven by real clients from PyPI (redis-py,
//! psycopg 3 and psycopg2, PyMySQL and mysql-connector). The clients print
//! what they did (the ground truth); every span's operation, collection,
//! namespace, status and error is compared with it. Every argument and
//! literal carries a marker that must appear nowhere the agent writes:
//! stdout, the store's API, OTLP.

mod common;

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

const SECRET: &str = "sekret4711";
const NUMBER: &str = "987654321";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/db/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Run a Python client fixture; its last line of stdout is its JSON report.
fn client(script: &str, args: &[&str], service: &str) -> Value {
    let out = Command::new("python3")
        .arg(fixture(script))
        .args(args)
        .env("OTEL_SERVICE_NAME", service)
        .stderr(Stdio::inherit())
        .output()
        .expect("python3 (cargo xtask install)");
    assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().expect("a report line")).expect("JSON report")
}

fn redis_server(port: u16, password: &str) -> Proc {
    let p = Proc(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", password])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server)"),
    );
    wait_listening(&format!("127.0.0.1:{port}"), None);
    p
}

/// Spans of one database system seen from `kind`'s end, by operation.
fn by_operation(spans: &[Value], service: &str, kind: &str) -> HashMap<String, Vec<Value>> {
    let mut m: HashMap<String, Vec<Value>> = HashMap::new();
    for s in spans.iter().filter(|s| s["service"] == service && s["kind"] == kind) {
        let op = attr(s, "db.operation.name").as_str().unwrap_or("-").to_string();
        m.entry(op).or_default().push(s.clone());
    }
    m
}

fn count(m: &HashMap<String, Vec<Value>>, op: &str) -> usize {
    m.get(op).map_or(0, Vec::len)
}

/// The marker of every argument and literal appears nowhere the agent wrote.
fn assert_no_secret(what: &str, text: &str) {
    for marker in [SECRET, NUMBER] {
        assert!(!text.contains(marker), "{marker} leaked into {what}");
    }
}

fn api_traces(agent: &Agent) -> String {
    http_get(agent.api, "/api/traces?limit=1000").expect("GET /api/traces").1
}

#[test]
fn redis_commands_are_spans_without_their_arguments() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let password = format!("pw-{SECRET}");
    let _redis = redis_server(port, &password);
    let done = client("redis_client.py", &[&port.to_string(), &password, SECRET], "rediscli");
    let want = |k: &str| done[k].as_u64().unwrap() as usize;
    let ops = ["SET", "GET", "INCRBY", "LPUSH", "MULTI", "EXEC"];
    let total: usize = ops.iter().map(|o| want(o)).sum();
    let spans = agent.wait_spans("redis client spans", total, |v| {
        v["service"] == "rediscli"
            && attr(v, "db.system.name") == "redis"
            && ops.iter().any(|o| attr(v, "db.operation.name") == *o)
    });
    let client_ops = by_operation(&agent.spans(), "rediscli", "client");
    for op in ops {
        assert_eq!(count(&client_ops, op), want(op), "{op} client spans: {:?}", client_ops.keys());
    }
    assert_eq!(count(&client_ops, "AUTH"), 1, "one AUTH at connect");
    // The same calls seen by the server process.
    let server = agent.wait_spans("redis server spans", total, |v| {
        v["kind"] == "server"
            && attr(v, "db.system.name") == "redis"
            && ops.iter().any(|o| attr(v, "db.operation.name") == *o)
    });
    assert_eq!(server.len(), total);
    for s in &spans {
        assert_eq!(s["name"], attr(s, "db.operation.name").clone(), "span name is the command: {s}");
        assert_eq!(attr(s, "db.namespace"), "2", "SELECT 2 at connect names the database: {s}");
        assert_eq!(attr(s, "server.port"), port, "{s}");
    }
    let errors: Vec<&Value> = spans.iter().filter(|s| s["status"] == "error").collect();
    assert_eq!(errors.len(), want("errors"), "{errors:?}");
    assert_eq!(attr(errors[0], "error.type"), "WRONGTYPE");
    assert_eq!(attr(errors[0], "db.operation.name"), "GET");
    assert_no_secret("stdout", &agent.all_output());
    assert_no_secret("/api/traces", &api_traces(&agent));
    assert!(!agent.all_output().contains(&password), "AUTH argument leaked");
    agent.stop();
}

#[test]
fn postgres_queries_are_literal_free_spans() {
    let agent = Agent::start(&["--db-query-text"]);
    let port = free_port();
    let _pg = postgres(port, &[]);
    let done = client("pg_client.py", &[&port.to_string(), "postgres", SECRET, NUMBER], "pgcli");
    let want = |k: &str| done[k].as_u64().unwrap() as usize;
    let total = want("simple") + want("extended");
    let spans = agent.wait_spans("postgres client spans", total, |v| {
        v["service"] == "pgcli" && v["kind"] == "client" && attr(v, "db.system.name") == "postgresql"
    });
    assert_eq!(spans.len(), total, "{spans:#?}");
    let ops = by_operation(&spans, "pgcli", "client");
    assert_eq!(count(&ops, "INSERT"), 10, "{:?}", ops.keys());
    assert_eq!(count(&ops, "SELECT"), 1 + want("errors") + want("extended"));
    assert_eq!(count(&ops, "CREATE TABLE") + count(&ops, "CREATE"), 1);
    for s in &ops["INSERT"] {
        assert_eq!(attr(s, "db.collection.name"), "accounts", "{s}");
        assert_eq!(attr(s, "db.namespace"), "postgres", "{s}");
        assert_eq!(s["name"], "INSERT accounts");
        let text = attr(s, "db.query.text").as_str().expect("db.query.text when enabled");
        assert!(text.starts_with("INSERT INTO accounts"), "{text}");
    }
    let failed: Vec<&Value> = spans.iter().filter(|s| s["status"] == "error").collect();
    assert_eq!(failed.len(), want("errors"), "{failed:#?}");
    assert_eq!(attr(failed[0], "db.response.status_code"), "42P01", "undefined_table");
    assert_eq!(attr(failed[0], "db.collection.name"), "missing_table");
    let server = agent.wait_spans("postgres server spans", total, |v| {
        v["kind"] == "server" && attr(v, "db.system.name") == "postgresql" && attr(v, "server.port") == port
    });
    assert!(server.len() >= total, "{} server spans for {total} calls", server.len());
    assert_no_secret("stdout", &agent.all_output());
    assert_no_secret("/api/traces", &api_traces(&agent));
    agent.stop();
}

#[test]
fn mariadb_queries_and_prepared_statements_are_literal_free_spans() {
    let agent = Agent::start(&["--db-query-text"]);
    let port = free_port();
    let _db = mariadb(port, &[]);
    let done = client("mysql_client.py", &[&port.to_string(), "shop", SECRET, NUMBER], "mysqlcli");
    let want = |k: &str| done[k].as_u64().unwrap() as usize;
    // The text protocol's SELECT and every execution of the prepared one.
    let selects = 1 + want("prepared");
    agent.wait_spans("mariadb SELECT orders client spans", selects, |v| {
        v["service"] == "mysqlcli"
            && v["kind"] == "client"
            && attr(v, "db.operation.name") == "SELECT"
            && attr(v, "db.collection.name") == "orders"
    });
    let spans: Vec<Value> = agent
        .spans()
        .into_iter()
        .filter(|v| v["service"] == "mysqlcli" && v["kind"] == "client" && attr(v, "db.system.name") == "mariadb")
        .collect();
    let ops = by_operation(&spans, "mysqlcli", "client");
    assert_eq!(count(&ops, "INSERT"), 10, "{:?}", ops.keys());
    for s in &ops["INSERT"] {
        assert_eq!(attr(s, "db.collection.name"), "orders", "{s}");
        assert_eq!(attr(s, "db.namespace"), "shop", "USE shop names the database: {s}");
        let text = attr(s, "db.query.text").as_str().expect("db.query.text when enabled");
        assert!(text.starts_with("INSERT INTO orders"), "{text}");
    }
    let prepared: Vec<&Value> = ops["SELECT"].iter().filter(|s| attr(s, "db.collection.name") == "orders").collect();
    assert_eq!(prepared.len(), selects, "executions of the prepared SELECT named from its PREPARE");
    for s in &prepared {
        assert_eq!(attr(s, "db.namespace"), "shop", "the handshake's schema: {s}");
        assert_eq!(s["name"], "SELECT orders");
    }
    assert_eq!(count(&ops, "PREPARE"), 1, "{:?}", ops.keys());
    let failed: Vec<&Value> = spans.iter().filter(|s| s["status"] == "error").collect();
    assert_eq!(failed.len(), want("errors"), "{failed:#?}");
    assert_eq!(attr(failed[0], "db.response.status_code"), "1146", "ER_NO_SUCH_TABLE");
    assert_no_secret("stdout", &agent.all_output());
    assert_no_secret("/api/traces", &api_traces(&agent));
    agent.stop();
}

/// 20 clients x 10 requests through a threaded python service that calls
/// Redis and PostgreSQL while serving each request: every database call is
/// a child of its request's SERVER span (precision 1.0, recall printed), the
/// topology has one edge per database whose count is the calls made, and the
/// database nodes say what they are. Exported over OTLP too: no literal there.
#[test]
fn database_calls_are_children_of_the_request_and_edges_of_the_map() {
    let rx = OtlpReceiver::start();
    let endpoint = format!("http://127.0.0.1:{}", rx.grpc);
    let agent =
        Agent::start_env(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    let (pg_port, redis_port, port) = (free_port(), free_port(), free_port());
    let _pg = postgres(pg_port, &[]);
    let _redis = redis_server(redis_port, "unused-password");
    // Redis without a password for the service.
    let st = Command::new("redis-cli")
        .args([
            "-p",
            &redis_port.to_string(),
            "-a",
            "unused-password",
            "--no-auth-warning",
            "config",
            "set",
            "requirepass",
            "",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let _svc = Proc(
        Command::new("python3")
            .arg(fixture("db_service.py"))
            .args([port.to_string(), pg_port.to_string(), redis_port.to_string(), SECRET.to_string()])
            .env("OTEL_SERVICE_NAME", "orders")
            .spawn()
            .unwrap(),
    );
    wait_listening(&format!("127.0.0.1:{port}"), None);
    let script = format!(
        r#"
import http.client, threading
def client(c):
    conn = http.client.HTTPConnection("127.0.0.1", {port})
    for r in range(10):
        conn.request("GET", "/order/%d" % (c * 10 + r + 1000))
        resp = conn.getresponse(); resp.read()
        assert resp.status == 200, resp.status
ts = [threading.Thread(target=client, args=(c,)) for c in range(20)]
[t.start() for t in ts]; [t.join() for t in ts]
"#
    );
    let st = Command::new("python3").args(["-c", &script]).env("OTEL_SERVICE_NAME", "shopper").status().unwrap();
    assert!(st.success());
    let n = 200;
    let servers = agent.wait_spans("orders server spans", n, |v| {
        v["service"] == "orders"
            && v["kind"] == "server"
            && attr(v, "url.path").as_str().is_some_and(|p| p.starts_with("/order/"))
    });
    let selects = agent.wait_spans("orders SELECT spans", n, |v| {
        v["service"] == "orders"
            && attr(v, "db.system.name") == "postgresql"
            && attr(v, "db.collection.name").as_str().is_some_and(|c| c.starts_with("items_"))
    });
    let incrs = agent.wait_spans("orders INCRBY spans", n, |v| {
        v["service"] == "orders" && attr(v, "db.system.name") == "redis" && attr(v, "db.operation.name") == "INCRBY"
    });
    let by_id: HashMap<&str, &Value> = servers.iter().map(|s| (s["span_id"].as_str().unwrap(), s)).collect();
    let key = |s: &Value| -> u64 { attr(s, "url.path").as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap() };
    let (mut linked, mut correct) = (0, 0);
    for s in &selects {
        let Some(p) = s["parent_span_id"].as_str().and_then(|p| by_id.get(p)) else { continue };
        linked += 1;
        let table: u64 = attr(s, "db.collection.name").as_str().unwrap()["items_".len()..].parse().unwrap();
        if key(p) % 40 == table && p["trace_id"] == s["trace_id"] {
            correct += 1;
        }
    }
    let (mut r_linked, mut r_inside) = (0, 0);
    for s in &incrs {
        let Some(p) = s["parent_span_id"].as_str().and_then(|p| by_id.get(p)) else { continue };
        r_linked += 1;
        let within = p["start_ns"].as_u64() <= s["start_ns"].as_u64() && s["end_ns"].as_u64() <= p["end_ns"].as_u64();
        r_inside += usize::from(within && p["trace_id"] == s["trace_id"]);
    }
    eprintln!(
        "database calls under their request, 20 clients x 10: postgres precision {:.3} recall {:.3}; redis linked {r_linked}/{n}, within their parent {r_inside}",
        correct as f64 / f64::from(linked.max(1)),
        f64::from(correct) / n as f64
    );
    assert_eq!(correct, linked, "a wrong parent is worse than none");
    assert_eq!(r_inside, r_linked, "a redis call outside its parent's time");
    assert!(f64::from(correct) >= 0.95 * n as f64, "postgres recall {correct}/{n}");
    assert!(r_linked as f64 >= 0.95 * n as f64, "redis recall {r_linked}/{n}");

    // The map: orders -> the database servers, counted once per call.
    let topo = wait_until("database edges", Duration::from_secs(15), || {
        let (_, body) = http_get(agent.api, "/api/topology").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let edge = |system: &str| -> u64 {
            let nodes: Vec<&str> = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["db_system"] == system)
                .map(|n| n["id"].as_str().unwrap())
                .collect();
            v["edges"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["client"] == "orders" && nodes.contains(&e["server"].as_str().unwrap_or("")))
                .map(|e| e["requests"].as_u64().unwrap_or(0))
                .sum()
        };
        let (pg, redis) = (edge("postgresql"), edge("redis"));
        (pg > n as u64 && redis >= n as u64, (pg, redis, body))
    });
    // CREATE TABLE at start (one statement per table), one SELECT per
    // request, and what psycopg2 sends by itself: each is a CLIENT span.
    let pg_calls: Vec<Value> = agent
        .spans()
        .into_iter()
        .filter(|v| v["service"] == "orders" && v["kind"] == "client" && attr(v, "db.system.name") == "postgresql")
        .collect();
    let mut summaries: HashMap<String, u64> = HashMap::new();
    for v in &pg_calls {
        *summaries.entry(attr(v, "db.query.summary").as_str().unwrap_or("-").to_string()).or_default() += 1;
    }
    let creates = pg_calls
        .iter()
        .filter(|v| attr(v, "db.operation.name").as_str().is_some_and(|o| o.starts_with("CREATE")))
        .count();
    assert_eq!(creates, 40, "{summaries:?}");
    assert_eq!(topo.0, pg_calls.len() as u64, "postgres edge requests = calls made ({summaries:?}): {}", topo.2);
    // One INCRBY per request, and redis-py's CLIENT SETINFO on each new
    // connection of its pool.
    let redis_calls = agent
        .spans()
        .iter()
        .filter(|v| v["service"] == "orders" && v["kind"] == "client" && attr(v, "db.system.name") == "redis")
        .count();
    assert_eq!(topo.1, redis_calls as u64, "redis edge requests = calls made: {}", topo.2);

    let exported = wait_until("spans at the receiver", Duration::from_secs(15), || {
        let text: String = rx.requests().iter().map(|r| r.to_string()).collect();
        (text.contains("items_"), text)
    });
    assert_no_secret("OTLP", &exported);
    agent.stop();
}
