//! End-to-end operability: the real agent (real probes) watched by real
//! programs. Checked: /metrics answers Prometheus text 0.0.4 or OpenMetrics
//! as curl's Accept header asks; Debian's promtool finds nothing to say
//! about the 0.0.4 text; Debian's Prometheus scrapes the agent (target up,
//! no error, every family with its help); the OTLP metrics carry the agent's
//! OTEL_RESOURCE_ATTRIBUTES as its spans do; an invalid `[http.routes]` rule
//! is refused by `tracer check-config` and by `tracer run` before anything
//! starts, naming the key; a stage that fails at run time (stdout closed
//! under the output stage) is logged, /readyz turns 503 naming it, closed
//! queues are not counted as full, and the agent exits non-zero.

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-e2e-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `curl -sS -D -` of /metrics with `accept` (none when None): (Content-Type, body).
fn scrape(api: SocketAddr, accept: Option<&str>) -> (String, String) {
    let headers = tmp("headers.txt");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "-D"]).arg(&headers);
    if let Some(a) = accept {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    let out = cmd.arg(format!("http://{api}/metrics")).output().expect("running curl");
    assert!(out.status.success(), "curl /metrics: {}", String::from_utf8_lossy(&out.stderr));
    let h = std::fs::read_to_string(&headers).unwrap();
    let ct = h
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no Content-Type in {h}"))
        .trim()
        .to_string();
    (ct, String::from_utf8(out.stdout).unwrap())
}

/// Traffic only this test makes: curl to python's http.server inside its own
/// network namespace (the agent watches only that one).
struct Traffic {
    ns: Namespace,
    port: u16,
    _server: Proc,
}

impl Traffic {
    fn start(tag: &str) -> Traffic {
        let ns = Namespace::create(tag);
        let port = free_port();
        let server = http_server("127.0.0.1", port, Some(&ns.name), &site(64));
        Traffic { ns, port, _server: server }
    }

    fn requests(&self, n: usize) {
        for _ in 0..n {
            let r = curl(&format!("http://127.0.0.1:{}/index.html", self.port), Some(&self.ns.name), &[]);
            assert_eq!(r.http_code, 200);
        }
    }
}

/// Family names declared by `# TYPE` lines, with their type.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

#[test]
fn metrics_negotiated_linted_and_scraped_by_prometheus() {
    let traffic = Traffic::start("ops");
    let rx = OtlpReceiver::start();
    let endpoint = format!("http://127.0.0.1:{}", rx.grpc);
    let agent = Agent::start_env(
        &["--netns", &traffic.ns.path()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    // Traffic first, so the service graph, the store and the OTLP exporter
    // have series: the lint sees every kind of family the agent writes.
    traffic.requests(3);
    wait_until("the curl -> python3 edge on /metrics", Duration::from_secs(15), || {
        let m = scrape(agent.api, None).1;
        (m.contains("traces_service_graph_request_total{client=\"curl\""), ())
    });

    // Content negotiation, as curl asks.
    let (ct_text, text) = scrape(agent.api, Some("text/plain;version=0.0.4"));
    assert_eq!(ct_text, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "0.0.4 has no EOF or UNIT:\n{text}");
    let (ct_om, om) = scrape(agent.api, Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(ct_om, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert_eq!(scrape(agent.api, None).0, ct_text, "no Accept: the 0.0.4 text");
    // Both carry the same families: OpenMetrics names a counter without _total.
    let om_families = families(&om);
    let text_families = families(&text);
    let om_as_text: BTreeMap<String, String> = om_families
        .iter()
        .map(|(n, t)| match t.as_str() {
            "counter" => (format!("{n}_total"), t.clone()),
            _ => (n.clone(), t.clone()),
        })
        .collect();
    assert_eq!(text_families, om_as_text);
    assert!(text_families.len() >= 20, "{text_families:#?}");
    // Every family has a HELP line with text, in both formats.
    for (body, fams) in [(&text, &text_families), (&om, &om_families)] {
        for name in fams.keys() {
            let help = body.lines().find_map(|l| l.strip_prefix(&format!("# HELP {name} ")));
            assert!(help.is_some_and(|h| !h.trim().is_empty()), "{name} has no HELP text");
        }
    }

    // promtool: nothing to complain about (it reads the 0.0.4 text).
    let path = tmp("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect("running promtool (apt install prometheus)");
    let said = String::from_utf8_lossy(&lint.stdout).to_string() + &String::from_utf8_lossy(&lint.stderr);
    assert!(lint.status.success() && said.trim().is_empty(), "promtool check metrics: {}\n{said}", lint.status);

    // A real Prometheus scrapes it every second.
    let prom_port = free_port();
    let prom_dir = tmp("prometheus");
    let _ = std::fs::remove_dir_all(&prom_dir);
    std::fs::create_dir_all(&prom_dir).unwrap();
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tracer\n    static_configs:\n      - targets: ['{}']\n",
            agent.api
        ),
    )
    .unwrap();
    let log_path = prom_dir.join("prometheus.log");
    let _prom = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("starting prometheus (apt install prometheus)"),
    );
    wait_listening(&format!("127.0.0.1:{prom_port}"), None);
    let prom: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    // Prometheus listens before its TSDB is open and answers 503 until then.
    wait_until("Prometheus ready (/-/ready)", Duration::from_secs(60), || {
        (http_get(prom, "/-/ready").is_ok_and(|(status, _)| status == 200), ())
    });
    let api = |path: &str| -> Value {
        let (status, body) = http_get(prom, path).expect("GET Prometheus API");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("Prometheus answers JSON")
    };
    let instance = agent.api.to_string();
    // Three scrapes done: up, and the last one without an error.
    let target = wait_until("the agent's target scraped 3 times", Duration::from_secs(30), || {
        let t = api("/api/v1/targets");
        let ours = t["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["labels"]["instance"] == instance.as_str())
            .cloned();
        let scraped = api(&format!("/api/v1/query?query=count_over_time(up{{instance=\"{instance}\"}}[1m])"));
        let n = scraped["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        (ours.is_some() && n >= 3, (ours, n))
    });
    let target = target.0.unwrap();
    assert_eq!(target["health"], "up", "{target:#}");
    assert_eq!(target["lastError"], "", "{target:#}");
    let up = api(&format!("/api/v1/query?query=up{{instance=\"{instance}\"}}"));
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up:#}");
    // Prometheus kept every family with its type and help (it negotiated
    // OpenMetrics, so families are named as there).
    let meta = api("/api/v1/metadata");
    for (name, kind) in &om_families {
        let m = &meta["data"][name.as_str()][0];
        assert_eq!(m["type"], kind.as_str(), "{name} in Prometheus' metadata: {m}");
        assert!(m["help"].as_str().is_some_and(|h| !h.is_empty()), "{name}: no help in Prometheus: {m}");
    }
    // A value scraped equals the agent's own.
    let attached = agent.metric("tracer_probes_attached ");
    assert!(attached > 0);
    let q = api(&format!("/api/v1/query?query=tracer_probes_attached{{instance=\"{instance}\"}}"));
    assert_eq!(q["data"]["result"][0]["value"][1], attached.to_string(), "{q:#}");
    // And Prometheus logged no warning or error about the scrapes.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let complaints: Vec<&str> = log.lines().filter(|l| l.contains("level=warn") || l.contains("level=error")).collect();
    assert!(complaints.is_empty(), "Prometheus complained:\n{}", complaints.join("\n"));
    agent.stop();
}

/// The `stringValue` attributes of an OTLP resource.
fn resource_attrs(resource: &Value) -> BTreeMap<String, String> {
    resource["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_string(), kv["value"]["stringValue"].as_str()?.to_string())))
        .collect()
}

#[test]
fn otlp_metrics_carry_the_agents_resource_attributes_like_spans() {
    let traffic = Traffic::start("res");
    let rx = OtlpReceiver::start();
    let endpoint = format!("http://127.0.0.1:{}", rx.grpc);
    let cluster = format!("ops-{}", std::process::id());
    let resource = format!("deployment.environment=e2e-ops,k8s.cluster.name={cluster},service.name=not-a-rename");
    let agent = Agent::start_env(
        &["--netns", &traffic.ns.path()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_RESOURCE_ATTRIBUTES", resource.as_str()),
        ],
    );
    traffic.requests(2);
    let (spans, metrics) = wait_until("span and metric resources at the receiver", Duration::from_secs(20), || {
        let mut spans = Vec::new();
        let mut metrics = Vec::new();
        for r in rx.requests() {
            let (list, out) = match r["signal"].as_str() {
                Some("traces") => ("resourceSpans", &mut spans),
                Some("metrics") => ("resourceMetrics", &mut metrics),
                _ => continue,
            };
            for rs in r["request"][list].as_array().into_iter().flatten() {
                out.push(resource_attrs(&rs["resource"]));
            }
        }
        // Our spans: the server is python's http.server, the client curl.
        let ours = |a: &BTreeMap<String, String>| a.get("service.name").is_some_and(|s| s == "curl" || s == "python3");
        let done = spans.iter().filter(|a| ours(a)).count() >= 2 && !metrics.is_empty();
        (done, (spans, metrics))
    });
    let want = [("deployment.environment", "e2e-ops"), ("k8s.cluster.name", cluster.as_str())];
    for a in spans.iter().filter(|a| a["service.name"] == "curl" || a["service.name"] == "python3") {
        for (k, v) in want {
            assert_eq!(a.get(k).map(String::as_str), Some(v), "span resource {a:#?}");
        }
    }
    for a in &metrics {
        for (k, v) in want {
            assert_eq!(a.get(k).map(String::as_str), Some(v), "metrics resource {a:#?}");
        }
        // The agent's own keys stay its own, as on spans.
        assert_eq!(a["service.name"], "tracer", "{a:#?}");
        assert_eq!(a["telemetry.distro.name"], "tracer", "{a:#?}");
        assert_eq!(a["host.name"], std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim());
    }
    assert!(spans.iter().all(|a| a["service.name"] != "not-a-rename"), "{spans:#?}");
    agent.stop();
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let path = tmp(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(path: &Path) -> (bool, String, String) {
    let out = Command::new(TRACER).args(["check-config"]).arg(path).output().expect("running tracer check-config");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn invalid_route_rule_is_refused_at_load_naming_the_key() {
    let bad = write_config("bad-route.toml", "[http.routes]\nrules = [\"/users/{id}\", \"api/v1/*\"]\n");
    let (ok, _, err) = check_config(&bad);
    assert!(!ok, "check-config accepted {bad:?}");
    assert!(err.contains("http.routes.rules[1]") && err.contains("api/v1/*"), "{err}");

    // `tracer run -c` stops before anything starts: no probe, no stage.
    let started = Instant::now();
    let (status, err) = tracer_fails(&["-c", bad.to_str().unwrap()], &[]);
    assert!(!status.success(), "{status}");
    assert!(err.contains("http.routes.rules[1]") && err.contains("api/v1/*"), "{err}");
    assert!(!err.contains("tracing TCP connections"), "it started anyway:\n{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // An unknown key is named too; the shipped example passes.
    let typo = write_config("typo.toml", "[http.routes]\nrule = [\"/x\"]\n");
    let (ok, _, err) = check_config(&typo);
    assert!(!ok && err.contains("rule"), "{err}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tracer.toml");
    let (ok, out, err) = check_config(&example);
    assert!(ok && out.contains(": ok"), "{out}{err}");
}

#[test]
fn stage_failing_at_run_time_is_reported_and_ends_the_agent() {
    let traffic = Traffic::start("die");
    // Long enough to look at the agent between the failure and its exit.
    let cfg = write_config("linger.toml", "[api]\nfailure_linger_ms = 6000\n");
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(TRACER)
        .args(["run", "-c", cfg.to_str().unwrap(), "--output", "json", "--api-addr", &api.to_string()])
        .args(["--netns", &traffic.ns.path()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the tracer");
    let stderr = Arc::new(Mutex::new(String::new()));
    let e = stderr.clone();
    let err = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[tracer] {line}");
            e.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let _guard = scopeguard(&mut child);
    let _ = wait_until("/readyz 200", Duration::from_secs(60), || {
        let r = http_get(api, "/readyz");
        (matches!(r, Ok((200, _))), r.map_err(|e| e.to_string()))
    });
    // A real fault: whoever read the agent's stdout is gone (a log shipper
    // that died); the next line written gets EPIPE.
    drop(_guard.0.stdout.take());
    traffic.requests(2);
    let body = wait_until("/readyz 503 naming the output stage", Duration::from_secs(15), || {
        let r = http_get(api, "/readyz").map_err(|e| e.to_string());
        (matches!(&r, Ok((503, b)) if b.contains("output")), r)
    })
    .unwrap()
    .1;
    assert!(body.contains("stage output failed") && body.contains("Broken pipe"), "{body}");
    // Records still coming are dropped as `closed`, not as a full queue.
    traffic.requests(3);
    let m = http_get(api, "/metrics").unwrap().1;
    let value =
        |series: &str| m.lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok()).map(|v| v as u64);
    let closed = value("tracer_events_dropped_total{stage=\"chain_to_export\",reason=\"closed\"}");
    assert!(closed.is_some_and(|n| n >= 1), "closed drops: {closed:?}\n{m}");
    let full = value("tracer_events_dropped_total{stage=\"chain_to_export\",reason=\"queue_full\"}");
    assert!(full.is_none_or(|n| n == 0), "counted as queue_full: {full:?}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = _guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not exit after its stage failed");
        thread::sleep(Duration::from_millis(100));
    };
    thread::sleep(Duration::from_millis(200));
    let log = stderr.lock().unwrap().clone();
    assert!(!status.success(), "exit status {status}\n{log}");
    let logged = log.lines().find(|l| l.contains("ERROR") && l.contains("stage failed")).unwrap_or_default();
    assert!(logged.contains("\"output\"") && logged.contains("Broken pipe"), "{log}");
    assert!(log.contains("tracer: stage output failed: writing to stdout"), "{log}");
}

/// Kills the agent if the test panics before it exits.
struct Guard<'a>(&'a mut std::process::Child);

fn scopeguard(c: &mut std::process::Child) -> Guard<'_> {
    Guard(c)
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
