//! End-to-end service identity (tracer/src/identity): real programs started
//! after the agent, each with a name set by the test in its environment or
//! command line (the ground truth), and the service the agent put on their
//! spans. Covers what /proc alone gets wrong: short-lived clients, nginx
//! (which overwrites its environment with its process title, then forks
//! workers), a multi-call binary reached by a symlink (Debian's
//! redis-server), and interpreters (python, gunicorn, node, java).

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/identity")
}

/// Start `program args` in `dir` with `env`, after the agent (so its exec is seen).
fn spawn(program: &str, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Proc {
    Proc(
        Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program} (see .ci/run for what to install): {e}")),
    )
}

fn port_is(s: &Value, port: u16) -> bool {
    attr(s, "server.port").as_u64() == Some(u64::from(port))
}

/// `n` GETs with curl to 127.0.0.1:`port`, then the server spans of that port.
fn served(agent: &Agent, port: u16, n: usize) -> Vec<Value> {
    wait_listening(&format!("127.0.0.1:{port}"), None);
    for _ in 0..n {
        let r = curl(&format!("http://127.0.0.1:{port}/"), None, &[]);
        assert_eq!(r.http_code, 200);
    }
    agent.wait_spans("server spans", n, |s| s["kind"] == "server" && port_is(s, port))
}

fn services(spans: &[Value]) -> Vec<&str> {
    let mut v: Vec<&str> = spans.iter().map(|s| s["service"].as_str().unwrap()).collect();
    v.dedup();
    v
}

#[test]
fn short_lived_clients_keep_their_otel_service_name() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let _server = http_server("127.0.0.1", port, None, &site(100));
    const RUNS: usize = 20;
    let mut pids = Vec::new();
    for _ in 0..RUNS {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/")])
            .env("OTEL_SERVICE_NAME", "shortcurl")
            .env("OTEL_RESOURCE_ATTRIBUTES", "service.version=3.1,deployment.environment=e2e")
            .spawn()
            .expect("curl");
        pids.push(out.id());
        assert!(out.wait_with_output().unwrap().status.success());
    }
    let spans = agent.wait_spans("curl client spans", RUNS, |s| s["kind"] == "client" && port_is(s, port));
    assert_eq!(spans.len(), RUNS, "one CLIENT span per curl run");
    for s in &spans {
        assert_eq!(s["service"], "shortcurl", "every run named from its environment at exec: {s}");
        assert_eq!(s["comm"], "curl");
        assert!(pids.contains(&(s["pid"].as_u64().unwrap() as u32)), "span of one of the test's curls: {s}");
    }
    // The resource attributes came along (service.version is the span's).
    assert!(spans.iter().all(|s| s["service_version"] == "3.1"), "{spans:?}");
    agent.stop();
}

#[test]
fn nginx_keeps_the_name_it_was_started_with() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tracer-e2e-identity-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "hello\n").unwrap();
    let d = dir.display();
    // The default mode: a daemon (the started process exits, a forked one
    // forks the worker), so the name has to pass through two forks.
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nworker_processes 1;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         server {{\n  listen 127.0.0.1:{port};\n  root {d};\n }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let conf = dir.join("nginx.conf");
    let status = Command::new("nginx")
        .args(["-c", conf.to_str().unwrap(), "-p", dir.to_str().unwrap(), "-e", &format!("{d}/error.log")])
        .env("OTEL_SERVICE_NAME", "gateway")
        .status()
        .expect("starting nginx (apt install nginx)");
    assert!(status.success());
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("nginx.pid")) {
                unsafe { libc::kill(pid.trim().parse().unwrap_or(0), libc::SIGQUIT) };
            }
        }
    }
    let _stop = Stop(dir.clone());
    let spans = served(&agent, port, 5);
    // Ground truth that /proc no longer has it: nginx wrote its title over
    // the environment area.
    let worker = spans[0]["pid"].as_u64().unwrap();
    let environ = std::fs::read(format!("/proc/{worker}/environ")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&environ).contains("OTEL_SERVICE_NAME=gateway"), "nginx kept its environ here");
    assert_eq!(services(&spans), ["gateway"], "{spans:?}");
    agent.stop();
}

#[test]
fn a_multi_call_binary_is_named_by_the_link_it_was_started_by() {
    let target = std::fs::read_link("/usr/bin/redis-server").expect("/usr/bin/redis-server (apt install redis-server)");
    assert_eq!(target.to_str(), Some("redis-check-rdb"), "Debian's redis-server is a link to its multi-call binary");
    let agent = Agent::start(&[]);
    let port = free_port();
    let tmp = std::env::temp_dir();
    let _redis = spawn(
        "/usr/bin/redis-server",
        &["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        &[],
        &tmp,
    );
    wait_listening(&format!("127.0.0.1:{port}"), None);
    let deadline = Instant::now() + Duration::from_secs(15);
    // The topology names a server end by the service seen listening there.
    loop {
        let out = Command::new("redis-cli").args(["-p", &port.to_string(), "ping"]).output().expect("redis-cli");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
        let (_, body) = http_get(agent.api, "/api/topology").expect("GET /api/topology");
        let topo: Value = serde_json::from_str(&body).unwrap();
        let names: Vec<&str> = topo["nodes"].as_array().unwrap().iter().filter_map(|n| n["name"].as_str()).collect();
        assert!(!names.contains(&"redis-check-rdb"), "named after the link's target: {names:?}");
        let edge = topo["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["client"] == "redis-cli" && e["server"] == "redis-server");
        if edge {
            break;
        }
        assert!(Instant::now() < deadline, "no redis-cli -> redis-server edge within 15 s: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    agent.stop();
}

#[test]
fn python_script_and_gunicorn_app_are_named_after_the_application() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let _p = spawn("python3", &["app.py", &port.to_string()], &[], &fixtures());
    let spans = served(&agent, port, 3);
    assert_eq!(services(&spans), ["app"], "python3 app.py: {spans:?}");

    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let _g = spawn("gunicorn", &["-w", "2", "-b", &bind, "app:app"], &[], &fixtures());
    let spans = served(&agent, port, 4);
    assert_eq!(services(&spans), ["app"], "gunicorn app:app (forked workers): {spans:?}");
    agent.stop();
}

#[test]
fn node_script_is_named_after_the_script() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let _n = spawn("node", &["app.js", &port.to_string()], &[], &fixtures());
    let spans = served(&agent, port, 3);
    assert_eq!(services(&spans), ["app"], "node app.js: {spans:?}");
    agent.stop();
}

/// Main.class and app.jar, built once per test run.
fn java_build() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tracer-e2e-identity-java-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("javac")
            .arg("-d")
            .arg(&dir)
            .arg(fixtures().join("Main.java"))
            .status()
            .expect("javac (apt install openjdk-17-jdk-headless)");
        assert!(ok.success(), "javac failed");
        let ok = Command::new("jar")
            .args(["cfe", "app.jar", "Main"])
            .args(std::fs::read_dir(&dir).unwrap().filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.ends_with(".class").then_some(n)
            }))
            .current_dir(&dir)
            .status()
            .expect("jar");
        assert!(ok.success(), "jar failed");
        dir
    })
}

#[test]
fn java_main_class_jar_and_system_property() {
    let dir = java_build();
    let agent = Agent::start(&[]);
    let cases: [(&[&str], &str); 3] = [
        (&["-jar", "app.jar"], "app"),
        (&["-Xmx64m", "Main"], "Main"),
        (&["-Dotel.service.name=javaprop", "-cp", ".", "Main"], "javaprop"),
    ];
    for (args, want) in cases {
        let port = free_port();
        let p = port.to_string();
        let mut argv = args.to_vec();
        argv.push(&p);
        // A system property beats the environment (OpenTelemetry Java's rule).
        let env: &[(&str, &str)] = if want == "javaprop" { &[("OTEL_SERVICE_NAME", "fromenv")] } else { &[] };
        let _j = spawn("java", &argv, env, dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "java {args:?} did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        let spans = served(&agent, port, 3);
        assert_eq!(services(&spans), [want], "java {args:?}: {spans:?}");
        // Requests run on a thread named handler-pool: the span's comm is the
        // process's, not the thread's.
        assert!(spans.iter().all(|s| s["comm"] == "java"), "comm of java {args:?}: {spans:?}");
    }
    agent.stop();
}

#[test]
fn exec_records_are_counted_on_metrics() {
    let agent = Agent::start(&[]);
    let before = agent.metric("tracer_events_received_total{kind=\"exec\"}");
    for _ in 0..3 {
        assert!(Command::new("true").status().unwrap().success());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    // Other engineers' processes exec too: at least the test's three.
    while agent.metric("tracer_events_received_total{kind=\"exec\"}") < before + 3 {
        assert!(Instant::now() < deadline, "exec records not counted: {}", agent.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = agent.metrics();
    for what in ["argv_cut", "env_cut", "evicted"] {
        assert!(m.contains(&format!("tracer_identity_starts_total{{what=\"{what}\"}}")), "series {what} missing:\n{m}");
    }
    agent.assert_no_drops();
    agent.stop();
}

#[test]
fn oversized_and_hostile_command_lines_are_cut_counted_and_cleaned() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let _server = http_server("127.0.0.1", port, None, &site(10));
    let series = |what: &str| format!("tracer_identity_starts_total{{what=\"{what}\"}}");
    let (argv0, env0) = (agent.metric(&series("argv_cut")), agent.metric(&series("env_cut")));
    // argv past its 4 KiB cap, env past its 16 KiB cap; the name (with a
    // control character and an escape sequence) lies before the env cut:
    // the child's variables are in key order.
    let pad = format!("X-Pad: {}", "p".repeat(6000));
    let out = Command::new("/usr/bin/curl")
        .args(["-sS", "-o", "/dev/null", "-H", &pad, &format!("http://127.0.0.1:{port}/")])
        .env_clear()
        .env("OTEL_SERVICE_NAME", "hostile\u{1}\u{1b}[31mname")
        .env("ZPAD", "z".repeat(20000))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spans = agent.wait_spans("curl client span", 1, |s| s["kind"] == "client" && port_is(s, port));
    assert_eq!(spans[0]["service"], "hostile[31mname", "control characters removed: {}", spans[0]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.metric(&series("argv_cut")) <= argv0 || agent.metric(&series("env_cut")) <= env0 {
        assert!(Instant::now() < deadline, "cut areas not counted: {}", agent.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.stop();
}
