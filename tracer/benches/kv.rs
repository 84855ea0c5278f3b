//! Criterion benchmarks of the database and cache parsers alone: a
//! constructed stream of syscalls (the shapes clients write: one command per
//! syscall, pipelines, values longer than the capture) fed to one parser per
//! connection, counted in events (syscalls) per second of one core's CPU
//! time; the spans' describing is measured with them.
//!
//! `cargo bench -p tracer --bench kv`

mod common;
use common::cpu_time;

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tracer::protocols::{Exchange, ProtocolParser, Segment, Side, mysql::Mysql, redis::Redis};

/// One syscall of the stream: side, bytes moved, the captured prefix.
struct Syscall {
    side: Side,
    bytes: u32,
    payload: Vec<u8>,
}

const CAPTURE: usize = 512;
const CONNS: usize = 64;

fn syscall(side: Side, b: Vec<u8>) -> Syscall {
    let bytes = b.len() as u32;
    let mut payload = b;
    payload.truncate(CAPTURE);
    Syscall { side, bytes, payload }
}

fn resp_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn resp_bulk(b: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
}

/// Per connection: SET/GET pairs (small and 2 KiB values), an INCR
/// pipeline of 16, a MULTI/EXEC transaction, an error.
fn redis_stream() -> (Vec<Syscall>, usize) {
    let mut s = Vec::new();
    let mut exchanges = 0;
    let (small, big) = (vec![b'v'; 32], vec![b'x'; 2048]);
    for i in 0..200 {
        let value = if i % 10 == 0 { &big } else { &small };
        let key = format!("user:{i}:profile");
        s.push(syscall(Side::Request, resp_cmd(&[b"SET", key.as_bytes(), value])));
        s.push(syscall(Side::Response, b"+OK\r\n".to_vec()));
        s.push(syscall(Side::Request, resp_cmd(&[b"GET", key.as_bytes()])));
        s.push(syscall(Side::Response, resp_bulk(value)));
        exchanges += 2;
        if i % 20 == 0 {
            let pipeline: Vec<u8> = (0..16).flat_map(|_| resp_cmd(&[b"INCR", b"counter"])).collect();
            let replies: Vec<u8> = (0..16).flat_map(|n| format!(":{n}\r\n").into_bytes()).collect();
            s.push(syscall(Side::Request, pipeline));
            s.push(syscall(Side::Response, replies));
            let tx = [resp_cmd(&[b"MULTI"]), resp_cmd(&[b"SET", b"k", b"v"]), resp_cmd(&[b"EXEC"])].concat();
            s.push(syscall(Side::Request, tx));
            s.push(syscall(Side::Response, b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n".to_vec()));
            s.push(syscall(Side::Request, resp_cmd(&[b"LPOP", key.as_bytes()])));
            s.push(syscall(Side::Response, b"-WRONGTYPE Operation against a key\r\n".to_vec()));
            exchanges += 16 + 3 + 1;
        }
    }
    (s, exchanges)
}

fn mysql_pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    [&n.to_le_bytes()[..3], &[seq], payload].concat()
}

/// Column count, definitions, EOF, `rows` text rows, EOF.
fn mysql_rows(cols: usize, rows: usize) -> Vec<u8> {
    let def = b"\x03def\x04shop\x06orders\x06orders\x02id\x02id\x0c?\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00";
    let mut seq = 1;
    let mut v = mysql_pkt(seq, &[cols as u8]);
    for _ in 0..cols {
        seq += 1;
        v.extend(mysql_pkt(seq, def));
    }
    seq += 1;
    v.extend(mysql_pkt(seq, &[0xfe, 0, 0, 2, 0]));
    for r in 0..rows {
        seq += 1;
        v.extend(mysql_pkt(seq, format!("\x04{r:04}\x05alice").as_bytes()));
    }
    v.extend(mysql_pkt(seq + 1, &[0xfe, 0, 0, 2, 0]));
    v
}

/// Per connection: the handshake, a prepared SELECT executed 200 times
/// (3 rows each), a repeated query, and one distinct INSERT in ten (the
/// statements the SQL sanitizer reduces anew).
fn mysql_stream() -> (Vec<Syscall>, usize) {
    let ok = mysql_pkt(1, &[0, 1, 0, 2, 0, 0, 0]);
    let mut greeting =
        b"\n5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x04\x00\x00\x00abcdefgh\x00\xfe\xf7\x08\x02\x00\xff\x81\x15".to_vec();
    greeting.extend_from_slice(&[0; 10]);
    greeting.extend_from_slice(b"ijklmnopqrst\x00mysql_native_password\x00");
    let mut login = 0x000a_a205u32.to_le_bytes().to_vec();
    login.extend_from_slice(&[0, 0, 0, 1, 45]);
    login.extend_from_slice(&[0; 23]);
    login.extend_from_slice(b"app\x00\x14aaaaaaaaaaaaaaaaaaaa shop\x00mysql_native_password\x00");
    let mut s = vec![
        syscall(Side::Response, mysql_pkt(0, &greeting)),
        syscall(Side::Request, mysql_pkt(1, &login)),
        syscall(Side::Response, mysql_pkt(2, &[0, 0, 0, 2, 0, 0, 0])),
    ];
    let prepare = [&[0x16][..], b"SELECT id, name FROM orders WHERE id = ? AND customer = ?"].concat();
    s.push(syscall(Side::Request, mysql_pkt(0, &prepare)));
    s.push(syscall(Side::Response, mysql_pkt(1, &[0, 1, 0, 0, 0, 2, 0, 2, 0, 0, 0, 0])));
    let mut exchanges = 1;
    for i in 0..200u32 {
        let mut exec = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 0xfe, 0, 8];
        exec.extend_from_slice(&i.to_le_bytes());
        exec.extend_from_slice(&[0; 4]);
        exec.extend_from_slice(b"\x05alice");
        s.push(syscall(Side::Request, mysql_pkt(0, &exec)));
        s.push(syscall(Side::Response, mysql_rows(2, 3)));
        s.push(syscall(Side::Request, mysql_pkt(0, b"\x03SELECT id FROM orders WHERE status = 'open' LIMIT 10")));
        s.push(syscall(Side::Response, mysql_rows(1, 3)));
        exchanges += 2;
        if i % 10 == 0 {
            let insert =
                format!("\x03INSERT INTO orders (id, customer, total) VALUES ({i}, 'customer-{i}', {})", i * 7);
            s.push(syscall(Side::Request, mysql_pkt(0, insert.as_bytes())));
            s.push(syscall(Side::Response, ok.clone()));
            exchanges += 1;
        }
    }
    (s, exchanges)
}

/// Feed the stream to `conns` fresh parsers (one per connection), as the
/// connection table would: exchanges collected, then dropped.
fn run(stream: &[Syscall], mut parser: impl FnMut() -> Box<dyn ProtocolParser>, sink: &mut Vec<Exchange>) {
    for c in 0..CONNS {
        let mut p = parser();
        let (mut qseq, mut rseq) = (c as u32 * 1_000_000, c as u32 * 1_000_000 + 500_000);
        for (i, sc) in stream.iter().enumerate() {
            let seq = match sc.side {
                Side::Request => &mut qseq,
                Side::Response => &mut rseq,
            };
            let seg = Segment { ts_ns: i as u64, bytes: sc.bytes, payload: &sc.payload, seq: Some(*seq), tid: 7 };
            *seq = seq.wrapping_add(sc.bytes);
            p.feed(sc.side, &seg, sink);
        }
        p.close(sink);
        black_box(&sink);
        sink.clear();
    }
}

fn bench_parser(
    c: &mut Criterion,
    name: &str,
    (stream, exchanges): (Vec<Syscall>, usize),
    parser: impl Fn() -> Box<dyn ProtocolParser> + Copy,
) {
    let mut sink = Vec::new();
    let mut check = Vec::new();
    let mut p = parser();
    for (i, sc) in stream.iter().enumerate() {
        let seg = Segment { ts_ns: i as u64, bytes: sc.bytes, payload: &sc.payload, seq: None, tid: 7 };
        p.feed(sc.side, &seg, &mut check);
    }
    p.close(&mut check);
    assert_eq!(check.len(), exchanges, "{name}: every exchange of the stream is seen");
    assert_eq!(p.take_counts(), Default::default(), "{name}: the stream parses cleanly");
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements((stream.len() * CONNS) as u64));
    g.bench_function("parse", |b| b.iter_custom(|n| cpu_time(n, || run(&stream, parser, &mut sink))));
    let mut describer = tracer::protocols::registry::Describer::new(&Default::default()).expect("defaults");
    g.throughput(Throughput::Elements(check.len() as u64));
    g.bench_function("describe", |b| {
        b.iter_custom(|n| {
            cpu_time(n, || {
                for e in &check {
                    black_box(describer.describe(&e.info, tracer::span::SpanKind::Client, "svc"));
                }
            })
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_parser(c, "redis", redis_stream(), || Box::new(Redis::new(true)));
    bench_parser(c, "mysql", mysql_stream(), || Box::new(Mysql::new()));
}

criterion_group!(kv, benches);
criterion_main!(kv);
