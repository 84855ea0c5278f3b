//! Unit tests of the connection table: one scenario per test, events in,
//! records out, driven through `Table::apply` and `Table::expire` only.

use std::net::SocketAddr;

use bytes::Bytes;
use tracer_common::event::{
    Syscall,
    tcp_state::{
        CLOSE, CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, LAST_ACK, LISTEN, SYN_RECV, SYN_SENT, TIME_WAIT,
    },
};

use super::*;
use crate::capture::event::Task;

const CLIENT_PID: u32 = 4242;
const SERVER_PID: u32 = 777;
const OTHER_PID: u32 = 9999;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

// ---- helpers ---------------------------------------------------------------

/// A `ListenLookup` that answers from a fixed set of ports and remembers
/// every question it was asked.
#[derive(Default)]
struct FakeListen {
    ports: Vec<u16>,
    asked: Vec<(u32, u16)>,
}

impl ListenLookup for FakeListen {
    fn is_listening(&mut self, pid: u32, port: u16) -> bool {
        self.asked.push((pid, port));
        self.ports.contains(&port)
    }
}

/// Closes are reported at once unless bytes were left unread (the race
/// linger has tests of its own).
fn cfg() -> TableConfig {
    TableConfig { close_race: Duration::ZERO, ..TableConfig::default() }
}

fn table() -> Table<FakeListen> {
    Table::new(cfg(), FakeListen::default())
}

/// A table where `ports` are listening ports.
fn listening_on(ports: &[u16]) -> Table<FakeListen> {
    let listen = FakeListen { ports: ports.to_vec(), asked: Vec::new() };
    Table::new(cfg(), listen)
}

fn capped(max_connections: usize) -> Table<FakeListen> {
    let cfg = TableConfig { max_connections, ..cfg() };
    Table::new(cfg, FakeListen::default())
}

fn idle_after(secs: u64) -> Table<FakeListen> {
    let cfg = TableConfig { idle_timeout: Duration::from_secs(secs), ..cfg() };
    Table::new(cfg, FakeListen::default())
}

fn tuple(local: &str, remote: &str) -> Tuple {
    let addr = |s: &str| -> SocketAddr { s.parse().expect("a test address") };
    Tuple { local: addr(local), remote: addr(remote) }
}

/// The client's side of the test connection.
fn client_tuple() -> Tuple {
    tuple("10.0.0.1:40000", "10.0.0.2:80")
}

/// The server's side of the test connection.
fn server_tuple() -> Tuple {
    tuple("10.0.0.2:80", "10.0.0.1:40000")
}

fn task(pid: u32, name: &str) -> Task {
    let mut comm = [0u8; 16];
    comm[..name.len()].copy_from_slice(name.as_bytes());
    Task { pid, tid: pid, comm: Comm(comm) }
}

fn curl() -> Task {
    task(CLIENT_PID, "curl")
}

fn nginx() -> Task {
    task(SERVER_PID, "nginx")
}

fn stats(srtt_us: u32, total_retrans: u32, bytes_received: u64, bytes_acked: u64) -> TcpStats {
    TcpStats { srtt_us, total_retrans, bytes_received, bytes_acked }
}

fn state_change(ts_ns: u64, sk: SockId, tuple: Tuple, old: u8, new: u8) -> StateChange {
    StateChange { ts_ns, sk, tuple, old_state: old, new_state: new, task: None, sk_err: 0, tcp: TcpStats::default() }
}

fn transition(ts_ns: u64, sk: SockId, tuple: Tuple, old: u8, new: u8) -> Event {
    Event::State(state_change(ts_ns, sk, tuple, old, new))
}

/// CLOSE -> SYN_SENT as connect() reports it: in the caller's context, before
/// the local port is bound.
fn connect(ts_ns: u64, sk: SockId, remote: &str, who: Task) -> Event {
    let mut s = state_change(ts_ns, sk, tuple("10.0.0.1:0", remote), CLOSE, SYN_SENT);
    s.task = Some(who);
    Event::State(s)
}

/// SYN_SENT -> ESTABLISHED: the client's handshake completed.
fn connected(ts_ns: u64, sk: SockId, tuple: Tuple) -> Event {
    transition(ts_ns, sk, tuple, SYN_SENT, ESTABLISHED)
}

/// SYN_RECV -> ESTABLISHED: the server's handshake completed (in softirq).
fn handshaken(ts_ns: u64, sk: SockId, tuple: Tuple) -> Event {
    transition(ts_ns, sk, tuple, SYN_RECV, ESTABLISHED)
}

/// `old` -> CLOSE with the kernel's error and counters.
fn close_with(ts: u64, sk: SockId, tuple: Tuple, old: u8, sk_err: i32, tcp: TcpStats) -> Event {
    let mut s = state_change(ts, sk, tuple, old, CLOSE);
    s.sk_err = sk_err;
    s.tcp = tcp;
    Event::State(s)
}

/// `old` -> CLOSE without an error.
fn close(ts_ns: u64, sk: SockId, tuple: Tuple, old: u8) -> Event {
    close_with(ts_ns, sk, tuple, old, 0, TcpStats::default())
}

fn accept(ts_ns: u64, sk: SockId, who: Task) -> Event {
    Event::Accept(Accept { ts_ns, sk, task: who, fd: 5 })
}

fn data(ts_ns: u64, sk: SockId, tuple: Tuple, task: Task, direction: Direction, bytes: u32) -> Event {
    let syscall = match direction {
        Direction::Egress => Syscall::Write,
        Direction::Ingress => Syscall::Read,
    };
    let payload = Bytes::new();
    let (fd, seq, srtt_us, partial) = (5, Some(1), 0, false);
    Event::Data(Data {
        ts_ns,
        sk,
        tuple,
        task,
        fd,
        syscall,
        direction,
        bytes,
        seq,
        srtt_us,
        payload,
        partial,
        goid: 0,
        tls: Default::default(),
        udp: false,
    })
}

/// The process wrote `bytes`.
fn tx(ts_ns: u64, sk: SockId, tuple: Tuple, who: Task, bytes: u32) -> Event {
    data(ts_ns, sk, tuple, who, Direction::Egress, bytes)
}

/// The process read `bytes`.
fn rx(ts_ns: u64, sk: SockId, tuple: Tuple, who: Task, bytes: u32) -> Event {
    data(ts_ns, sk, tuple, who, Direction::Ingress, bytes)
}

/// Applies one event that must be accepted; returns the records it completed.
fn apply<L: ListenLookup>(t: &mut Table<L>, ev: Event) -> Vec<ConnRecord> {
    let mut out = Vec::new();
    if let Err(e) = t.apply(&ev, &mut out) {
        panic!("{} event refused ({e:?}): {ev:?}", ev.kind());
    }
    out
}

/// Applies one event that must produce exactly one record.
fn apply_one<L: ListenLookup>(t: &mut Table<L>, ev: Event) -> ConnRecord {
    let out = apply(t, ev);
    assert_eq!(out.len(), 1, "expected exactly one record, got {out:#?}");
    out.into_iter().next().expect("length checked")
}

/// Applies one event that must produce no record.
fn apply_none<L: ListenLookup>(t: &mut Table<L>, ev: Event) {
    let out = apply(t, ev);
    assert!(out.is_empty(), "expected no record, got {out:#?}");
}

/// Every record a sequence of events produces, in order.
fn apply_all<L: ListenLookup>(t: &mut Table<L>, events: Vec<Event>) -> Vec<ConnRecord> {
    events.into_iter().flat_map(|ev| apply(t, ev)).collect()
}

/// Socket `sk` of curl connects at `ts` and is ESTABLISHED on `tuple` 1 ms
/// later; returns its Open.
fn established_client<L: ListenLookup>(t: &mut Table<L>, sk: SockId, ts: u64, tuple: Tuple) -> ConnRecord {
    apply_none(t, connect(ts, sk, &tuple.remote.to_string(), curl()));
    apply_one(t, connected(ts + MS, sk, tuple))
}

// ---- client ----------------------------------------------------------------

#[test]
fn connect_alone_emits_nothing_and_tracks_the_socket() {
    let mut t = table();
    assert!(t.is_empty());
    apply_none(&mut t, connect(100, 1, "10.0.0.2:80", curl()));
    assert_eq!(t.len(), 1);
    assert!(!t.is_empty());
}

#[test]
fn client_established_emits_one_open_with_the_connecting_process() {
    let mut t = table();
    apply_none(&mut t, connect(1_000, 1, "10.0.0.2:80", curl()));
    let open = apply_one(&mut t, connected(3_000, 1, client_tuple()));
    let want = ConnRecord {
        event: ConnEventKind::Open,
        ts_ns: 3_000,
        pid: Some(CLIENT_PID),
        comm: "curl".to_string(),
        role: Role::Client,
        // The bound local port comes from the ESTABLISHED event.
        local: "10.0.0.1:40000".to_string(),
        remote: "10.0.0.2:80".to_string(),
        start_ns: 1_000,
        duration_ns: 2_000,
        bytes_sent: 0,
        bytes_received: 0,
        calls_sent: 0,
        calls_received: 0,
        close_reason: None,
        sk_err: None,
        tcp: None,
        seen_from: SeenFrom::Handshake,
        protocol: None,
        l7_stopped: None,
        tls: false,
    };
    assert_eq!(open, want);
    assert_eq!(t.len(), 1);
}

#[test]
fn client_data_accumulates_both_directions_without_a_second_open() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    apply_none(&mut t, tx(2 * MS, 1, c, curl(), 100));
    apply_none(&mut t, rx(3 * MS, 1, c, curl(), 1_000));
    apply_none(&mut t, rx(4 * MS, 1, c, curl(), 500));
    apply_none(&mut t, tx(5 * MS, 1, c, curl(), 20));

    let r = apply_one(&mut t, close(6 * MS, 1, c, FIN_WAIT2));
    assert_eq!((r.bytes_sent, r.calls_sent), (120, 2));
    assert_eq!((r.bytes_received, r.calls_received), (1_500, 2));
}

#[test]
fn client_orderly_close_reports_counts_duration_and_tcp_stats() {
    let mut t = table();
    let c = client_tuple();
    apply_none(&mut t, connect(10 * MS, 7, "10.0.0.2:80", curl()));
    apply_one(&mut t, connected(11 * MS, 7, c));
    apply_none(&mut t, tx(12 * MS, 7, c, curl(), 78));
    apply_none(&mut t, rx(13 * MS, 7, c, curl(), 612));
    // Active close: the state walk in between emits nothing.
    apply_none(&mut t, transition(14 * MS, 7, c, ESTABLISHED, FIN_WAIT1));
    apply_none(&mut t, transition(15 * MS, 7, c, FIN_WAIT1, FIN_WAIT2));
    assert_eq!(t.len(), 1, "the entry lives until CLOSE");

    let tcp = stats(250, 1, 613, 80);
    let r = apply_one(&mut t, close_with(16 * MS, 7, c, FIN_WAIT2, 0, tcp));
    let want = ConnRecord {
        event: ConnEventKind::Close,
        ts_ns: 16 * MS,
        pid: Some(CLIENT_PID),
        comm: "curl".to_string(),
        role: Role::Client,
        local: "10.0.0.1:40000".to_string(),
        remote: "10.0.0.2:80".to_string(),
        start_ns: 10 * MS,
        duration_ns: 6 * MS,
        bytes_sent: 78,
        bytes_received: 612,
        calls_sent: 1,
        calls_received: 1,
        close_reason: Some(CloseReason::Normal),
        sk_err: None,
        tcp: Some(tcp),
        seen_from: SeenFrom::Handshake,
        protocol: None,
        l7_stopped: None,
        tls: false,
    };
    assert_eq!(r, want);
    assert_eq!(t.len(), 0);
    assert!(t.is_empty());
}

#[test]
fn close_from_every_closing_state_is_normal() {
    for old in [ESTABLISHED, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING] {
        let mut t = table();
        established_client(&mut t, 1, 0, client_tuple());
        let r = apply_one(&mut t, close(SEC, 1, client_tuple(), old));
        assert_eq!(r.event, ConnEventKind::Close, "old state {old}");
        assert_eq!(r.close_reason, Some(CloseReason::Normal), "old state {old}");
        assert_eq!(r.sk_err, None, "old state {old}");
        assert!(t.is_empty(), "old state {old}");
    }
}

#[test]
fn established_without_its_connect_still_opens_as_client() {
    // The CLOSE -> SYN_SENT event was lost: no owner yet, but still a client
    // from its handshake.
    let mut t = table();
    let c = client_tuple();
    let open = apply_one(&mut t, connected(5_000, 1, c));
    assert_eq!(open.event, ConnEventKind::Open);
    assert_eq!((open.pid, open.role), (None, Role::Client));
    assert_eq!(open.seen_from, SeenFrom::Handshake);
    assert_eq!(open.start_ns, 5_000);
    assert_eq!(t.len(), 1);

    // The first data event names the owner, without another Open.
    apply_none(&mut t, tx(6_000, 1, c, curl(), 1));
    let r = apply_one(&mut t, close(7_000, 1, c, FIN_WAIT1));
    assert_eq!((r.pid, r.comm.as_str()), (Some(CLIENT_PID), "curl"));
}

#[test]
fn data_from_another_process_keeps_the_owner() {
    // A forked child writing on an inherited socket does not take it over.
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    apply_none(&mut t, tx(2 * MS, 1, c, task(OTHER_PID, "child"), 10));
    let r = apply_one(&mut t, close(3 * MS, 1, c, FIN_WAIT1));
    assert_eq!((r.pid, r.comm.as_str()), (Some(CLIENT_PID), "curl"));
    assert_eq!(r.bytes_sent, 10, "the child's bytes still count on the connection");
}

#[test]
fn other_transitions_emit_nothing_and_keep_the_entry() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    for (old, new) in [(ESTABLISHED, CLOSE_WAIT), (CLOSE_WAIT, LAST_ACK), (LISTEN, SYN_RECV), (FIN_WAIT1, CLOSING)] {
        apply_none(&mut t, transition(2 * MS, 1, c, old, new));
        assert_eq!(t.len(), 1, "{old} -> {new}");
    }
}

// ---- server ----------------------------------------------------------------

#[test]
fn server_lifecycle_open_on_accept_then_data_then_close() {
    let mut t = table();
    let s = server_tuple();
    // The child socket becomes ESTABLISHED in softirq: no owner yet, no record.
    apply_none(&mut t, handshaken(SEC, 9, s));
    assert_eq!(t.len(), 1);

    let open = apply_one(&mut t, accept(SEC + 5 * MS, 9, nginx()));
    let want = ConnRecord {
        event: ConnEventKind::Open,
        ts_ns: SEC + 5 * MS,
        pid: Some(SERVER_PID),
        comm: "nginx".to_string(),
        role: Role::Server,
        local: "10.0.0.2:80".to_string(),
        remote: "10.0.0.1:40000".to_string(),
        start_ns: SEC,
        duration_ns: 5 * MS,
        bytes_sent: 0,
        bytes_received: 0,
        calls_sent: 0,
        calls_received: 0,
        close_reason: None,
        sk_err: None,
        tcp: None,
        seen_from: SeenFrom::Handshake,
        protocol: None,
        l7_stopped: None,
        tls: false,
    };
    assert_eq!(open, want);

    apply_none(&mut t, rx(SEC + 6 * MS, 9, s, nginx(), 78));
    apply_none(&mut t, tx(SEC + 7 * MS, 9, s, nginx(), 612));
    // Passive close.
    apply_none(&mut t, transition(SEC + 8 * MS, 9, s, ESTABLISHED, CLOSE_WAIT));
    apply_none(&mut t, transition(SEC + 9 * MS, 9, s, CLOSE_WAIT, LAST_ACK));
    let tcp = stats(40, 0, 79, 613);
    let r = apply_one(&mut t, close_with(SEC + 10 * MS, 9, s, LAST_ACK, 0, tcp));
    assert_eq!(r.event, ConnEventKind::Close);
    assert_eq!((r.pid, r.comm.as_str(), r.role), (Some(SERVER_PID), "nginx", Role::Server));
    assert_eq!(r.seen_from, SeenFrom::Handshake);
    assert_eq!((r.bytes_received, r.calls_received), (78, 1));
    assert_eq!((r.bytes_sent, r.calls_sent), (612, 1));
    assert_eq!((r.start_ns, r.duration_ns), (SEC, 10 * MS));
    assert_eq!(r.close_reason, Some(CloseReason::Normal));
    assert_eq!(r.tcp, Some(tcp));
    assert!(t.is_empty());
}

#[test]
fn accept_emits_open_only_once() {
    let mut t = table();
    apply_none(&mut t, handshaken(0, 9, server_tuple()));
    apply_one(&mut t, accept(MS, 9, nginx()));
    apply_none(&mut t, accept(2 * MS, 9, nginx()));
    apply_none(&mut t, rx(3 * MS, 9, server_tuple(), nginx(), 1));
}

#[test]
fn accept_for_an_unknown_socket_is_ignored() {
    let mut t = table();
    apply_none(&mut t, accept(MS, 9, nginx()));
    assert!(t.is_empty());
}

#[test]
fn server_whose_accept_was_lost_opens_on_its_first_data() {
    let mut t = table();
    apply_none(&mut t, handshaken(0, 9, server_tuple()));
    let open = apply_one(&mut t, rx(MS, 9, server_tuple(), nginx(), 40));
    assert_eq!(open.event, ConnEventKind::Open);
    assert_eq!((open.pid, open.role), (Some(SERVER_PID), Role::Server));
    assert_eq!(open.seen_from, SeenFrom::Handshake);
    assert!(t.listen.asked.is_empty(), "a known socket needs no listen lookup");
}

// ---- failures --------------------------------------------------------------

#[test]
fn refused_connect_emits_connect_failed() {
    let mut t = table();
    apply_none(&mut t, connect(SEC, 3, "10.0.0.2:81", curl()));
    // By the time the RST arrives the local port is bound.
    let bound = tuple("10.0.0.1:40001", "10.0.0.2:81");
    let tcp = TcpStats::default();
    let r = apply_one(&mut t, close_with(SEC + MS, 3, bound, SYN_SENT, libc::ECONNREFUSED, tcp));
    let want = ConnRecord {
        event: ConnEventKind::ConnectFailed,
        ts_ns: SEC + MS,
        pid: Some(CLIENT_PID),
        comm: "curl".to_string(),
        role: Role::Client,
        local: "10.0.0.1:40001".to_string(),
        remote: "10.0.0.2:81".to_string(),
        start_ns: SEC,
        duration_ns: MS,
        bytes_sent: 0,
        bytes_received: 0,
        calls_sent: 0,
        calls_received: 0,
        close_reason: Some(CloseReason::Refused),
        sk_err: Some(libc::ECONNREFUSED),
        tcp: Some(tcp),
        seen_from: SeenFrom::Handshake,
        protocol: None,
        l7_stopped: None,
        tls: false,
    };
    assert_eq!(r, want);
    assert!(t.is_empty());
}

#[test]
fn connect_timeout_emits_connect_failed_timeout() {
    let mut t = table();
    apply_none(&mut t, connect(0, 3, "10.0.0.3:80", curl()));
    let bound = tuple("10.0.0.1:40002", "10.0.0.3:80");
    let tcp = stats(0, 6, 0, 0);
    let r = apply_one(&mut t, close_with(127 * SEC, 3, bound, SYN_SENT, libc::ETIMEDOUT, tcp));
    assert_eq!(r.event, ConnEventKind::ConnectFailed);
    assert_eq!(r.close_reason, Some(CloseReason::Timeout));
    assert_eq!(r.sk_err, Some(libc::ETIMEDOUT));
    assert_eq!(r.pid, Some(CLIENT_PID));
    assert_eq!(r.duration_ns, 127 * SEC);
    assert_eq!(r.tcp, Some(tcp));
    assert!(t.is_empty());
}

#[test]
fn connect_unreachable_emits_connect_failed_unreachable() {
    for err in [libc::EHOSTUNREACH, libc::ENETUNREACH] {
        let mut t = table();
        apply_none(&mut t, connect(0, 3, "10.9.9.9:80", curl()));
        let bound = tuple("10.0.0.1:40003", "10.9.9.9:80");
        let r = apply_one(&mut t, close_with(MS, 3, bound, SYN_SENT, err, TcpStats::default()));
        assert_eq!(r.event, ConnEventKind::ConnectFailed, "sk_err {err}");
        assert_eq!(r.close_reason, Some(CloseReason::Unreachable), "sk_err {err}");
    }
}

#[test]
fn connect_abandoned_emits_connect_failed_aborted() {
    // The socket was closed while SYN_SENT, without any error.
    let mut t = table();
    apply_none(&mut t, connect(0, 3, "10.0.0.2:80", curl()));
    let r = apply_one(&mut t, close(MS, 3, client_tuple(), SYN_SENT));
    assert_eq!(r.event, ConnEventKind::ConnectFailed);
    assert_eq!(r.close_reason, Some(CloseReason::Aborted));
    assert_eq!(r.sk_err, None);
    assert_eq!(r.pid, Some(CLIENT_PID));
}

#[test]
fn reset_of_an_established_connection_is_close_reset() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    apply_none(&mut t, tx(2 * MS, 1, c, curl(), 5));
    let tcp = TcpStats::default();
    let r = apply_one(&mut t, close_with(3 * MS, 1, c, ESTABLISHED, libc::ECONNRESET, tcp));
    assert_eq!(r.event, ConnEventKind::Close);
    assert_eq!(r.close_reason, Some(CloseReason::Reset));
    assert_eq!(r.sk_err, Some(libc::ECONNRESET));
    assert_eq!((r.pid, r.bytes_sent), (Some(CLIENT_PID), 5));
    assert!(t.is_empty());
}

#[test]
fn retransmission_timeout_of_an_established_connection_is_close_timeout() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    let tcp = stats(0, 15, 0, 0);
    let r = apply_one(&mut t, close_with(900 * SEC, 1, c, ESTABLISHED, libc::ETIMEDOUT, tcp));
    assert_eq!(r.event, ConnEventKind::Close);
    assert_eq!(r.close_reason, Some(CloseReason::Timeout));
    assert_eq!(r.tcp.map(|s| s.total_retrans), Some(15));
}

#[test]
fn close_reason_mapping() {
    let cases = [
        (SYN_SENT, libc::ECONNREFUSED, CloseReason::Refused),
        (ESTABLISHED, libc::ECONNREFUSED, CloseReason::Refused),
        (SYN_SENT, libc::ETIMEDOUT, CloseReason::Timeout),
        (ESTABLISHED, libc::ETIMEDOUT, CloseReason::Timeout),
        (SYN_SENT, libc::EHOSTUNREACH, CloseReason::Unreachable),
        (ESTABLISHED, libc::ENETUNREACH, CloseReason::Unreachable),
        (ESTABLISHED, libc::ECONNRESET, CloseReason::Reset),
        (SYN_SENT, libc::ECONNRESET, CloseReason::Reset),
        (CLOSE_WAIT, libc::EPIPE, CloseReason::Reset),
        (SYN_SENT, 0, CloseReason::Aborted),
        (ESTABLISHED, 0, CloseReason::Normal),
        (FIN_WAIT1, 0, CloseReason::Normal),
        (LAST_ACK, 0, CloseReason::Normal),
        (ESTABLISHED, libc::EIO, CloseReason::Error),
        (SYN_SENT, libc::EPROTO, CloseReason::Error),
    ];
    for (old, err, want) in cases {
        assert_eq!(CloseReason::from(old, err), want, "old state {old}, sk_err {err}");
    }
}

// ---- mid-stream ------------------------------------------------------------

#[test]
fn mid_stream_data_on_a_listening_port_is_a_server() {
    let mut t = listening_on(&[80]);
    let open = apply_one(&mut t, rx(SEC, 5, server_tuple(), nginx(), 78));
    assert_eq!(open.event, ConnEventKind::Open);
    assert_eq!(open.role, Role::Server);
    assert_eq!((open.pid, open.comm.as_str()), (Some(SERVER_PID), "nginx"));
    assert_eq!(open.seen_from, SeenFrom::MidStream);
    assert_eq!((open.local.as_str(), open.remote.as_str()), ("10.0.0.2:80", "10.0.0.1:40000"));
    assert_eq!((open.start_ns, open.duration_ns), (SEC, 0));
    assert_eq!(t.listen.asked, [(SERVER_PID, 80)], "asked about the data's pid and local port");
    assert_eq!(t.len(), 1);
}

#[test]
fn mid_stream_data_on_a_non_listening_port_is_a_client() {
    // Port 80 listens in this namespace, but this socket's local port is not 80.
    let mut t = listening_on(&[80]);
    let open = apply_one(&mut t, tx(SEC, 5, client_tuple(), curl(), 78));
    assert_eq!((open.pid, open.role), (Some(CLIENT_PID), Role::Client));
    assert_eq!(open.seen_from, SeenFrom::MidStream);
    assert_eq!(t.listen.asked, [(CLIENT_PID, 40000)]);
}

#[test]
fn mid_stream_open_is_emitted_once_and_counts_keep_accumulating() {
    let mut t = listening_on(&[80]);
    let s = server_tuple();
    apply_one(&mut t, rx(SEC, 5, s, nginx(), 100));
    for i in 1..=5 {
        apply_none(&mut t, tx(SEC + i * MS, 5, s, nginx(), 10));
        apply_none(&mut t, rx(SEC + i * MS, 5, s, nginx(), 1));
    }
    assert_eq!(t.listen.asked.len(), 1, "the role is looked up once, on first sight");
    assert_eq!(t.len(), 1);

    let r = apply_one(&mut t, close(2 * SEC, 5, s, LAST_ACK));
    assert_eq!(r.event, ConnEventKind::Close);
    assert_eq!((r.role, r.seen_from), (Role::Server, SeenFrom::MidStream));
    assert_eq!((r.bytes_received, r.calls_received), (105, 6));
    assert_eq!((r.bytes_sent, r.calls_sent), (50, 5));
    assert_eq!((r.start_ns, r.duration_ns), (SEC, SEC));
    assert!(t.is_empty());
}

// ---- socket reuse ----------------------------------------------------------

#[test]
fn data_with_a_new_tuple_on_a_known_socket_replaces_the_stale_entry() {
    let mut t = table();
    established_client(&mut t, 1, 0, client_tuple());
    apply_none(&mut t, tx(2 * MS, 1, client_tuple(), curl(), 1_000));

    // The close of that connection was lost; the kernel reused the struct
    // sock for another connection of another process.
    let reused = tuple("10.0.0.1:50000", "10.0.0.7:443");
    let open = apply_one(&mut t, tx(SEC, 1, reused, task(OTHER_PID, "wget"), 7));
    assert_eq!(open.event, ConnEventKind::Open);
    assert_eq!((open.pid, open.comm.as_str()), (Some(OTHER_PID), "wget"));
    assert_eq!((open.role, open.seen_from), (Role::Client, SeenFrom::MidStream));
    assert_eq!((open.local.as_str(), open.remote.as_str()), ("10.0.0.1:50000", "10.0.0.7:443"));
    assert_eq!(open.start_ns, SEC);
    assert_eq!((open.bytes_sent, open.calls_sent), (7, 1), "nothing carried over from the stale entry");
    assert_eq!(t.len(), 1);

    let r = apply_one(&mut t, close(2 * SEC, 1, reused, FIN_WAIT2));
    assert_eq!(r.pid, Some(OTHER_PID));
    assert_eq!((r.bytes_sent, r.calls_sent), (7, 1));
    assert_eq!(r.duration_ns, SEC);
    assert!(t.is_empty());
}

#[test]
fn connect_on_a_known_socket_replaces_the_stale_entry() {
    let mut t = table();
    established_client(&mut t, 1, 0, client_tuple());
    apply_none(&mut t, tx(2 * MS, 1, client_tuple(), curl(), 1_000));

    // The close was lost; the same sk connects again for another process.
    apply_none(&mut t, connect(SEC, 1, "10.0.0.7:443", task(OTHER_PID, "wget")));
    let reused = tuple("10.0.0.1:50000", "10.0.0.7:443");
    let open = apply_one(&mut t, connected(SEC + MS, 1, reused));
    assert_eq!(open.pid, Some(OTHER_PID));
    assert_eq!((open.start_ns, open.bytes_sent), (SEC, 0));
    assert_eq!(t.len(), 1);
}

#[test]
fn data_on_a_known_socket_with_its_own_tuple_is_not_a_reuse() {
    let mut t = listening_on(&[80]);
    established_client(&mut t, 1, 0, client_tuple());
    apply_none(&mut t, tx(2 * MS, 1, client_tuple(), curl(), 1));
    assert!(t.listen.asked.is_empty());
    assert_eq!(t.len(), 1);
}

// ---- cap -------------------------------------------------------------------

#[test]
fn full_table_refuses_new_connections_and_keeps_serving_existing_ones() {
    let mut t = capped(2);
    let a = tuple("10.0.0.1:40001", "10.0.0.2:80");
    let b = tuple("10.0.0.1:40002", "10.0.0.2:80");
    let c = tuple("10.0.0.1:40003", "10.0.0.2:80");
    established_client(&mut t, 1, 0, a);
    established_client(&mut t, 2, 0, b);
    assert_eq!(t.len(), 2);

    let mut out = Vec::new();
    for ev in [
        connect(SEC, 3, "10.0.0.2:80", curl()),
        connected(SEC + MS, 3, c),
        tx(SEC + 2 * MS, 3, c, curl(), 1),
        handshaken(SEC, 4, server_tuple()),
    ] {
        assert_eq!(t.apply(&ev, &mut out), Err(Refused::Full), "{ev:?}");
    }
    assert!(out.is_empty(), "a refused connection emits nothing: {out:#?}");
    assert_eq!(t.len(), 2);

    // The tracked ones still count and close.
    apply_none(&mut t, tx(2 * SEC, 1, a, curl(), 11));
    apply_none(&mut t, rx(2 * SEC, 2, b, curl(), 22));
    let r = apply_one(&mut t, close(3 * SEC, 1, a, FIN_WAIT2));
    assert_eq!((r.pid, r.bytes_sent), (Some(CLIENT_PID), 11));
    assert_eq!(t.len(), 1);

    // With room again, a new connection is tracked.
    established_client(&mut t, 3, 4 * SEC, c);
    assert_eq!(t.len(), 2);
    let r = apply_one(&mut t, close(5 * SEC, 2, b, LAST_ACK));
    assert_eq!((r.pid, r.bytes_received), (Some(CLIENT_PID), 22));
}

#[test]
fn full_table_still_replaces_a_reused_socket() {
    let mut t = capped(2);
    established_client(&mut t, 1, 0, tuple("10.0.0.1:40001", "10.0.0.2:80"));
    established_client(&mut t, 2, 0, tuple("10.0.0.1:40002", "10.0.0.2:80"));

    // Same sk: not a new entry, so the cap does not apply.
    apply_none(&mut t, connect(SEC, 1, "10.0.0.7:443", task(OTHER_PID, "wget")));
    let reused = tuple("10.0.0.1:50000", "10.0.0.7:443");
    let open = apply_one(&mut t, tx(2 * SEC, 2, reused, task(OTHER_PID, "wget"), 3));
    assert_eq!(open.pid, Some(OTHER_PID));
    assert_eq!(t.len(), 2);
}

// ---- expiry ----------------------------------------------------------------

#[test]
fn expire_removes_only_idle_entries_and_counts_them() {
    let mut t = idle_after(10);
    let a = tuple("10.0.0.1:40001", "10.0.0.2:80");
    let b = tuple("10.0.0.1:40002", "10.0.0.2:80");
    let c = tuple("10.0.0.1:40003", "10.0.0.2:80");
    established_client(&mut t, 1, 0, a); // last event at 1 ms
    established_client(&mut t, 2, 0, b);
    established_client(&mut t, 3, 0, c);
    // b stays busy.
    apply_none(&mut t, tx(8 * SEC, 2, b, curl(), 1));
    assert_eq!(t.len(), 3);

    assert_eq!(t.expire(5 * SEC), 0, "nothing is idle for 10 s yet");
    assert_eq!(t.len(), 3);

    assert_eq!(t.expire(12 * SEC), 2);
    assert_eq!(t.len(), 1);
    // The survivor is the busy one, with its counters intact.
    let r = apply_one(&mut t, close(13 * SEC, 2, b, FIN_WAIT2));
    assert_eq!((r.pid, r.seen_from), (Some(CLIENT_PID), SeenFrom::Handshake));
    assert_eq!(r.bytes_sent, 1);
    assert!(t.is_empty());
    assert_eq!(t.expire(100 * SEC), 0);
}

#[test]
fn expire_keeps_entries_younger_than_the_timeout() {
    let mut t = idle_after(10);
    established_client(&mut t, 1, 0, client_tuple()); // last event at 1 ms
    assert_eq!(t.expire(MS + 10 * SEC - 1), 0);
    assert_eq!(t.len(), 1);
    assert_eq!(t.expire(MS + 11 * SEC), 1);
    assert!(t.is_empty());
}

#[test]
fn expire_with_a_clock_behind_the_last_event_keeps_the_entry() {
    let mut t = idle_after(10);
    established_client(&mut t, 1, 100 * SEC, client_tuple());
    assert_eq!(t.expire(SEC), 0);
    assert_eq!(t.len(), 1);
}

#[test]
fn accept_refreshes_the_idle_clock() {
    let mut t = idle_after(10);
    apply_none(&mut t, handshaken(0, 9, server_tuple()));
    apply_one(&mut t, accept(8 * SEC, 9, nginx()));
    assert_eq!(t.expire(12 * SEC), 0);
    assert_eq!(t.len(), 1);
}

#[test]
fn an_expired_connection_comes_back_mid_stream_on_its_next_byte() {
    // Documents the current behaviour: an idle keep-alive connection that
    // outlives idle_timeout is reported again as a new mid-stream connection.
    let mut t = idle_after(10);
    established_client(&mut t, 1, 0, client_tuple());
    assert_eq!(t.expire(20 * SEC), 1);
    let open = apply_one(&mut t, tx(21 * SEC, 1, client_tuple(), curl(), 4));
    assert_eq!(open.event, ConnEventKind::Open);
    assert_eq!((open.seen_from, open.start_ns), (SeenFrom::MidStream, 21 * SEC));
}

// ---- unknown sockets -------------------------------------------------------

#[test]
fn close_of_a_socket_never_seen_emits_an_unknown_close() {
    let mut t = table();
    let tcp = stats(300, 2, 4_096, 1_024);
    let r = apply_one(&mut t, close_with(5 * SEC, 42, client_tuple(), FIN_WAIT2, 0, tcp));
    let want = ConnRecord {
        event: ConnEventKind::Close,
        ts_ns: 5 * SEC,
        pid: None,
        comm: String::new(),
        role: Role::Unknown,
        local: "10.0.0.1:40000".to_string(),
        remote: "10.0.0.2:80".to_string(),
        start_ns: 5 * SEC,
        duration_ns: 0,
        bytes_sent: 0,
        bytes_received: 0,
        calls_sent: 0,
        calls_received: 0,
        close_reason: Some(CloseReason::Normal),
        sk_err: None,
        tcp: Some(tcp),
        seen_from: SeenFrom::MidStream,
        protocol: None,
        l7_stopped: None,
        tls: false,
    };
    assert_eq!(r, want);
    assert!(t.is_empty(), "a close never creates an entry");
}

#[test]
fn failure_of_a_connect_never_seen_is_an_unknown_connect_failed() {
    let mut t = table();
    let tcp = TcpStats::default();
    let r = apply_one(&mut t, close_with(SEC, 42, client_tuple(), SYN_SENT, libc::ECONNREFUSED, tcp));
    assert_eq!(r.event, ConnEventKind::ConnectFailed);
    assert_eq!(r.close_reason, Some(CloseReason::Refused));
    assert_eq!((r.pid, r.role), (None, Role::Unknown));
    assert!(t.is_empty());
}

// ---- output format ---------------------------------------------------------

#[test]
fn records_serialize_with_the_documented_names() {
    let mut t = table();
    apply_none(&mut t, connect(0, 3, "10.0.0.2:81", curl()));
    let bound = tuple("10.0.0.1:40001", "10.0.0.2:81");
    let tcp = stats(1, 2, 3, 4);
    let r = apply_one(&mut t, close_with(MS, 3, bound, SYN_SENT, libc::ECONNREFUSED, tcp));
    let v = serde_json::to_value(&r).expect("a record serializes");
    assert_eq!(v["event"], "connect_failed");
    assert_eq!(v["pid"], CLIENT_PID);
    assert_eq!(v["comm"], "curl");
    assert_eq!(v["role"], "client");
    assert_eq!(v["local"], "10.0.0.1:40001");
    assert_eq!(v["remote"], "10.0.0.2:81");
    assert_eq!(v["close_reason"], "refused");
    assert_eq!(v["sk_err"], libc::ECONNREFUSED);
    assert_eq!(v["seen_from"], "handshake");
    let want_tcp = serde_json::json!({"srtt_us": 1, "retransmits": 2, "bytes_received": 3, "bytes_acked": 4});
    assert_eq!(v["tcp"], want_tcp);

    // An Open has no close reason, sk_err or tcp counters at all.
    let open = apply_one(&mut t, rx(2 * MS, 4, server_tuple(), nginx(), 1));
    let v = serde_json::to_value(&open).expect("a record serializes");
    assert_eq!((v["event"].as_str(), v["seen_from"].as_str()), (Some("open"), Some("mid_stream")));
    for absent in ["close_reason", "sk_err", "tcp"] {
        assert!(v.get(absent).is_none(), "{absent} present in {v}");
    }

    let tcp = TcpStats::default();
    let reset = close_with(3 * MS, 5, client_tuple(), ESTABLISHED, libc::ECONNRESET, tcp);
    let v = serde_json::to_value(apply_one(&mut t, reset)).expect("a record serializes");
    assert_eq!((v["role"].as_str(), v["close_reason"].as_str()), (Some("unknown"), Some("reset")));
    assert!(v["pid"].is_null());
}

// ---- a tracked socket going through SYN_RECV -------------------------------

#[test]
fn simultaneous_open_keeps_the_connecting_client() {
    let mut t = table();
    // A socket connecting to its own port: SYN_SENT -> SYN_RECV (not
    // forwarded by the probe), then SYN_RECV -> ESTABLISHED.
    let me = tuple("127.0.0.1:40000", "127.0.0.1:40000");
    let events = vec![
        connect(0, 1, "127.0.0.1:40000", curl()),
        handshaken(MS, 1, me),
        tx(2 * MS, 1, me, curl(), 5),
        close(3 * MS, 1, me, FIN_WAIT2),
    ];
    let records = apply_all(&mut t, events);
    let opens: Vec<_> = records.iter().filter(|r| r.event == ConnEventKind::Open).collect();
    assert_eq!(opens.len(), 1, "{records:#?}");
    assert_eq!((opens[0].pid, opens[0].role), (Some(CLIENT_PID), Role::Client), "{records:#?}");
    let r = records.last().expect("a close");
    assert_eq!(r.event, ConnEventKind::Close);
    assert_eq!((r.pid, r.role), (Some(CLIENT_PID), Role::Client));
    assert_eq!(r.start_ns, 0, "the connection started at connect()");
    assert_eq!(r.seen_from, SeenFrom::Handshake);
}

#[test]
fn fast_open_server_read_before_established_is_one_connection() {
    let mut t = listening_on(&[80]);
    let s = server_tuple();
    let events = vec![
        // With TFO, accept() returns the child while it is still SYN_RECV.
        accept(0, 9, nginx()),
        // The request carried in the SYN is read before the final ACK.
        rx(MS, 9, s, nginx(), 78),
        handshaken(2 * MS, 9, s),
        tx(3 * MS, 9, s, nginx(), 612),
        close(4 * MS, 9, s, LAST_ACK),
    ];
    let records = apply_all(&mut t, events);
    let opens = records.iter().filter(|r| r.event == ConnEventKind::Open).count();
    assert_eq!(opens, 1, "one connection, one Open: {records:#?}");
    let r = records.last().expect("a close");
    assert_eq!(r.event, ConnEventKind::Close);
    assert_eq!((r.pid, r.role), (Some(SERVER_PID), Role::Server));
    assert_eq!((r.bytes_received, r.calls_received), (78, 1), "{r:#?}");
    assert_eq!((r.bytes_sent, r.calls_sent), (612, 1), "{r:#?}");
    assert_eq!(r.start_ns, MS);
}

// ---- half-close: the kernel closes before the process has read -----------

fn http_data(ts_ns: u64, sk: SockId, tuple: Tuple, direction: Direction, payload: &'static [u8]) -> Event {
    let Event::Data(mut d) = data(ts_ns, sk, tuple, curl(), direction, payload.len() as u32) else { unreachable!() };
    d.payload = Bytes::from_static(payload);
    Event::Data(d)
}

const REQUEST: &[u8] = b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// `shutdown(SHUT_WR)` then read: FIN_WAIT2 -> CLOSE comes when the server's
/// FIN arrives, before the read of the response queued ahead of it.
fn half_closed_client() -> (Table<FakeListen>, Tuple, TcpStats) {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    apply_none(&mut t, http_data(2 * MS, 1, c, Direction::Egress, REQUEST));
    // The kernel counts the FIN as one byte received.
    let tcp = stats(50, 0, RESPONSE.len() as u64 + 1, REQUEST.len() as u64 + 1);
    apply_none(&mut t, close_with(3 * MS, 1, c, FIN_WAIT2, 0, tcp));
    (t, c, tcp)
}

#[test]
fn half_closed_client_reads_its_response_after_the_kernel_closed() {
    let (mut t, c, tcp) = half_closed_client();
    assert_eq!(t.len(), 1, "the closed connection waits for its read");
    // The read comes after the close, with the local port already released.
    let released = tuple("10.0.0.1:0", "10.0.0.2:80");
    let r = apply_one(&mut t, http_data(4 * MS, 1, released, Direction::Ingress, RESPONSE));
    assert_eq!(r.event, ConnEventKind::Close);
    assert_eq!(r.local, c.local.to_string(), "the connection keeps its port");
    assert_eq!(r.ts_ns, 3 * MS, "the close is the kernel's");
    assert_eq!(r.bytes_received, RESPONSE.len() as u64);
    assert_eq!(r.tcp, Some(tcp));
    assert!(t.is_empty());
    let calls: Vec<_> = t.take_calls().collect();
    assert_eq!(calls.len(), 1, "one paired exchange: {calls:#?}");
    assert_eq!(calls[0].tuple, c);
    assert!(calls[0].exchange.response.is_some(), "the response is paired: {:?}", calls[0].exchange);
}

#[test]
fn half_closed_client_that_never_reads_is_reported_after_the_linger() {
    let (mut t, _, _) = half_closed_client();
    let mut out = Vec::new();
    t.flush_closed(3 * MS + 999 * MS, &mut out);
    assert!(out.is_empty());
    t.flush_closed(3 * MS + 1000 * MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, ConnEventKind::Close);
    assert!(t.is_empty());
    // A read after that is not a new connection.
    let released = tuple("10.0.0.1:0", "10.0.0.2:80");
    let mut out = Vec::new();
    let r = t.apply(&http_data(2 * SEC, 1, released, Direction::Ingress, RESPONSE), &mut out);
    assert_eq!(r, Err(Refused::AfterClose));
    assert!(t.is_empty() && out.is_empty());
}

#[test]
fn lingering_socket_reused_reports_the_old_close_first() {
    let (mut t, _, _) = half_closed_client();
    let other = tuple("10.0.0.1:40001", "10.0.0.2:80");
    // connect() of a new socket at the same address finishes the old one.
    let old = apply_one(&mut t, connect(5 * MS, 1, "10.0.0.2:80", curl()));
    assert_eq!(old.event, ConnEventKind::Close);
    assert_eq!(old.local, client_tuple().local.to_string());
    let new = apply_one(&mut t, connected(6 * MS, 1, other));
    assert_eq!(new.event, ConnEventKind::Open);
    assert_eq!(new.local, other.local.to_string());
    assert_eq!(t.len(), 1);
}

#[test]
fn close_after_everything_was_read_is_reported_at_once() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    apply_none(&mut t, http_data(2 * MS, 1, c, Direction::Egress, REQUEST));
    apply_none(&mut t, http_data(3 * MS, 1, c, Direction::Ingress, RESPONSE));
    let tcp = stats(50, 0, RESPONSE.len() as u64 + 1, REQUEST.len() as u64 + 1);
    let r = apply_one(&mut t, close_with(4 * MS, 1, c, FIN_WAIT2, 0, tcp));
    assert_eq!(r.event, ConnEventKind::Close);
    assert!(t.is_empty());
}

#[test]
fn a_write_racing_a_reset_belongs_to_its_connection() {
    // The server's reply returns after the client's reset closed the socket
    // (local port already released): the default config waits for it.
    let mut t = Table::new(TableConfig::default(), FakeListen::default());
    let s = server_tuple();
    apply_none(&mut t, handshaken(0, 9, s));
    apply(&mut t, accept(MS, 9, nginx()));
    apply_none(&mut t, rx(2 * MS, 9, s, nginx(), 10));
    let tcp = stats(50, 0, 10, 0);
    apply_none(&mut t, close_with(3 * MS, 9, s, ESTABLISHED, libc::ECONNRESET, tcp));
    let released = tuple("10.0.0.2:0", "10.0.0.1:40000");
    apply_none(&mut t, tx(3 * MS + 10_000, 9, released, nginx(), 20));
    apply_none(&mut t, tx(3 * MS + 20_000, 9, released, nginx(), 30));
    let mut out = Vec::new();
    t.flush_closed(3 * MS + 49 * MS, &mut out);
    assert!(out.is_empty());
    t.flush_closed(3 * MS + 50 * MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].event, out[0].close_reason), (ConnEventKind::Close, Some(CloseReason::Reset)));
    assert_eq!((out[0].bytes_sent, out[0].calls_sent), (50, 2));
    assert_eq!(out[0].local, s.local.to_string());
    assert!(t.is_empty());
}

// ---- parser drops ------------------------------------------------------------

#[test]
fn parser_drops_are_summed_per_protocol() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    apply_none(&mut t, http_data(2 * MS, 1, c, Direction::Egress, REQUEST));
    apply_none(&mut t, http_data(3 * MS, 1, c, Direction::Ingress, RESPONSE));
    // A second response that no request waits for, long after the first.
    apply_none(&mut t, http_data(2 * SEC, 1, c, Direction::Ingress, RESPONSE));
    apply_none(&mut t, http_data(3 * SEC, 1, c, Direction::Egress, REQUEST));
    let l7 = t.take_l7_counters();
    assert_eq!(l7.detected, 1);
    assert_eq!(l7.parsers.len(), 1, "{l7:?}");
    assert_eq!(l7.parsers[0].0, "http");
    assert_eq!(l7.parsers[0].1.unpaired, 1, "{l7:?}");
    assert!(t.take_l7_counters().parsers.is_empty(), "taken once");
}

#[test]
fn a_message_start_split_over_reads_is_detected_and_parsed_whole() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    // The request line arrives over two writes, neither recognisable alone.
    apply_none(&mut t, http_data(2 * MS, 1, c, Direction::Egress, b"GE"));
    apply_none(&mut t, http_data(2 * MS + 1, 1, c, Direction::Egress, b"T /split HTTP/1.1\r\nHost: x\r\n\r\n"));
    apply_none(&mut t, http_data(3 * MS, 1, c, Direction::Ingress, RESPONSE));
    let l7 = t.take_l7_counters();
    assert_eq!((l7.detected, l7.unknown), (1, 0));
    let calls: Vec<_> = t.take_calls().collect();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let crate::protocols::Info::Http(h) = &calls[0].exchange.info else { panic!("not HTTP") };
    assert_eq!(h.request.target, "/split");
    assert_eq!(calls[0].exchange.request.first_ns, 2 * MS, "the request starts at its first byte");
}

// ---- TLS ---------------------------------------------------------------------

/// A data event of the given TLS layer.
fn tls_data(ts_ns: u64, c: Tuple, direction: Direction, layer: Tls, payload: &'static [u8], bytes: u32) -> Event {
    let Event::Data(mut d) = http_data(ts_ns, 1, c, direction, payload) else { unreachable!() };
    d.tls = layer;
    d.bytes = bytes;
    Event::Data(d)
}

#[test]
fn tls_plaintext_is_parsed_and_ciphertext_only_counted() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    // Handshake records (outside any library read/write): never parsed.
    apply_none(
        &mut t,
        tls_data(MS, c, Direction::Egress, Tls::No, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfcGET / HTTP/1.1", 517),
    );
    apply_none(&mut t, tls_data(MS + 1, c, Direction::Ingress, Tls::No, b"\x16\x03\x03\x00\x7a\x02", 1200));
    // The request: ciphertext inside SSL_write, then its plaintext.
    apply_none(&mut t, tls_data(2 * MS, c, Direction::Egress, Tls::Cipher, b"", 60));
    apply_none(&mut t, tls_data(2 * MS + 1, c, Direction::Egress, Tls::Plain, REQUEST, REQUEST.len() as u32));
    apply_none(&mut t, tls_data(3 * MS, c, Direction::Ingress, Tls::Cipher, b"", 80));
    apply_none(&mut t, tls_data(3 * MS + 1, c, Direction::Ingress, Tls::Plain, RESPONSE, RESPONSE.len() as u32));
    let calls: Vec<_> = t.take_calls().collect();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let crate::protocols::Info::Http(h) = &calls[0].exchange.info else { panic!("not HTTP") };
    assert_eq!(h.request.target, "/half");
    assert!(h.tls, "read from TLS plaintext: https");
    let l7 = t.take_l7_counters();
    assert_eq!((l7.detected, l7.unknown), (1, 0), "handshake bytes are neither a protocol nor given up on");
    let out = apply_one(&mut t, close(4 * MS, 1, c, ESTABLISHED));
    assert!(out.tls);
    assert_eq!(out.protocol, Some("http"));
    // TCP bytes are the ciphertext's; plaintext is not counted again.
    assert_eq!((out.bytes_sent, out.bytes_received), (517 + 60, 1200 + 80));
}

#[test]
fn a_socket_given_up_on_is_handed_to_the_kernel_once() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    for i in 0..12 {
        apply_none(&mut t, http_data(MS + i, 1, c, Direction::Egress, b"\x00\x01binary frame"));
    }
    assert_eq!(t.take_count_only().collect::<Vec<_>>(), vec![1], "given up after its first segments, once");
    assert_eq!(t.take_count_only().count(), 0);
}

#[test]
fn an_http2_socket_asks_the_kernel_for_wide_captures_once() {
    let mut t = table();
    let c = client_tuple();
    established_client(&mut t, 1, 0, c);
    apply_none(&mut t, http_data(MS, 1, c, Direction::Egress, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    apply_none(&mut t, http_data(MS + 1, 1, c, Direction::Egress, b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"));
    assert_eq!(t.take_wide().collect::<Vec<_>>(), vec![1], "detected as HTTP/2: wide, once");
    assert_eq!(t.take_wide().count(), 0);
    assert_eq!(t.take_count_only().count(), 0);
}
