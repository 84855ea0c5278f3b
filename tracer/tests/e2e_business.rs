//! End-to-end business view on the real kernel: a python shop
//! (tests/fixtures/shop.py: /checkout calls a stock service, then answers
//! after a delay the caller picks, 500 when asked; /search) in its own
//! network namespace, watched by an agent with `--netns` (other tests'
//! traffic stays out), driven by a load generator in this test that
//! records its own latencies and statuses. Checked: the agent's count,
//! error rate, Apdex and p95 per transaction equal the client's (p95 within
//! the sketch's 1 % plus the client's own connect and read time); the
//! transaction's downstream spans carry business.transaction.name; an
//! SLO burn alert fires once errors are injected; /metrics and the OTLP
//! receiver get the business metrics.

mod common;

use std::{collections::BTreeMap, process::Command, thread, time::Duration};

use common::{shop::*, *};
use serde_json::Value;

const SHOP: &str = "bizshop";
const STOCK: &str = "bizstock";
/// The rule's Apdex T.
const T_MS: f64 = 100.0;

/// Delays (ms) the load cycles through, each at least `MARGIN_MS` from T and 4T:
/// the client's latency also holds its connect and the server's accept and
/// thread start (a few ms, more under load), which the server's span cannot
/// see; the margin keeps both on the same Apdex class for every request.
const DELAYS: [u64; 12] = [5, 10, 20, 30, 40, 50, 150, 200, 250, 300, 500, 600];
const MARGIN_MS: f64 = 50.0;

/// What the client measured for one transaction.
#[derive(Debug)]
struct Truth {
    count: u64,
    errors: u64,
    apdex: f64,
    p95_ms: f64,
}

fn truth(samples: &[Sample], path: &str) -> Truth {
    let s: Vec<&Sample> = samples.iter().filter(|s| s.path == path).collect();
    let errors = s.iter().filter(|s| s.status >= 500).count() as u64;
    let (mut sat, mut tol) = (0.0, 0.0);
    for x in &s {
        if x.status < 500 && x.ms <= T_MS {
            sat += 1.0;
        } else if x.status < 500 && x.ms <= 4.0 * T_MS {
            tol += 1.0;
        }
    }
    let mut ms: Vec<f64> = s.iter().map(|x| x.ms).collect();
    ms.sort_by(f64::total_cmp);
    // The rank DDSketch reads: ⌊q·(n−1)⌋.
    let p95_ms = ms[(0.95 * (ms.len() - 1) as f64) as usize];
    Truth { count: s.len() as u64, errors, apdex: (sat + tol / 2.0) / s.len() as f64, p95_ms }
}

/// The agent's KPIs of `name` equal the client's own. `overhead`: the most
/// any request's client latency exceeded its chosen delay (the server's
/// span lies between the two), so the k-th fastest request differs between
/// client and server by at most that.
fn assert_kpis(t: &Value, want: &Truth, overhead: f64) {
    let k = &t["kpis"];
    let ctx = format!("agent {k}\nclient {want:?}");
    assert!(
        overhead < MARGIN_MS,
        "the client waited up to {overhead:.1} ms more than the delays it chose (machine overloaded?): \
         client and server may then put a request in different Apdex classes"
    );
    assert_eq!(k["count"].as_u64(), Some(want.count), "{ctx}");
    assert_eq!(k["errors"].as_u64(), Some(want.errors), "{ctx}");
    let apdex = k["apdex"].as_f64().unwrap();
    assert!((apdex - want.apdex).abs() < 1e-9, "Apdex: {ctx}");
    // The agent times the server (request's first byte to response's last);
    // the client adds its connect, the accept and its read (`overhead`), and
    // the sketch its relative error.
    let p95 = k["p95_ms"].as_f64().unwrap();
    let slack = want.p95_ms * 0.01 + overhead;
    assert!((p95 - want.p95_ms).abs() <= slack, "p95 {p95} vs client {} (± {slack}): {ctx}", want.p95_ms);
}

fn alert<'a>(t: &'a Value, slo: &str, rule: &str) -> &'a Value {
    let s = t["slos"].as_array().unwrap().iter().find(|s| s["kind"] == slo).unwrap();
    s["alerts"].as_array().unwrap().iter().find(|a| a["rule"] == rule).unwrap_or(&Value::Null)
}

/// Business metrics at the receiver: (metric, slo.name or transaction,
/// extra) -> the newest value (histograms: count; gauges: value).
fn at_receiver(rx: &OtlpReceiver) -> BTreeMap<(String, String, String), f64> {
    let mut out = BTreeMap::new();
    for r in rx.requests().iter().filter(|r| r["signal"] == "metrics") {
        for rm in r["request"]["resourceMetrics"].as_array().into_iter().flatten() {
            // The business scope only (the topology's metrics come too).
            for sm in rm["scopeMetrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|sm| sm["scope"]["name"] == "tracer.business")
            {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap().to_string();
                    let (points, hist) = match (m.get("histogram"), m.get("gauge")) {
                        (Some(h), _) => (&h["dataPoints"], true),
                        (_, Some(g)) => (&g["dataPoints"], false),
                        _ => continue,
                    };
                    for p in points.as_array().into_iter().flatten() {
                        let a: BTreeMap<String, String> = p["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|kv| {
                                let v = &kv["value"];
                                let s = v["stringValue"]
                                    .as_str()
                                    .map(str::to_string)
                                    .or_else(|| v["boolValue"].as_bool().map(|b| b.to_string()))
                                    .unwrap_or_default();
                                (kv["key"].as_str().unwrap().to_string(), s)
                            })
                            .collect();
                        let txn = a.get("slo.name").or(a.get("business.transaction.name")).cloned().unwrap_or_default();
                        let extra = match name.as_str() {
                            "business.transaction.duration" => {
                                format!("{} {} error={}", a["service.name"], a["service.version"], a["error"])
                            }
                            "slo.burn_rate" => a["slo.window"].clone(),
                            _ => String::new(),
                        };
                        let v = if hist {
                            p["count"]
                                .as_str()
                                .map_or_else(|| p["count"].as_f64().unwrap_or(0.0), |s| s.parse().unwrap())
                        } else {
                            p["asDouble"].as_f64().unwrap_or(0.0)
                        };
                        out.insert((name.clone(), txn, extra), v);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn transactions_kpis_slo_alert_and_metrics_match_the_clients_truth() {
    let ns = Namespace::create("biz");
    let net = ns.name.clone();
    let (shop_port, stock_port) = (free_port(), free_port());
    let _stock = python_in(&net, &[stock_port.to_string()], &[("OTEL_SERVICE_NAME", STOCK)]);
    let _shop = python_in(
        &net,
        &[shop_port.to_string(), stock_port.to_string()],
        &[("OTEL_SERVICE_NAME", SHOP), ("OTEL_RESOURCE_ATTRIBUTES", "service.version=1.4.2")],
    );
    let config = std::env::temp_dir().join(format!("tracer-e2e-business-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
[[business.transactions]]
name = "checkout"
service = "{SHOP}"
method = "GET"
route = "/checkout"
apdex_t_ms = {T_MS}
targets = {{ p95_ms = 5000, error_rate = 0.05 }}
# Latency SLO out of the way (every delay is under 1 s): the only alert is availability's.
slo = {{ availability = 99.0, latency = 99.0, latency_ms = 1000, window = "7d" }}

[[business.transactions]]
name = "search"
service = "{SHOP}"
route = "/search*"
apdex_t_ms = {T_MS}
"#
        ),
    )
    .unwrap();
    let status = Command::new(TRACER).arg("check-config").arg(&config).status().unwrap();
    assert!(status.success(), "tracer check-config accepts the test's rules");
    let rx = OtlpReceiver::start();
    let endpoint = format!("http://127.0.0.1:{}", rx.grpc);
    let agent = Agent::start_env(
        &["--netns", &ns.path(), "--config", config.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );

    // Phase 1: 196 checkouts (2 of them 500s) and 70 searches.
    let mut reqs: Vec<(&'static str, String)> = (0..196)
        .map(|i| {
            let d = DELAYS[(i * 5) % DELAYS.len()];
            ("checkout", format!("/checkout?d={d}&fail={}", u8::from(i % 98 == 97)))
        })
        .collect();
    reqs.extend((0..70).map(|i| ("search", format!("/search?d={}", DELAYS[i % 6]))));
    // Shuffled (a fixed permutation), so slow and fast requests overlap.
    let n = reqs.len();
    let reqs: Vec<_> = (0..n).map(|i| reqs[(i * 97) % n].clone()).collect();
    let mut samples = load(&net, shop_port, reqs, 4);
    let (checkout, search) = (truth(&samples, "checkout"), truth(&samples, "search"));
    eprintln!("client truth: checkout {checkout:?}, search {search:?}");
    let overhead = |samples: &[Sample]| {
        samples
            .iter()
            .filter_map(|s| {
                let d: f64 = s.target.split("d=").nth(1)?.split('&').next()?.parse().ok()?;
                Some(s.ms - d)
            })
            .fold(0.0f64, f64::max)
    };
    eprintln!("client latency above the chosen delay: at most {:.1} ms", overhead(&samples));
    assert_eq!((checkout.count, checkout.errors, search.count), (196, 2, 70));

    let got = wait_until("both transactions counted in /api/transactions", Duration::from_secs(20), || {
        let t = transactions(&agent);
        let n = |k: &str| t.get(k).and_then(|x| x["kpis"]["count"].as_u64());
        (n("checkout") == Some(checkout.count) && n("search") == Some(search.count), t)
    });
    assert_eq!(got.keys().collect::<Vec<_>>(), ["checkout", "search"], "only the rules' transactions");
    let c = &got["checkout"];
    eprintln!("agent checkout (phase 1): {}", c["kpis"]);
    assert_kpis(c, &checkout, overhead(&samples));
    assert_kpis(&got["search"], &search, overhead(&samples));
    assert_eq!(c["source"], "rule");
    assert_eq!(c["apdex_t_ms"], 100);
    assert_eq!(c["versions"][0]["service"], SHOP);
    assert_eq!(c["versions"][0]["version"], "1.4.2");
    let targets: BTreeMap<&str, bool> =
        c["targets"].as_array().unwrap().iter().map(|t| (t["kpi"].as_str().unwrap(), t["met"] == true)).collect();
    assert_eq!(targets, BTreeMap::from([("error_rate", true), ("p95_ms", true)]), "{}", c["targets"]);
    // 1 % errors burn the 99 % budget at 1x: no alert.
    thread::sleep(Duration::from_secs(11)); // one SLO evaluation (every 10 s)
    let c = &transactions(&agent)["checkout"];
    assert_eq!(alert(c, "availability", "page")["firing"], false, "{}", c["slos"]);

    // Downstream spans carry the transaction: shop's call to stock and
    // stock's SERVER span; the stock SERVER span is no transaction of its own.
    let spans = agent.spans();
    let txn_of = |v: &Value| attr(v, "business.transaction.name").as_str().map(str::to_string);
    let stock_server: Vec<&Value> = spans.iter().filter(|v| v["service"] == STOCK && v["kind"] == "server").collect();
    let carried = stock_server.iter().filter(|v| txn_of(v).as_deref() == Some("checkout")).count();
    eprintln!("stock SERVER spans carrying business.transaction.name=checkout: {carried}/{}", stock_server.len());
    assert!(stock_server.len() >= 196, "every checkout called stock: {}", stock_server.len());
    assert!(carried as f64 >= 0.9 * stock_server.len() as f64, "{carried}/{}", stock_server.len());
    assert!(stock_server.iter().all(|v| txn_of(v).is_none_or(|n| n == "checkout")));
    let shop_calls = spans.iter().filter(|v| v["service"] == SHOP && v["kind"] == "client");
    assert!(shop_calls.clone().filter(|v| txn_of(v).as_deref() == Some("checkout")).count() >= carried);
    let load_client = spans.iter().filter(|v| v["kind"] == "client" && v["service"] != SHOP && v["service"] != STOCK);
    assert!(load_client.clone().all(|v| txn_of(v).is_none()), "the load generator's calls are above the entry");

    // Phase 2: inject errors: 60 failing checkouts.
    let injected: Vec<(&'static str, String)> = (0..60).map(|_| ("checkout", "/checkout?d=5&fail=1".into())).collect();
    samples.extend(load(&net, shop_port, injected, 4));
    let checkout = truth(&samples, "checkout");
    assert_eq!((checkout.count, checkout.errors), (256, 62));
    // 62/256 = 24 % errors: burn 24 > 14.4 over 1 h and 5 min: the page fires.
    let got = wait_until("the availability page alert", Duration::from_secs(30), || {
        let t = transactions(&agent);
        let fired = t.get("checkout").is_some_and(|c| {
            c["kpis"]["count"].as_u64() == Some(checkout.count) && alert(c, "availability", "page")["firing"] == true
        });
        (fired, t.get("checkout").cloned())
    });
    let c = got.unwrap();
    eprintln!("agent checkout (phase 2): {}\nslos {}", c["kpis"], c["slos"]);
    assert_kpis(&c, &checkout, overhead(&samples));
    assert!(alert(&c, "availability", "page")["since"].is_string());
    let avail = c["slos"].as_array().unwrap().iter().find(|s| s["kind"] == "availability").unwrap();
    let burn = avail["burn_rates"]["1h"].as_f64().unwrap();
    let want_burn = (checkout.errors as f64 / checkout.count as f64) / 0.01;
    assert!((burn - want_burn).abs() < 1e-6, "burn {burn} vs {want_burn}");
    assert!(avail["budget_remaining"].as_f64().unwrap() < 0.0, "the budget is overspent: {avail}");
    let targets: BTreeMap<&str, bool> =
        c["targets"].as_array().unwrap().iter().map(|t| (t["kpi"].as_str().unwrap(), t["met"] == true)).collect();
    assert!(!targets["error_rate"], "24 % > 5 %");
    // The detail: 1-minute points summing to the count.
    let (code, body) = http_get(agent.api, "/api/transactions/checkout?window=1h&version=1.4.2").unwrap();
    assert_eq!(code, 200, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    let points: u64 = d["points"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(points, checkout.count, "{d}");
    assert_eq!(http_get(agent.api, "/api/transactions/nope").unwrap().0, 404);
    assert_eq!(http_get(agent.api, "/api/transactions?window=2w").unwrap().0, 400);

    // /metrics, Prometheus names.
    let m = agent.metrics();
    let l = |e: bool| {
        format!(r#"{{business_transaction_name="checkout",service_name="{SHOP}",service_version="1.4.2",error="{e}"}}"#)
    };
    let ok = agent.metric(&format!("business_transaction_duration_seconds_count{}", l(false)));
    let failed = agent.metric(&format!("business_transaction_duration_seconds_count{}", l(true)));
    assert_eq!((ok, failed), (checkout.count - checkout.errors, checkout.errors), "{m}");
    assert_eq!(agent.metric(r#"slo_alert_firing{slo_name="checkout availability",rule="page"}"#), 1, "{m}");
    assert!(m.contains("# HELP business_transaction_apdex "), "{m}");
    assert!(m.contains(r#"slo_burn_rate{slo_name="checkout availability",slo_window="1h"}"#), "{m}");
    // promtool finds nothing to say about the families with business series in them.
    let path = std::env::temp_dir().join(format!("tracer-e2e-business-{}.metrics", std::process::id()));
    std::fs::write(&path, &m).unwrap();
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect("running promtool (apt install prometheus)");
    let said = String::from_utf8_lossy(&lint.stdout).to_string() + &String::from_utf8_lossy(&lint.stderr);
    assert!(lint.status.success() && said.trim().is_empty(), "promtool check metrics: {}\n{said}", lint.status);
    let _ = std::fs::remove_file(&path);

    // OTLP: the same at the receiver.
    let key = |metric: &str, txn: &str, extra: &str| (metric.to_string(), txn.to_string(), extra.to_string());
    let got = wait_until("the business metrics at the OTLP receiver", Duration::from_secs(15), || {
        let got = at_receiver(&rx);
        let done = got.get(&key("business.transaction.duration", "checkout", &format!("{SHOP} 1.4.2 error=true")))
            == Some(&(checkout.errors as f64));
        (done, got)
    });
    assert_eq!(
        got[&key("business.transaction.duration", "checkout", &format!("{SHOP} 1.4.2 error=false"))],
        (checkout.count - checkout.errors) as f64
    );
    assert!(got.contains_key(&key("business.transaction.apdex", "checkout", "")), "{got:#?}");
    assert!(got.contains_key(&key("slo.error_budget.remaining", "checkout availability", "")), "{got:#?}");
    let rx_burn = got[&key("slo.burn_rate", "checkout availability", "1h")];
    assert!((rx_burn - want_burn).abs() < 1e-6, "{rx_burn}");
    assert!(agent.all_output().contains("SLO burn-rate alert firing"), "the transition is logged");
    agent.assert_no_drops();
    agent.stop();
    let _ = std::fs::remove_file(&config);
}

/// With no rules, each entry route is a transaction named
/// `{service} {method} {route}`; the stock service, called only from inside
/// checkout, is none.
#[test]
fn without_rules_entry_routes_are_the_transactions() {
    let ns = Namespace::create("bizd");
    let net = ns.name.clone();
    let (shop_port, stock_port) = (free_port(), free_port());
    let _stock = python_in(&net, &[stock_port.to_string()], &[("OTEL_SERVICE_NAME", STOCK)]);
    let _shop = python_in(&net, &[shop_port.to_string(), stock_port.to_string()], &[("OTEL_SERVICE_NAME", SHOP)]);
    let agent = Agent::start(&["--netns", &ns.path()]);
    let mut reqs: Vec<(&'static str, String)> = (0..20).map(|_| ("checkout", "/checkout?d=1".to_string())).collect();
    reqs.extend((0..10).map(|_| ("search", "/search?d=1".to_string())));
    load(&net, shop_port, reqs, 4);
    let (checkout, search) = (format!("{SHOP} GET /checkout"), format!("{SHOP} GET /search"));
    let got = wait_until("the default transactions", Duration::from_secs(20), || {
        let t = transactions(&agent);
        let n = |k: &str| t.get(k).and_then(|x| x["kpis"]["count"].as_u64());
        (n(&checkout) == Some(20) && n(&search) == Some(10), t)
    });
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), [checkout.clone(), search], "stock is no entry");
    assert_eq!(got[&checkout]["source"], "default");
    let version = got[&checkout]["versions"][0]["version"].as_str().unwrap_or_default().to_string();
    assert!(version.starts_with("build-"), "no service.version declared: the executable's build ({version})");
    let (code, body) = http_get(agent.api, &format!("/api/transactions/{}", checkout.replace(' ', "%20"))).unwrap();
    assert_eq!(code, 200, "{body}");
    agent.stop();
}
