//! Sequence numbers of a TLS connection's plaintext. A plaintext event
//! carries the TCP sequence number of its call's first ciphertext byte: the
//! same at both ends, so a key for linking, but plaintext bytes do not
//! advance it (records add headers and tags), and parsers check that each
//! segment follows the last (bytes never reported break framing). So the
//! parsers are fed plaintext offsets (each direction from 0: they always
//! follow on), and the exchanges they return get the ciphertext numbers
//! back: a message that starts a segment takes that segment's; one that
//! starts inside a segment has none (its ciphertext position is unknown).

use std::collections::VecDeque;

use crate::protocols::{Exchange, Timing};

/// Segment starts remembered per direction: a request waiting for its
/// response must still find its own (past it: no number, no link).
const REMEMBERED: usize = 64;

#[derive(Debug, Default)]
struct Direction {
    /// Plaintext offset of the next byte.
    next: u32,
    /// (plaintext offset, ciphertext sequence number) of recent segments.
    starts: VecDeque<(u32, Option<u32>)>,
}

/// Both directions of one connection (`true`: requests... by the caller's
/// index: 0 egress, 1 ingress).
#[derive(Debug, Default)]
pub struct TlsSeqs {
    dirs: [Direction; 2],
}

impl TlsSeqs {
    /// The plaintext offset a segment of `bytes` moved in direction `dir`
    /// starts at; remembers its ciphertext number.
    pub fn plaintext(&mut self, dir: usize, bytes: u32, cipher: Option<u32>) -> u32 {
        let d = &mut self.dirs[dir];
        let at = d.next;
        d.next = d.next.wrapping_add(bytes);
        if d.starts.len() == REMEMBERED {
            d.starts.pop_front();
        }
        d.starts.push_back((at, cipher));
        at
    }

    /// Give an exchange's timings their ciphertext numbers back (`dir` of
    /// the request; the response came the other way).
    pub fn restore(&self, ex: &mut Exchange, request_dir: usize) {
        ex.request.seq = self.cipher(request_dir, &ex.request);
        if let Some(r) = ex.response.as_mut() {
            r.seq = self.cipher(1 - request_dir, r);
        }
    }

    fn cipher(&self, dir: usize, t: &Timing) -> Option<u32> {
        let at = t.seq?;
        self.dirs[dir].starts.iter().rev().find(|(o, _)| *o == at).and_then(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::Info;

    fn exchange(req: Option<u32>, resp: Option<u32>) -> Exchange {
        Exchange {
            request: Timing { seq: req, ..Default::default() },
            response: Some(Timing { seq: resp, ..Default::default() }),
            info: Info::Http(Default::default()),
        }
    }

    #[test]
    fn offsets_follow_on_and_map_back_to_ciphertext() {
        let mut s = TlsSeqs::default();
        assert_eq!(s.plaintext(0, 105, Some(1000)), 0);
        assert_eq!(s.plaintext(1, 125, Some(5000)), 0);
        assert_eq!(s.plaintext(0, 105, Some(1127)), 105, "plaintext offsets, whatever the ciphertext did");
        assert_eq!(s.plaintext(0, 50, None), 210);
        let mut e = exchange(Some(105), Some(0));
        s.restore(&mut e, 0);
        assert_eq!((e.request.seq, e.response.unwrap().seq), (Some(1127), Some(5000)));
        let mut inside = exchange(Some(150), None);
        s.restore(&mut inside, 0);
        assert_eq!(inside.request.seq, None, "a message inside a segment has no ciphertext number");
        let mut unknown = exchange(Some(210), None);
        s.restore(&mut unknown, 0);
        assert_eq!(unknown.request.seq, None, "a segment served from the library's buffer had none");
    }
}
