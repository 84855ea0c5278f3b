//! End-to-end DNS on the real kernel. dnsmasq (Debian) is the resolver of a
//! network namespace the agent watches alone (`--netns`); it answers
//! api.example.test with the address of an HTTP server in a second
//! namespace (not watched: the server is an untraced peer, a virtual node).
//! Clients in the first namespace resolve and then call: getent (glibc,
//! sendto), python socket.getaddrinfo (glibc, A and AAAA in one sendmmsg)
//! then a request without Host, curl (Host header), dig over UDP and
//! `dig +tcp`. Checked against what dnsmasq was told: every DNS CLIENT span
//! (name, type, response code, answers, transport, the pid that resolved),
//! NXDOMAIN as an error, the HTTP spans' `server.address` and
//! `tracer.peer.name`, and the topology's virtual node named
//! `api.example.test:<port>`, never `10.213.0.2:<port>`. A second test
//! answers from a hostile resolver: answers for another name or id are
//! counted, not spans, and a name's odd bytes reach the span escaped.

mod common;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

/// dnsmasq's address, on the loopback of the clients' namespace.
const RESOLVER: &str = "10.53.0.53";
/// The server's address (Netns: the second namespace's end of the veth).
const SERVER_IP: &str = "10.213.0.2";
const NAME: &str = "api.example.test";

/// The clients' resolver configuration (`ip netns exec` bind-mounts
/// /etc/netns/<ns>/resolv.conf over /etc/resolv.conf), removed at drop.
struct ResolvConf(std::path::PathBuf);

impl ResolvConf {
    fn write(ns: &str) -> ResolvConf {
        let dir = std::path::PathBuf::from(format!("/etc/netns/{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {RESOLVER}\noptions timeout:2 attempts:1\n"))
            .unwrap();
        ResolvConf(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dnsmasq(ns: &str) -> Proc {
    let st = Command::new("ip").args(["-n", ns, "addr", "add", &format!("{RESOLVER}/32"), "dev", "lo"]).status();
    assert!(st.unwrap().success());
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts"])
            .args(["--bind-interfaces", &format!("--listen-address={RESOLVER}"), "--user=root", "--pid-file="])
            // example.test is answered here alone: other names are NXDOMAIN.
            .args(["--local=/example.test/", &format!("--host-record={NAME},{SERVER_IP}")])
            .args(["--log-facility=-", "--log-queries"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq"),
    );
    wait_listening(&format!("{RESOLVER}:53"), Some(ns));
    p
}

/// Run a program in `ns` to its end: (pid, stdout).
fn run_in(ns: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> (u32, String) {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    // `ip netns exec` execs the program: the pid is the program's.
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Resolve with getaddrinfo (AF_UNSPEC: A and AAAA), then GET / without a
/// Host header from the first IPv4 address.
const PY_CLIENT: &str = r#"
import socket, sys
infos = socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), type=socket.SOCK_STREAM)
addr = [i[4] for i in infos if i[0] == socket.AF_INET][0]
s = socket.create_connection(addr)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(addr[0], data.split(b" ")[1].decode())
"#;

fn dns_spans(agent: &Agent, what: &str, n: usize, pid: u32, qtype: &str) -> Vec<Value> {
    agent.wait_spans(what, n, |v| v["pid"] == pid && v["name"] == format!("DNS {qtype}"))
}

/// The span answered `name`/`qtype` from dnsmasq with `answers`, as a CLIENT
/// span over `transport` to the resolver.
fn assert_dns(s: &Value, name: &str, qtype: &str, rcode: &str, answers: &[&str], transport: &str) {
    assert_eq!(s["kind"], "client", "{s}");
    assert_eq!(attr(s, "network.protocol.name"), "dns", "{s}");
    assert_eq!(attr(s, "dns.question.name"), name, "{s}");
    assert_eq!(attr(s, "dns.question.type"), qtype, "{s}");
    assert_eq!(attr(s, "dns.response_code"), rcode, "{s}");
    assert_eq!(attr(s, "network.transport"), transport, "{s}");
    assert_eq!(attr(s, "network.peer.address"), RESOLVER, "{s}");
    assert_eq!(attr(s, "network.peer.port"), 53, "{s}");
    if answers.is_empty() {
        assert!(attr(s, "dns.answers").is_null(), "{s}");
    } else {
        assert_eq!(attr(s, "dns.answers"), &serde_json::json!(answers), "{s}");
    }
    let error = rcode != "NOERROR";
    assert_eq!(s["status"] == "error", error, "{s}");
    if error {
        assert_eq!(attr(s, "error.type"), rcode, "{s}");
    }
}

fn edges(agent: &Agent) -> BTreeMap<(String, String), Value> {
    let (status, body) = http_get(agent.api, "/api/topology?window=5m").expect("GET /api/topology");
    assert_eq!(status, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    let s = |v: &Value| v.as_str().unwrap().to_string();
    t["edges"].as_array().unwrap().iter().map(|e| ((s(&e["client"]), s(&e["server"])), e.clone())).collect()
}

#[test]
fn resolved_names_name_spans_and_virtual_nodes() {
    let net = Netns::create();
    let [clients, servers] = net.names.clone();
    let _resolv = ResolvConf::write(&clients);
    let _dnsmasq = dnsmasq(&clients);
    let port = free_port();
    let _server = http_server(SERVER_IP, port, Some(&servers), &site(64));
    let agent = Agent::start(&["--netns", &format!("/var/run/netns/{clients}")]);

    // getent: glibc, one query at a time (sendto).
    let (getent, out) = run_in(&clients, "getent", &["ahostsv4", NAME], &[]);
    assert!(out.contains(SERVER_IP), "getent resolved: {out}");
    let a = dns_spans(&agent, "getent's A query", 1, getent, "A");
    assert_dns(&a[0], NAME, "A", "NOERROR", &[SERVER_IP], "udp");
    let (missing, out) = run_in(&clients, "getent", &["ahostsv4", "missing.example.test"], &[]);
    assert!(out.is_empty(), "no address for a missing name: {out}");
    let nx = dns_spans(&agent, "the NXDOMAIN answer", 1, missing, "A");
    assert_dns(&nx[0], "missing.example.test", "A", "NXDOMAIN", &[], "udp");

    // python: A and AAAA in one sendmmsg, then a request without Host.
    let env = [("OTEL_SERVICE_NAME", "py-client")];
    let (py, out) = run_in(&clients, "python3", &["-c", PY_CLIENT, NAME, &port.to_string()], &env);
    assert_eq!(out.trim(), format!("{SERVER_IP} 200"), "python resolved and called");
    let a = dns_spans(&agent, "python's A query", 1, py, "A");
    assert_dns(&a[0], NAME, "A", "NOERROR", &[SERVER_IP], "udp");
    let aaaa = dns_spans(&agent, "python's AAAA query", 1, py, "AAAA");
    assert_dns(&aaaa[0], NAME, "AAAA", "NOERROR", &[], "udp");
    let http =
        agent.wait_spans("python's HTTP call", 1, |v| v["pid"] == py && !attr(v, "http.request.method").is_null());
    let h = &http[0];
    assert_eq!((h["kind"].as_str(), attr(h, "network.peer.address").as_str()), (Some("client"), Some(SERVER_IP)));
    assert_eq!(attr(h, "server.address"), NAME, "no Host: the resolved name: {h}");
    assert_eq!(attr(h, "tracer.peer.name"), NAME, "{h}");

    // curl: its Host header names the server; the address is named too.
    let c = curl(&format!("http://{NAME}:{port}/"), Some(&clients), &[]);
    assert_eq!(c.http_code, 200);
    let http =
        agent.wait_spans("curl's HTTP call", 1, |v| v["pid"] == c.pid && !attr(v, "http.request.method").is_null());
    assert_eq!(attr(&http[0], "server.address"), NAME, "{}", http[0]);
    assert_eq!(attr(&http[0], "tracer.peer.name"), NAME, "{}", http[0]);
    let a = dns_spans(&agent, "curl's A query", 1, c.pid, "A");
    assert_dns(&a[0], NAME, "A", "NOERROR", &[SERVER_IP], "udp");

    // dig: its own resolver (bind9's), over UDP and over TCP.
    for (flag, transport) in [("+notcp", "udp"), ("+tcp", "tcp")] {
        let (dig, out) = run_in(&clients, "dig", &[flag, "+short", NAME, "A"], &[]);
        assert_eq!(out.trim(), SERVER_IP, "dig {flag}");
        let a = dns_spans(&agent, &format!("dig {flag}"), 1, dig, "A");
        assert_eq!(a.len(), 1, "one span per query: {a:?}");
        assert_dns(&a[0], NAME, "A", "NOERROR", &[SERVER_IP], transport);
    }

    // Topology: the untraced server is the virtual node `name:port`.
    let node = format!("{NAME}:{port}");
    let got = wait_until("both HTTP calls on the named virtual node", Duration::from_secs(10), || {
        let e = edges(&agent);
        let done = [("py-client", &node), ("curl", &node)]
            .iter()
            .all(|(c, s)| e.get(&(c.to_string(), s.to_string())).is_some_and(|x| x["requests"] == 1));
        (done, e)
    });
    for client in ["py-client", "curl"] {
        let e = &got[&(client.to_string(), node.clone())];
        assert_eq!(e["connection_type"], "virtual_node", "{e}");
    }
    let by_ip = format!("{SERVER_IP}:{port}");
    assert!(got.keys().all(|(_, s)| *s != by_ip), "no node is named by the address: {got:#?}");
    // DNS calls are edges to the resolver (no answer names it).
    assert!(got.contains_key(&("py-client".to_string(), format!("{RESOLVER}:53"))), "{got:#?}");
    assert!(agent.metric("tracer_dns_names") >= 1, "{}", agent.metrics());
    agent.assert_no_drops();
    agent.stop();
}

/// A resolver that answers each query three times: first for another name
/// (an answer nobody asked for), then with another id, then rightly.
const FAKE_RESOLVER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
def answer(id, qname, ip):
    head = struct.pack(">HHHHHH", id, 0x8180, 1, 1, 0, 0)
    return head + qname + b"\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(ip)
while True:
    q, peer = s.recvfrom(512)
    id, qname = struct.unpack(">H", q[:2])[0], q[12:-4]
    s.sendto(answer(id, b"\x04evil\x07example\x04test\x00", "10.213.0.99"), peer)
    s.sendto(answer(id ^ 1, qname, "10.213.0.98"), peer)
    s.sendto(answer(id, qname, "10.213.0.77"), peer)
"#;

/// One query for a name with a quote, a NUL and upper case in a label,
/// then read the three answers.
const HOSTILE_CLIENT: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 53))
name = b'\x07We"ir\x00d\x07example\x04test\x00'
s.send(struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01")
for _ in range(3):
    s.recv(512)
print("ok")
"#;

#[test]
fn unasked_answers_are_counted_and_names_escaped() {
    const FAKE: &str = "10.53.0.54";
    let ns = Namespace::create("dnsh");
    let st = Command::new("ip").args(["-n", &ns.name, "addr", "add", &format!("{FAKE}/32"), "dev", "lo"]).status();
    assert!(st.unwrap().success());
    let mut fake = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", FAKE_RESOLVER, FAKE])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(fake.stdout.take().unwrap()), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let _fake = Proc(fake);
    let agent = Agent::start(&["--netns", &ns.path()]);
    let unpaired = r#"tracer_protocol_dropped_total{protocol="dns",reason="unpaired"}"#;
    let before = agent.metric(unpaired);

    let (pid, out) = run_in(&ns.name, "python3", &["-c", HOSTILE_CLIENT, FAKE], &[]);
    assert_eq!(out.trim(), "ok");
    let spans = dns_spans(&agent, "the hostile name's query", 1, pid, "A");
    let s = &spans[0];
    // Escaped as the conventions ask: no attacker byte reaches the span raw.
    assert_eq!(attr(s, "dns.question.name"), r"we\034ir\000d.example.test", "{s}");
    assert_eq!(attr(s, "dns.answers"), &serde_json::json!(["10.213.0.77"]), "only the paired answer: {s}");
    assert_eq!(attr(s, "network.peer.address"), FAKE);
    // The other name's answer and the other id's are counted, not spans.
    let n = wait_until("the two unasked answers counted", Duration::from_secs(10), || {
        let n = agent.metric(unpaired) - before;
        (n >= 2, n)
    });
    assert_eq!(n, 2);
    // Time for anything still in the pipeline to be printed.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.spans().iter().filter(|v| v["pid"] == pid).count(), 1, "one query, one span");
    agent.assert_no_drops();
    agent.stop();
}
