//! End-to-end: TLS plaintext from OpenSSL's libssl by uprobes, on the real
//! kernel. Debian's nginx serves HTTPS with a certificate made here and
//! proxies over TLS to a python HTTPS backend; curl (-k, a new process per
//! request, all started after the agent) and a python keep-alive client
//! call it. Ground truth: the ids in the paths, curl's own byte counts.
//! Must run as root.

mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

/// A self-signed certificate and key for 127.0.0.1, made with openssl(1).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running openssl (apt install openssl)");
    assert!(ok.success(), "openssl req failed");
    (cert, key)
}

/// nginx (one process) with TLS on `port`: `/item/*` answered by nginx
/// itself, `/chain/*` proxied over TLS (keep-alive) to `/items/*` of the
/// HTTPS backend on `upstream`.
fn nginx_tls(dir: &Path, port: u16, upstream: u16, cert: &Path, key: &Path) -> Proc {
    let d = dir.display();
    let conf = format!(
        "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         upstream tls_backend {{ server 127.0.0.1:{upstream}; keepalive 4; }}\n\
         server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {};\n  ssl_certificate_key {};\n\
         location /item/ {{ return 200 \"item\\n\"; }}\n\
         location /chain/ {{\n   proxy_pass https://tls_backend/items/;\n   proxy_ssl_verify off;\n\
         proxy_ssl_session_reuse on;\n   proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n  }}\n }}\n}}\n",
        cert.display(),
        key.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let p = Proc(
        Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx"),
    );
    wait_listening(&format!("127.0.0.1:{port}"), None);
    p
}

/// Open perf-event fds of `pid`: one per attached uprobe (and tracepoint).
fn perf_event_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().contains("perf_event"))
        .count()
}

/// Programs of the agent's TLS probes still loaded in the kernel.
fn loaded_tls_programs() -> usize {
    let out = Command::new("bpftool").args(["prog", "show"]).output().expect("running bpftool (apt install bpftool)");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(" name ssl_")).count()
}

fn path_of(s: &Value) -> &str {
    attr(s, "url.path").as_str().unwrap_or("")
}

fn find<'a>(spans: &'a [Value], kind: &str, path: &str, service: Option<&str>) -> Option<&'a Value> {
    spans.iter().find(|s| s["kind"] == kind && path_of(s) == path && service.is_none_or(|svc| s["service"] == svc))
}

#[test]
fn https_spans_on_both_ends_and_one_trace_through_a_tls_proxy() {
    let dir = std::env::temp_dir().join(format!("tracer-e2e-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = certificate(&dir);
    let (port, upstream) = (free_port(), free_port());
    // Servers first: their libssl is probed from /proc when the agent starts.
    let _backend =
        backend(upstream, &[("BACKEND_TLS_CERT", cert.to_str().unwrap()), ("BACKEND_TLS_KEY", key.to_str().unwrap())]);
    let _nginx = nginx_tls(&dir, port, upstream, &cert, &key);
    let agent = Agent::start(&["--data-events"]);
    let uprobes = agent.metric("tracer_tls_uprobes");
    assert!(uprobes >= 8, "libssl's 4 functions x entry/return: {uprobes}\n{}", agent.metrics());
    let fds_before = perf_event_fds(agent.pid());

    // curl: one process per request, each exits while probed.
    let n = 10;
    let mut reports = HashMap::new();
    for i in 0..n {
        let r = curl(&format!("https://127.0.0.1:{port}/item/{}", 1000 + i), None, &["-k", "--http1.1"]);
        assert_eq!(r.http_code, 200);
        reports.insert(format!("/item/{}", 1000 + i), r);
    }
    // python: one keep-alive connection (SSL_read_ex / SSL_write_ex).
    let py = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import http.client, ssl\n\
             c = http.client.HTTPSConnection('127.0.0.1', {port}, context=ssl._create_unverified_context())\n\
             for i in range({n}):\n    c.request('GET', f'/item/{{2000 + i}}'); r = c.getresponse(); r.read(); print(r.status)\n"
        ))
        .output()
        .expect("running python3");
    let statuses = String::from_utf8_lossy(&py.stdout);
    assert_eq!(statuses.lines().filter(|l| *l == "200").count(), n, "python client: {statuses}");
    // Through the TLS proxy to the TLS backend.
    for i in 0..n {
        let r = curl(&format!("https://127.0.0.1:{port}/chain/{}", 3000 + i), None, &["-k", "--http1.1"]);
        assert_eq!(r.http_code, 200);
    }

    let https = |s: &Value| attr(s, "url.scheme") == "https";
    let want = 2 * n + 2 * n + 4 * n;
    let spans = agent.wait_spans("https spans", want, |s| {
        https(s) && ["/item/1", "/item/2", "/chain/3", "/items/3"].iter().any(|p| path_of(s).starts_with(p))
    });
    let mut linked = 0;
    for (path, r) in &reports {
        let client = find(&spans, "client", path, Some("curl")).unwrap_or_else(|| panic!("no curl span for {path}"));
        let server = find(&spans, "server", path, Some("nginx")).unwrap_or_else(|| panic!("no nginx span for {path}"));
        for s in [client, server] {
            assert_eq!(attr(s, "http.request.method"), "GET");
            assert_eq!(attr(s, "http.response.status_code"), 200);
            assert_eq!(attr(s, "http.route"), "/item/{id}", "{s}");
            assert_eq!(attr(s, "server.port"), port);
            assert_eq!(attr(s, "http.response.body.size"), 5, "nginx's body \"item\\n\"");
        }
        assert_eq!(attr(client, "network.peer.port"), port);
        assert_eq!(attr(server, "network.peer.port"), r.local_port, "the curl connection's 4-tuple");
        if server["parent_span_id"] == client["span_id"] && server["trace_id"] == client["trace_id"] {
            linked += 1;
        }
    }
    for i in 0..n {
        let path = format!("/item/{}", 2000 + i);
        let client = find(&spans, "client", &path, None).unwrap_or_else(|| panic!("no python span for {path}"));
        let server = find(&spans, "server", &path, Some("nginx")).unwrap_or_else(|| panic!("no nginx span {path}"));
        assert_eq!(client["comm"], "python3");
        if server["parent_span_id"] == client["span_id"] {
            linked += 1;
        }
    }
    assert_eq!(linked, 2 * n, "every https SERVER span is the child of its CLIENT span (tcp sequence of the records)");

    // One trace through the proxy: curl -> nginx -> nginx's call -> backend.
    let (mut right, mut wrong) = (0, 0);
    for i in 0..n {
        let (front, back) = (format!("/chain/{}", 3000 + i), format!("/items/{}", 3000 + i));
        let c = find(&spans, "client", &front, Some("curl")).expect("curl span");
        let s = find(&spans, "server", &front, Some("nginx")).expect("nginx server span");
        let call = find(&spans, "client", &back, Some("nginx")).expect("nginx client span");
        let b = find(&spans, "server", &back, None).expect("backend span");
        assert_eq!(attr(call, "server.port"), upstream);
        assert_eq!(s["parent_span_id"], c["span_id"]);
        assert_eq!(b["parent_span_id"], call["span_id"], "backend under nginx's https call");
        match call["parent_span_id"].as_str() {
            Some(p) if p == s["span_id"] => right += 1,
            Some(_) => wrong += 1,
            None => {}
        }
        let trace = &c["trace_id"];
        assert!([s, call, b].iter().all(|x| x["trace_id"] == *trace), "one trace: {c}\n{s}\n{call}\n{b}");
    }
    let precision = if right + wrong == 0 { 1.0 } else { right as f64 / (right + wrong) as f64 };
    println!("tls proxy: precision {precision:.3} recall {:.3} ({right} of {n})", right as f64 / n as f64);
    assert_eq!(wrong, 0, "no wrong parent");
    assert_eq!(right, n, "every proxied call under its request");

    // Inside a library call the ciphertext ships no payload; plaintext does.
    let data: Vec<Value> = agent
        .all_output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "data" && (port_of(&v["local"]) == port || port_of(&v["remote"]) == port))
        .collect();
    let cipher: Vec<&Value> = data.iter().filter(|d| d["tls"] == "cipher").collect();
    let plain: Vec<&Value> = data.iter().filter(|d| d["tls"] == "plain").collect();
    assert!(cipher.len() >= 4 * n, "ciphertext records inside calls: {}", cipher.len());
    assert!(cipher.iter().all(|d| d["payload_len"] == 0), "ciphertext inside a call carries no payload");
    assert!(plain.iter().all(|d| d["syscall"] == "ssl_read" || d["syscall"] == "ssl_write"));
    assert!(plain.iter().any(|d| d["payload_head"].as_str().is_some_and(|h| h.starts_with("GET /item/1"))));

    // 20 probed curl processes came and went: no uprobe was added or left.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(perf_event_fds(agent.pid()), fds_before, "uprobes are per library file, not per process");
    assert_eq!(agent.metric("tracer_kernel_total{counter=\"tls_no_socket\"}"), 0);
    agent.stop();
    assert_eq!(loaded_tls_programs(), 0, "the kernel released the TLS programs with the agent");
}

/// PostgreSQL over TLS (SSLRequest, then libpq's SSL_read/SSL_write on both
/// ends): the plaintext after the handshake is parsed as PostgreSQL.
#[test]
fn postgres_over_tls_is_parsed_from_its_plaintext() {
    let port = free_port();
    let dir = scratch("pg-tls-cert", Some("postgres"));
    let (cert, key) = certificate(&dir);
    for f in [&cert, &key] {
        assert!(Command::new("chown").arg("postgres").arg(f).status().unwrap().success());
    }
    let (c, k) = (format!("ssl_cert_file={}", cert.display()), format!("ssl_key_file={}", key.display()));
    let _pg = postgres(port, &["-c", "ssl=on", "-c", &c, "-c", &k]);
    let agent = Agent::start(&[]);
    let conn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require");
    let out = Command::new("psql")
        .arg(&conn)
        .args(["-X", "-c", "select 'tls-sekret-q7'", "-c", "select 'x' = 'y'", "-c", "select count(*) from pg_class"])
        .args(["-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"])
        .output()
        .expect("psql (apt install postgresql-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" t\n"), "the session is encrypted (pg_stat_ssl): {text}");
    let is_pg = |v: &Value, kind: &str| {
        v["kind"] == kind && attr(v, "db.system.name") == "postgresql" && attr(v, "server.port") == port
    };
    let client = agent.wait_spans("psql spans over TLS", 4, |v| is_pg(v, "client") && v["comm"] == "psql");
    assert_eq!(client.len(), 4, "one span per query: {client:#?}");
    assert!(client.iter().all(|s| attr(s, "db.operation.name") == "SELECT" && attr(s, "db.namespace") == "postgres"));
    let server = agent.wait_spans("postgres server spans over TLS", 4, |v| is_pg(v, "server"));
    assert!(server.len() >= 4);
    // A string literal: a number could be any port or pid in the output.
    assert!(!agent.all_output().contains("tls-sekret-q7"), "no literal leaves the node, over TLS either");
    agent.stop();
}

/// Go's crypto/tls (Debian's golang-go): an HTTPS server and clients built
/// here, each client a new short-lived process started after the agent.
#[test]
fn go_crypto_tls_client_and_server_spans_link() {
    let dir = std::env::temp_dir().join(format!("tracer-e2e-tls-go-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = certificate(&dir);
    let bin = dir.join("https-go");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/https.go");
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(src)
        .env("CGO_ENABLED", "0")
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.join("gocache"))
        .status()
        .expect("go (apt install golang-go)");
    assert!(st.success(), "go build of the HTTPS fixture");
    let port = free_port();
    let _server = Proc(
        Command::new(&bin)
            .args(["-serve", &port.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&format!("127.0.0.1:{port}"), None);
    let agent = Agent::start(&[]);
    let (clients, n) = (3, 10);
    for _ in 0..clients {
        let out = Command::new(&bin)
            .args(["-get", &format!("https://127.0.0.1:{port}/item"), "-n", &n.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().filter(|l| *l == "200").count(), n, "{text}");
    }
    let go = |s: &Value| s["comm"] == "https-go" && attr(s, "url.scheme") == "https" && attr(s, "server.port") == port;
    let want = 2 * clients * n;
    let spans = agent.wait_spans("Go https spans", want, go);
    let (server, client): (Vec<&Value>, Vec<&Value>) = spans.iter().partition(|s| s["kind"] == "server");
    assert_eq!((server.len(), client.len()), (clients * n, clients * n), "one span per request on each end");
    let by_id: HashMap<&str, &Value> = client.iter().map(|c| (c["span_id"].as_str().unwrap(), *c)).collect();
    let (mut right, mut wrong) = (0, 0);
    for s in &server {
        assert_eq!(attr(s, "http.response.status_code"), 200);
        assert_eq!(attr(s, "http.route"), "/item/{id}");
        match s["parent_span_id"].as_str().and_then(|p| by_id.get(p)) {
            Some(c) if attr(c, "url.path") == attr(s, "url.path") && c["trace_id"] == s["trace_id"] => right += 1,
            Some(_) => wrong += 1,
            None => {}
        }
    }
    println!(
        "go crypto/tls: precision {:.3} recall {:.3}",
        right as f64 / (right + wrong).max(1) as f64,
        right as f64 / server.len() as f64
    );
    assert_eq!(wrong, 0, "precision 1.0");
    // A connection's first request can arrive in the same read as the
    // client's Finished, inside the server's handshake: its plaintext then
    // comes from crypto/tls's buffer, with no sequence number to link by.
    assert!(right + clients >= clients * n, "all but at most each connection's first request linked: {right}");
    agent.stop();
}

/// MariaDB over TLS (the client's SSLRequest, then libmariadb's and the
/// server's OpenSSL): the handshake and queries read on from the plaintext.
#[test]
fn mariadb_over_tls_goes_on_in_the_plaintext() {
    let port = free_port();
    let dir = scratch("mariadb-tls-cert", None);
    let (cert, key) = certificate(&dir);
    let (c, k) = (format!("--ssl-cert={}", cert.display()), format!("--ssl-key={}", key.display()));
    let _db = mariadb(port, &[&c, &k]);
    let agent = Agent::start(&[]);
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", "root", "--ssl", "--skip-ssl-verify-server-cert"])
        .args(["-N", "-e", "select 'tls-sekret-q7'; select 2; show status like 'Ssl_cipher'"])
        .output()
        .expect("mariadb (apt install mariadb-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mariadb: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("TLS_") || text.contains("-GCM-") || text.contains("AES"),
        "the session is encrypted: {text}"
    );
    let client = agent.wait_spans("mariadb client spans over TLS", 3, |v| {
        v["kind"] == "client" && v["comm"] == "mariadb" && attr(v, "server.port") == port
    });
    let ops: Vec<&str> = client.iter().filter_map(|s| attr(s, "db.operation.name").as_str()).collect();
    assert!(ops.iter().filter(|o| **o == "SELECT").count() >= 2, "{client:#?}");
    assert!(client.iter().all(|s| attr(s, "db.system.name") == "mariadb"));
    // A string literal: a number could be any port or pid in the output.
    assert!(!agent.all_output().contains("tls-sekret-q7"), "no literal leaves the node, over TLS either");
    agent.stop();
}
