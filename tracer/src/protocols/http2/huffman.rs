//! HPACK's Huffman code (RFC 7541 section 5.2, Appendix B), decoded four
//! bits at a time by a table built once from the code: a state is a node
//! of the code's tree (256 inner nodes), and each state and nibble say the
//! next state and the symbol completed, if any (codes are 5 bits or more,
//! so a nibble completes at most one). `loona-hpack` built a hash map of the
//! whole code for every string it decoded: three quarters of the agent's
//! CPU under h2load.

use std::sync::OnceLock;

use super::tables::HUFFMAN;

const EMIT: u8 = 1;
const FAIL: u8 = 2;
const EOS: u16 = 256;

#[derive(Clone, Copy, Default)]
struct Step {
    next: u8,
    sym: u8,
    flags: u8,
}

struct Fsm {
    steps: Vec<[Step; 16]>,
    /// A string may end in this state: the bits since the last symbol are
    /// at most 7 ones (a prefix of EOS, the padding the RFC allows).
    accept: Vec<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Append the decoding of `src` to `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    let fsm = FSM.get_or_init(build);
    out.reserve(src.len() * 8 / 5);
    let mut state = 0usize;
    for &b in src {
        for nibble in [b >> 4, b & 0xf] {
            let s = fsm.steps[state][nibble as usize];
            if s.flags & FAIL != 0 {
                return Err(Invalid);
            }
            if s.flags & EMIT != 0 {
                out.push(s.sym);
            }
            state = s.next as usize;
        }
    }
    if fsm.accept[state] { Ok(()) } else { Err(Invalid) }
}

static FSM: OnceLock<Fsm> = OnceLock::new();

/// A child in the tree: an inner node's id, or a symbol.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Child {
    None,
    Node(u16),
    Sym(u16),
}

fn build() -> Fsm {
    // The tree of the code: inner nodes, root 0.
    let mut tree: Vec<[Child; 2]> = vec![[Child::None; 2]];
    for (sym, &(code, bits)) in HUFFMAN.iter().enumerate() {
        let mut node = 0usize;
        for i in (0..bits).rev() {
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                tree[node][bit] = Child::Sym(sym as u16);
            } else {
                node = match tree[node][bit] {
                    Child::Node(n) => n as usize,
                    _ => {
                        tree.push([Child::None; 2]);
                        let n = tree.len() - 1;
                        tree[node][bit] = Child::Node(n as u16);
                        n
                    }
                };
            }
        }
    }
    assert_eq!(tree.len(), 256, "a complete code of 257 symbols has 256 inner nodes");
    // Depth and all-ones path of each inner node, for the padding rule.
    let mut ones = vec![None; tree.len()];
    let mut n = 0usize;
    let mut depth = 0;
    ones[0] = Some(0);
    while let Child::Node(next) = tree[n][1] {
        depth += 1;
        n = next as usize;
        ones[n] = Some(depth);
    }
    let accept = ones.iter().map(|d| d.is_some_and(|d| d <= 7)).collect();
    let steps = (0..tree.len())
        .map(|start| {
            let mut row = [Step::default(); 16];
            for (nibble, step) in row.iter_mut().enumerate() {
                let mut node = start;
                for i in (0..4).rev() {
                    match tree[node][(nibble >> i) & 1] {
                        Child::Node(n) => node = n as usize,
                        Child::Sym(EOS) | Child::None => {
                            step.flags = FAIL;
                            break;
                        }
                        Child::Sym(s) => {
                            step.flags |= EMIT;
                            step.sym = s as u8;
                            node = 0;
                        }
                    }
                }
                step.next = node as u8;
            }
            row
        })
        .collect();
    Fsm { steps, accept }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc_examples() {
        // RFC 7541 C.4.1: "www.example.com".
        let enc = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut out = Vec::new();
        decode(&enc, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        // C.6.1: "Mon, 21 Oct 2013 20:13:21 GMT".
        let enc = [
            0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x82,
            0xa6, 0x2d, 0x1b, 0xff,
        ];
        out.clear();
        decode(&enc, &mut out).unwrap();
        assert_eq!(out, b"Mon, 21 Oct 2013 20:13:21 GMT");
        // Padding of 8 ones, or of zeros, is an error.
        assert_eq!(decode(&[0xff], &mut Vec::new()), Err(Invalid));
        assert_eq!(decode(&[0xf1, 0x00], &mut Vec::new()), Err(Invalid));
        assert_eq!(decode(&[], &mut Vec::new()), Ok(()));
    }

    proptest! {
        /// Every byte string round-trips through the code (encoded here
        /// bit by bit from the table).
        #[test]
        fn round_trip(s in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bits: Vec<bool> = Vec::new();
            for &b in &s {
                let (code, n) = HUFFMAN[b as usize];
                bits.extend((0..n).rev().map(|i| (code >> i) & 1 == 1));
            }
            while !bits.len().is_multiple_of(8) {
                bits.push(true);
            }
            let enc: Vec<u8> = bits.chunks(8).map(|c| c.iter().fold(0u8, |a, b| a << 1 | u8::from(*b))).collect();
            let mut out = Vec::new();
            prop_assert_eq!(decode(&enc, &mut out), Ok(()));
            prop_assert_eq!(out, s);
        }

        /// Random input: the same verdict and output as loona-hpack's decoder.
        #[test]
        fn agrees_with_loona(src in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            let mine = decode(&src, &mut out).map(|_| out);
            let theirs = loona_hpack::huffman::HuffmanDecoder::new().decode(&src).map_err(|_| Invalid);
            prop_assert_eq!(mine, theirs);
        }
    }
}
