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
//! Run: `AYA_BUILD_SKIP=1 cargo bench -p tracer --bench protocols -- --noplot`.

mod common;
use common::cpu_time;

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tracer::protocols::{
    Exchange, ProtocolParser, Segment, Side,
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

criterion_group!(protocols, benches);
criterion_main!(protocols);
