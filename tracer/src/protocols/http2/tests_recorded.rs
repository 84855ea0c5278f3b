//! A conversation recorded from grpcio's C core, client and server
//! (`fixtures/grpcio.txt`): every call is one exchange with the method and
//! status the client printed; at smaller captures and with reads split
//! anywhere, what is read is never wrong.

use std::collections::BTreeMap;

use proptest::{collection::vec, prelude::*, sample::Index};

use super::tests::{Q, R, Seg, feed, h2};
use crate::protocols::{Exchange, Side};

const SESSION: &str = include_str!("fixtures/grpcio.txt");

/// The recorded reads: `> hex` client to server, `< hex` server to client.
fn reads() -> Vec<(Side, Vec<u8>)> {
    SESSION
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (dir, hex) = l.split_once(' ').expect("`> hex` or `< hex`");
            let bytes = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            (if dir == ">" { Q } else { R }, bytes)
        })
        .collect()
}

/// method -> (status -> calls).
fn by_method(ex: &[Exchange]) -> BTreeMap<String, BTreeMap<Option<u32>, usize>> {
    let mut m: BTreeMap<String, BTreeMap<Option<u32>, usize>> = BTreeMap::new();
    for e in ex {
        let h = h2(e);
        let method = h.http.request.target.rsplit('/').next().unwrap_or("-").to_string();
        *m.entry(method).or_default().entry(h.grpc_status).or_default() += 1;
    }
    m
}

/// What the client printed.
const WANT: [(&str, u32, usize); 5] =
    [("Count", 0, 2), ("Crash", 13, 2), ("Fail", 5, 3), ("SayHello", 0, 10), ("Slow", 4, 1)];

#[test]
fn recorded_grpcio_session() {
    let segs: Vec<Seg> = reads().into_iter().map(|(side, b)| (side, b, None)).collect();
    let run = feed(&segs);
    let want: BTreeMap<String, BTreeMap<Option<u32>, usize>> =
        WANT.iter().map(|(m, c, n)| (m.to_string(), BTreeMap::from([(Some(*c), *n)]))).collect();
    assert_eq!(by_method(&run.ex), want);
    assert!(run.ex.iter().all(|e| h2(e).grpc), "content-type read on every call");
    assert_eq!(run.counts, Default::default());
}

proptest! {
    #[test]
    fn recorded_grpcio_at_any_capture_and_split(cap in 16usize..600, cuts in vec(any::<Index>(), 0..30)) {
        // Split some reads in two, and capture each read's first `cap` bytes.
        let mut segs: Vec<Seg> = Vec::new();
        for (i, (side, b)) in reads().into_iter().enumerate() {
            match cuts.get(i) {
                Some(c) if b.len() > 1 => {
                    let at = c.index(b.len());
                    segs.push((side, b[..at].to_vec(), Some(cap)));
                    segs.push((side, b[at..].to_vec(), Some(cap)));
                }
                _ => segs.push((side, b, Some(cap))),
            }
        }
        let run = feed(&segs);
        // A call whose request frames were never read is no exchange (at
        // most counted unpaired); captured whole, every call is one.
        let longest = reads().iter().map(|r| r.1.len()).max().unwrap();
        prop_assert!(run.ex.len() <= 18);
        if cap >= longest {
            prop_assert_eq!(run.ex.len(), 18);
        }
        for e in &run.ex {
            let h = h2(e);
            let method = h.http.request.target.rsplit('/').next().unwrap_or("");
            // (A path not read names no method: nothing to compare.)
            let want = WANT.iter().find(|(m, _, _)| *m == method).map(|w| w.1);
            if let (Some(code), Some(want)) = (h.grpc_status, want) {
                prop_assert_eq!(code, want, "a status read is the one sent ({})", method);
            }
        }
    }
}
