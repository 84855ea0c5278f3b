//! Recorded byte streams for parser tests (test-only): one line per read,
//! `> ` for bytes the client sent, `< ` for bytes the server sent, `#`
//! comments; bytes escaped as `\r`, `\n`, `\\`, `\xNN`. A recording proxy
//! or `strace -xx` output pasted in this shape is a fixture.

use super::Side;

/// The reads of a recording: (side, bytes), requests being client bytes.
pub fn load(text: &str) -> Vec<(Side, Vec<u8>)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (side, rest) = match l.split_at(2) {
                ("> ", rest) => (Side::Request, rest),
                ("< ", rest) => (Side::Response, rest),
                _ => panic!("a fixture line starts with '> ' or '< ': {l:?}"),
            };
            (side, unescape(rest))
        })
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("two hex digits");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 2;
            }
            other => panic!("unknown escape {other:?} in {s:?}"),
        }
        i += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::unescape(r"a\r\n\\\x00\xff"), b"a\r\n\\\x00\xff");
    }
}
