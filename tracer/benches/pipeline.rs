//! Throughput of the userspace pipeline over a recorded event stream (issue 3,
//! point 9: parse and pairing at 1 M events/s per core or more). Figures are
//! elements per CPU-second of the bench thread (`iter_custom` times thread CPU
//! time, not wall time), so they are per core even on a busy machine:
//! - `decode`: ring-buffer records as the probes lay them out (`DataEvent` or
//!   `ConnEvent`, then the captured payload, 8-byte aligned) -> `decode`.
//! - `conntrack+http`: the events through `Table::apply` + `take_calls` on a
//!   fresh table per iteration: connection table, protocol detection, HTTP/1
//!   framing and request/response pairing. The figure the target is about.
//! - `spans`: the calls of that stream -> `Describer::describe` + `chain::build::span`
//!   (elements are spans).
//! - `link_spans`: those spans through the linker (`chain::link`): held,
//!   parents and trace ids resolved (peer-socket rule, both ends are in the
//!   stream), released; default limits, so past 30 000 held spans the oldest
//!   leave early as on a busy node (elements are spans).
//! - `link_spans+business`: the same with the business matcher naming each
//!   entry span's transaction and the linker carrying it down its chain.
//! - `otlp_encode_spans`: those spans -> OTLP `ExportTraceServiceRequest`s
//!   (batches of 512, grouped by service instance, cut under 4 MiB) -> protobuf
//!   bytes, what the exporter does before compression and the network
//!   (elements are spans).
//!
//! The stream is built once, seeded: `CONNS` keep-alive HTTP/1.1 connections
//! between a client and a server process of one node, both ends traced. Each
//! opens with its handshake states, carries 20 to 80 exchanges, then closes at
//! both ends; exchanges of all connections interleave, so all stay live in the
//! table. Requests: GETs with ids and queries (~250 bytes of headers, half
//! with a traceparent) and POSTs whose JSON body is a second write (the server
//! reads head and body at once). Responses: Content-Length bodies of 20 bytes
//! to 64 KiB in one writev (the client reads 16 KiB at a time, so later reads
//! carry body bytes only) and chunked ones, one chunk per write. Each data
//! event keeps at most `CAPTURE` payload bytes and the full length in `bytes`,
//! with sequence numbers and thread ids as the probes record them.
//!
//! Run: `AYA_BUILD_SKIP=1 cargo bench -p tracer --bench pipeline -- --noplot`,
//! or `cargo xtask bench`, which runs it before the nginx rounds.

mod common;
use common::{cpu_time, thread_cpu};

use std::{
    hint::black_box,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tracer::{
    business::{BusinessConfig, Matcher},
    capture::{
        decode::decode,
        event::{Comm, Data, Direction, Event, StateChange, Task, TcpStats, Tuple},
    },
    chain::{
        build::{kind_of, span},
        link::{LinkConfig, Linker},
    },
    clock::Clock,
    conntrack::{CallRecord, Table, TableConfig, listen::ListenLookup},
    export::otlp::Encoder,
    identity::Service,
    protocols::{
        Info, ProtocolConfig,
        registry::{DescribeConfig, Describer},
    },
};
use tracer_common::event::{
    AF_INET, ConnEvent, DATA_EGRESS, DATA_SEQ_VALID, DataEvent, EVENT_VERSION, EventHeader, EventKind, SockTuple,
    Syscall, Task as RawTask, tcp_state,
};

/// The allocator the agent ships with (tracer/src/main.rs), so the figures
/// are the agent's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connections in the stream (each traced at both ends).
const CONNS: u32 = 300;
/// Payload bytes kept per data event (`--capture-bytes` default).
const CAPTURE: usize = 512;
/// The client's read buffer: larger responses take several reads.
const READ_BUF: usize = 16 * 1024;
const SERVER_PORT: u16 = 8080;
const CLIENT_PID: u32 = 4200;
const SERVER_PID: u32 = 700;

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
        let tcp = TcpStats { srtt_us: 40, ..TcpStats::default() };
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
            goid: 0,
            tls: Default::default(),
            udp: false,
        }));
    }

    fn open(&mut self, i: u32) -> Conn {
        let server: SocketAddr = ([10, 0, 0, 2], SERVER_PORT).into();
        let client: SocketAddr = ([10, 0, 0, 1], 20_000 + i as u16).into();
        let (isn, isn2) = (self.rng.u32(..), self.rng.u32(..));
        let sk = 0xffff_8880_0000_0000 + u64::from(i) * 0x2000;
        let end =
            |sk, local, remote, task, tx_seq, rx_seq| End { sk, tuple: Tuple { local, remote }, task, tx_seq, rx_seq };
        let c = Conn {
            client: end(sk, client, server, task(CLIENT_PID, CLIENT_PID + i % 4, "frontend"), isn, isn2),
            server: end(sk + 0x1000, server, client, task(SERVER_PID, SERVER_PID + i % 2, "api"), isn2, isn),
            exchanges_left: self.rng.u32(20..=80),
        };
        let t = c.client.task;
        self.state(&c.client, tcp_state::CLOSE, tcp_state::SYN_SENT, Some(t), true);
        self.state(&c.client, tcp_state::SYN_SENT, tcp_state::ESTABLISHED, None, false);
        self.state(&c.server, tcp_state::SYN_RECV, tcp_state::ESTABLISHED, None, false);
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
    let filler = br#"{"id":12345,"name":"widget","price":19.99,"tags":["a","b"]},"#.repeat(1_200);
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
    let v4 = |a: &SocketAddr| {
        let mut out = [0u8; 16];
        if let IpAddr::V4(ip) = a.ip() {
            out[..4].copy_from_slice(&ip.octets());
        }
        out
    };
    let (local_port, remote_port) = (t.local.port(), t.remote.port());
    SockTuple {
        local_addr: v4(&t.local),
        remote_addr: v4(&t.remote),
        local_port,
        remote_port,
        family: AF_INET,
        _pad: 0,
    }
}

fn raw_task(t: &Task) -> RawTask {
    RawTask { pid: t.pid, tid: t.tid, comm: t.comm.0 }
}

fn header(kind: EventKind, len: usize, ts_ns: u64) -> EventHeader {
    EventHeader { kind: kind as u16, version: EVENT_VERSION, len: len as u32, ts_ns }
}

/// The stream as the probes write it: one buffer of 8-byte aligned records.
fn records(events: &[Event]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let (mut buf, mut at) = (Vec::new(), Vec::new());
    for ev in events {
        let start = buf.len();
        match ev {
            Event::State(s) => buf.extend_from_slice(bytes_of(&ConnEvent {
                header: header(EventKind::Conn, size_of::<ConnEvent>(), s.ts_ns),
                sk: s.sk,
                tuple: raw_tuple(&s.tuple),
                task: s.task.as_ref().map(raw_task).unwrap_or_default(),
                old_state: s.old_state,
                new_state: s.new_state,
                in_task: u8::from(s.task.is_some()),
                srtt_us: s.tcp.srtt_us << 3,
                ..Default::default()
            })),
            Event::Data(d) => {
                let egress = if d.direction == Direction::Egress { DATA_EGRESS } else { 0 };
                buf.extend_from_slice(bytes_of(&DataEvent {
                    header: header(EventKind::Data, size_of::<DataEvent>() + d.payload.len(), d.ts_ns),
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
                    goid: d.goid,
                }));
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
#[inline(never)]
fn conntrack(events: &[Event], mut sink: impl FnMut(CallRecord)) {
    let mut table = Table::new(TableConfig::default(), Listening).with_protocols(ProtocolConfig::default());
    let mut out = Vec::new();
    for ev in events {
        let _ = table.apply(ev, &mut out);
        out.clear();
        table.take_calls().for_each(&mut sink);
    }
    // Closes wait a little for calls that raced them (the agent flushes them
    // on a timer): the stream is over.
    table.flush_closed(u64::MAX, &mut out);
    table.take_calls().for_each(&mut sink);
    assert!(table.is_empty(), "every connection of the stream closes");
}

fn benches(c: &mut Criterion) {
    let (events, exchanges) = stream();
    let data = events.iter().filter(|e| matches!(e, Event::Data(_))).count();
    let mut calls = Vec::new();
    conntrack(&events, |call| calls.push(call));
    // The stream must parse cleanly, or the bench measures the resync path.
    let clean = |c: &CallRecord| match &c.exchange.info {
        Info::Http(h) => h.response.is_some() && !h.response_incomplete && h.response_body.is_some(),
        _ => false,
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
    // Iterations of tens of ms: few samples, each of the same iteration count.
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("decode", |b| {
        b.iter_custom(|n| {
            cpu_time(n, || {
                for &(s, e) in &at {
                    black_box(decode(black_box(&buf[s..e])).expect("a valid record"));
                }
            })
        })
    });
    g.bench_function("conntrack+http", |b| {
        b.iter_custom(|n| cpu_time(n, || conntrack(black_box(&events), |call| drop(black_box(call)))))
    });

    let services =
        [CLIENT_PID, SERVER_PID].map(|pid| Arc::new(Service { name: format!("svc-{pid}"), ..Default::default() }));
    let mut describer = Describer::new(&DescribeConfig::default()).expect("default routes");
    g.throughput(Throughput::Elements(calls.len() as u64));
    g.bench_function("spans", |b| {
        b.iter_custom(|n| {
            cpu_time(n, || {
                for call in &calls {
                    let service = &services[usize::from(call.pid == Some(SERVER_PID))];
                    let d = describer.describe(&call.exchange.info, kind_of(call), &service.name);
                    black_box(span(call, d, kind_of(call), service.clone()));
                }
            })
        })
    });

    let spans: Vec<Arc<_>> = calls
        .iter()
        .map(|call| {
            let service = &services[usize::from(call.pid == Some(SERVER_PID))];
            let d = describer.describe(&call.exchange.info, kind_of(call), &service.name);
            Arc::new(span(call, d, kind_of(call), service.clone()))
        })
        .collect();
    g.bench_function("link_spans", |b| {
        b.iter_custom(|n| {
            let owned: Vec<Vec<_>> = (0..n).map(|_| spans.iter().map(|s| (**s).clone()).collect()).collect();
            let mut out = Vec::with_capacity(spans.len());
            let start = thread_cpu();
            for batch in owned {
                let mut linker = Linker::new(LinkConfig::default());
                for s in batch {
                    linker.insert(s, &mut out);
                }
                linker.release_due(u64::MAX, &mut out);
                black_box(out.len());
                out.clear();
            }
            thread_cpu() - start
        })
    });

    // The same with the business matcher naming every entry span's
    // transaction (default rules: `{service} {method} {route}`) and the
    // linker carrying it down the chain: the cost of issue 16 on the chain stage.
    g.bench_function("link_spans+business", |b| {
        b.iter_custom(|n| {
            let owned: Vec<Vec<_>> = (0..n).map(|_| spans.iter().map(|s| (**s).clone()).collect()).collect();
            let mut out = Vec::with_capacity(spans.len());
            let start = thread_cpu();
            for batch in owned {
                let matcher = Matcher::new(&BusinessConfig::default());
                let mut linker = Linker::new(LinkConfig::default()).with_classifier(Some(Box::new(matcher)));
                for s in batch {
                    linker.insert(s, &mut out);
                }
                linker.release_due(u64::MAX, &mut out);
                black_box(out.len());
                out.clear();
            }
            thread_cpu() - start
        })
    });

    let encoder = Encoder::new(Clock::new(), "node-1".into(), Vec::new(), (4 << 20) - (64 << 10));
    g.throughput(Throughput::Elements(spans.len() as u64));
    g.bench_function("otlp_encode_spans", |b| {
        b.iter_custom(|n| {
            cpu_time(n, || {
                for batch in spans.chunks(512) {
                    for (req, _) in encoder.encode(black_box(batch)).requests {
                        black_box(prost::Message::encode_to_vec(&req));
                    }
                }
            })
        })
    });
    g.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
