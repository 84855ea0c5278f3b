//! Grammar checks on the bytes of a request line (RFC 9110 tokens, RFC 9112
//! request targets, RFC 3986 characters) and their printable forms. In: raw
//! bytes of untrusted peers. Out: strings that are printable ASCII or
//! escaped text, and whether a target is one a route may be made of.

use std::ops::Range;

/// `tchar` of RFC 9110 5.6.2: what methods and header names are made of.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 3986 characters of a path and query: unreserved, sub-delims, `:@/?`
/// (`%` is checked with its two hex digits).
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b)
}

/// Header values kept: printable text of at most `max` bytes.
pub fn printable(v: &[u8], max: usize) -> String {
    crate::printable::from_bytes(v, max)
}

/// A target as kept, and the byte range of its path when a route may be
/// made of it. The kept form is printable ASCII: bytes outside `!`..=`~`
/// become `%XX`, and it is cut at `max` bytes (never inside an escape).
/// `cut`: the capture ended inside the target. The path is routable when
/// the target is valid (origin form `/p?q`, absolute form `http://h/p?q`,
/// or `*`; RFC 3986 characters, `%` followed by two hex digits) and its
/// path was seen to its end (a `?` was captured, or the target was whole).
pub fn target(raw: &[u8], cut: bool, max: usize) -> (String, Option<Range<usize>>) {
    let mut out = String::with_capacity(raw.len().min(max));
    let mut kept = 0;
    for &b in raw {
        let need = if (0x21..=0x7e).contains(&b) { 1 } else { 3 };
        if out.len() + need > max {
            break;
        }
        if need == 1 {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        kept += 1;
    }
    let cut = cut || kept < raw.len();
    let path = route_range(&raw[..kept], cut);
    (out, path)
}

fn route_range(t: &[u8], cut: bool) -> Option<Range<usize>> {
    if t == b"*" && !cut {
        return Some(0..1);
    }
    let start = if t.first() == Some(&b'/') {
        0
    } else {
        // Absolute form (requests to a proxy): the path after the authority.
        let scheme = [&b"http://"[..], b"https://"]
            .into_iter()
            .find(|s| t.len() >= s.len() && t[..s.len()].eq_ignore_ascii_case(s))?;
        let auth = &t[scheme.len()..];
        let auth_len = auth.iter().position(|b| *b == b'/' || *b == b'?').unwrap_or(auth.len());
        let host = &auth[..auth_len];
        if host.is_empty() || !host.iter().all(|b| is_uri_char(*b) || b"[]%".contains(b)) {
            return None;
        }
        scheme.len() + auth_len
    };
    if !valid_chars(&t[start..]) {
        return None;
    }
    let end = t[start..].iter().position(|b| *b == b'?').map(|q| start + q);
    match end {
        Some(e) => Some(start..e),
        None if cut => None,
        None => Some(start..t.len()),
    }
}

/// RFC 3986 characters with well-formed percent escapes. A `%` cut by the
/// end of `t` is not well formed.
fn valid_chars(t: &[u8]) -> bool {
    let mut i = 0;
    while i < t.len() {
        let b = t[i];
        if b == b'%' {
            if !(t.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && t.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if is_uri_char(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(raw: &[u8], cut: bool) -> Option<String> {
        let (t, r) = target(raw, cut, 64);
        r.map(|r| t[r].to_string())
    }

    #[test]
    fn targets() {
        let cases: &[(&[u8], bool, Option<&str>)] = &[
            (b"/users/42?x=1", false, Some("/users/42")),
            (b"/a%20b/c", false, Some("/a%20b/c")),
            (b"*", false, Some("*")),
            (b"http://api:8080/v1/x?q", false, Some("/v1/x")),
            (b"HTTP://api", false, Some("")),
            (b"api.example.com:443", false, None), // CONNECT: authority form
            (b"/bad%zz", false, None),
            (b"/bad%2", false, None),
            (b"/a\x1b[2J", false, None),
            (b"/caf\xc3\xa9", false, None), // non-ASCII: browsers send %C3%A9
            (b"/a{b}", false, None),
            (b"relative", false, None),
            (b"/cut/by/capt", true, None),
            (b"/path/whole?cut-in-quer", true, Some("/path/whole")),
        ];
        for (raw, cut, want) in cases {
            assert_eq!(route(raw, *cut).as_deref(), *want, "{:?}", String::from_utf8_lossy(raw));
        }
        assert_eq!(target(b"/a\x1b\x00\xff", false, 64).0, "/a%1B%00%FF");
        // Cut at the cap, never inside an escape; a cut path is not routable.
        assert_eq!(target(b"/abcdef\x01", false, 9), ("/abcdef".to_string(), None));
        assert_eq!(target(b"/ab", false, 9), ("/ab".to_string(), Some(0..3)));
    }
}
