//! Property tests: command/reply streams cut at any byte, or captured only
//! in part, frame as the whole messages do; arbitrary bytes never panic and
//! never grow the parser past its bounds.

use proptest::{collection::vec, prelude::*, sample::Index};

use super::{
    MAX_PENDING, Redis,
    tests::{Q, R, Seg, agg, bulk, cmd, feed, line},
};
use crate::protocols::{Exchange, Info, ProtocolParser, Segment};

/// Bulk contents that look like RESP, to catch a framer that resyncs
/// inside a value.
fn fill(n: usize) -> Vec<u8> {
    b"*3\r\n$3\r\nSET\r\n+OK\r\n-ERR x\r\n:1\r\n".iter().copied().cycle().take(n).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Set(usize),
    Get(Option<usize>),
    Incr(i64),
    Range(Vec<usize>),
    Error,
    Map,
    Attributed,
    Transaction,
}

impl Op {
    /// (request, reply)
    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Op::Set(n) => ([b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n".to_vec(), bulk(&fill(*n))].concat(), line("+OK")),
            Op::Get(n) => (cmd(&["GET", "key"]), n.map_or(line("$-1"), |n| bulk(&fill(n)))),
            Op::Incr(v) => (cmd(&["INCRBY", "c", &v.to_string()]), line(&format!(":{v}"))),
            Op::Range(items) => (
                cmd(&["LRANGE", "l", "0", "-1"]),
                agg('*', items.len(), &items.iter().map(|n| bulk(&fill(*n))).collect::<Vec<_>>()),
            ),
            Op::Error => (cmd(&["GET", "l"]), line("-WRONGTYPE Operation against a key")),
            Op::Map => (cmd(&["HGETALL", "h"]), agg('%', 1, &[bulk(b"f"), line(",1.5")])),
            Op::Attributed => {
                (cmd(&["GET", "k"]), [agg('|', 1, &[bulk(b"a"), agg('*', 1, &[line("#t")])]), line("_")].concat())
            }
            Op::Transaction => (
                [cmd(&["MULTI"]), cmd(&["SET", "k", "v"]), cmd(&["EXEC"])].concat(),
                [line("+OK"), line("+QUEUED"), agg('*', 1, &[line("+OK")])].concat(),
            ),
        }
    }

    /// Every header line of the reply sits in its first `n` bytes.
    fn headers_within(&self, n: usize) -> bool {
        match self {
            Op::Range(items) => items.iter().take(items.len().saturating_sub(1)).sum::<usize>() + 16 * items.len() < n,
            _ => true,
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3000usize).prop_map(Op::Set),
        proptest::option::of(0..3000usize).prop_map(Op::Get),
        any::<i64>().prop_map(Op::Incr),
        vec(0..200usize, 0..5).prop_map(Op::Range),
        Just(Op::Error),
        Just(Op::Map),
        Just(Op::Attributed),
        Just(Op::Transaction),
    ]
}

/// An exchange without its timing.
fn shape(e: &Exchange) -> String {
    let Info::Redis(r) = &e.info else { panic!("not redis") };
    format!("{} {:?} {:?} {:?} {} {}", r.command, r.db, r.error, r.batch, r.response_incomplete, r.no_response)
}

fn shapes(segs: &[Seg]) -> (Vec<String>, u64) {
    let mut run = feed(segs);
    run.parser.close(&mut run.ex);
    let c = run.parser.take_counts();
    (run.ex.iter().map(shape).collect(), c.malformed + c.unpaired + c.overflow)
}

/// `b` cut at the given points (each taken modulo its length).
fn split(b: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(b.len().max(1))).collect();
    at.push(0);
    at.push(b.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| b[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Pipelined: every command, then every reply, each stream cut at random.
    #[test]
    fn random_splits_give_the_same_exchanges(ops in vec(op(), 1..12), qcuts in vec(any::<Index>(), 0..12), rcuts in vec(any::<Index>(), 0..12)) {
        let whole: Vec<Seg> = ops.iter().flat_map(|o| {
            let (q, r) = o.bytes();
            [(Q, 1, q, None), (R, 2, r, None)]
        }).collect();
        let (want, dropped) = shapes(&whole);
        prop_assert_eq!(dropped, 0);
        let (q, r): (Vec<_>, Vec<_>) = ops.iter().map(Op::bytes).unzip();
        let mut segs: Vec<Seg> = split(&q.concat(), &qcuts).into_iter().map(|b| (Q, 1, b, None)).collect();
        segs.extend(split(&r.concat(), &rcuts).into_iter().map(|b| (R, 2, b, None)));
        let (got, dropped) = shapes(&segs);
        prop_assert_eq!(dropped, 0);
        prop_assert_eq!(got, want);
    }

    /// One syscall per message, each captured only up to `cap` bytes: bulk
    /// strings past the capture are framed by their length.
    #[test]
    fn prefix_cut_segments_still_frame(ops in vec(op(), 1..12), cap in 64..600usize) {
        let ops: Vec<Op> = ops.into_iter().filter(|o| o.headers_within(cap)).collect();
        let segs = |cut: bool| -> Vec<Seg> {
            ops.iter().flat_map(|o| {
                let (q, r) = o.bytes();
                let c = cut.then_some(cap);
                [(Q, 1, q, c), (R, 2, r, c)]
            }).collect()
        };
        let (want, _) = shapes(&segs(false));
        let (got, dropped) = shapes(&segs(true));
        prop_assert_eq!(dropped, 0);
        prop_assert_eq!(got, want);
    }

    /// Arbitrary bytes, and RESP-looking tokens in any order, on both sides.
    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        segs in vec((any::<bool>(), prop_oneof![
            vec(any::<u8>(), 0..200),
            vec(prop_oneof![
                Just(b"*2\r\n".to_vec()), Just(b"$3\r\nGET\r\n".to_vec()), Just(b"+OK\r\n".to_vec()),
                Just(b">3\r\n".to_vec()), Just(b"$7\r\nmessage\r\n".to_vec()), Just(b"|1\r\n".to_vec()),
                Just(b"%99999\r\n".to_vec()), Just(b"*-1\r\n".to_vec()), Just(b":1\r\n".to_vec()),
                Just(b"$9\r\nsubscribe\r\n".to_vec()), Just(b"*1\r\n$9\r\nSUBSCRIBE\r\n".to_vec()),
                Just(b"$99999999999\r\n".to_vec()), Just(b"*9\r\n".repeat(9)), Just(b"\r\n".to_vec()),
            ], 0..20).prop_map(|v| v.concat()),
        ], 0..2000usize), 0..60),
    ) {
        let mut p = Redis::new(true);
        let mut out = Vec::new();
        for (i, (request, b, bytes)) in segs.iter().enumerate() {
            let side = if *request { Q } else { R };
            let n = (b.len() + bytes % 7).max(b.len()) as u32;
            p.feed(side, &Segment { ts_ns: i as u64, bytes: n, payload: b, seq: None, tid: 1 }, &mut out);
            prop_assert!(p.pending_len() <= MAX_PENDING + 1);
        }
        p.close(&mut out);
        for e in &out {
            let Info::Redis(r) = &e.info else { panic!("not redis") };
            prop_assert!(r.command.bytes().all(|b| b.is_ascii_uppercase() || b"_.-".contains(&b)), "{}", r.command);
        }
    }
}
