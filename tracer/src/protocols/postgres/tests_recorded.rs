//! A conversation recorded from real clients and a real server
//! (`fixtures/psycopg.txt`, made by `fixtures/record.py` running
//! `fixtures/psycopg_client.py` against PostgreSQL 15): every call is a span
//! with the right summary, status and rows, at the default capture limit
//! and at smaller ones, and nothing secret comes out.

use super::{PgExchange, Postgres};
use crate::protocols::{Exchange, Info, ProtocolParser, Segment, Side};

const SESSION: &str = include_str!("fixtures/psycopg.txt");

/// The recorded reads: direction and bytes, a new parser per `# connection`.
pub(super) fn connections(text: &str) -> Vec<Vec<(Side, Vec<u8>)>> {
    let mut conns = Vec::new();
    for line in text.lines() {
        if line.starts_with("# connection") {
            conns.push(Vec::new());
            continue;
        }
        let Some((dir, hex)) = line.split_once(' ') else { continue };
        let side = if dir == ">" { Side::Request } else { Side::Response };
        let bytes = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        conns.last_mut().expect("a connection line first").push((side, bytes));
    }
    conns
}

/// Every connection through a parser, each read one syscall whose first
/// `capture` bytes were captured; `split` cuts a read into several.
pub(super) fn run(
    conns: &[Vec<(Side, Vec<u8>)>],
    capture: usize,
    split: &mut dyn FnMut(usize) -> Vec<usize>,
) -> Vec<Exchange> {
    let mut out = Vec::new();
    for conn in conns {
        let mut p = Postgres::new(true);
        let mut seq = [0u32; 2];
        let mut ts = 0;
        for (side, bytes) in conn {
            let k = usize::from(*side == Side::Response);
            let mut at = 0;
            let mut cuts = split(bytes.len());
            cuts.push(bytes.len());
            for cut in cuts {
                let piece = &bytes[at..cut.clamp(at, bytes.len())];
                at += piece.len();
                if piece.is_empty() {
                    continue;
                }
                ts += 1_000;
                let seg = Segment {
                    ts_ns: ts,
                    bytes: piece.len() as u32,
                    payload: &piece[..piece.len().min(capture)],
                    seq: Some(seq[k]),
                    tid: 1 + k as u32,
                };
                seq[k] = seq[k].wrapping_add(piece.len() as u32);
                p.feed(*side, &seg, &mut out);
            }
        }
        p.close(&mut out);
    }
    out
}

pub(super) fn session() -> Vec<Vec<(Side, Vec<u8>)>> {
    connections(SESSION)
}

fn pg(e: &Exchange) -> &PgExchange {
    match &e.info {
        Info::Postgres(p) => p,
        other => panic!("not postgres: {other:?}"),
    }
}

/// Summary, SQLSTATE, rows, COPY bytes, incomplete.
type Row = (String, Option<String>, Option<u64>, Option<u64>, bool);

fn rows(out: &[Exchange]) -> Vec<Row> {
    out.iter()
        .map(|e| {
            let p = pg(e);
            (
                p.statement.as_ref().map_or(String::new(), |s| s.summary.clone()),
                p.sqlstate.map(|c| String::from_utf8_lossy(&c).into_owned()),
                p.returned_rows,
                p.copy_bytes,
                p.response_incomplete,
            )
        })
        .collect()
}

fn expected(capture: usize) -> Vec<Row> {
    let r = |s: &str, code: Option<&str>, rows: Option<u64>, copy: Option<u64>, inc: bool| {
        (s.to_string(), code.map(str::to_string), rows, copy, inc)
    };
    // The 20 rows of 3000 bytes: their headers are past any of these
    // 512-byte capture, so the answer is framed to its end only past it.
    let long_lost = capture < 4096;
    vec![
        r("DROP accounts", None, None, None, false),
        r("CREATE accounts", None, None, None, false),
        r("INSERT accounts", None, None, None, false),
        r("INSERT accounts", None, None, None, false),
        r("INSERT accounts", None, None, None, false),
        r("SELECT accounts", None, Some(3), None, false),
        r("SELECT missing_table", Some("42P01"), None, None, false),
        r("BEGIN", None, None, None, false),
        r("COPY accounts", None, None, Some(61), false),
        r("COPY", None, None, Some(12), false),
        r("SELECT", None, (!long_lost).then_some(20), None, long_lost),
        r("SELECT accounts", None, Some(1), None, false),
        r("SELECT accounts", None, Some(1), None, false),
        r("SELECT accounts", None, Some(1), None, false),
        r("SELECT missing_table", Some("42P01"), None, None, false),
        r("INSERT accounts", None, None, None, false),
        r("UPDATE accounts", None, None, None, false),
        r("SELECT accounts", None, Some(1), None, false),
    ]
}

#[test]
fn recorded_session_at_capture_limits() {
    for capture in [512, 4096, 65_536] {
        let out = run(&session(), capture, &mut |_| vec![]);
        assert_eq!(rows(&out), expected(capture), "capture {capture}");
        for e in &out {
            let p = pg(e);
            assert_eq!(p.database.as_deref(), Some("postgres"));
            assert!(!p.no_response);
            let r = e.response.expect("answered");
            assert!(e.request.first_ns <= r.first_ns && r.first_ns <= r.last_ns, "{e:?}");
        }
        let all = format!("{out:?}");
        for secret in ["secret-literal-4711", "987654321", "alice@example.com"] {
            assert!(!all.contains(secret), "{secret} at capture {capture}");
        }
    }
}

#[test]
fn recorded_session_with_a_small_capture_still_pairs() {
    // 64 bytes: long statements are cut, headers late in writes are lost;
    // every call is still one span, in order.
    let out = run(&session(), 64, &mut |_| vec![]);
    let got: Vec<String> = rows(&out).into_iter().map(|r| r.0).collect();
    let want: Vec<String> = expected(64).into_iter().map(|r| r.0).collect();
    assert_eq!(got, want);
}
