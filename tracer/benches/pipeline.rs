//! Throughput of the agent's userspace pipeline, one core, over a recorded
//! event stream (issue 3, point 9: at least 1 M events/s per core for parse
//! and pairing).
//!
//! Measured, each as elements per CPU-second of the bench thread (its
//! CPU time, not wall time, so the figure is per core even on a busy machine):
//! - `decode`: ring-buffer records (laid out as the probes write them: a
//!   `DataEvent` or `ConnEvent`, then the captured payload, 8-byte aligned in
//!   one buffer) -> `capture::decode::decode`, payload copy included.
//! - `conntrack+http`: the decoded events through `Table::apply` and
//!   `take_calls` on a fresh table per iteration: connection table,
//!   protocol detection, HTTP/1 framing and request/response pairing. This is
//!   the figure the target is about.
//! - `spans`: the calls that stream produces -> `chain::route::Router` (route
//!   templating) and `chain::span::http_span`. Elements are spans here.
//!
//! The stream is built once, deterministically (seeded): `CONNS` keep-alive
//! HTTP/1.1 connections between a client and a server process on the same
//! node, so both ends of every connection are traced (two sockets, four data
//! events per simple exchange). Each connection opens with its handshake
//! states (CLOSE->SYN_SENT, SYN_SENT->ESTABLISHED, SYN_RECV->ESTABLISHED),
//! carries 20 to 80 exchanges, then closes on both ends; exchanges of all
//! connections interleave round-robin, so every connection stays live in the
//! table as it would on a busy node. Requests: GETs with ids and queries
//! (~200-300 bytes of headers, half with a traceparent), POSTs whose JSON
//! body is a second write (the server reads head and body in one read).
//! Responses: Content-Length bodies from tens of bytes to 64 KiB (the server
//! writes head and body in one writev; the client reads in 16 KiB reads, so
//! later reads carry body bytes only), and chunked responses written one
//! chunk per write. Every data event keeps at most `CAPTURE` payload bytes
//! (the default `--capture-bytes`) and the full length in `bytes`, with TCP
//! sequence numbers and thread ids as the probes record them.
//!
//! Run: `AYA_BUILD_SKIP=1 cargo bench -p tracer --bench pipeline -- --noplot`
//! (or `cargo xtask bench`, which runs it before the nginx rounds).

use std::{hint::black_box, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use criterion::{
    Criterion, Throughput, criterion_group, criterion_main,
    measurement::{Measurement, ValueFormatter, WallTime},
};
use tracer::{
    capture::{
        decode::decode,
        event::{Comm, Data, Direction, Event, StateChange, Task, TcpStats, Tuple},
    },
    chain::{
        route::{RouteConfig, Router},
        span::{SpanConfig, http, http_span, kind_of},
    },
    conntrack::{CallRecord, Table, TableConfig, listen::ListenLookup},
    identity::Service,
    protocols::{Info, ProtocolConfig},
};
use tracer_common::event::{
    AF_INET, ConnEvent, DATA_EGRESS, DATA_SEQ_VALID, DataEvent, EVENT_VERSION, EventHeader, EventKind, SockTuple,
    Syscall, Task as RawTask, tcp_state,
};

/// Connections in the stream (each traced at both ends).
const CONNS: u32 = 300;
/// Payload bytes kept per data event (`--capture-bytes` default).
const CAPTURE: usize = 512;
/// The client's read buffer: larger responses take several reads.
const READ_BUF: usize = 16 * 1024;
const SERVER_PORT: u16 = 8080;
const CLIENT_PID: u32 = 4200;
const SERVER_PID: u32 = 700;

/// This thread's CPU time (CLOCK_THREAD_CPUTIME_ID): elements per CPU-second
/// is the per-core figure, and other work on a shared machine does not count.
struct CpuTime;

static NS_FORMAT: WallTime = WallTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid pointer to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        NS_FORMAT.formatter() // nanoseconds, printed as durations
    }
}

/// Only the server's port listens (asked for connections seen mid-stream).
struct Listening;

impl ListenLookup for Listening {
    fn is_listening(&mut self, _pid: u32, port: u16) -> bool {
        port == SERVER_PORT
    }
}

/// One end of a connection: its socket, thread and next sequence numbers.
struct End {
    sk: u64,
    tuple: Tuple,
    task: Task,
    tx_seq: u32,
    rx_seq: u32,
    tx: u64,
    rx: u64,
}

struct Conn {
    client: End,
    server: End,
    exchanges_left: u32,
}

struct Gen {
    events: Vec<Event>,
    ts: u64,
    rng: fastrand::Rng,
    /// JSON-looking bytes that bodies are cut from.
    filler: Vec<u8>,
    exchanges: usize,
}

fn task(pid: u32, tid: u32, name: &str) -> Task {
    let mut comm = [0u8; 16];
    comm[..name.len()].copy_from_slice(name.as_bytes());
    Task { pid, tid, comm: Comm(comm) }
}

impl Gen {
    fn tick(&mut self) -> u64 {
        self.ts += 1_000 + self.rng.u64(..4_000);
        self.ts
    }

    fn state(&mut self, e: &End, old: u8, new: u8, task: Option<Task>, port0: bool) {
        let mut tuple = e.tuple;
        if port0 {
            tuple.local.set_port(0); // connect(): the local port is bound later
        }
        let tcp = TcpStats { srtt_us: 40, total_retrans: 0, bytes_received: e.rx, bytes_acked: e.tx };
        let ts_ns = self.tick();
        self.events.push(Event::State(StateChange {
            ts_ns,
            sk: e.sk,
            tuple,
            old_state: old,
            new_state: new,
            task,
            sk_err: 0,
            tcp,
        }));
    }

    /// One syscall moving `bytes` on `e` in direction `dir`.
    fn data(&mut self, e: &mut End, dir: Direction, bytes: &[u8]) {
        let (seq, syscall) = match dir {
            Direction::Egress => (&mut e.tx_seq, Syscall::Writev),
            Direction::Ingress => (&mut e.rx_seq, Syscall::Read),
        };
        let start = *seq;
        *seq = seq.wrapping_add(bytes.len() as u32);
        match dir {
            Direction::Egress => e.tx += bytes.len() as u64,
            Direction::Ingress => e.rx += bytes.len() as u64,
        }
        let ts_ns = self.tick();
        self.events.push(Event::Data(Data {
            ts_ns,
            sk: e.sk,
            tuple: e.tuple,
            task: e.task,
            fd: 12,
            syscall,
            direction: dir,
            bytes: bytes.len() as u32,
            seq: Some(start),
            srtt_us: 40,
            payload: Bytes::copy_from_slice(&bytes[..bytes.len().min(CAPTURE)]),
            partial: false,
        }));
    }

    fn open(&mut self, i: u32) -> Conn {
        let server: SocketAddr = ([10, 0, 0, 2], SERVER_PORT).into();
        let client: SocketAddr = ([10, 0, 0, 1], 20_000 + i as u16).into();
        let isn = self.rng.u32(..);
        let isn2 = self.rng.u32(..);
        let mut c = Conn {
            client: End {
                sk: 0xffff_8880_0000_0000 + u64::from(i) * 0x2000,
                tuple: Tuple { local: client, remote: server },
                task: task(CLIENT_PID, CLIENT_PID + i % 4, "frontend"),
                tx_seq: isn,
                rx_seq: isn2,
                tx: 0,
                rx: 0,
            },
            server: End {
                sk: 0xffff_8880_0000_1000 + u64::from(i) * 0x2000,
                tuple: Tuple { local: server, remote: client },
                task: task(SERVER_PID, SERVER_PID + i % 2, "api"),
                tx_seq: isn2,
                rx_seq: isn,
                tx: 0,
                rx: 0,
            },
            exchanges_left: self.rng.u32(20..=80),
        };
        let t = c.client.task;
        self.state(&c.client, tcp_state::CLOSE, tcp_state::SYN_SENT, Some(t), true);
        self.state(&c.client, tcp_state::SYN_SENT, tcp_state::ESTABLISHED, None, false);
        self.state(&c.server, tcp_state::SYN_RECV, tcp_state::ESTABLISHED, None, false);
        c.exchanges_left = c.exchanges_left.max(1);
        c
    }

    fn close(&mut self, c: &Conn) {
        self.state(&c.client, tcp_state::FIN_WAIT2, tcp_state::CLOSE, None, false);
        self.state(&c.server, tcp_state::LAST_ACK, tcp_state::CLOSE, None, false);
    }

    fn exchange(&mut self, c: &mut Conn) {
        self.exchanges += 1;
        let r = &mut self.rng;
        let post = r.u32(..10) < 2;
        let mut head = if post {
            "POST /api/v1/orders HTTP/1.1\r\n".to_string()
        } else {
            format!("GET /api/v1/users/{}/orders?page={}&limit=50 HTTP/1.1\r\n", r.u32(1..1_000_000), r.u32(1..20))
        };
        head += "Host: api.internal:8080\r\nUser-Agent: frontend/2.3.1 (go-http-client/1.1)\r\n\
                 Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nX-Request-Id: ";
        head += &format!("{:032x}\r\n", r.u128(..));
        if r.bool() {
            head += &format!("traceparent: 00-{:032x}-{:016x}-01\r\n", r.u128(1..), r.u64(1..));
        }
        let body_len = if post { r.usize(80..2_000) } else { 0 };
        if post {
            head += &format!("Content-Type: application/json\r\nContent-Length: {body_len}\r\n");
        }
        head += "\r\n";
        let mut req = head.clone().into_bytes();
        req.extend_from_slice(&self.filler[..body_len]);
        // The client writes head and body separately; the server reads both at once.
        self.data(&mut c.client, Direction::Egress, head.as_bytes());
        if post {
            self.data(&mut c.client, Direction::Egress, &req[head.len()..]);
        }
        self.data(&mut c.server, Direction::Ingress, &req);

        let r = &mut self.rng;
        let status = match (post, r.u32(..100)) {
            (_, 0..2) => "500 Internal Server Error",
            (_, 2..6) => "404 Not Found",
            (true, _) => "201 Created",
            _ => "200 OK",
        };
        let mut resp = format!(
            "HTTP/1.1 {status}\r\nServer: nginx/1.24.0\r\nDate: Tue, 14 Apr 2026 10:00:00 GMT\r\n\
             Content-Type: application/json\r\nConnection: keep-alive\r\n"
        );
        if r.u32(..100) < 15 {
            resp += "Transfer-Encoding: chunked\r\n\r\n";
            let chunks: Vec<usize> = (0..r.usize(1..6)).map(|_| r.usize(100..4_000)).collect();
            self.both_ways(c, resp.as_bytes());
            for n in chunks {
                let mut chunk = format!("{n:x}\r\n").into_bytes();
                chunk.extend_from_slice(&self.filler[..n]);
                chunk.extend_from_slice(b"\r\n");
                self.both_ways(c, &chunk);
            }
            self.both_ways(c, b"0\r\n\r\n");
        } else {
            let n = match r.u32(..100) {
                0..70 => r.usize(20..400),
                70..90 => r.usize(1_000..8_000),
                _ => r.usize(16_000..64_000),
            };
            resp += &format!("Content-Length: {n}\r\n\r\n");
            let mut msg = resp.into_bytes();
            msg.extend_from_slice(&self.filler[..n]);
            self.data(&mut c.server, Direction::Egress, &msg);
            for part in msg.chunks(READ_BUF) {
                self.data(&mut c.client, Direction::Ingress, part);
            }
        }
    }

    /// The server writes `bytes` in one syscall, the client reads them in one.
    fn both_ways(&mut self, c: &mut Conn, bytes: &[u8]) {
        self.data(&mut c.server, Direction::Egress, bytes);
        self.data(&mut c.client, Direction::Ingress, bytes);
    }
}

/// The recorded stream: events in time order, and how many exchanges it holds.
fn stream() -> (Vec<Event>, usize) {
    let filler: Vec<u8> = br#"{"id":12345,"name":"widget","price":19.99,"tags":["a","b"]},"#
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect();
    let mut g = Gen { events: Vec::new(), ts: 1_000_000_000, rng: fastrand::Rng::with_seed(9), filler, exchanges: 0 };
    let mut conns: Vec<Conn> = (0..CONNS).map(|i| g.open(i)).collect();
    while !conns.is_empty() {
        for c in &mut conns {
            g.exchange(c);
            c.exchanges_left -= 1;
        }
        for c in conns.iter().filter(|c| c.exchanges_left == 0) {
            g.close(c);
        }
        conns.retain(|c| c.exchanges_left > 0);
    }
    (g.events, g.exchanges)
}

fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a #[repr(C)] record of integers without padding.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

fn raw_tuple(t: &Tuple) -> SockTuple {
    let v4 = |a: &SocketAddr| match a.ip() {
        std::net::IpAddr::V4(ip) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&ip.octets());
            out
        }
        std::net::IpAddr::V6(ip) => ip.octets(),
    };
    SockTuple {
        local_addr: v4(&t.local),
        remote_addr: v4(&t.remote),
        local_port: t.local.port(),
        remote_port: t.remote.port(),
        family: AF_INET,
        _pad: 0,
    }
}

fn raw_task(t: &Task) -> RawTask {
    RawTask { pid: t.pid, tid: t.tid, comm: t.comm.0 }
}

/// The stream as the probes write it: one buffer of 8-byte aligned records.
fn records(events: &[Event]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let (mut buf, mut at) = (Vec::new(), Vec::new());
    for ev in events {
        let start = buf.len();
        match ev {
            Event::State(s) => {
                let e = ConnEvent {
                    header: EventHeader {
                        kind: EventKind::Conn as u16,
                        version: EVENT_VERSION,
                        len: size_of::<ConnEvent>() as u32,
                        ts_ns: s.ts_ns,
                    },
                    sk: s.sk,
                    tuple: raw_tuple(&s.tuple),
                    task: s.task.as_ref().map(raw_task).unwrap_or_default(),
                    old_state: s.old_state,
                    new_state: s.new_state,
                    in_task: u8::from(s.task.is_some()),
                    srtt_us: s.tcp.srtt_us << 3,
                    bytes_received: s.tcp.bytes_received,
                    bytes_acked: s.tcp.bytes_acked,
                    ..Default::default()
                };
                buf.extend_from_slice(bytes_of(&e));
            }
            Event::Data(d) => {
                let egress = if d.direction == Direction::Egress { DATA_EGRESS } else { 0 };
                let e = DataEvent {
                    header: EventHeader {
                        kind: EventKind::Data as u16,
                        version: EVENT_VERSION,
                        len: (size_of::<DataEvent>() + d.payload.len()) as u32,
                        ts_ns: d.ts_ns,
                    },
                    sk: d.sk,
                    tuple: raw_tuple(&d.tuple),
                    task: raw_task(&d.task),
                    fd: d.fd,
                    bytes: d.bytes,
                    seq: d.seq.unwrap_or(0),
                    srtt_us: d.srtt_us << 3,
                    syscall: d.syscall as u8,
                    flags: DATA_SEQ_VALID | egress,
                    _pad: 0,
                    payload_len: d.payload.len() as u32,
                };
                buf.extend_from_slice(bytes_of(&e));
                buf.extend_from_slice(&d.payload);
            }
            Event::Accept(_) => unreachable!("the stream has no accept events"),
        }
        at.push((start, buf.len()));
        buf.resize(buf.len().next_multiple_of(8), 0);
    }
    (buf, at)
}

/// The whole stream through a fresh table; finished calls are handed to `sink`.
fn conntrack(events: &[Event], mut sink: impl FnMut(CallRecord)) {
    let mut table = Table::new(TableConfig::default(), Listening).with_protocols(ProtocolConfig::default());
    let mut out = Vec::new();
    for ev in events {
        let _ = table.apply(ev, &mut out);
        out.clear();
        table.take_calls().for_each(&mut sink);
    }
    assert!(table.is_empty(), "every connection of the stream closes");
}

fn benches(c: &mut Criterion<CpuTime>) {
    let (events, exchanges) = stream();
    let data = events.iter().filter(|e| matches!(e, Event::Data(_))).count();
    let mut calls = Vec::new();
    conntrack(&events, |call| calls.push(call));
    // The stream must parse cleanly, or the bench measures the resync path.
    let clean = |c: &CallRecord| match &c.exchange.info {
        Info::Http(h) => h.response.is_some() && !h.response_incomplete && h.response_body.is_some(),
    };
    assert_eq!(calls.len(), 2 * exchanges, "one call per exchange at each end");
    assert!(calls.iter().all(clean), "every exchange pairs with a complete response");
    let (buf, at) = records(&events);
    eprintln!(
        "stream: {} events ({data} data, {} state), {CONNS} connections, {exchanges} exchanges, \
         {} calls, {:.1} MiB of records",
        events.len(),
        events.len() - data,
        calls.len(),
        buf.len() as f64 / (1 << 20) as f64
    );

    let mut g = c.benchmark_group("pipeline");
    g.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            for &(s, e) in &at {
                black_box(decode(black_box(&buf[s..e])).expect("a valid record"));
            }
        })
    });
    g.bench_function("conntrack+http", |b| b.iter(|| conntrack(black_box(&events), |call| drop(black_box(call)))));

    let services =
        [CLIENT_PID, SERVER_PID].map(|pid| Arc::new(Service { name: format!("svc-{pid}"), ..Default::default() }));
    let cfg = SpanConfig::default();
    let mut router = Router::new(&RouteConfig::default()).expect("default routes");
    g.throughput(Throughput::Elements(calls.len() as u64));
    g.bench_function("spans", |b| {
        b.iter(|| {
            for call in &calls {
                let Some(h) = http(call) else { continue };
                let service = &services[usize::from(call.pid == Some(SERVER_PID))];
                let path = h.request.target.split('?').next().unwrap_or("");
                let (route, _) = router.route(&service.name, path);
                black_box(http_span(call, h, kind_of(call), &route, service.clone(), &cfg));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().with_measurement(CpuTime);
    targets = benches
}
criterion_main!(pipeline);
