//! Property tests: the recorded session cut into syscalls anywhere gives the
//! same exchanges; arbitrary or damaged bytes never panic and never grow
//! the parser past its bounds.

use proptest::{collection::vec, prelude::*};

use super::{
    MAX_NAME, MAX_PENDING, MAX_SQL, Postgres,
    tests_recorded::{run, session},
};
use crate::protocols::{Exchange, ProtocolParser, Segment, Side};

/// What must not depend on how the bytes were cut: the exchange and where
/// its request and answer start in the byte streams.
fn invariant(out: &[Exchange]) -> Vec<String> {
    out.iter().map(|e| format!("{:?} {:?} {:?}", e.info, e.request.seq, e.response.map(|r| r.seq))).collect()
}

/// Most a parser may hold between syscalls: two partial message prefixes
/// and the statement caches.
fn assert_bounded(p: &Postgres) {
    let (bytes, pending) = p.held();
    let streams = p.req.buffered() + p.resp.buffered();
    assert!(streams <= 2 * (MAX_SQL + 2 * MAX_NAME + 8), "{streams} bytes in the streams");
    let per_statement = MAX_NAME + crate::protocols::sql::MAX_TEXT + crate::protocols::sql::MAX_SUMMARY;
    assert!(bytes <= streams + (super::MAX_STATEMENTS + super::MAX_PORTALS) * 3 * per_statement, "{bytes} bytes");
    assert!(pending <= MAX_PENDING, "{pending} pending");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_split_gives_the_same_exchanges(seeds in vec(any::<u64>(), 1..8)) {
        let whole = invariant(&run(&session(), usize::MAX, &mut |_| vec![]));
        let mut i = 0;
        let split = invariant(&run(&session(), usize::MAX, &mut |len| {
            // Cut each read at up to 3 places drawn from the seeds.
            i += 1;
            let s = seeds[i % seeds.len()].wrapping_mul(i as u64 | 1);
            let mut cuts: Vec<usize> = (0..(s % 4) as usize).map(|k| ((s >> (8 * k + 2)) as usize) % (len + 1)).collect();
            cuts.sort_unstable();
            cuts
        }));
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn splits_at_small_captures_never_panic(seed in any::<u64>(), capture in 1usize..600) {
        let mut i = 0u64;
        let out = run(&session(), capture, &mut |len| {
            i += 1;
            let s = seed.wrapping_mul(i | 1);
            vec![(s as usize) % (len + 1)]
        });
        prop_assert!(out.len() <= 40, "{} exchanges from 18 calls", out.len());
        let all = format!("{out:?}");
        prop_assert!(!all.contains("secret-literal-4711") && !all.contains("987654321"));
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        segs in vec((any::<bool>(), vec(any::<u8>(), 0..700), 0u32..5000), 0..60),
        capture in 1usize..800,
    ) {
        let mut p = Postgres::new(true);
        let mut out = Vec::new();
        for (i, (request, bytes, extra)) in segs.iter().enumerate() {
            let side = if *request { Side::Request } else { Side::Response };
            let seg = Segment {
                ts_ns: i as u64,
                bytes: bytes.len() as u32 + extra,
                payload: &bytes[..bytes.len().min(capture)],
                seq: Some(i as u32 * 9000),
                tid: 1,
            };
            p.feed(side, &seg, &mut out);
            assert_bounded(&p);
        }
        p.close(&mut out);
        let _ = p.take_counts();
    }

    #[test]
    fn damaged_session_never_panics(flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..20)) {
        let mut conns = session();
        for (at, b) in &flips {
            let k = at.index(conns.len());
            let conn = &mut conns[k];
            let n = conn.len();
            let read = &mut conn[at.index(n)].1;
            let len = read.len();
            read[at.index(len)] = *b;
        }
        let mut p = Postgres::new(true);
        let mut out = Vec::new();
        for (side, bytes) in conns.iter().flatten() {
            let seg = Segment { ts_ns: 1, bytes: bytes.len() as u32, payload: bytes, seq: None, tid: 1 };
            p.feed(*side, &seg, &mut out);
            assert_bounded(&p);
        }
        p.close(&mut out);
    }
}

#[test]
fn a_flood_of_prepares_and_pipelined_calls_stays_bounded() {
    use super::wire::{self, Driver, cat};
    let mut d = Driver::connected("shop");
    d.capture = 4096;
    let long_name = "n".repeat(MAX_NAME + 10);
    for i in 0..2000 {
        d.req(&cat(&[wire::parse(&format!("s{i}"), &"SELECT 1, ".repeat(100)), wire::parse(&long_name, "SELECT 2")]));
        d.req(&cat(&[wire::bind(&format!("p{i}"), &format!("s{i}"), &[]), wire::execute(&format!("p{i}"))]));
        assert_bounded(&d.parser);
    }
    let c = d.parser.take_counts();
    assert_eq!(c.evicted, 2000 - super::MAX_STATEMENTS as u64 + 2000 - super::MAX_PORTALS as u64);
    assert_eq!(c.overflow, 2000 - MAX_PENDING as u64);
}
