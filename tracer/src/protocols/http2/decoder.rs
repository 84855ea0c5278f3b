//! The HPACK decoder (RFC 7541 sections 2 to 6): header field
//! representations, integers, strings (Huffman by [`super::huffman`]), and
//! the dynamic table with its size updates. In: one whole header block.
//! Out: each field as it is decoded, to a callback; no field is allocated
//! but those the table keeps. Hostile input is an error, never a panic,
//! and the table stays within its maximum size.

use std::collections::VecDeque;

use super::{huffman, tables::STATIC};

/// Why a block did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The block ended inside a representation.
    Truncated,
    /// An index past the static and dynamic tables (or 0).
    Index,
    /// An integer longer than 5 bytes.
    Integer,
    Huffman,
    /// A size update after a field, or past the allowed maximum.
    SizeUpdate,
}

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

pub struct Decoder {
    /// Newest first (index 62).
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// The largest size an update may ask for.
    max_allowed: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

/// The initial table size (SETTINGS_HEADER_TABLE_SIZE's default).
pub const DEFAULT_SIZE: usize = 4096;

impl Decoder {
    pub fn new(max_allowed: usize) -> Self {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_SIZE.min(max_allowed),
            max_allowed,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Set the table's maximum size (as a size update would).
    pub fn set_max_size(&mut self, n: usize) {
        self.max_size = n.min(self.max_allowed);
        self.evict();
    }

    /// Bytes the table holds (RFC accounting: name + value + 32 each).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Decode a header block, each field to `f`. On error, the fields before
    /// it were given to `f` and the table holds what they inserted.
    pub fn decode(&mut self, block: &[u8], f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Error> {
        let mut p = 0;
        let mut fields = false;
        while p < block.len() {
            let b = block[p];
            if b & 0x80 != 0 {
                let (i, n) = int(&block[p..], 7)?;
                p += n;
                let (name, value) = get(&self.entries, i)?;
                f(name, value);
                fields = true;
            } else if b & 0xe0 == 0x20 {
                if fields {
                    return Err(Error::SizeUpdate);
                }
                let (size, n) = int(&block[p..], 5)?;
                p += n;
                if size > self.max_allowed {
                    return Err(Error::SizeUpdate);
                }
                self.max_size = size;
                self.evict();
            } else {
                // 01: with incremental indexing; 0001: never indexed; 0000: without.
                let indexing = b & 0x40 != 0;
                let (i, n) = int(&block[p..], if indexing { 6 } else { 4 })?;
                p += n;
                self.name.clear();
                if i == 0 {
                    p += string(&block[p..], &mut self.name)?;
                } else {
                    self.name.extend_from_slice(get(&self.entries, i)?.0);
                }
                self.value.clear();
                p += string(&block[p..], &mut self.value)?;
                f(&self.name, &self.value);
                if indexing {
                    let entry = (self.name.as_slice().into(), self.value.as_slice().into());
                    self.insert(entry);
                }
                fields = true;
            }
        }
        Ok(())
    }

    fn insert(&mut self, e: Entry) {
        let n = e.0.len() + e.1.len() + 32;
        if n > self.max_size {
            // Larger than the table: it empties it (RFC 7541 4.4).
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.entries.push_front(e);
        self.size += n;
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            let Some((n, v)) = self.entries.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= n.len() + v.len() + 32;
        }
    }
}

fn get(entries: &VecDeque<Entry>, i: usize) -> Result<(&[u8], &[u8]), Error> {
    match i {
        0 => Err(Error::Index),
        1..=61 => Ok(STATIC[i - 1]),
        _ => entries.get(i - 62).map(|(n, v)| (&n[..], &v[..])).ok_or(Error::Index),
    }
}

/// An integer with an N-bit prefix (RFC 7541 5.1): (value, bytes read).
fn int(b: &[u8], prefix: u8) -> Result<(usize, usize), Error> {
    let mask = (1usize << prefix) - 1;
    let first = *b.first().ok_or(Error::Truncated)? as usize & mask;
    if first < mask {
        return Ok((first, 1));
    }
    let mut v = mask;
    for (k, &byte) in b[1..].iter().enumerate().take(4) {
        v += ((byte & 0x7f) as usize) << (7 * k);
        if byte & 0x80 == 0 {
            return Ok((v, k + 2));
        }
    }
    Err(if b.len() < 6 { Error::Truncated } else { Error::Integer })
}

/// A string literal appended to `out`: bytes read.
fn string(b: &[u8], out: &mut Vec<u8>) -> Result<usize, Error> {
    let huffman = *b.first().ok_or(Error::Truncated)? & 0x80 != 0;
    let (len, n) = int(b, 7)?;
    let raw = b.get(n..n.checked_add(len).ok_or(Error::Truncated)?).ok_or(Error::Truncated)?;
    if huffman {
        huffman::decode(raw, out).map_err(|_| Error::Huffman)?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(n + len)
}

#[cfg(test)]
mod tests {
    use proptest::{collection::vec, prelude::*};

    use super::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn fields(d: &mut Decoder, block: &[u8]) -> Result<Fields, Error> {
        let mut out = Vec::new();
        d.decode(block, &mut |n, v| out.push((n.to_vec(), v.to_vec()))).map(|_| out)
    }

    #[test]
    fn rfc_c3_requests_without_huffman() {
        let mut d = Decoder::new(4096);
        let c31 = b"\x82\x86\x84\x41\x0fwww.example.com";
        assert_eq!(
            fields(&mut d, c31).unwrap(),
            [
                (b":method".to_vec(), b"GET".to_vec()),
                (b":scheme".into(), b"http".into()),
                (b":path".into(), b"/".into()),
                (b":authority".into(), b"www.example.com".into())
            ]
        );
        assert_eq!(d.size(), 57);
        let c32 = b"\x82\x86\x84\xbe\x58\x08no-cache";
        let got = fields(&mut d, c32).unwrap();
        assert_eq!(got[3], (b":authority".to_vec(), b"www.example.com".to_vec()));
        assert_eq!(got[4], (b"cache-control".to_vec(), b"no-cache".to_vec()));
        assert_eq!(d.size(), 110);
    }

    #[test]
    fn rfc_c4_requests_with_huffman() {
        let mut d = Decoder::new(4096);
        let c41 =
            [0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        assert_eq!(fields(&mut d, &c41).unwrap()[3].1, b"www.example.com");
        let c42 = [0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf];
        assert_eq!(fields(&mut d, &c42).unwrap()[4], (b"cache-control".to_vec(), b"no-cache".to_vec()));
    }

    #[test]
    fn size_updates_and_eviction() {
        let mut d = Decoder::new(4096);
        fields(&mut d, b"\x40\x01a\x01b").unwrap(); // a: b, 34 bytes
        assert_eq!(d.size(), 34);
        fields(&mut d, b"\x20").unwrap(); // size 0 empties the table
        assert_eq!((d.size(), fields(&mut d, b"\xbe")), (0, Err(Error::Index)));
        assert_eq!(fields(&mut d, b"\x3f\xe1\x1f\x40\x01a\x01b").unwrap().len(), 1); // back to 4096
        assert_eq!(fields(&mut d, b"\x82\x20"), Err(Error::SizeUpdate)); // after a field
        assert_eq!(fields(&mut d, b"\x3f\xe2\x1f"), Err(Error::SizeUpdate)); // 4097 > allowed
        assert_eq!(fields(&mut d, b"\x3f\xff\xff\xff\xff\xff"), Err(Error::Integer));
        assert_eq!(fields(&mut d, b"\x41\x85"), Err(Error::Truncated));
    }

    proptest! {
        /// Blocks from loona-hpack's encoder (dynamic table in use) decode
        /// to the fields encoded, in step over many blocks.
        #[test]
        fn decodes_loona_encoder_blocks(
            blocks in vec(vec((0..12usize, 0..6usize), 1..10), 1..12),
        ) {
            let names = [":method", ":path", ":status", "content-type", "x-a", "x-b", "user-agent", "grpc-status",
                ":authority", "te", "x-long-name-that-is-new", "accept"];
            let mut enc = loona_hpack::Encoder::new();
            let mut d = Decoder::new(65536);
            for b in blocks {
                let want: Fields =
                    b.iter().map(|(n, v)| (names[*n].as_bytes().to_vec(), format!("v{v}").repeat(*v + 1).into_bytes())).collect();
                let bytes = enc.encode(want.iter().map(|(n, v)| (&n[..], &v[..])));
                prop_assert_eq!(fields(&mut d, &bytes), Ok(want));
            }
        }

        /// Random bytes: an error or fields, never a panic; the table stays bounded.
        #[test]
        fn random_blocks_never_panic(blocks in vec(vec(any::<u8>(), 0..300), 1..8)) {
            let mut d = Decoder::new(4096);
            for b in blocks {
                let _ = fields(&mut d, &b);
                prop_assert!(d.size() <= 4096);
            }
        }
    }
}
