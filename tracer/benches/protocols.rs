//! Throughput of the database protocol parsers alone (issue 13, point 9:
//! 2 M events/s per core or more). Figures are elements per CPU-second of
//! the bench thread (thread CPU time, as in benches/pipeline.rs); an element
//! is one segment (one syscall's bytes) fed to a parser, its captured prefix
//! at most `CAPTURE` bytes:
//! - `postgres/recorded`: the session recorded from psycopg2 and psycopg 3
//!   against PostgreSQL 15 (src/protocols/postgres/fixtures/psycopg.txt:
//!   startup, simple queries with literals, an error, COPY in and out, a
//!   long result, prepared and pipelined extended-protocol calls), each
//!   connection through a fresh parser, `REPEAT` times.
//! - `postgres/prepared`: one long-lived connection of a pooled service:
//!   Bind/Execute/Sync of two named prepared statements and their answers
//!   (a row, or a CommandComplete), the hot path with no SQL to read.
//! - `postgres/simple`: psycopg2-style simple queries, values inlined, every
//!   text a new one: each read by the SQL tokenizer up to its table
//!   (`db.query.text` off, the default).
//! - `postgres/simple+text`: the same with `db.query.text` on: each text
//!   reduced whole to its literal-free form (the costly path); the others
//!   run with it off.
//! - `sql/sanitize`, `sql/summarize`: those statements alone (elements are
//!   statements).
//!
//! - `http2/grpc`: one long-lived HTTP/2 connection of unary gRPC calls as
//!   a gRPC client writes them (HEADERS + DATA in one syscall; the answer's
//!   HEADERS, DATA and trailers in one), header blocks HPACK-encoded with a
//!   dynamic table (loona-hpack's encoder: literals not Huffman-coded);
//!   elements are frames.
//! - `http2/recorded`: the grpcio session of
//!   src/protocols/http2/fixtures/grpcio.txt (18 calls of grpcio's C core,
//!   client and server, each read as recorded), `REPEAT` connections.
//! - `http2/grpc+huffman`: the same calls with every header value
//!   Huffman-coded and never indexed (as clients that do not index send
//!   them: each block decoded whole, each string through the Huffman code).
//! - `http2/concurrent`: 100 streams at once on a connection, each answer
//!   in 4 DATA frames, the frames of different streams interleaved in
//!   each syscall; elements are frames.
//!
//! Run: `AYA_BUILD_SKIP=1 cargo bench -p tracer --bench protocols -- --noplot`.

mod common;
use common::cpu_time;

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tracer::protocols::{
    Exchange, ProtocolParser, Segment, Side,
    http2::Http2,
    postgres::Postgres,
    sql::{self, Dialect},
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CAPTURE: usize = 512;
const REPEAT: usize = 50;
const SESSION: &str = include_str!("../src/protocols/postgres/fixtures/psycopg.txt");

/// One syscall: direction, bytes moved, sequence number of the first.
struct Seg {
    side: Side,
    bytes: Vec<u8>,
    seq: u32,
}

type Conn = Vec<Seg>;

fn with_seq(reads: Vec<(Side, Vec<u8>)>) -> Conn {
    let mut seq = [0u32; 2];
    reads
        .into_iter()
        .map(|(side, bytes)| {
            let k = usize::from(side == Side::Response);
            let s = Seg { side, seq: seq[k], bytes };
            seq[k] = seq[k].wrapping_add(s.bytes.len() as u32);
            s
        })
        .collect()
}

fn recorded() -> Vec<Conn> {
    let mut conns: Vec<Vec<(Side, Vec<u8>)>> = Vec::new();
    for line in SESSION.lines() {
        if line.starts_with('#') {
            conns.push(Vec::new());
            continue;
        }
        let Some((dir, hex)) = line.split_once(' ') else { continue };
        let side = if dir == ">" { Side::Request } else { Side::Response };
        let bytes = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        conns.last_mut().unwrap().push((side, bytes));
    }
    conns.into_iter().map(with_seq).collect()
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

/// Bind (two text values) + Execute + Sync of statement `name`.
fn execute(name: &str, a: &str, b: &str) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 2]);
    for v in [a, b] {
        body.extend_from_slice(&(v.len() as u32).to_be_bytes());
        body.extend_from_slice(v.as_bytes());
    }
    body.extend_from_slice(&[0, 0]);
    [msg(b'B', &body), msg(b'E', b"\0\0\0\0\0"), msg(b'S', &[])].concat()
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let body = [name.as_bytes(), &[0], sql.as_bytes(), &[0, 0, 0]].concat();
    [msg(b'P', &body), msg(b'S', &[])].concat()
}

fn prepared(calls: usize) -> Conn {
    let mut reads = vec![
        (Side::Request, parse("s1", "SELECT balance, owner FROM accounts WHERE id = $1 AND region = $2")),
        (Side::Response, [msg(b'1', &[]), ready()].concat()),
        (Side::Request, parse("s2", "UPDATE accounts SET balance = balance + $1 WHERE id = $2")),
        (Side::Response, [msg(b'1', &[]), ready()].concat()),
    ];
    let row_description = msg(b'T', &[&[0, 2][..], b"balance\0", &[0; 18], b"owner\0", &[0; 18]].concat());
    for i in 0..calls {
        if i % 2 == 0 {
            reads.push((Side::Request, execute("s1", &i.to_string(), "eu-west")));
            let row = msg(b'D', &[&[0, 2, 0, 0, 0, 4][..], b"1234", &[0, 0, 0, 5], b"alice"].concat());
            let answer = [msg(b'2', &[]), row_description.clone(), row, msg(b'C', b"SELECT 1\0"), ready()].concat();
            reads.push((Side::Response, answer));
        } else {
            reads.push((Side::Request, execute("s2", "10", &i.to_string())));
            reads.push((Side::Response, [msg(b'2', &[]), msg(b'C', b"UPDATE 1\0"), ready()].concat()));
        }
    }
    with_seq(reads)
}

/// Statements as psycopg2 sends them: values inlined.
fn statements(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("SELECT id, owner, balance FROM accounts WHERE owner = 'customer-{i}@example.com' AND balance > {i}"),
            1 => format!("INSERT INTO orders (id, account_id, amount, note) VALUES ({i}, {}, {}.50, 'order note {i}')", i * 7, i % 100),
            2 => format!("UPDATE accounts SET balance = balance - {} WHERE id = {i}", i % 50),
            _ => format!("SELECT o.id, o.amount FROM orders o JOIN accounts a ON a.id = o.account_id WHERE a.id IN ({i}, {}, {}) ORDER BY o.id LIMIT 20", i + 1, i + 2),
        })
        .collect()
}

fn simple(calls: usize) -> Conn {
    let mut reads = Vec::new();
    for sql in statements(calls) {
        reads.push((Side::Request, msg(b'Q', &[sql.as_bytes(), &[0]].concat())));
        let answer = if sql.starts_with("SELECT") {
            [
                msg(b'T', &[&[0, 1][..], b"id\0", &[0; 18]].concat()),
                msg(b'D', &[0, 1, 0, 0, 0, 1, b'7']),
                msg(b'C', b"SELECT 1\0"),
                ready(),
            ]
            .concat()
        } else {
            [msg(b'C', b"UPDATE 1\0"), ready()].concat()
        };
        reads.push((Side::Response, answer));
    }
    with_seq(reads)
}

/// Every connection through a fresh parser; exchanges out.
fn run(conns: &[Conn], query_text: bool, out: &mut Vec<Exchange>) {
    for conn in conns {
        let mut p = Postgres::new(query_text);
        for (i, s) in conn.iter().enumerate() {
            let seg = Segment {
                ts_ns: i as u64,
                bytes: s.bytes.len() as u32,
                payload: &s.bytes[..s.bytes.len().min(CAPTURE)],
                seq: Some(s.seq),
                tid: 1,
            };
            p.feed(s.side, &seg, out);
        }
        p.close(out);
        black_box(p.take_counts());
    }
}

fn benches(c: &mut Criterion) {
    let session = recorded();
    let recorded: Vec<Conn> = (0..REPEAT).flat_map(|_| recorded_copy(&session)).collect();
    let cases = [
        ("recorded", false, recorded),
        ("prepared", false, vec![prepared(20_000)]),
        ("simple", false, vec![simple(20_000)]),
        ("simple+text", true, vec![simple(20_000)]),
    ];
    let mut g = c.benchmark_group("postgres");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for (name, text, conns) in &cases {
        let events: usize = conns.iter().map(Vec::len).sum();
        let mut out = Vec::new();
        run(conns, *text, &mut out);
        eprintln!("postgres/{name}: {events} segments, {} exchanges", out.len());
        g.throughput(Throughput::Elements(events as u64));
        g.bench_function(*name, |b| {
            b.iter_custom(|n| {
                cpu_time(n, || {
                    out.clear();
                    run(black_box(conns), *text, &mut out);
                })
            })
        });
    }
    g.finish();

    let sqls = statements(1000);
    let mut g = c.benchmark_group("sql");
    g.throughput(Throughput::Elements(sqls.len() as u64));
    for (name, read) in [("sanitize", sql::sanitize as fn(&[u8], Dialect, bool) -> _), ("summarize", sql::summarize)] {
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                cpu_time(n, || {
                    for s in &sqls {
                        black_box(read(black_box(s.as_bytes()), Dialect::Postgres, false));
                    }
                })
            })
        });
    }
    g.finish();
}

fn recorded_copy(session: &[Conn]) -> Vec<Conn> {
    session
        .iter()
        .map(|c| c.iter().map(|s| Seg { side: s.side, bytes: s.bytes.clone(), seq: s.seq }).collect())
        .collect()
}

/// HTTP/2 frame bytes.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.extend_from_slice(&[kind, flags]);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams whose frames share a syscall in `http2/concurrent` (whole
/// frames within the 4 KiB capture: a wider write would lose the framing
/// at the first frame header past the capture, see src/protocols/http2).
const PER_WRITE: u32 = 20;

fn is_last_of_write(s: u32, ids: &[u32]) -> bool {
    (s - ids[0]) / 2 % PER_WRITE == PER_WRITE - 1 || s == ids[ids.len() - 1]
}

/// An HPACK integer with an N-bit prefix after `flags`.
fn hpack_int(v: usize, prefix: u8, flags: u8) -> Vec<u8> {
    let mask = (1usize << prefix) - 1;
    if v < mask {
        return vec![flags | v as u8];
    }
    let mut out = vec![flags | mask as u8];
    let mut rest = v - mask;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
    out
}

/// A Huffman-coded string literal.
fn hpack_huffman(s: &[u8]) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    for &b in s {
        let (code, n) = tracer::protocols::http2::tables::HUFFMAN[b as usize];
        bits.extend((0..n).rev().map(|i| (code >> i) & 1 == 1));
    }
    while !bits.len().is_multiple_of(8) {
        bits.push(true);
    }
    let body: Vec<u8> = bits.chunks(8).map(|c| c.iter().fold(0u8, |a, b| a << 1 | u8::from(*b))).collect();
    [hpack_int(body.len(), 7, 0x80), body].concat()
}

/// A block of fields never indexed, values Huffman-coded: names by their
/// static index, or (0) as Huffman literals too.
fn hpack_plain(fields: &[(usize, &[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, name, value) in fields {
        out.extend(hpack_int(*index, 4, 0x10));
        if *index == 0 {
            out.extend(hpack_huffman(name));
        }
        out.extend(hpack_huffman(value));
    }
    out
}

/// HPACK encoding of the bench's blocks: loona's encoder (dynamic table,
/// no Huffman) or [`hpack_plain`].
enum Hpack {
    Indexed(loona_hpack::Encoder<'static>),
    Huffman,
}

impl Hpack {
    fn encode(&mut self, fields: &[(usize, &[u8], &[u8])]) -> Vec<u8> {
        match self {
            Hpack::Indexed(e) => e.encode(fields.iter().map(|(_, n, v)| (*n, *v))),
            Hpack::Huffman => hpack_plain(fields),
        }
    }
}

/// A connection of HTTP/2 syscalls, and how many frames they carry.
fn h2_conn(calls: usize, concurrent: usize, huffman: bool) -> (Conn, usize) {
    let new = || if huffman { Hpack::Huffman } else { Hpack::Indexed(loona_hpack::Encoder::new()) };
    let (mut req_enc, mut resp_enc) = (new(), new());
    let mut frames = 3;
    let settings = h2_frame(4, 0, 0, &[0, 3, 0, 0, 0, 100, 0, 4, 0, 0x40, 0, 0]);
    let mut reads = vec![(Side::Request, [H2_PREFACE, &settings].concat()), (Side::Response, settings.clone())];
    let mut reads_ack = vec![(Side::Response, h2_frame(4, 1, 0, &[]))];
    reads.append(&mut reads_ack);
    let message = vec![0u8; 64];
    let mut id = 1u32;
    for _ in 0..calls / concurrent {
        let ids: Vec<u32> = (0..concurrent as u32).map(|i| id + 2 * i).collect();
        id += 2 * concurrent as u32;
        let mut req = Vec::new();
        for &s in &ids {
            let path = if s % 3 == 0 { "/shop.Cart/AddItem" } else { "/shop.Catalog/GetProduct" };
            let fields: [(usize, &[u8], &[u8]); 8] = [
                (2, b":method", b"POST"),
                (6, b":scheme", b"http"),
                (4, b":path", path.as_bytes()),
                (1, b":authority", b"catalog.shop.svc:50051"),
                (31, b"content-type", b"application/grpc"),
                (0, b"te", b"trailers"),
                (0, b"grpc-accept-encoding", b"identity,deflate,gzip"),
                (58, b"user-agent", b"grpc-python/1.60.0 grpc-c/37.0.0 (linux; chttp2)"),
            ];
            req.extend(h2_frame(1, 4, s, &req_enc.encode(&fields)));
            req.extend(h2_frame(0, 1, s, &message));
            frames += 2;
            if is_last_of_write(s, &ids) || concurrent == 1 {
                reads.push((Side::Request, std::mem::take(&mut req)));
            }
        }
        let head: [(usize, &[u8], &[u8]); 3] = [
            (8, b":status", b"200"),
            (31, b"content-type", b"application/grpc"),
            (0, b"grpc-accept-encoding", b"identity"),
        ];
        let trailers: [(usize, &[u8], &[u8]); 2] = [(0, b"grpc-status", b"0"), (0, b"grpc-message", b"")];
        if concurrent == 1 {
            let s = ids[0];
            let answer = [
                h2_frame(1, 4, s, &resp_enc.encode(&head)),
                h2_frame(0, 0, s, &message),
                h2_frame(1, 5, s, &resp_enc.encode(&trailers)),
            ]
            .concat();
            frames += 3;
            reads.push((Side::Response, answer));
            continue;
        }
        // Heads of every stream, then 4 DATA rounds interleaved, then trailers.
        let mut answer = Vec::new();
        for &s in &ids {
            answer.extend(h2_frame(1, 4, s, &resp_enc.encode(&head)));
            if is_last_of_write(s, &ids) {
                reads.push((Side::Response, std::mem::take(&mut answer)));
            }
        }
        for _ in 0..4 {
            for &s in &ids {
                answer.extend(h2_frame(0, 0, s, &message));
                if is_last_of_write(s, &ids) {
                    reads.push((Side::Response, std::mem::take(&mut answer)));
                }
            }
        }
        for &s in &ids {
            answer.extend(h2_frame(1, 5, s, &resp_enc.encode(&trailers)));
            if is_last_of_write(s, &ids) {
                reads.push((Side::Response, std::mem::take(&mut answer)));
            }
        }
        frames += concurrent * 6;
    }
    (with_seq(reads), frames)
}

fn run_h2(conn: &Conn, out: &mut Vec<Exchange>) {
    let mut p = Http2::new(Default::default());
    for (i, s) in conn.iter().enumerate() {
        let seg = Segment {
            ts_ns: i as u64,
            bytes: s.bytes.len() as u32,
            payload: &s.bytes[..s.bytes.len().min(tracer_common::config::MAX_CAPTURE)],
            seq: Some(s.seq),
            tid: 1,
        };
        p.feed(s.side, &seg, out);
    }
    p.close(out);
    black_box(p.take_counts());
}

const GRPCIO: &str = include_str!("../src/protocols/http2/fixtures/grpcio.txt");

/// Frames in a recorded connection: each direction's bytes walked by frame
/// length (the client's after its preface).
fn h2_frames(conn: &Conn) -> usize {
    let mut n = 0;
    for side in [Side::Request, Side::Response] {
        let bytes: Vec<u8> = conn.iter().filter(|s| s.side == side).flat_map(|s| s.bytes.iter().copied()).collect();
        let mut at = if side == Side::Request { H2_PREFACE.len() } else { 0 };
        while at + 9 <= bytes.len() {
            at += 9 + u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
            n += 1;
        }
    }
    n
}

fn http2_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("http2");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    {
        let reads: Vec<(Side, Vec<u8>)> = GRPCIO
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (dir, hex) = l.split_once(' ').unwrap();
                let side = if dir == ">" { Side::Request } else { Side::Response };
                (side, (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect())
            })
            .collect();
        let conn = with_seq(reads);
        let frames = h2_frames(&conn) * REPEAT;
        let mut out = Vec::new();
        for _ in 0..REPEAT {
            run_h2(&conn, &mut out);
        }
        eprintln!("http2/recorded: {} segments, {frames} frames, {} exchanges", conn.len() * REPEAT, out.len());
        assert_eq!(out.len(), 18 * REPEAT);
        g.throughput(Throughput::Elements(frames as u64));
        g.bench_function("recorded", |b| {
            b.iter_custom(|n| {
                cpu_time(n, || {
                    out.clear();
                    for _ in 0..REPEAT {
                        run_h2(black_box(&conn), &mut out);
                    }
                })
            })
        });
    }
    for (name, concurrent, huffman) in [("grpc", 1, false), ("grpc+huffman", 1, true), ("concurrent", 100, false)] {
        let (conn, frames) = h2_conn(20_000, concurrent, huffman);
        let mut out = Vec::new();
        run_h2(&conn, &mut out);
        eprintln!("http2/{name}: {} segments, {frames} frames, {} exchanges", conn.len(), out.len());
        assert_eq!(out.len(), 20_000);
        g.throughput(Throughput::Elements(frames as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                cpu_time(n, || {
                    out.clear();
                    run_h2(black_box(&conn), &mut out);
                })
            })
        });
    }
    g.finish();
}

criterion_group!(protocols, benches, http2_benches);
criterion_main!(protocols);
