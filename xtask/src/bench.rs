//! `cargo xtask bench`: what the tracer costs a busy HTTP server (or, with
//! `--server redis`, redis-server under redis-benchmark, the same rounds;
//! `--server nginx-tls`, nginx over HTTPS: the TLS uprobes' cost).
//!
//! nginx (one worker, a 6-byte `return 200` on loopback) is loaded by wrk in
//! rounds; each round is an untraced run then a traced run, back to back. The
//! machine is shared and noisy, so req/s drift from one minute to the next:
//! the figures that matter are the ratios traced/untraced of the two runs of
//! one round, measured side by side, and the summary takes their median over
//! the rounds. The tracer is started fresh for each traced run (`--output
//! none`, after /readyz says every probe is attached) and stopped with SIGTERM
//! before the next untraced run: its tracepoints slow every syscall on the
//! machine, so no tracer runs during an untraced run.
//!
//! Where the cost shows: the probes run in the kernel in the context of nginx
//! and wrk, so they show as lower throughput and higher p99, not as agent CPU.
//! The agent's own CPU (utime+stime from /proc/<pid>/stat over the traced wrk
//! run) is the userspace pipeline draining the ring buffer; its peak RSS is
//! VmHWM. nginx's default `keepalive_requests 1000` makes wrk reconnect, so
//! connection open/close events are part of the load. The summary goes to
//! stdout and to target/bench/summary.json.
//!
//! Before the rounds (unless `--no-criterion`), the criterion benchmark
//! tracer/benches/pipeline.rs measures the userspace pipeline alone over a
//! recorded event stream: decode, connection table + HTTP parsing and
//! pairing, span building, chain linking, OTLP encoding, in elements per
//! CPU-second of one core. Its
//! figures are printed again in the summary and kept in summary.json.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd::output, is_root, workspace_root};

const NGINX: &str = "/usr/sbin/nginx";
const WRK: &str = "/usr/bin/wrk";
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_BENCHMARK: &str = "/usr/bin/redis-benchmark";

/// The server under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Server {
    /// nginx (one worker) under wrk.
    Nginx,
    /// The same over HTTPS (a self-signed certificate made by openssl(1)):
    /// both ends' plaintext comes from the libssl uprobes.
    NginxTls,
    /// redis-server under redis-benchmark (SET and GET, no pipelining).
    Redis,
}
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct Args {
    /// The server under load.
    #[arg(long, value_enum, default_value = "nginx")]
    server: Server,
    /// Rounds of (untraced run, traced run).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// wrk connections (-c).
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// wrk threads (-t).
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Offer about this many requests/s instead of as many as nginx can
    /// answer: ceil(rate/1000) connections, each waiting 1 ms between
    /// requests (a wrk delay() script; --connections is then ignored). The
    /// throughput ratio is ~1 by construction; what it shows is the agent's
    /// CPU per request with no drops and its cost in latency.
    #[arg(long)]
    rate: Option<u32>,
    /// Extra argument for `tracer run` (repeatable), e.g. --tracer-arg=--capture-bytes=0.
    #[arg(long = "tracer-arg", allow_hyphen_values = true)]
    tracer_args: Vec<String>,
    /// Run the criterion benchmark of the userspace pipeline (`cargo bench -p
    /// tracer --bench pipeline`) before the nginx rounds. On by default.
    #[arg(long, overrides_with = "no_criterion")]
    criterion: bool,
    /// Skip the criterion benchmark.
    #[arg(long, overrides_with = "criterion")]
    no_criterion: bool,
}

pub fn run(args: Args) -> Result<()> {
    if !is_root() {
        bail!("the bench loads the tracer's eBPF programs: run `sudo -E cargo xtask bench` (or as root)");
    }
    let tools = match args.server {
        Server::Nginx | Server::NginxTls => [(NGINX, "nginx"), (WRK, "wrk")],
        Server::Redis => [(REDIS_SERVER, "redis-server"), (REDIS_BENCHMARK, "redis-tools")],
    };
    for (tool, package) in tools {
        if !Path::new(tool).exists() {
            bail!("{tool} not found: apt-get install {package} (or cargo xtask install)");
        }
    }
    let mut args = args;
    if args.server == Server::Redis && args.rate.is_some() {
        bail!("--rate applies to nginx only");
    }
    if let Some(rate) = args.rate {
        if rate < 1000 {
            bail!("--rate must be at least 1000 requests/s (one connection each 1 ms)");
        }
        args.connections = rate.div_ceil(1000).max(args.threads);
    }
    if args.rounds == 0 || args.duration == 0 || args.threads == 0 || args.connections < args.threads {
        bail!("--rounds, --duration and --threads must be at least 1, and --connections at least --threads");
    }
    let bin = crate::build(true)?;
    // After the build: it installs the eBPF toolchain that tracer's build.rs needs.
    let figures = if args.no_criterion { Vec::new() } else { criterion()? };
    let dir = workspace_root().join("target").join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ticks_per_s =
        output(Command::new("getconf").arg("CLK_TCK")).ok().and_then(|s| s.trim().parse::<f64>().ok()).unwrap_or(100.0);

    if args.rate.is_some() {
        let script = dir.join("rate.lua");
        fs::write(&script, "-- 1 ms between two requests of a connection\nfunction delay()\n  return 1\nend\n")
            .with_context(|| format!("writing {}", script.display()))?;
    }
    let server = match args.server {
        Server::Nginx => start_nginx(&dir, false)?,
        Server::NginxTls => start_nginx(&dir, true)?,
        Server::Redis => start_redis(&dir)?,
    };
    let scheme = if args.server == Server::NginxTls { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{}/", server.port);
    let load = |secs: u32| match args.server {
        Server::Nginx | Server::NginxTls => wrk(&args, &url, secs),
        Server::Redis => redis_benchmark(&args, server.port, secs),
    };
    eprintln!(
        "bench: {:?} on port {}; {} connections; {} rounds of {} s untraced + {} s traced",
        args.server, server.port, args.connections, args.rounds, args.duration, args.duration
    );
    load(2).context("warm-up run")?;

    let mut rounds = Vec::new();
    for i in 1..=args.rounds {
        let untraced = load(args.duration)?;
        let mut agent = start_agent(&bin, &dir, i, &args.tracer_args)?;
        let cpu_before = cpu_ticks(agent.pid())?;
        let traced = load(args.duration)?;
        let agent_cpu_s = (cpu_ticks(agent.pid())? - cpu_before) as f64 / ticks_per_s;
        let agent_rss_kib = peak_rss_kib(agent.pid())?;
        // Let the pipeline drain what is still in the ring buffer, so the
        // counters add up (submitted = received + dropped) when scraped.
        thread::sleep(Duration::from_millis(500));
        let metrics = http_get(agent.api, "/metrics").map(|(_, body)| body).unwrap_or_default();
        let status = agent.stop()?;
        if !status.success() {
            bail!("the tracer exited with {status} after SIGTERM; see {}", agent.log.display());
        }
        let r = Round { untraced, traced, agent_cpu_s, agent_rss_kib, events: Events::from_metrics(&metrics) };
        eprintln!(
            "round {i}: untraced {:.0} req/s p99 {:.3} ms | traced {:.0} req/s p99 {:.3} ms | x{:.3}\n  \
             agent {:.2} CPU-s, peak {:.1} MiB; events {} submitted, {} received, {} ringbuf_full, {} dropped in userspace",
            r.untraced.rps,
            r.untraced.p99_s * 1e3,
            r.traced.rps,
            r.traced.p99_s * 1e3,
            r.traced.rps / r.untraced.rps,
            r.agent_cpu_s,
            r.agent_rss_kib as f64 / 1024.0,
            r.events.submitted,
            r.events.received,
            r.events.ringbuf_full,
            r.events.dropped_user,
        );
        rounds.push(r);
    }
    drop(server);

    let (text, json) = summarize(&args, &rounds, &figures);
    println!("{text}");
    let path = dir.join("summary.json");
    fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// One criterion figure: benchmark id and elements per second (per core).
struct Figure {
    id: String,
    per_s: f64,
}

impl Figure {
    /// Events, except for the span-building bench whose elements are spans.
    fn unit(&self) -> &'static str {
        if self.id.ends_with("spans") { "spans/s" } else { "events/s" }
    }
}

/// `cargo bench -p tracer --bench pipeline -- --noplot`, its report passed
/// through as it comes; returns each benchmark's throughput.
fn criterion() -> Result<Vec<Figure>> {
    eprintln!("bench: criterion benchmark of the userspace pipeline (tracer/benches/pipeline.rs)");
    let mut cmd = crate::cargo();
    cmd.args(["bench", "-p", "tracer", "--bench", "pipeline", "--", "--noplot"]).stdout(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo bench's stdout")?;
    let mut figures = Vec::new();
    let mut id = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo bench's output")?;
        println!("{line}");
        figures.extend(scan(&mut id, &line));
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    if figures.is_empty() {
        eprintln!("bench: no throughput lines in criterion's output");
    }
    for f in &figures {
        eprintln!("bench: {:<28} {:>8.3} M {} per core", f.id, f.per_s / 1e6, f.unit());
    }
    Ok(figures)
}

/// One line of criterion's report: a benchmark's id starts an unindented
/// line (`id` keeps it), its `thrpt:` line follows.
fn scan(id: &mut Option<String>, line: &str) -> Option<Figure> {
    if !line.starts_with(char::is_whitespace) && !line.starts_with("Benchmarking") {
        *id = line.split_whitespace().next().map(str::to_owned);
        return None;
    }
    let per_s = parse_thrpt(line.trim().strip_prefix("thrpt:")?)?;
    Some(Figure { id: id.take()?, per_s })
}

/// The middle estimate of criterion's `[low mid high]` throughput, e.g.
/// `[1.0200 Melem/s 1.0527 Melem/s 1.1026 Melem/s]`; None for a change line
/// (percentages).
fn parse_thrpt(v: &str) -> Option<f64> {
    let parts: Vec<&str> = v.trim().trim_matches(['[', ']']).split_whitespace().collect();
    let [_, _, mid, unit, _, _] = parts[..] else { return None };
    let scale = match unit.strip_suffix("elem/s")? {
        "" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        _ => return None,
    };
    Some(mid.parse::<f64>().ok()? * scale)
}

/// One wrk run, parsed from its `--latency` output.
struct Load {
    rps: f64,
    p99_s: f64,
    requests: u64,
    /// Wall time of the wrk process, the window the agent's CPU is read over.
    wall_s: f64,
}

/// The tracer's own counters at the end of a traced run (/metrics).
struct Events {
    submitted: u64,
    received: u64,
    ringbuf_full: u64,
    dropped_user: u64,
}

impl Events {
    fn from_metrics(text: &str) -> Events {
        Events {
            submitted: metric_sum(text, "tracer_kernel_total{counter=\"events_submitted\"}"),
            received: metric_sum(text, "tracer_events_received_total"),
            ringbuf_full: metric_sum(text, "tracer_kernel_total{counter=\"ringbuf_full\"}"),
            dropped_user: metric_sum(text, "tracer_events_dropped_total"),
        }
    }
}

struct Round {
    untraced: Load,
    traced: Load,
    agent_cpu_s: f64,
    agent_rss_kib: u64,
    events: Events,
}

impl Round {
    fn fields(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("untraced_rps", self.untraced.rps),
            ("traced_rps", self.traced.rps),
            ("untraced_p99_ms", self.untraced.p99_s * 1e3),
            ("traced_p99_ms", self.traced.p99_s * 1e3),
            ("agent_cpu_s", self.agent_cpu_s),
            ("agent_peak_rss_mib", self.agent_rss_kib as f64 / 1024.0),
            ("events_submitted", self.events.submitted as f64),
            ("events_received", self.events.received as f64),
            ("ringbuf_full", self.events.ringbuf_full as f64),
            ("dropped_userspace", self.events.dropped_user as f64),
        ]
    }
}

/// The summary as text and as JSON: medians over rounds, ratios paired per
/// round, agent CPU over the traced runs' wall time and requests.
fn summarize(args: &Args, rounds: &[Round], figures: &[Figure]) -> (String, String) {
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let cpu_s: f64 = rounds.iter().map(|r| r.agent_cpu_s).sum();
    let wall_s: f64 = rounds.iter().map(|r| r.traced.wall_s).sum();
    let requests: u64 = rounds.iter().map(|r| r.traced.requests).sum();
    let untraced_rps = med(&|r| r.untraced.rps);
    let traced_rps = med(&|r| r.traced.rps);
    let untraced_p99_ms = med(&|r| r.untraced.p99_s * 1e3);
    let traced_p99_ms = med(&|r| r.traced.p99_s * 1e3);
    let throughput_ratio = med(&|r| r.traced.rps / r.untraced.rps);
    let p99_ratio = med(&|r| r.traced.p99_s / r.untraced.p99_s);
    let cpu_pct = cpu_s / wall_s * 100.0;
    let cpu_s_per_1m = cpu_s / requests as f64 * 1e6;
    let rss_mib = rounds.iter().map(|r| r.agent_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    let submitted: u64 = rounds.iter().map(|r| r.events.submitted + r.events.ringbuf_full).sum();
    let dropped: u64 = rounds.iter().map(|r| r.events.ringbuf_full + r.events.dropped_user).sum();
    let dropped_pct = dropped as f64 / submitted.max(1) as f64 * 100.0;
    let Args { rounds: n, duration, connections, threads, rate, server, .. } = args;
    let load = match (server, rate) {
        (Server::Redis, _) => format!("redis-server under redis-benchmark -c{connections} -t set,get"),
        (Server::Nginx, Some(r)) => format!("nginx under wrk -t{threads} -c{connections} at ~{r} req/s offered"),
        (Server::Nginx, None) => format!("nginx under wrk -t{threads} -c{connections} as fast as nginx answers"),
        (Server::NginxTls, Some(r)) => {
            format!("nginx HTTPS under wrk -t{threads} -c{connections} at ~{r} req/s offered")
        }
        (Server::NginxTls, None) => format!("nginx HTTPS under wrk -t{threads} -c{connections} as fast as it answers"),
    };
    let mut text = format!(
        "\n{load}, {n} rounds x {duration} s; medians over rounds, ratios paired per round\n\
         \x20 untraced        {untraced_rps:>9.0} req/s   p99 {untraced_p99_ms:.3} ms\n\
         \x20 traced          {traced_rps:>9.0} req/s   p99 {traced_p99_ms:.3} ms\n\
         \x20 throughput      {throughput_ratio:.3} x untraced\n\
         \x20 p99 latency     {p99_ratio:.3} x untraced\n\
         \x20 agent CPU       {cpu_pct:.1} % of one core, {cpu_s_per_1m:.3} CPU-s per 1M requests\n\
         \x20 agent peak RSS  {rss_mib:.1} MiB\n\
         \x20 drops           {dropped_pct:.2} per 100 captured events (ring full + every userspace queue; {submitted} captured)"
    );
    if !figures.is_empty() {
        text.push_str("\nuserspace pipeline (criterion, per core: CPU time of one thread)");
    }
    for f in figures {
        let _ = write!(text, "\n  {:<28} {:>8.3} M {}", f.id, f.per_s / 1e6, f.unit());
    }
    let fields = [
        ("rounds", f64::from(*n)),
        ("duration_s", f64::from(*duration)),
        ("connections", f64::from(*connections)),
        ("threads", f64::from(*threads)),
        ("untraced_rps", untraced_rps),
        ("traced_rps", traced_rps),
        ("untraced_p99_ms", untraced_p99_ms),
        ("traced_p99_ms", traced_p99_ms),
        ("throughput_ratio", throughput_ratio),
        ("p99_ratio", p99_ratio),
        ("agent_cpu_pct_of_core", cpu_pct),
        ("agent_cpu_s_per_1m_requests", cpu_s_per_1m),
        ("agent_peak_rss_mib", rss_mib),
        ("offered_rate", rate.map_or(f64::NAN, f64::from)),
        ("drops_per_100_events", dropped_pct),
    ];
    let mut json = String::from("{\n");
    for (k, v) in fields {
        let _ = writeln!(json, "  \"{k}\": {},", num(v));
    }
    let per_s: Vec<(&str, f64)> = figures.iter().map(|f| (f.id.as_str(), f.per_s)).collect();
    let _ = writeln!(json, "  \"criterion_per_core_per_s\": {},", json_object(&per_s));
    let per_round: Vec<String> = rounds.iter().map(|r| json_object(&r.fields())).collect();
    let _ = write!(json, "  \"per_round\": [\n    {}\n  ]\n}}\n", per_round.join(",\n    "));
    (text, json)
}

/// `{"k":v,...}` on one line.
fn json_object(fields: &[(&str, f64)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{}", num(*v))).collect();
    format!("{{{}}}", body.join(","))
}

/// A JSON number: integers as such, others to 4 decimals; NaN and infinities
/// (a run with zero requests) become null.
fn num(x: f64) -> String {
    match x {
        _ if !x.is_finite() => "null".into(),
        _ if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        _ => format!("{x:.4}"),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped, so an
/// error anywhere in the bench leaves no nginx or tracer behind.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Guard {
    fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("{} did not exit within 15 s of SIGTERM; killed it", self.name)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("bench: {e:#}");
        }
    }
}

/// The server under load, stopped when dropped.
struct Target {
    port: u16,
    _guard: Guard,
}

/// redis-server on loopback, nothing written to disk.
fn start_redis(dir: &Path) -> Result<Target> {
    let port = free_port()?;
    let log = dir.join("redis.log");
    let child = Command::new(REDIS_SERVER)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {REDIS_SERVER}"))?;
    let guard = Guard { name: "redis-server", child };
    wait_listening(port, &log)?;
    Ok(Target { port, _guard: guard })
}

fn wait_listening(port: u16, log: &Path) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listened on {addr} within 10 s:\n{}", tail(log));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// redis-benchmark's SET and GET, about `secs` seconds in all (it runs a
/// request count, not a duration: 40k requests per test per second asked).
fn redis_benchmark(args: &Args, port: u16, secs: u32) -> Result<Load> {
    let per_test = u64::from(secs) * 40_000;
    let start = Instant::now();
    let out = output(Command::new(REDIS_BENCHMARK).args([
        "-p",
        &port.to_string(),
        "-c",
        &args.connections.to_string(),
        "-n",
        &per_test.to_string(),
        "-t",
        "set,get",
        "--csv",
    ]))?;
    let wall_s = start.elapsed().as_secs_f64();
    parse_redis_csv(&out, per_test, wall_s).with_context(|| format!("parsing redis-benchmark's output:\n{out}"))
}

/// `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",...`:
/// one line per test, each of `per_test` requests. Throughput over the
/// tests' summed durations (count / rps each), the worst p99.
fn parse_redis_csv(out: &str, per_test: u64, wall_s: f64) -> Result<Load> {
    let (mut tests, mut busy_s, mut p99_s) = (0u64, 0.0f64, 0.0f64);
    for line in out.lines().filter(|l| !l.starts_with("\"test\"")) {
        let f: Vec<&str> = line.split(',').map(|x| x.trim_matches('"')).collect();
        if f.len() < 7 {
            continue;
        }
        let rps: f64 = f[1].parse().with_context(|| format!("rps in {line}"))?;
        let p99_ms: f64 = f[6].parse().with_context(|| format!("p99 in {line}"))?;
        if rps <= 0.0 {
            bail!("no throughput in {line}");
        }
        tests += 1;
        busy_s += per_test as f64 / rps;
        p99_s = p99_s.max(p99_ms / 1e3);
    }
    if tests == 0 {
        bail!("no test lines");
    }
    let requests = tests * per_test;
    Ok(Load { rps: requests as f64 / busy_s, p99_s, requests, wall_s })
}

fn start_nginx(dir: &Path, tls: bool) -> Result<Target> {
    let port = free_port()?;
    let d = dir.display();
    let listen = if tls {
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running openssl (apt install openssl)")?;
        if !st.success() {
            bail!("openssl req failed: {st}");
        }
        format!("127.0.0.1:{port} ssl; ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem")
    } else {
        format!("127.0.0.1:{port}")
    };
    // Debian's nginx is built with logs and temp paths under /var: keep
    // everything it writes inside `dir`.
    let conf = format!(
        r#"worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp-body; proxy_temp_path {d}/tmp-proxy; fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi; scgi_temp_path {d}/tmp-scgi;
    server {{
        listen {listen};
        location / {{ return 200 "hello\n"; }}
    }}
}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).with_context(|| format!("writing {}", conf_path.display()))?;
    let error_log = dir.join("nginx-error.log");
    let child = Command::new(NGINX)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(&error_log)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {NGINX}"))?;
    let mut guard = Guard { name: "nginx", child };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = guard.child.try_wait()? {
            bail!("nginx exited with {status}:\n{}", tail(&error_log));
        }
        if Instant::now() > deadline {
            bail!("nginx did not listen on {addr} within 10 s:\n{}", tail(&error_log));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(Target { port, _guard: guard })
}

struct Agent {
    api: SocketAddr,
    log: PathBuf,
    guard: Guard,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    fn stop(&mut self) -> Result<ExitStatus> {
        self.guard.stop()
    }
}

/// Start `tracer run --output none` and wait until /readyz answers 200.
fn start_agent(bin: &Path, dir: &Path, round: u32, extra: &[String]) -> Result<Agent> {
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log = dir.join(format!("tracer-round-{round}.log"));
    let stderr = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(bin)
        .args(["run", "--output", "none", "--api-addr", &api.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut agent = Agent { api, log, guard: Guard { name: "tracer", child } };
    let start = Instant::now();
    loop {
        if let Some(status) = agent.guard.child.try_wait()? {
            bail!("the tracer exited with {status} before it was ready:\n{}", tail(&agent.log));
        }
        if matches!(http_get(api, "/readyz"), Ok((200, _))) {
            return Ok(agent);
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!("the tracer's /readyz on {api} was not 200 within 60 s:\n{}", tail(&agent.log));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Run wrk for `secs` seconds and parse its `--latency` report.
fn wrk(args: &Args, url: &str, secs: u32) -> Result<Load> {
    let start = Instant::now();
    let mut cmd = Command::new(WRK);
    cmd.args([&format!("-t{}", args.threads), &format!("-c{}", args.connections), &format!("-d{secs}s"), "--latency"]);
    if args.rate.is_some() {
        cmd.arg("-s").arg(workspace_root().join("target").join("bench").join("rate.lua"));
    }
    let out = output(cmd.arg(url))?;
    let wall_s = start.elapsed().as_secs_f64();
    let load = parse_wrk(&out, wall_s).with_context(|| format!("parsing wrk's output:\n{out}"))?;
    for line in out.lines().map(str::trim) {
        if line.starts_with("Non-2xx") {
            bail!("nginx answered with errors ({line}):\n{out}");
        }
        if line.starts_with("Socket errors") {
            eprintln!("bench: wrk: {line}");
        }
    }
    Ok(load)
}

fn parse_wrk(out: &str, wall_s: f64) -> Result<Load> {
    let (mut rps, mut p99_s, mut requests) = (None, None, None);
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99_s = parse_duration(v.trim());
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
        }
    }
    Ok(Load {
        rps: rps.context("no Requests/sec line")?,
        p99_s: p99_s.context("no 99% latency line (was --latency passed?)")?,
        requests: requests.context("no \"N requests in\" line")?,
        wall_s,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.50m`.
fn parse_duration(s: &str) -> Option<f64> {
    for (unit, scale) in [("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] {
        if let Some(n) = s.strip_suffix(unit) {
            return n.parse::<f64>().ok().map(|n| n * scale);
        }
    }
    None
}

/// utime + stime of the whole process (every thread), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).context("no utime in /proc/<pid>/stat")?;
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).context("no stime in /proc/<pid>/stat")?;
    Ok(utime + stime)
}

/// Peak resident set size (VmHWM), KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?.local_addr()?.port())
}

/// A minimal HTTP/1.0 GET: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("malformed HTTP response")?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((code, body))
}

/// Sum of every sample of one metric (a name, or a name with its labels).
fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("{} (last lines of {})", lines[lines.len().saturating_sub(20)..].join("\n"), path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"100000.00\",\"0.150\",\"0.040\",\"0.143\",\"0.207\",\"0.311\",\"1.247\"\n\
                   \"GET\",\"50000.00\",\"0.150\",\"0.040\",\"0.143\",\"0.207\",\"0.455\",\"1.247\"\n";
        let l = parse_redis_csv(out, 100_000, 3.5).unwrap();
        assert_eq!(l.requests, 200_000);
        assert!((l.rps - 200_000.0 / 3.0).abs() < 1e-6, "{}", l.rps);
        assert!((l.p99_s - 0.000455).abs() < 1e-12);
    }

    #[test]
    fn reads_criterion_throughput() {
        let report = "Benchmarking pipeline/decode: Analyzing
pipeline/decode         time:   [7.6972 ms 7.9738 ms 8.2465 ms]
                        thrpt:  [10.314 Melem/s 10.667 Melem/s 11.050 Melem/s]
                 change:
                        time:   [-31.089% -25.098% -18.471%] (p = 0.00 < 0.05)
                        thrpt:  [+22.656% +33.508% +45.115%]
pipeline/conntrack+http
                        time:   [77.139 ms 80.796 ms 83.386 ms]
                        thrpt:  [1.0200 Melem/s 1.0527 Melem/s 1.1026 Melem/s]
Found 1 outliers among 20 measurements (5.00%)
pipeline/spans          time:   [51.602 ms 56.759 ms 62.179 ms]
                        thrpt:  [483.44 Kelem/s 529.60 Kelem/s 582.54 Kelem/s]
";
        let mut id = None;
        let figures: Vec<_> = report.lines().filter_map(|l| scan(&mut id, l)).collect();
        let got: Vec<_> = figures.iter().map(|f| (f.id.as_str(), f.per_s.round(), f.unit())).collect();
        assert_eq!(
            got,
            [
                ("pipeline/decode", 10_667_000.0, "events/s"),
                ("pipeline/conntrack+http", 1_052_700.0, "events/s"),
                ("pipeline/spans", 529_600.0, "spans/s"),
            ]
        );
    }
}
