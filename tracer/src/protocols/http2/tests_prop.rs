//! Property tests: a connection's frames cut into syscalls at any points
//! pair into the same exchanges as whole; arbitrary bytes, and valid
//! streams with bytes flipped or captured only in part, never panic and
//! never grow the parser past its bounds.

use proptest::{collection::vec, prelude::*, sample::Index};

use super::{
    frame::MAX_BLOCK,
    streams::MAX_STREAMS,
    tests::{Q, R, Seg, Wire, data, feed, preface, rst, summary},
};
use crate::protocols::{ProtocolParser, Segment};

#[derive(Clone, Debug)]
enum Call {
    Get(u8, usize),
    Grpc(u8),
    Reset,
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (any::<u8>(), 0..20_000usize).prop_map(|(p, n)| Call::Get(p, n)),
        (0..17u8).prop_map(Call::Grpc),
        Just(Call::Reset),
    ]
}

/// The client's and the server's bytes for `calls` on streams 1, 3, ...,
/// the responses written (and so HPACK-encoded) in the order `order` shuffles.
fn conn(calls: &[Call], order: &[Index]) -> (Vec<u8>, Vec<u8>) {
    let mut w = Wire::new();
    let mut req = preface();
    for (i, c) in calls.iter().enumerate() {
        let id = 2 * i as u32 + 1;
        match c {
            Call::Get(p, _) => req.extend(w.get(id, &format!("/items/{p}"))),
            Call::Grpc(_) => req.extend(w.grpc_call(id, "/pkg.Svc/Do")),
            Call::Reset => req.extend(w.get(id, "/slow")),
        }
    }
    let mut idx: Vec<usize> = (0..calls.len()).collect();
    for (i, o) in order.iter().enumerate().take(idx.len()) {
        let j = i + o.index(idx.len() - i);
        idx.swap(i, j);
    }
    let mut resp = super::tests::settings();
    for i in idx {
        let id = 2 * i as u32 + 1;
        match &calls[i] {
            Call::Get(p, n) => {
                resp.extend(w.status(id, if p % 7 == 0 { "503" } else { "200" }, false));
                // DATA frames of at most the default SETTINGS_MAX_FRAME_SIZE.
                let mut left = *n;
                while left > 16_384 {
                    resp.extend(data(id, 16_384, false));
                    left -= 16_384;
                }
                resp.extend(data(id, left, true));
            }
            Call::Grpc(code) => resp.extend(w.grpc_reply(id, &code.to_string())),
            Call::Reset => resp.extend(rst(id, 7)),
        }
    }
    (req, resp)
}

fn split(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #[test]
    fn any_split_gives_the_same_exchanges(
        calls in vec(call(), 1..8),
        order in vec(any::<Index>(), 8),
        req_cuts in vec(any::<Index>(), 0..20),
        resp_cuts in vec(any::<Index>(), 0..20),
    ) {
        let (req, resp) = conn(&calls, &order);
        let whole = feed(&[(Q, req.clone(), None), (R, resp.clone(), None)]);
        let mut segs: Vec<Seg> = split(&req, &req_cuts).into_iter().map(|b| (Q, b, None)).collect();
        segs.extend(split(&resp, &resp_cuts).into_iter().map(|b| (R, b, None)));
        let cut = feed(&segs);
        let lines: Vec<String> = cut.ex.iter().map(summary).collect();
        prop_assert_eq!(lines, whole.ex.iter().map(summary).collect::<Vec<_>>());
        prop_assert_eq!(whole.ex.len(), calls.len());
        prop_assert_eq!(cut.counts.malformed, 0);
    }

    #[test]
    fn partial_captures_keep_every_stream(
        calls in vec(call(), 1..8),
        cap in 64usize..2048,
        resp_cuts in vec(any::<Index>(), 0..20),
    ) {
        // Requests whole, responses captured `cap` bytes per syscall: every
        // stream still yields one exchange (complete or not), none twice.
        let (req, resp) = conn(&calls, &[]);
        let mut segs: Vec<Seg> = vec![(Q, req, None)];
        segs.extend(split(&resp, &resp_cuts).into_iter().map(|b| (R, b, Some(cap))));
        let run = feed(&segs);
        let mut ids: Vec<u32> = run.ex.iter().map(|e| super::tests::h2(e).stream).collect();
        ids.sort_unstable();
        let want: Vec<u32> = (0..calls.len() as u32).map(|i| 2 * i + 1).collect();
        prop_assert_eq!(ids, want);
    }

    #[test]
    fn flipped_bytes_never_panic(
        calls in vec(call(), 1..6),
        flips in vec((any::<Index>(), any::<u8>()), 1..10),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let (mut req, mut resp) = conn(&calls, &[]);
        for (i, (at, b)) in flips.iter().enumerate() {
            let v = if i % 2 == 0 { &mut req } else { &mut resp };
            let n = v.len();
            v[at.index(n)] = *b;
        }
        let mut segs: Vec<Seg> = split(&req, &cuts).into_iter().map(|b| (Q, b, None)).collect();
        segs.extend(split(&resp, &cuts).into_iter().map(|b| (R, b, None)));
        let run = feed(&segs);
        prop_assert!(run.ex.len() <= 64 + calls.len());
    }

    #[test]
    fn random_bytes_stay_bounded(segs in vec((any::<bool>(), vec(any::<u8>(), 0..600), 0u32..100_000), 1..40)) {
        let mut p = super::Http2::new(Default::default());
        let mut out = Vec::new();
        let first = preface();
        p.feed(Q, &Segment { ts_ns: 1, bytes: first.len() as u32, payload: &first, seq: None, tid: 1 }, &mut out);
        for (i, (req, bytes, extra)) in segs.iter().enumerate() {
            let seg = Segment { ts_ns: i as u64 + 2, bytes: bytes.len() as u32 + extra, payload: bytes, seq: None, tid: 1 };
            p.feed(if *req { Q } else { R }, &seg, &mut out);
            prop_assert!(p.buffered() <= 4 * MAX_BLOCK + 64, "{}", p.buffered());
            prop_assert!(p.open_streams() <= MAX_STREAMS);
        }
        p.close(&mut out);
        prop_assert_eq!(p.open_streams(), 0);
    }
}
