//! Property tests: a session cut at any byte, or each syscall captured only
//! in part, gives the same exchanges; arbitrary bytes never panic and never
//! grow the parser past its bounds.

use proptest::{collection::vec, prelude::*, sample::Index};

use super::{
    MAX_PENDING, Mysql,
    statements::MAX_PREPARED,
    tests::{
        CAPS, MARIADB, Q, R, Seg, coldef, command, eof, err_pkt, execute, feed, greeting, login, ok, ok_fe, pkt,
        prepare_ok, query, result_set, summary,
    },
    wire::{CLIENT_DEPRECATE_EOF, COM_STMT_PREPARE},
};
use crate::protocols::{ProtocolParser, Segment};

#[derive(Clone, Debug)]
enum Op {
    Query(usize),
    Select(Vec<usize>),
    Error,
    Prepare(u32),
    Execute(u32, usize),
    Ping,
}

impl Op {
    /// (request, answer); `deprecate`: result sets end with OK.
    fn bytes(&self, deprecate: bool) -> (Vec<u8>, Vec<u8>) {
        match self {
            Op::Query(n) => (query(&format!("INSERT INTO t VALUES ('{}')", "v".repeat(*n))), ok(1, 2)),
            Op::Select(rows) => {
                let vals: Vec<String> = rows.iter().map(|n| "r".repeat(*n)).collect();
                let rows: Vec<Vec<&str>> = vals.iter().map(|v| vec![v.as_str()]).collect();
                let rows: Vec<&[&str]> = rows.iter().map(Vec::as_slice).collect();
                (query("SELECT c FROM t"), result_set(&["c"], &rows, deprecate, 2))
            }
            Op::Error => (query("SELECT * FROM nope"), err_pkt(1, 1146, "42S02", "Table 'nope' doesn't exist")),
            Op::Prepare(id) => (
                command(COM_STMT_PREPARE, format!("SELECT c FROM t{id} WHERE id = ?").as_bytes()),
                prepare_ok(*id, 1, 1, deprecate),
            ),
            Op::Execute(id, n) => {
                // A binary row starts with a 0x00 header.
                let value = [&[0u8, 0, *n as u8][..], "e".repeat(*n).as_bytes()].concat();
                let mut answer = [pkt(1, &[1]), coldef(2, "c")].concat();
                let mut seq = 3;
                if !deprecate {
                    answer.extend(eof(seq, 2));
                    seq += 1;
                }
                answer.extend(pkt(seq, &value));
                answer.extend(if deprecate { ok_fe(seq + 1, 2) } else { eof(seq + 1, 2) });
                (execute(*id, &["x"]), answer)
            }
            Op::Ping => (command(0x0e, b""), ok(1, 2)),
        }
    }

    /// Every packet header of the answer is in its first `n` bytes.
    fn headers_within(&self, n: usize) -> bool {
        match self {
            Op::Select(rows) => rows.iter().sum::<usize>() + 64 * (rows.len() + 2) < n,
            Op::Prepare(_) => 150 < n,
            Op::Execute(_, len) => len + 150 < n,
            _ => true,
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2000usize).prop_map(Op::Query),
        vec(0..300usize, 0..6).prop_map(Op::Select),
        Just(Op::Error),
        (0..4u32).prop_map(Op::Prepare),
        ((0..4u32), (0..200usize)).prop_map(|(i, n)| Op::Execute(i, n)),
        Just(Op::Ping),
    ]
}

fn session(ops: &[Op], deprecate: bool, cap: Option<usize>) -> Vec<Seg> {
    let caps = CAPS | if deprecate { CLIENT_DEPRECATE_EOF } else { 0 };
    let mut segs: Vec<Seg> = vec![
        (R, 1, greeting(MARIADB, 0xffff_ffff), None),
        (Q, 2, login(caps, "u", "p", Some("db")), None),
        (R, 3, ok(2, 2), None),
    ];
    for (i, o) in ops.iter().enumerate() {
        let (q, r) = o.bytes(deprecate);
        segs.push((Q, 10 + 2 * i as u64, q, cap));
        segs.push((R, 11 + 2 * i as u64, r, cap));
    }
    segs
}

/// Exchanges without timing, and what was dropped.
fn shapes(segs: &[Seg]) -> (Vec<String>, u64) {
    let mut run = feed(segs);
    run.close();
    let c = run.parser.take_counts();
    let lines = run
        .lines()
        .iter()
        .map(|l| {
            l.split(" | ").filter(|p| !p.starts_with("req") && !p.starts_with("resp")).collect::<Vec<_>>().join(" | ")
        })
        .collect();
    (lines, c.malformed + c.unpaired + c.overflow)
}

fn split(b: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(b.len().max(1))).collect();
    at.extend([0, b.len()]);
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| b[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Each message cut into random syscalls (clients and servers may write
    /// and read a message in any pieces).
    #[test]
    fn random_splits_give_the_same_exchanges(ops in vec(op(), 1..10), deprecate in any::<bool>(), cuts in vec(any::<Index>(), 0..8)) {
        let whole = session(&ops, deprecate, None);
        let (want, dropped) = shapes(&whole);
        prop_assert_eq!(dropped, 0);
        let mut segs = Vec::new();
        for (k, (side, ts, b, _)) in whole.iter().enumerate() {
            let cuts: Vec<Index> = cuts.iter().skip(k % 3).step_by(2).cloned().collect();
            segs.extend(split(b, &cuts).into_iter().map(|p| (*side, *ts, p, None)));
        }
        let (got, dropped) = shapes(&segs);
        prop_assert_eq!(dropped, 0);
        prop_assert_eq!(got, want);
    }

    /// One syscall per message, each captured only up to `cap` bytes.
    #[test]
    fn prefix_cut_segments_still_frame(ops in vec(op(), 1..10), deprecate in any::<bool>(), cap in 64..600usize) {
        let ops: Vec<Op> = ops.into_iter().filter(|o| o.headers_within(cap)).collect();
        let (want, _) = shapes(&session(&ops, deprecate, None));
        let (got, dropped) = shapes(&session(&ops, deprecate, Some(cap)));
        prop_assert_eq!(dropped, 0);
        // A statement cut by the capture may lose its table; its operation and the rest hold.
        let op = |l: &str| l.split(' ').take(3).collect::<Vec<_>>().join(" ") + &l[l.find(" | ").unwrap_or(l.len())..];
        prop_assert_eq!(got.iter().map(|l| op(l)).collect::<Vec<_>>(), want.iter().map(|l| op(l)).collect::<Vec<_>>());
    }

    /// Arbitrary bytes, and packets of any shape in any order, both sides.
    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        start in any::<bool>(),
        segs in vec((any::<bool>(), prop_oneof![
            vec(any::<u8>(), 0..300),
            vec(prop_oneof![
                Just(query("SELECT 1")), Just(ok(1, 8)), Just(eof(2, 8)), Just(pkt(1, &[3])), Just(pkt(0, &[0x16, b'S'])),
                Just(prepare_ok(1, 3, 3, false)), Just(execute(u32::MAX, &["x"])), Just(pkt(0, &[])), Just(pkt(1, &[0xfb])),
                Just(err_pkt(1, 1, "HY000", "x")), Just(vec![0xff, 0xff, 0xff, 0]), Just(pkt(0, &[0x11])),
                any::<u8>().prop_map(|c| pkt(0, &[c, 1, 2, 3, 4])),
            ], 0..20).prop_map(|v| v.concat()),
        ], 0..3000usize), 0..60),
    ) {
        let mut p = Mysql::new();
        let mut out = Vec::new();
        if start {
            let g = greeting(MARIADB, 0xffff_ffff);
            p.feed(R, &Segment { ts_ns: 0, bytes: g.len() as u32, payload: &g, seq: None, tid: 1 }, &mut out);
        }
        for (i, (request, b, extra)) in segs.iter().enumerate() {
            let side = if *request { Q } else { R };
            let n = (b.len() + extra % 5) as u32;
            p.feed(side, &Segment { ts_ns: i as u64, bytes: n, payload: b, seq: None, tid: 1 }, &mut out);
            prop_assert!(p.pending_len() <= MAX_PENDING);
            prop_assert!(p.statements_len() <= MAX_PREPARED);
        }
        p.close(&mut out);
        for e in &out {
            let _ = summary(e);
        }
    }
}
