//! End-to-end: the real agent with its probes on the real kernel, real
//! programs (python http.server, curl), checked against what those programs
//! report about themselves. Root only; run serially by `cargo xtask test`.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// Client and server records of one curl -> http.server exchange agree with
/// curl's own byte counts, pids and ports.
fn check_exchange(agent: &Agent, server_pid: u32, server_port: u16, c: &CurlReport, server_ip: &str) {
    assert_eq!(c.http_code, 200, "curl failed: {c:?}");
    // Matched on both ports: an earlier connection (the harness polling
    // /readyz) may have used the same ephemeral local port.
    let client = agent.wait_for("curl's client close", |v| {
        is_conn(v, "close", "client", c.local_port) && port_of(&v["remote"]) == server_port
    });
    assert_eq!(client["pid"], c.pid, "client pid: {client}");
    assert_eq!(client["comm"], "curl");
    assert_eq!(port_of(&client["remote"]), server_port);
    assert_eq!(ip_of(&client["remote"]), server_ip);
    assert_eq!(client["bytes_sent"], c.bytes_sent, "client bytes sent: {client}");
    assert_eq!(client["bytes_received"], c.bytes_received, "client bytes received: {client}");
    assert_eq!(client["close_reason"], "normal");
    assert_eq!(client["seen_from"], "handshake");
    let open = agent.wait_for("curl's client open", |v| {
        is_conn(v, "open", "client", c.local_port) && port_of(&v["remote"]) == server_port
    });
    assert_eq!(open["pid"], c.pid);

    let server = agent.wait_for("the server side", |v| {
        is_conn(v, "close", "server", server_port) && port_of(&v["remote"]) == c.local_port
    });
    assert_eq!(server["pid"], server_pid, "server pid: {server}");
    assert_eq!(ip_of(&server["local"]), server_ip);
    assert_eq!(server["bytes_received"], c.bytes_sent, "server bytes received: {server}");
    assert_eq!(server["bytes_sent"], c.bytes_received, "server bytes sent: {server}");
    assert!(server["calls_sent"].as_u64().unwrap() >= 1);
    // The kernel's own counters agree (its FIN counts one sequence number).
    let acked = server["tcp"]["bytes_acked"].as_u64().unwrap();
    assert!((c.bytes_received..=c.bytes_received + 1).contains(&acked), "{server}");
}

#[test]
fn loopback_http_server_and_curl_ipv4() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let server = http_server("127.0.0.1", port, None, &site(3000));
    let c = curl(&format!("http://127.0.0.1:{port}/index.html"), None, &[]);
    check_exchange(&agent, server.pid(), port, &c, "127.0.0.1");
    agent.assert_no_drops();
    agent.stop();
}

#[test]
fn loopback_ipv6() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let server = http_server("::1", port, None, &site(1000));
    let c = curl(&format!("http://[::1]:{port}/index.html"), None, &[]);
    check_exchange(&agent, server.pid(), port, &c, "::1");
    agent.stop();
}

/// A dual-stack server (bound to ::) reached over IPv4: the kernel reports
/// v4-mapped addresses, the agent shows them as IPv4.
#[test]
fn dual_stack_v4_mapped() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let server = http_server("::", port, None, &site(100));
    let c = curl(&format!("http://127.0.0.1:{port}/index.html"), None, &[]);
    check_exchange(&agent, server.pid(), port, &c, "127.0.0.1");
    agent.stop();
}

#[test]
fn client_and_server_in_two_network_namespaces() {
    let ns = Netns::create();
    let agent = Agent::start(&[]);
    let port = free_port();
    let server = http_server("10.213.0.2", port, Some(&ns.names[1]), &site(5000));
    let c = curl(&format!("http://10.213.0.2:{port}/index.html"), Some(&ns.names[0]), &[]);
    check_exchange(&agent, server.pid(), port, &c, "10.213.0.2");
    let client = agent.wait_for("client", |v| is_conn(v, "close", "client", c.local_port));
    assert_eq!(ip_of(&client["local"]), "10.213.0.1");
    agent.assert_no_drops();
    agent.stop();
}

/// A connection opened before the agent started is picked up from its first
/// byte, with the right roles (from the listening port) and exact byte counts.
#[test]
fn connection_opened_before_the_agent() {
    let port = free_port();
    let server = http_server("127.0.0.1", port, None, &site(2000));
    // The client connects, waits for a line on stdin, then sends one request
    // and prints its local port, bytes sent and bytes received.
    let script = format!(
        r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", {port}))
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
req = b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n"
s.sendall(req)
got = 0
while True:
    b = s.recv(65536)
    if not b: break
    got += len(b)
s.close()
print(len(req), got, flush=True)
"#
    );
    let mut client = Proc(
        Command::new("python3").args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap(),
    );
    let mut out = BufReader::new(client.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let local_port: u16 = line.trim().parse().unwrap();

    let agent = Agent::start(&[]);
    client.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let f: Vec<u64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
    let (sent, received) = (f[0], f[1]);

    let c = agent.wait_for("pre-existing client", |v| is_conn(v, "close", "client", local_port));
    assert_eq!(c["seen_from"], "mid_stream", "{c}");
    assert_eq!(c["pid"], client.pid());
    assert_eq!(c["bytes_sent"], sent, "{c}");
    assert_eq!(c["bytes_received"], received, "{c}");
    let s = agent.wait_for("pre-existing server side", |v| {
        is_conn(v, "close", "server", port) && port_of(&v["remote"]) == local_port
    });
    assert_eq!(s["seen_from"], "mid_stream", "{s}");
    assert_eq!(s["pid"], server.pid());
    assert_eq!(s["bytes_received"], sent);
    assert_eq!(s["bytes_sent"], received);
    agent.stop();
}

#[test]
fn refused_connection() {
    let agent = Agent::start(&[]);
    let port = free_port(); // nothing listens there
    let child =
        Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/")]).spawn().unwrap();
    let pid = child.id();
    let st = child.wait_with_output().unwrap().status;
    assert_eq!(st.code(), Some(7), "curl should fail to connect");
    let v = agent.wait_for("refused connect", |v| v["event"] == "connect_failed" && port_of(&v["remote"]) == port);
    assert_eq!(v["close_reason"], "refused", "{v}");
    assert_eq!(v["role"], "client");
    assert_eq!(v["pid"], pid);
    assert_eq!(v["comm"], "curl");
    agent.stop();
}

/// The payload prefix reaches userspace: /metrics counts socket I/O and the
/// kernel submitted every record it produced (no ring-buffer loss).
#[test]
fn metrics_and_readiness() {
    let agent = Agent::start(&[]);
    let (code, body) = http_get(agent.api, "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    let port = free_port();
    let _server = http_server("127.0.0.1", port, None, &site(10));
    for _ in 0..20 {
        curl(&format!("http://127.0.0.1:{port}/index.html"), None, &[]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.metric("tracer_events_received_total{kind=\"data\"}") < 40 {
        assert!(Instant::now() < deadline, "socket I/O not counted:\n{}", agent.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = agent.metrics();
    // 3 socket probes + exec and fork (identity).
    assert!(m.contains("tracer_probes_attached 5"), "{m}");
    // Every record the kernel submitted is decoded (none malformed, none
    // lost): from one scrape, what is missing is at most what the scrape's
    // own connection put in flight since the reader's last drain.
    std::thread::sleep(Duration::from_millis(300));
    let m = agent.metrics();
    let value = |series: &str| {
        m.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse::<f64>().ok())).unwrap_or(0.0) as u64
    };
    let received: u64 = ["state", "data", "accept", "exec", "fork"]
        .iter()
        .map(|k| value(&format!("tracer_events_received_total{{kind=\"{k}\"}}")))
        .sum();
    let submitted = value("tracer_kernel_total{counter=\"events_submitted\"}");
    assert!(received <= submitted && submitted - received <= 16, "submitted {submitted}, received {received}:\n{m}");
    agent.assert_no_drops();
    agent.stop();
}

fn our_bpf_programs() -> Vec<String> {
    let out = Command::new("bpftool").args(["-j", "prog", "list"]).output().expect("bpftool (apt install bpftool)");
    assert!(out.status.success());
    let progs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    // The kernel keeps the first 15 characters of a program's name.
    let ours = [
        "inet_sock_set_s",
        "sock_send_lengt",
        "sock_recv_lengt",
        "sys_enter_read",
        "sys_exit_read",
        "sys_exit_accept",
        "sched_process_e",
        "sched_process_f",
    ];
    progs
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| ours.iter().any(|o| n.starts_with(o)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn sigkill_leaves_no_program_behind() {
    let agent = Agent::start(&[]);
    assert!(!our_bpf_programs().is_empty(), "bpftool does not see the loaded programs");
    agent.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = our_bpf_programs();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "programs left after SIGKILL: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn without_privileges_says_what_is_missing() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .args([TRACER, "run", "--api-addr", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("setpriv (util-linux)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing capabilities CAP_BPF, CAP_PERFMON"), "stderr: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("tracer:")).count(), 1, "stderr: {err}");
}

/// Payload capture through iovecs (sendmsg/recvmsg, writev/readv) and TCP
/// sequence numbers that both ends agree on: the client's send and the
/// server's receive of the same bytes carry the same sequence number.
#[test]
fn payload_iovecs_and_sequence_numbers() {
    let agent = Agent::start(&["--data-events"]);
    let port = free_port();
    let script = format!(
        r#"
import os, socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {port})); srv.listen(1)
def serve():
    c, _ = srv.accept()
    a, b = bytearray(4), bytearray(100)
    c.recvmsg_into([a, b])                                   # recvmsg, 2 iovecs
    os.writev(c.fileno(), [b"HTTP/1.1 200", b" OK\r\n\r\n"])  # writev, 2 iovecs
    c.recv(100)                                              # recvfrom
    c.close()
t = threading.Thread(target=serve); t.start()
s = socket.create_connection(("127.0.0.1", {port}))
s.sendmsg([b"GET /a", b"b HTTP/1.1\r\n\r\n"])                # sendmsg, 2 iovecs
x, y = bytearray(3), bytearray(100)
os.readv(s.fileno(), [x, y])                                 # readv, 2 iovecs
s.send(b"PING\r\n")                                          # sendto
t.join()
print(s.getsockname()[1], flush=True)
"#
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cport: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    let data = |dir: &str, local: u16, head: &str| {
        agent.wait_for(&format!("{dir} {head} on :{local}"), |v| {
            v["type"] == "data" && v["direction"] == dir && port_of(&v["local"]) == local && v["payload_head"] == head
        })
    };
    let req_out = data("egress", cport, "GET /ab HTTP/1.1");
    let req_in = data("ingress", port, "GET /ab HTTP/1.1");
    let resp_out = data("egress", port, "HTTP/1.1 200 OK");
    let resp_in = data("ingress", cport, "HTTP/1.1 200 OK");
    let ping_out = data("egress", cport, "PING");
    let ping_in = data("ingress", port, "PING");
    assert_eq!(req_out["syscall"], "sendmsg");
    assert_eq!(req_in["syscall"], "recvmsg");
    assert_eq!(resp_out["syscall"], "writev");
    assert_eq!(resp_in["syscall"], "readv");
    assert_eq!(ping_out["syscall"], "sendto");
    assert_eq!(ping_in["syscall"], "recvfrom");
    assert_eq!(req_out["bytes"], 20);
    assert_eq!(req_out["payload_len"], 20);
    for (a, b) in [(&req_out, &req_in), (&resp_out, &resp_in), (&ping_out, &ping_in)] {
        assert!(a["seq"].is_u64(), "{a}");
        assert_eq!(a["seq"], b["seq"], "both ends see the same sequence number:\n{a}\n{b}");
    }
    let next = req_out["seq"].as_u64().unwrap() + req_out["bytes"].as_u64().unwrap();
    assert_eq!(ping_out["seq"].as_u64().unwrap(), next & 0xffff_ffff, "sequence continues");
    agent.stop();
}

/// `--capture-bytes` bounds the payload prefix; byte counts stay exact.
#[test]
fn capture_size_is_configurable() {
    let agent = Agent::start(&["--data-events", "--capture-bytes", "16"]);
    let port = free_port();
    let _server = http_server("127.0.0.1", port, None, &site(5000));
    let c = curl(&format!("http://127.0.0.1:{port}/index.html"), None, &[]);
    let v = agent.wait_for("request data", |v| {
        v["type"] == "data" && v["direction"] == "egress" && port_of(&v["local"]) == c.local_port
    });
    assert_eq!(v["payload_len"], 16, "{v}");
    assert_eq!(v["bytes"], c.bytes_sent, "{v}");
    assert_eq!(v["payload_head"], "GET /index.html ");
    agent.stop();
}

/// The server aborts with a RST (SO_LINGER 0): the client's connection
/// closes with reason "reset".
#[test]
fn reset_connection() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let script = format!(
        r#"
import socket, struct, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {port})); srv.listen(1)
def serve():
    c, _ = srv.accept()
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
t = threading.Thread(target=serve); t.start()
s = socket.create_connection(("127.0.0.1", {port}))
print(s.getsockname()[1], flush=True)
s.send(b"hello")
try:
    s.recv(100)
except ConnectionResetError:
    pass
t.join()
"#
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cport: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let v = agent.wait_for("reset client", |v| is_conn(v, "close", "client", cport));
    assert_eq!(v["close_reason"], "reset", "{v}");
    assert_eq!(v["bytes_sent"], 5);
    agent.stop();
}

/// SYNs into a black hole (a neighbour entry for a host that does not exist)
/// give up: "timeout". One SYN retry in that namespace keeps it to ~3 s.
#[test]
fn connect_timeout() {
    let ns = Netns::create();
    let a = &ns.names[0];
    let st = Command::new("sh")
        .args([
            "-ec",
            &format!(
                "ip netns exec {a} sysctl -qw net.ipv4.tcp_syn_retries=1
                 ip -n {a} neigh add 10.213.0.99 lladdr 02:00:00:00:00:99 dev v{a} nud permanent"
            ),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let agent = Agent::start(&[]);
    let script = r#"
import errno, socket
s = socket.socket()
try:
    s.connect(("10.213.0.99", 80))
except OSError as e:
    print(e.errno, flush=True)
"#;
    let child =
        Command::new("ip").args(["netns", "exec", a, "python3", "-c", script]).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), libc::ETIMEDOUT.to_string());
    let v = agent.wait_for("timed out connect", |v| v["event"] == "connect_failed" && v["remote"] == "10.213.0.99:80");
    assert_eq!(v["close_reason"], "timeout", "{v}");
    assert_eq!(v["pid"], pid);
    assert_eq!(v["role"], "client");
    agent.stop();
}

/// Exact accounting: every send of a known client is seen, none dropped.
#[test]
fn every_send_is_counted() {
    let agent = Agent::start(&[]);
    let port = free_port();
    let script = format!(
        r#"
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {port})); srv.listen(1)
def serve():
    c, _ = srv.accept()
    while c.recv(65536): pass
    c.close()
t = threading.Thread(target=serve); t.start()
s = socket.create_connection(("127.0.0.1", {port}))
total = 0
for i in range(500):
    total += s.send(b"x" * (1 + i % 300))
s.close(); t.join()
print(total, flush=True)
"#
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let total: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let v = agent
        .wait_for("the sender", |v| v["event"] == "close" && v["role"] == "client" && port_of(&v["remote"]) == port);
    assert_eq!(v["calls_sent"], 500, "{v}");
    assert_eq!(v["bytes_sent"], total, "{v}");
    let s = agent
        .wait_for("the receiver", |v| v["event"] == "close" && v["role"] == "server" && port_of(&v["local"]) == port);
    assert_eq!(s["bytes_received"], total, "{s}");
    agent.assert_no_drops();
    agent.stop();
}

/// With `--accept-hook`, a server connection is named by the process that
/// accepted it even when it never moves a byte.
#[test]
fn accept_hook_names_a_silent_server() {
    let agent = Agent::start(&["--accept-hook"]);
    assert_eq!(agent.metric("tracer_probes_attached"), 7);
    let port = free_port();
    let script = format!(
        r#"
import socket, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {port})); srv.listen(1)
c = socket.create_connection(("127.0.0.1", {port}))
s, _ = srv.accept()
time.sleep(0.2)
s.close(); c.close()
"#
    );
    let child = Command::new("python3").args(["-c", &script]).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let v = agent.wait_for("silent server", |v| is_conn(v, "open", "server", port));
    assert_eq!(v["pid"], pid, "{v}");
    assert_eq!(v["comm"], "python3");
    agent.stop();
}

/// Every thread of the agent asks for the long scheduler slice
/// (`[scheduler] slice_ms`, default 10 ms), so the traced applications
/// preempt it rather than wait behind it (see tracer/src/sched.rs).
#[test]
fn agent_threads_ask_for_long_scheduler_slices() {
    let agent = Agent::start(&[]);
    let tasks = std::fs::read_dir(format!("/proc/{}/task", agent.pid())).expect("the agent's threads");
    let mut n = 0;
    for t in tasks {
        let sched = std::fs::read_to_string(t.unwrap().path().join("sched")).expect("/proc/.../sched");
        let slice = sched.lines().find(|l| l.starts_with("se.slice")).expect("se.slice (Linux 6.12+)");
        assert!(slice.trim_end().ends_with(" 10000000"), "{}", sched.lines().next().unwrap_or_default());
        n += 1;
    }
    assert!(n >= 3, "main thread and tokio's workers: {n}");
    agent.stop();
}
