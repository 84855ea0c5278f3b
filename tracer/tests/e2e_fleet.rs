//! End-to-end view across two nodes: two network namespaces joined by a
//! veth pair stand for two hosts (10.213.0.1 and 10.213.0.2), each watched by
//! its own agent (`--netns`). curl in node A calls service fleet-a in A,
//! which calls service fleet-b in node B over the veth. A real Prometheus
//! (Debian's) scrapes both agents every second and evaluates the shipped
//! rules (deploy/prometheus/tracer-rules.yml) every second.
//!
//! Checked: every cluster-wide `:sum` recording rule equals, series for
//! series, the sum of the two agents' own /metrics values; the cross-node
//! call is on the service graph with the count of requests and failures the
//! test sent (as each agent names the end it does not trace: fleet-a ->
//! 10.213.0.2:port on A, 10.213.0.1 -> fleet-b on B); the business
//! transaction of node B fails 1 in 5 in the second phase, so the cluster-wide
//! error ratio is about 20 % and both burn-rate alerts (14.4 % and 6 % of a
//! 99 % objective) fire; Prometheus loaded the rules without an error; every
//! query of the Grafana dashboard (deploy/grafana) parses, shows data and
//! reads only metrics this Prometheus has.

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

/// Requests of the first phase (one fails): they create every series, so
/// the second phase is an increase that Prometheus' rate() sees.
const FIRST: u64 = 5;
/// Requests of the second phase, every fifth fails (20 %).
const SECOND: u64 = 25;
const N: u64 = FIRST + SECOND;
const FAILED: u64 = 1 + SECOND / 5;

/// The business transaction of fleet-b's requests.
const TXN: &str = "fleet order";

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus/tracer-rules.yml");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/tracer-cluster.json");

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    // Aggregations, which may come before their `by (...)`.
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// The metric names a PromQL expression reads: identifiers outside label
/// matchers (`{...}`), ranges (`[...]`) and strings, not called (functions
/// and aggregations), not keywords, not in a `by (...)`-like label list.
fn metric_names(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let (mut i, mut out, mut label_list) = (0, vec![], false);
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        match b[i] {
            b'{' | b'[' | b'"' | b'\'' => {
                let close = match b[i] {
                    b'{' => b'}',
                    b'[' => b']',
                    q => q,
                };
                i += 1;
                while i < b.len() && b[i] != close {
                    i += 1 + usize::from(b[i] == b'\\');
                }
                i += 1;
            }
            // A number, a duration (1m) included.
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            b')' => {
                label_list = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let called = expr[i..].trim_start().starts_with('(');
                let lists = ["by", "without", "on", "ignoring", "group_left", "group_right"];
                if lists.contains(&word) {
                    // `group_left` may stand without a list.
                    label_list = called;
                } else if !label_list && !called && !KEYWORDS.contains(&word) {
                    out.push(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The Grafana dashboard, checked against this Prometheus: every panel has
/// an id, a place and the templated data source; every query parses (the
/// API answers it), shows data, and reads only metrics Prometheus has.
fn check_dashboard(prom: &Prometheus) {
    let d: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).expect("dashboard is JSON");
    assert_eq!(d["templating"]["list"][0]["name"], "datasource", "a data source variable");
    let names = prom.api("/api/v1/label/__name__/values");
    let known: Vec<&str> = names["data"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let panels = d["panels"].as_array().unwrap();
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().expect("panel id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let mut queries = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        assert!(p["gridPos"]["w"].as_u64().is_some_and(|w| w > 0), "{title}: gridPos");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(!expr.contains('$'), "{title}: {expr} uses a Grafana variable Prometheus cannot parse");
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{title}: {expr} reads no metric");
            for m in &used {
                assert!(known.contains(&m.as_str()), "{title}: {expr} reads {m}, which Prometheus does not have");
            }
            assert!(!prom.query(expr).is_empty(), "{title}: {expr} shows no data");
            queries += 1;
        }
    }
    eprintln!("e2e_fleet: {} panels, {queries} queries of the dashboard checked", panels.len());
}

/// Labels and value of one sample.
type Sample = (BTreeMap<String, String>, f64);

/// The samples of `family` (the exact sample name) in a text exposition.
fn scrape(exposition: &str, family: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((parse_labels(labels), value.split(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// `a="x",b="y"` (values with `\"` and `\\` escapes) as a map.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| if c == 'n' { '\n' } else { c })),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    out
}

/// Samples summed by the labels `by`, as `sum by (...)` does (a label with
/// an empty value is no label in Prometheus: `connection_type=""`).
fn sum_by(samples: &[Sample], by: &[&str]) -> BTreeMap<BTreeMap<String, String>, f64> {
    let mut out = BTreeMap::new();
    for (labels, v) in samples {
        let key = by
            .iter()
            .filter_map(|k| Some((k.to_string(), labels.get(*k).filter(|v| !v.is_empty())?.clone())))
            .collect();
        *out.entry(key).or_insert(0.0) += v;
    }
    out
}

/// Percent-encoding of a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    _proc: Proc,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// Scrape `targets` every second (label `node` = the name given), with
    /// the shipped rules evaluated every second.
    fn start(targets: &[(&str, SocketAddr)]) -> Prometheus {
        let dir = scratch("fleet-prometheus", None);
        let jobs: String = targets
            .iter()
            .map(|(node, addr)| format!("      - targets: ['{addr}']\n        labels: {{node: {node}}}\n"))
            .collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files: ['{RULES}']\nscrape_configs:\n  - job_name: tracer\n    static_configs:\n{jobs}"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let proc = Proc(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("starting prometheus (apt install prometheus)"),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening(&addr.to_string(), None);
        // It listens before its TSDB is open and answers 503 until then.
        wait_until("Prometheus ready (/-/ready)", Duration::from_secs(60), || {
            (http_get(addr, "/-/ready").is_ok_and(|(status, _)| status == 200), ())
        });
        Prometheus { _proc: proc, addr, log }
    }

    fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.addr, path).expect("GET Prometheus API");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("Prometheus answers JSON")
    }

    /// An instant vector: each series' labels (without `__name__`) and value.
    fn query(&self, q: &str) -> Vec<Sample> {
        let v = self.api(&format!("/api/v1/query?query={}", encode(q)));
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{q}: not a vector: {v}"))
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| *k != "__name__")
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (labels, s["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    }
}

/// The `:sum` recording rules: (rule, the agents' sample name, its labels).
const SUMS: &[(&str, &str, &[&str])] = &[
    (
        "cluster:traces_service_graph_request_total:sum",
        "traces_service_graph_request_total",
        &["client", "server", "connection_type"],
    ),
    (
        "cluster:traces_service_graph_request_failed_total:sum",
        "traces_service_graph_request_failed_total",
        &["client", "server", "connection_type"],
    ),
    (
        "cluster:traces_service_graph_tcp_connections_total:sum",
        "traces_service_graph_tcp_connections_total",
        &["client", "server", "connection_type", "result"],
    ),
    (
        "cluster:business_transaction_requests_total:sum",
        "business_transaction_duration_seconds_count",
        &["business_transaction_name"],
    ),
];

/// What the rules should answer, from the two agents' own /metrics (the
/// errors rule is the requests one restricted to error="true").
fn expected(agents: &[&Agent]) -> BTreeMap<&'static str, BTreeMap<BTreeMap<String, String>, f64>> {
    let pages: Vec<String> = agents.iter().map(|a| a.metrics()).collect();
    let both = |family: &str| -> Vec<Sample> { pages.iter().flat_map(|p| scrape(p, family)).collect() };
    let mut out = BTreeMap::new();
    for (rule, family, by) in SUMS {
        out.insert(*rule, sum_by(&both(family), by));
    }
    let errors: Vec<Sample> = both("business_transaction_duration_seconds_count")
        .into_iter()
        .filter(|(l, _)| l.get("error").map(String::as_str) == Some("true"))
        .collect();
    out.insert("cluster:business_transaction_errors_total:sum", sum_by(&errors, &["business_transaction_name"]));
    out
}

fn answered(prom: &Prometheus) -> BTreeMap<&'static str, BTreeMap<BTreeMap<String, String>, f64>> {
    SUMS.iter()
        .map(|(rule, ..)| *rule)
        .chain(["cluster:business_transaction_errors_total:sum"])
        .map(|rule| (rule, prom.query(rule).into_iter().collect()))
        .collect()
}

/// Wait until Prometheus' rules answer what the agents say now.
fn converge(prom: &Prometheus, agents: &[&Agent], what: &str) {
    wait_until(what, Duration::from_secs(30), || {
        let (want, got) = (expected(agents), answered(prom));
        (want == got && want.values().all(|m| !m.is_empty()), (want, got))
    });
}

fn requests(a_port: u16, b_port: u16, n: u64, fail_every: u64, netns: &str) {
    for i in 0..n {
        let fail = i % fail_every == fail_every - 1;
        let path = if fail { "fail".to_string() } else { format!("items/{i}") };
        let t = curl(&format!("http://127.0.0.1:{a_port}/call/{b_port}/{path}"), Some(netns), &[]);
        assert_eq!(t.http_code, if fail { 500 } else { 200 }, "{path}");
    }
}

/// One edge's value in an agent's /metrics (None when absent).
fn edge(agent: &Agent, family: &str, client: &str, server: &str) -> Option<f64> {
    scrape(&agent.metrics(), family)
        .into_iter()
        .find(|(l, _)| l["client"] == client && l["server"] == server)
        .map(|(_, v)| v)
}

#[test]
fn two_nodes_one_prometheus_cluster_wide_rules() {
    let net = Netns::create();
    let (node_a, node_b) = (net.names[0].clone(), net.names[1].clone());
    let (a_port, b_port) = (free_port(), free_port());
    // Servers first: the probes of wait_listening are not part of the test.
    let _svc_b = backend_in(&node_b, b_port, &[("OTEL_SERVICE_NAME", "fleet-b"), ("BACKEND_BIND", "0.0.0.0")]);
    let _svc_a =
        backend_in(&node_a, a_port, &[("OTEL_SERVICE_NAME", "fleet-a"), ("BACKEND_DOWNSTREAM_HOST", "10.213.0.2")]);
    // One business transaction for every request fleet-b answers (node B's
    // entry spans: their caller is on node A).
    let config = scratch("fleet-config", None).join("tracer.toml");
    std::fs::write(&config, format!("[[business.transactions]]\nname = \"{TXN}\"\nservice = \"fleet-b\"\n")).unwrap();
    let config = config.to_str().unwrap();
    let agent_a = Agent::start(&["--netns", &format!("/var/run/netns/{node_a}"), "--config", config]);
    let agent_b = Agent::start(&["--netns", &format!("/var/run/netns/{node_b}"), "--config", config]);
    let agents = [&agent_a, &agent_b];
    let prom = Prometheus::start(&[("a", agent_a.api), ("b", agent_b.api)]);
    wait_until("both agents up in Prometheus", Duration::from_secs(30), || {
        let up = prom.query("up == 1");
        (up.len() == 2, up)
    });

    let cross_a = ("fleet-a".to_string(), format!("10.213.0.2:{b_port}"));
    let cross_b = ("10.213.0.1".to_string(), "fleet-b".to_string());
    let counted = |n: u64| {
        let (cross_a, cross_b) = (&cross_a, &cross_b);
        let (agent_a, agent_b) = (&agent_a, &agent_b);
        move || {
            let a = edge(agent_a, "traces_service_graph_request_total", &cross_a.0, &cross_a.1);
            let b = edge(agent_b, "traces_service_graph_request_total", &cross_b.0, &cross_b.1);
            (a == Some(n as f64) && b == Some(n as f64), (a, b, agent_a.metrics(), agent_b.metrics()))
        }
    };
    requests(a_port, b_port, FIRST, FIRST, &node_a);
    wait_until("the first phase on both agents' edges", Duration::from_secs(20), counted(FIRST));
    converge(&prom, &agents, "the rules answer the first phase");
    requests(a_port, b_port, SECOND, 5, &node_a);
    wait_until("every request on both agents' edges", Duration::from_secs(20), counted(N));
    converge(&prom, &agents, "the rules answer the sums of both agents");

    // The answers equal the agents' sums (converge compared them); here the
    // figures the test knows: the cross-node call, as each node names it.
    let sums = answered(&prom);
    let edge_key = |c: &str, s: &str| -> BTreeMap<String, String> {
        [("client", c), ("server", s), ("connection_type", "virtual_node")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let requests_rule = &sums["cluster:traces_service_graph_request_total:sum"];
    let failed_rule = &sums["cluster:traces_service_graph_request_failed_total:sum"];
    for (c, s) in [&cross_a, &cross_b] {
        assert_eq!(requests_rule.get(&edge_key(c, s)), Some(&(N as f64)), "{c} -> {s}: {requests_rule:#?}");
        assert_eq!(failed_rule.get(&edge_key(c, s)), Some(&(FAILED as f64)), "{c} -> {s}: {failed_rule:#?}");
    }
    let mut local = edge_key("curl", "fleet-a");
    // Both ends traced on node A: connection_type "", which Prometheus drops.
    local.remove("connection_type");
    assert_eq!(requests_rule.get(&local), Some(&(N as f64)), "curl -> fleet-a on node A: {requests_rule:#?}");
    // Each node's agent saw only its own half.
    assert_eq!(edge(&agent_b, "traces_service_graph_request_total", &cross_a.0, &cross_a.1), None);
    assert_eq!(edge(&agent_a, "traces_service_graph_request_total", &cross_b.0, &cross_b.1), None);
    let rate = prom.query(&format!(
        "cluster:traces_service_graph_request:rate5m{{client=\"fleet-a\",server=\"10.213.0.2:{b_port}\"}}"
    ));
    assert!(rate.len() == 1 && rate[0].1 > 0.0, "the cross-node edge has a rate: {rate:?}");

    // Node B's entry transaction: every request, every failure, on node B
    // only; the cluster-wide rules count exactly those.
    let of_txn = |agent: &Agent, error: &str| -> Option<f64> {
        scrape(&agent.metrics(), "business_transaction_duration_seconds_count")
            .into_iter()
            .find(|(l, _)| l["business_transaction_name"] == TXN && l["error"] == error)
            .map(|s| s.1)
    };
    assert_eq!(
        (of_txn(&agent_b, "false"), of_txn(&agent_b, "true")),
        (Some((N - FAILED) as f64), Some(FAILED as f64)),
        "{TXN} on node B"
    );
    assert_eq!((of_txn(&agent_a, "false"), of_txn(&agent_a, "true")), (None, None), "{TXN} on node A");
    let key: BTreeMap<String, String> = [("business_transaction_name".to_string(), TXN.to_string())].into();
    assert_eq!(sums["cluster:business_transaction_requests_total:sum"].get(&key), Some(&(N as f64)), "{sums:#?}");
    assert_eq!(sums["cluster:business_transaction_errors_total:sum"].get(&key), Some(&(FAILED as f64)), "{sums:#?}");

    // The second phase fails 1 in 5. rate() extrapolates each series to the
    // window's edges by its own first and last samples, so the ratio of two
    // rates is 5/25 within a scrape interval's share, not exactly.
    let q = format!("cluster:business_transaction_error_ratio:rate5m{{business_transaction_name=\"{TXN}\"}}");
    let ratio = wait_until("the error ratio of node B's transaction", Duration::from_secs(15), || {
        let r = prom.query(&q);
        (r.len() == 1, r)
    })[0]
        .1;
    eprintln!("e2e_fleet: cluster-wide error ratio over 5m of {TXN}: {ratio:.4} (sent 5/25 = 0.2)");
    assert!((0.15..=0.25).contains(&ratio), "error ratio {ratio}, the test sent 20 % in the second phase");
    // 20 % is above both thresholds (14.4 x 1 % and 6 x 1 %): both fire.
    let firing = wait_until("both burn-rate alerts firing", Duration::from_secs(15), || {
        let alerts = prom.api("/api/v1/alerts");
        let names: Vec<String> = alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing" && a["labels"]["business_transaction_name"] == TXN)
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect();
        (names.len() == 2, names)
    });
    assert!(firing.contains(&"BusinessTransactionErrorBudgetBurnFast".to_string()), "{firing:?}");
    assert!(firing.contains(&"BusinessTransactionErrorBudgetBurnSlow".to_string()), "{firing:?}");

    // The lexer finds what a query reads (and only that).
    assert_eq!(
        metric_names(r#"sum by (le) (rate(a_b:c{x="y(z)"}[5m])) / on (x) group_left d or 0 * e offset 1m"#),
        ["a_b:c", "d", "e"]
    );
    check_dashboard(&prom);

    // Every rule group loaded and evaluates without an error.
    let rules = prom.api("/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{rules:#}");
    for r in groups.iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        assert_eq!(r["health"], "ok", "{r:#}");
    }
    let log = std::fs::read_to_string(&prom.log).unwrap();
    let complaints: Vec<&str> = log.lines().filter(|l| l.contains("level=warn") || l.contains("level=error")).collect();
    assert!(complaints.is_empty(), "Prometheus complained:\n{}", complaints.join("\n"));
    for a in agents {
        a.assert_no_drops();
    }
    agent_a.stop();
    agent_b.stop();
}
