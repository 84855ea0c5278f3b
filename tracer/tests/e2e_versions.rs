//! End-to-end versions compared on the real kernel, in one network
//! namespace watched by one agent (`--netns`), every service a real python
//! process (tests/fixtures/versioned.py) whose version comes from its own
//! OTEL_RESOURCE_ATTRIBUTES:
//!
//! - canary: nginx's `split_clients` sends 80 % to 1.0 and 20 % to 1.1,
//!   which is 30 ms slower and fails every 8th payment: `worse` on latency
//!   and errors, the request counts equal what the client saw answered by
//!   each version (X-Served-By), `tracer compare --fail-on worse` exits 2;
//! - A/A: the same code under two versions, half each: `no_difference`,
//!   `tracer compare --fail-on worse` exits 0;
//! - too little traffic: `insufficient_data`;
//! - rolling replacement: 3.0 serves, stops, 3.1 (slower) takes over: one
//!   rollout detected with the processes of each side, compared on its own
//!   once its window is over (`worse`), its verdict on /metrics and at the
//!   OTLP receiver; the canary's versions, started together, are no rollout.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// One answer as the client saw it.
#[derive(Clone, Debug)]
struct Answer {
    version: String,
    status: u16,
    ms: f64,
}

fn versioned(ns: &str, port: u16, service: &str, version: &str, env: &[(&str, &str)]) -> Proc {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/versioned.py");
    let attrs = format!("service.version={version},deployment.environment.name=e2e");
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "python3", script, &port.to_string()])
            .env("OTEL_SERVICE_NAME", service)
            .env("OTEL_RESOURCE_ATTRIBUTES", &attrs)
            .env("VERSION", version)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tests/fixtures/versioned.py"),
    );
    wait_listening(&format!("127.0.0.1:{port}"), Some(ns));
    p
}

/// nginx (one process) on `port` splitting requests 80/20 between two
/// upstreams by `$request_id` (random per request).
fn nginx_split(ns: &str, port: u16, stable: u16, canary: u16) -> Proc {
    let dir = std::env::temp_dir().join(format!("tracer-e2e-versions-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let conf = format!(
        "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         upstream stable {{ server 127.0.0.1:{stable}; keepalive 8; }}\n\
         upstream canary {{ server 127.0.0.1:{canary}; keepalive 8; }}\n\
         split_clients \"${{request_id}}\" $pool {{ 80% stable; * canary; }}\n\
         server {{\n  listen 127.0.0.1:{port};\n  location / {{\n   proxy_pass http://$pool;\n\
         proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n  }}\n }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "nginx", "-c"])
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx"),
    );
    wait_listening(&format!("127.0.0.1:{port}"), Some(ns));
    p
}

/// GET `target` on a new connection to 127.0.0.1:`port`.
fn get(port: u16, target: &str) -> Answer {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let version =
        text.lines().find_map(|l| l.strip_prefix("X-Served-By: ")).map(|v| v.trim().to_string()).unwrap_or_default();
    Answer { version, status, ms }
}

/// Sends every (port, target) from `threads` threads inside `ns`, at most
/// `rate` requests per second in all (0: as fast as they answer).
fn load(ns: &str, requests: Vec<(u16, String)>, threads: usize, rate: f64) -> Vec<Answer> {
    let path = format!("/var/run/netns/{ns}");
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let chunk: Vec<(u16, String)> = requests.iter().skip(t).step_by(threads).cloned().collect();
            let path = path.clone();
            thread::spawn(move || {
                let f = std::fs::File::open(&path).unwrap();
                // SAFETY: a valid namespace fd; only this thread moves.
                let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                let gap = if rate > 0.0 { Duration::from_secs_f64(threads as f64 / rate) } else { Duration::ZERO };
                let start = Instant::now();
                chunk
                    .into_iter()
                    .enumerate()
                    .map(|(i, (port, target))| {
                        if let Some(wait) = (start + gap * i as u32).checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                        get(port, &target)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

fn by_version(answers: &[Answer]) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for a in answers {
        let e = m.entry(a.version.clone()).or_insert((0, 0));
        e.0 += 1;
        e.1 += u64::from(a.status >= 500);
    }
    m
}

/// The client's median latency of the requests `version` answered.
fn p50_ms(answers: &[Answer], version: &str) -> f64 {
    let mut ms: Vec<f64> = answers.iter().filter(|a| a.version == version).map(|a| a.ms).collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn compare(agent: &Agent, service: &str, baseline: &str, candidate: &str) -> (u16, Value) {
    let q = format!("/api/compare?service={service}&baseline={baseline}&candidate={candidate}&window=10m");
    let (code, body) = http_get(agent.api, &q).expect("GET /api/compare");
    (code, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn kpi<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["service_kpis"]["kpis"].as_array().unwrap().iter().find(|k| k["kpi"] == name).unwrap_or(&Value::Null)
}

/// `tracer compare` against the agent: (exit code, stdout).
fn tracer_compare(agent: &Agent, service: &str, baseline: &str, candidate: &str) -> (i32, String) {
    let out = Command::new(TRACER)
        .args(["compare", "--api", &format!("http://{}", agent.api), "--service", service])
        .args(["--baseline", baseline, "--candidate", candidate, "--window", "10m", "--fail-on", "worse"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn versions_are_compared_and_rollouts_detected() {
    let net = Namespace::create("ver");
    let ns = net.name.clone();
    let config = std::env::temp_dir().join(format!("tracer-e2e-versions-{}.toml", std::process::id()));
    // A rollout's windows shortened to fit a test: the new version's first
    // 30 s against the old one's last 30 s (whole minutes each side).
    std::fs::write(
        &config,
        "[versions]\nmin_requests = 50\nrollout_min_age = \"10s\"\nrollout_delay = \"0s\"\nrollout_window = \"30s\"\n",
    )
    .unwrap();
    let rx = OtlpReceiver::start();
    let endpoint = format!("http://127.0.0.1:{}", rx.grpc);
    let agent = Agent::start_env(
        &["--netns", &net.path(), "--config", config.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );

    let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
    let (front, stable, canary, aa1, aa2, q1, q2, roll) =
        (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]);
    let _stable = versioned(&ns, stable, "canaryshop", "1.0", &[]);
    let _canary = versioned(&ns, canary, "canaryshop", "1.1", &[("EXTRA_MS", "30"), ("FAIL_EVERY", "8")]);
    let _nginx = nginx_split(&ns, front, stable, canary);
    let _aa1 = versioned(&ns, aa1, "steadyshop", "2.0", &[]);
    let _aa2 = versioned(&ns, aa2, "steadyshop", "2.0-same", &[]);
    let _q1 = versioned(&ns, q1, "quietshop", "5.0", &[]);
    let _q2 = versioned(&ns, q2, "quietshop", "5.1", &[]);
    let old = versioned(&ns, roll, "rollshop", "3.0", &[]);
    let old_pid = old.pid();

    // Phase 1 (about 35 s): the canary split, the A/A pair and the quiet
    // pair as fast as they answer; rollshop 3.0 at a steady 20/s meanwhile.
    let roll_ns = ns.clone();
    let roll_old = thread::spawn(move || {
        let reqs = (0..700).map(|i| (roll, format!("/browse/{i}"))).collect();
        load(&roll_ns, reqs, 4, 20.0)
    });
    let mut reqs: Vec<(u16, String)> =
        (0..1500).map(|i| (front, if i % 3 == 0 { format!("/browse/{i}") } else { format!("/pay/{i}") })).collect();
    // Each version gets every delay (ids in blocks of ten: alternating ids
    // would give one version the even delays and the other the odd ones).
    reqs.extend((0..600).map(|i| (if (i / 10) % 2 == 0 { aa1 } else { aa2 }, format!("/pay/{i}"))));
    reqs.extend((0..20).map(|i| (if i % 2 == 0 { q1 } else { q2 }, format!("/pay/{i}"))));
    let n = reqs.len();
    let reqs: Vec<_> = (0..n).map(|i| reqs[(i * 97) % n].clone()).collect();
    let answers = load(&ns, reqs, 8, 0.0);
    let roll_answers = roll_old.join().unwrap();
    assert!(roll_answers.iter().all(|a| a.status == 200 && a.version == "3.0"));

    // Phase 2: 3.1 replaces 3.0 (30 ms slower) and serves 40 s.
    drop(old);
    let new = versioned(&ns, roll, "rollshop", "3.1", &[("EXTRA_MS", "30")]);
    let new_pid = new.pid();
    let roll_new = thread::spawn({
        let ns = ns.clone();
        move || load(&ns, (0..800).map(|i| (roll, format!("/browse/{i}"))).collect(), 4, 20.0)
    });

    // Ground truth from the answers: which version served each request.
    let truth = by_version(&answers);
    eprintln!("client truth (version: requests, errors): {truth:?}");
    let (n10, e10) = truth["1.0"];
    let (n11, e11) = truth["1.1"];
    assert_eq!(e10, 0, "the stable version never fails");
    assert!(n11 > 150 && n11 < 450, "split_clients 80/20 of 1500 gave 1.1 {n11} requests");
    assert!(e11 > 0, "the canary fails every 8th payment");

    // The canary: worse on latency and on errors, counts as the client saw.
    let c = wait_until("the agent counted every canary request", Duration::from_secs(20), || {
        let (code, c) = compare(&agent, "canaryshop", "1.0", "1.1");
        let k = &c["service_kpis"];
        (code == 200 && k["baseline_requests"] == n10 && k["candidate_requests"] == n11, c)
    });
    eprintln!("canary comparison: {}", c["service_kpis"]);
    assert_eq!(c["verdict"], "worse", "{c}");
    for (name, verdict) in [("error_rate", "worse"), ("p50_ms", "worse"), ("p95_ms", "worse")] {
        assert_eq!(kpi(&c, name)["verdict"], verdict, "{name}: {}", kpi(&c, name));
    }
    let er = kpi(&c, "error_rate");
    assert!((er["candidate"].as_f64().unwrap() - e11 as f64 / n11 as f64).abs() < 1e-9, "{er}");
    assert_eq!(er["baseline"].as_f64(), Some(0.0), "{er}");
    assert_eq!(er["test"], "two_proportion_z", "{er}");
    let p50 = kpi(&c, "p50_ms");
    let shift = p50["candidate"].as_f64().unwrap() - p50["baseline"].as_f64().unwrap();
    let client_shift = p50_ms(&answers, "1.1") - p50_ms(&answers, "1.0");
    assert!(
        (shift - client_shift).abs() < 5.0,
        "the canary's p50 is {client_shift:.1} ms later for the client, {shift:.1} for the agent: {p50}"
    );
    assert!(p50["p_value"].as_f64().unwrap() < 0.01, "{p50}");
    let (code, table) = tracer_compare(&agent, "canaryshop", "1.0", "1.1");
    eprintln!("tracer compare (canary):\n{table}");
    assert_eq!(code, 2, "--fail-on worse exits 2 on a worse canary:\n{table}");
    assert!(table.contains("worse") && table.contains("error_rate"), "{table}");

    // The report of the window: versions side by side, the canary judged
    // against the most served one, the slowest traces; as CSV and HTML too.
    let (code, body) = http_get(agent.api, "/api/report?service=canaryshop").unwrap();
    assert_eq!(code, 200, "{body}");
    let rep: Value = serde_json::from_str(&body).unwrap();
    let svc = &rep["services"][0];
    assert_eq!(rep["services"].as_array().unwrap().len(), 1, "{rep}");
    assert_eq!(svc["baseline"], "1.0", "{svc}");
    let rows: Vec<(&str, u64, Value)> = svc["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_str().unwrap(), v["kpis"]["count"].as_u64().unwrap(), v["verdict"].clone()))
        .collect();
    assert_eq!(rows, vec![("1.0", n10, Value::Null), ("1.1", n11, Value::from("worse"))], "{svc}");
    let slowest = svc["slowest"].as_array().unwrap();
    assert!(!slowest.is_empty(), "the slowest traces of the window: {svc}");
    let durations: Vec<f64> = slowest.iter().map(|t| t["duration_ms"].as_f64().unwrap()).collect();
    assert!(durations.windows(2).all(|w| w[0] >= w[1]), "slowest first: {durations:?}");
    let client_max = answers.iter().filter(|a| !a.version.starts_with('2') && !a.version.starts_with('5'));
    let client_max = client_max.map(|a| a.ms).fold(0.0, f64::max);
    assert!(durations[0] <= client_max + 1.0, "no trace is slower than the client's slowest request");
    let (code, csv) = http_get(agent.api, "/api/report?service=canaryshop&format=csv").unwrap();
    assert_eq!(code, 200);
    assert!(csv.lines().any(|l| l.starts_with(&format!("\"canaryshop\",\"*\",\"1.1\",{n11},{e11},"))), "{csv}");
    let (code, page) = http_get(agent.api, "/api/report?format=html").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<h2>canaryshop</h2>") && page.contains("class=\"worse\""), "{page}");

    // A/A: the same code under two versions.
    let (_, aa) = compare(&agent, "steadyshop", "2.0", "2.0-same");
    eprintln!("A/A comparison: {}", aa["service_kpis"]);
    assert_eq!(aa["service_kpis"]["baseline_requests"], 300, "{aa}");
    assert_eq!(aa["service_kpis"]["candidate_requests"], 300, "{aa}");
    assert_eq!(aa["verdict"], "no_difference", "no false alarm on the same code: {aa}");
    let (code, table) = tracer_compare(&agent, "steadyshop", "2.0", "2.0-same");
    assert_eq!(code, 0, "{table}");

    // Ten requests a version: nothing is judged.
    let (_, quiet) = compare(&agent, "quietshop", "5.0", "5.1");
    assert_eq!(quiet["service_kpis"]["baseline_requests"], 10, "{quiet}");
    assert_eq!(quiet["verdict"], "insufficient_data", "{quiet}");
    // A version never seen: the CLI says so and exits 1.
    let (code, text) = tracer_compare(&agent, "quietshop", "5.0", "9.9");
    assert_eq!(code, 1, "{text}");

    // The rolling replacement: detected at once, compared when its window ends.
    let rollouts = wait_until("rollshop's rollout detected", Duration::from_secs(20), || {
        let (code, body) = http_get(agent.api, "/api/rollouts").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        (code == 200 && v["total"].as_u64() >= Some(1), v)
    });
    let list = rollouts["rollouts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "only rollshop rolled out (versions started together are no rollout): {rollouts}");
    let r = &list[0];
    assert_eq!(
        (r["service"].as_str(), r["old_version"].as_str(), r["new_version"].as_str()),
        (Some("rollshop"), Some("3.0"), Some("3.1"))
    );
    assert_eq!(r["old_pids"], serde_json::json!([old_pid]), "{r}");
    assert_eq!(r["new_pids"], serde_json::json!([new_pid]), "{r}");
    assert!(r["verdict"].is_null(), "not compared before its window ends: {r}");
    let new_answers = roll_new.join().unwrap();
    assert!(new_answers.iter().all(|a| a.status == 200 && a.version == "3.1"));
    let r = wait_until("rollshop's rollout compared", Duration::from_secs(30), || {
        let (_, body) = http_get(agent.api, "/api/rollouts").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let r = v["rollouts"][0].clone();
        (!r["verdict"].is_null(), r)
    });
    eprintln!("rollout: {r}");
    assert_eq!(r["verdict"], "worse", "3.1 is 30 ms slower: {r}");
    let rc = &r["comparison"]["service_kpis"];
    assert!(rc["baseline_requests"].as_u64().unwrap() >= 400, "3.0's last window: {rc}");
    assert!(rc["candidate_requests"].as_u64().unwrap() >= 400, "3.1's first window: {rc}");

    // The verdict for a backend: on /metrics and at the OTLP receiver.
    let series = "version_rollout_verdict{service_name=\"rollshop\",baseline_version=\"3.0\",\
                  candidate_version=\"3.1\",verdict=\"worse\"}";
    assert_eq!(agent.metric(series), 1, "{}", agent.metrics());
    wait_until("the rollout verdict at the OTLP receiver", Duration::from_secs(15), || {
        let reqs = rx.requests();
        let found = reqs.iter().filter(|r| r["signal"] == "metrics").any(|r| {
            let text = r["request"].to_string();
            text.contains("version.rollout.verdict") && text.contains("rollshop") && text.contains("\"worse\"")
        });
        (found, ())
    });
    drop(new);
    agent.assert_no_drops();
    agent.stop();
}
