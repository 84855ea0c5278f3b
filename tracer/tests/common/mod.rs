//! Harness for end-to-end tests: start the real agent (real probes on the real
//! kernel), real programs, and read what the agent printed. Everything panics
//! with context: a test that cannot load the probes fails, it never skips.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod shop;

pub const TRACER: &str = env!("CARGO_BIN_EXE_tracer");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Minimal HTTP GET (status, body), so tests need no client library.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

pub struct Agent {
    child: Option<Child>,
    pub api: SocketAddr,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// The business history file the harness gave this agent (removed at
    /// drop); None when the test passed its own `--history`.
    history: Option<std::path::PathBuf>,
}

/// A history file of its own for each agent, so no run restores another's
/// transactions (the default path is shared by every agent on the host).
fn own_history() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("tracer-e2e-history-{}-{n}.redb", std::process::id()))
}

impl Agent {
    /// Start `tracer run --output json` and wait until /readyz says every
    /// probe is attached.
    pub fn start(extra: &[&str]) -> Agent {
        Self::start_env(extra, &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Wait for a printed line matching `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.lines.lock().unwrap().iter().find(|v| pred(v)) {
                return v.clone();
            }
            if Instant::now() > deadline {
                let lines = self.lines.lock().unwrap();
                let dump: Vec<String> = lines.iter().map(|v| v.to_string()).collect();
                panic!("no line for {what} within 10 s; the agent printed:\n{}", dump.join("\n"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn metrics(&self) -> String {
        http_get(self.api, "/metrics").expect("GET /metrics").1
    }

    /// Value of one metric line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse::<f64>().ok()))
            .map(|v| v as u64)
            .unwrap_or(0)
    }

    /// No event was dropped anywhere (kernel or userspace) so far.
    pub fn assert_no_drops(&self) {
        let m = self.metrics();
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let dropped_kernel = ["ringbuf_full", "regs_read_failed", "sock_read_failed"]
                .iter()
                .any(|c| l.starts_with(&format!("tracer_kernel_total{{counter=\"{c}\"}}")));
            if dropped_kernel || l.starts_with("tracer_events_dropped_total") {
                let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
                assert_eq!(v, 0.0, "drop counter not zero: {l}");
            }
        }
    }

    /// SIGTERM; the agent must exit 0 promptly.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "tracer exited with {status} on SIGTERM:\n{}", self.stderr.lock().unwrap());
                return;
            }
            assert!(Instant::now() < deadline, "tracer did not exit within 10 s of SIGTERM");
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(h) = &self.history {
            let _ = std::fs::remove_file(h);
        }
    }
}

/// Two network namespaces joined by a veth pair stand for two hosts.
pub struct Netns {
    pub names: [String; 2],
}

impl Netns {
    pub fn create() -> Netns {
        let tag = std::process::id() % 10000;
        let names = [format!("trc{tag}a"), format!("trc{tag}b")];
        let sh = |c: &str| {
            let st = Command::new("sh").args(["-ec", c]).status().unwrap();
            assert!(st.success(), "failed: {c}");
        };
        let (a, b) = (&names[0], &names[1]);
        sh(&format!("ip netns add {a}; ip netns add {b}"));
        let guard = Netns { names: names.clone() };
        sh(&format!(
            "ip link add v{a} type veth peer name v{b}
             ip link set v{a} netns {a}; ip link set v{b} netns {b}
             ip -n {a} addr add 10.213.0.1/24 dev v{a}; ip -n {b} addr add 10.213.0.2/24 dev v{b}
             ip -n {a} link set v{a} up; ip -n {b} link set v{b} up
             ip -n {a} link set lo up; ip -n {b} link set lo up"
        ));
        guard
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until something accepts TCP connections at `addr` (run inside `netns`
/// when given).
pub fn wait_listening(addr: &str, netns: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = match netns {
            None => TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200)).is_ok(),
            Some(ns) => {
                let (host, port) = addr.rsplit_once(':').unwrap();
                Command::new("ip")
                    .args(["netns", "exec", ns, "bash", "-c", &format!("echo > /dev/tcp/{host}/{port}")])
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            }
        };
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr} after 15 s");
        thread::sleep(Duration::from_millis(100));
    }
}

/// `python3 -m http.server` serving `dir` on `bind:port` (optionally in a netns).
pub fn http_server(bind: &str, port: u16, netns: Option<&str>, dir: &std::path::Path) -> Proc {
    let mut cmd = command_in(netns, "python3");
    cmd.args(["-m", "http.server", "--bind", bind, &port.to_string(), "--directory"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let p = Proc(cmd.spawn().expect("starting python3 -m http.server"));
    let host = if bind.contains(':') { format!("[{bind}]") } else { bind.to_string() };
    wait_listening(&format!("{host}:{port}"), netns);
    p
}

/// What curl itself reports about one transfer.
#[derive(Debug)]
pub struct CurlReport {
    pub pid: u32,
    pub local_port: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub http_code: u16,
}

/// Run curl once and return its own account of the transfer.
pub fn curl(url: &str, netns: Option<&str>, extra: &[&str]) -> CurlReport {
    let mut cmd = command_in(netns, "curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{local_port} %{size_request} %{size_header} %{size_download} %{http_code}",
    ])
    .args(extra)
    .arg(url)
    .stdout(Stdio::piped());
    let child = cmd.spawn().expect("starting curl");
    // With `ip netns exec` the pid is that of curl itself (ip execs it).
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<u64> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
    CurlReport { pid, local_port: f[0] as u16, bytes_sent: f[1], bytes_received: f[2] + f[3], http_code: f[4] as u16 }
}

pub fn port_of(addr: &Value) -> u16 {
    addr.as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap()
}

pub fn ip_of(addr: &Value) -> String {
    let s = addr.as_str().unwrap();
    let (ip, _) = s.rsplit_once(':').unwrap();
    ip.trim_start_matches('[').trim_end_matches(']').to_string()
}

pub fn is_conn(v: &Value, event: &str, role: &str, local_port: u16) -> bool {
    v["type"] == "connection" && v["event"] == event && v["role"] == role && port_of(&v["local"]) == local_port
}

/// A temp directory with an index file of `size` bytes.
pub fn site(size: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-e2e-{}-{size}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "x".repeat(size)).unwrap();
    dir
}

/// The test backend (tests/fixtures/backend.py) on 127.0.0.1:`port`.
pub fn backend(port: u16, env: &[(&str, &str)]) -> Proc {
    backend_at(None, port, env)
}

/// nginx (one worker) on 127.0.0.1:`port` proxying everything to 127.0.0.1:`upstream`.
pub fn nginx_proxy(port: u16, upstream: u16) -> Proc {
    nginx_proxy_at(None, port, upstream)
}

/// `program`, run inside `netns` when given (`ip netns exec` keeps its pid).
fn command_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

impl Agent {
    /// Every span line printed so far.
    pub fn spans(&self) -> Vec<Value> {
        self.lines.lock().unwrap().iter().filter(|v| v["type"] == "span").cloned().collect()
    }

    /// Wait until `n` spans match `pred`, and return them.
    pub fn wait_spans(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<Value> = self.spans().into_iter().filter(|v| pred(v)).collect();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                let all: Vec<String> = self.spans().iter().map(|v| v.to_string()).collect();
                panic!("{what}: {} of {n} spans within 10 s; spans printed:\n{}", got.len(), all.join("\n"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the agent printed (stdout lines and stderr).
    pub fn all_output(&self) -> String {
        let lines: Vec<String> = self.lines.lock().unwrap().iter().map(|v| v.to_string()).collect();
        lines.join("\n") + &self.stderr.lock().unwrap()
    }
}

pub fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

impl Agent {
    /// `start`, with environment variables for the agent (OTEL_* settings).
    pub fn start_env(extra: &[&str], envs: &[(&str, &str)]) -> Agent {
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let history = (!extra.contains(&"--history")).then(own_history);
        let mut cmd = Command::new(TRACER);
        cmd.args(["run", "--output", "json", "--api-addr", &api.to_string()])
            .args(extra)
            .args(history.iter().flat_map(|h| [std::ffi::OsStr::new("--history"), h.as_os_str()]))
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied());
        Self::start_with_history(cmd, api, history)
    }

    /// An agent `cmd` starts some other way (`podman run <image> run
    /// --output json --api-addr <api>`), read and waited for as `start`.
    pub fn start_command(cmd: Command, api: SocketAddr) -> Agent {
        Self::start_with_history(cmd, api, None)
    }

    /// `start_command`; `history`: the agent's own history file, removed with it.
    fn start_with_history(mut cmd: Command, api: SocketAddr, history: Option<std::path::PathBuf>) -> Agent {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent printed a line that is not JSON ({e}): {line}"));
                l.lock().unwrap().push(v);
            }
        });
        let err = child.stderr.take().unwrap();
        let e = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[tracer] {line}");
                e.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut agent = Agent { child: Some(child), api, lines, stderr, history };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = agent.child.as_mut().unwrap().try_wait().unwrap() {
                thread::sleep(Duration::from_millis(200));
                panic!("the tracer exited ({status}) before it was ready:\n{}", agent.stderr.lock().unwrap());
            }
            if let Ok((200, _)) = http_get(api, "/readyz") {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "the tracer was not ready within 60 s:\n{}",
                agent.stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident memory of the agent, KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("reading the agent's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Sum of every series of a metric family (`name{...} v` lines).
    pub fn metric_sum(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// Run `tracer run` expecting it to fail at start: (exit status, stderr).
pub fn tracer_fails(extra: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let api = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(TRACER)
        .args(["run", "--output", "json", "--api-addr", &api])
        .args(extra)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the tracer");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the tracer kept running for 20 s with settings that should fail at start: {envs:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One network namespace with its loopback up: services started in it are
/// the only ones an agent run with `--netns <path>` sees, so a test's map
/// holds its own services and not the test harness or a browser.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn create(tag: &str) -> Namespace {
        let name = format!("trc{tag}{}", std::process::id() % 10000);
        let st = Command::new("sh")
            .args(["-ec", &format!("ip netns add {name}; ip -n {name} link set lo up")])
            .status()
            .unwrap();
        assert!(st.success(), "creating network namespace {name}");
        Namespace { name }
    }

    /// The `--netns` argument naming it.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The test backend (tests/fixtures/backend.py) on 127.0.0.1:`port` inside `netns`.
pub fn backend_in(netns: &str, port: u16, env: &[(&str, &str)]) -> Proc {
    backend_at(Some(netns), port, env)
}

fn backend_at(netns: Option<&str>, port: u16, env: &[(&str, &str)]) -> Proc {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/backend.py");
    let p = Proc(
        command_in(netns, "python3")
            .args([script, &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the test backend"),
    );
    wait_listening(&format!("127.0.0.1:{port}"), netns);
    p
}

/// `nginx_proxy`, inside `netns` (same proxying, keep-alive upstream).
pub fn nginx_proxy_in(netns: &str, port: u16, upstream: u16) -> Proc {
    nginx_proxy_at(Some(netns), port, upstream)
}

/// One process (`master_process off`): killing it leaves no orphaned worker.
fn nginx_proxy_at(netns: Option<&str>, port: u16, upstream: u16) -> Proc {
    let ns = netns.unwrap_or("host");
    let dir = std::env::temp_dir().join(format!("tracer-e2e-nginx-{}-{ns}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let conf = format!(
        "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         upstream backend {{ server 127.0.0.1:{upstream}; keepalive 4; }}\n\
         server {{\n  listen 127.0.0.1:{port};\n  location / {{\n   proxy_pass http://backend;\n\
         proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n   proxy_buffering off;\n  }}\n }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let p = Proc(
        command_in(netns, "nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx (apt install nginx)"),
    );
    wait_listening(&format!("127.0.0.1:{port}"), netns);
    p
}

/// The OTLP receiver (tests/fixtures/otlp_receiver.py) accepting every
/// request over gRPC; what it received, decoded, in a JSON-lines file.
pub struct OtlpReceiver {
    _proc: Proc,
    out: std::path::PathBuf,
    pub grpc: u16,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let (grpc, http) = (free_port(), free_port());
        let out = std::env::temp_dir().join(format!("tracer-otlp-rx-{}-{grpc}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&out);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otlp_receiver.py");
        let proc = Proc(
            Command::new("python3")
                .arg(script)
                .args(["--grpc-port", &grpc.to_string(), "--http-port", &http.to_string(), "--out"])
                .arg(&out)
                .stdout(Stdio::null())
                .spawn()
                .expect("starting the OTLP receiver (python3 -m pip install opentelemetry-proto grpcio googleapis-common-protos)"),
        );
        wait_listening(&format!("127.0.0.1:{grpc}"), None);
        OtlpReceiver { _proc: proc, out, grpc }
    }

    /// Every request received so far (`{"signal", "request", ...}`).
    pub fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("receiver line is JSON")).collect()
    }
}

/// Poll `f` every 100 ms until it says done; panics with the last value
/// after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> (bool, T)) -> T
where
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + timeout;
    loop {
        let (done, v) = f();
        if done {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}; last seen: {v:#?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh directory under the system temp dir, owned by `owner` if given.
pub fn scratch(tag: &str, owner: Option<&str>) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(owner) = owner {
        let st = Command::new("chown").args([owner, dir.to_str().unwrap()]).status().unwrap();
        assert!(st.success());
    }
    dir
}

/// PostgreSQL 15 in a fresh cluster (initdb, trust auth on 127.0.0.1), run
/// as the `postgres` user Debian's package creates, with `extra` server
/// arguments.
pub struct Postgres {
    _proc: Proc,
    dir: std::path::PathBuf,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // runuser forks: killing it leaves the postmaster running. Its pid
        // is the first line of postmaster.pid; SIGQUIT is an immediate stop.
        let pidfile = self.dir.join("data/postmaster.pid");
        if let Some(pid) =
            std::fs::read_to_string(&pidfile).ok().and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        {
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while pidfile.exists() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn postgres(port: u16, extra: &[&str]) -> Postgres {
    let bin = std::path::Path::new("/usr/lib/postgresql/15/bin");
    let dir = scratch("pg", Some("postgres"));
    let data = dir.join("data");
    let st = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("initdb"))
        .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        .stdout(Stdio::null())
        .status()
        .expect("initdb (apt install postgresql)");
    assert!(st.success(), "initdb");
    let proc = Proc(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", dir.to_str().unwrap()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&format!("127.0.0.1:{port}"), None);
    // Accepting connections is not yet ready for queries.
    wait_until("postgres ready", Duration::from_secs(20), || {
        let ok = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-c", "select 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        (ok, ())
    });
    Postgres { _proc: proc, dir }
}

/// MariaDB 10.11 in a fresh data directory; root without password over TCP;
/// `extra` server arguments.
pub struct Mariadb {
    _proc: Proc,
    dir: std::path::PathBuf,
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn mariadb(port: u16, extra: &[&str]) -> Mariadb {
    let dir = scratch("mariadb", None);
    let data = dir.join("data");
    let st = Command::new("mariadb-install-db")
        .args(["--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
        .arg(format!("--datadir={}", data.display()))
        .stdout(Stdio::null())
        .status()
        .expect("mariadb-install-db (apt install mariadb-server)");
    assert!(st.success(), "mariadb-install-db");
    let proc = Proc(
        Command::new("mariadbd")
            .args(["--user=root", "--bind-address=127.0.0.1", "--skip-log-bin", "--innodb-buffer-pool-size=16M"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&format!("127.0.0.1:{port}"), None);
    Mariadb { _proc: proc, dir }
}
