//! Text from untrusted bytes made safe to show: control characters (C0, DEL,
//! C1) and invisible formatting characters (bidi overrides, zero-width
//! marks) are written as escapes, so a request path, a header value, a
//! process name or a service name can neither drive an operator's terminal
//! (ESC sequences, BEL, NUL) nor hide or reorder what it shows. In: `&str` or
//! raw bytes. Out: the same text with those characters escaped (`\x1b`,
//! `\u{202e}`), everything else untouched; a backslash is not doubled (the
//! escapes are for eyes; machines read JSON).

use std::{borrow::Cow, fmt::Write as _};

/// A character that must not reach a terminal as it is.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// Unicode format characters that change or hide how text reads.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// `s` with [`needs_escape`] characters escaped; borrowed when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c);
    }
    Cow::Owned(out)
}

/// Raw bytes as printable text of at most `max` bytes: invalid UTF-8
/// becomes U+FFFD, then [`escape`]; cut at a character (never inside an
/// escape).
pub fn from_bytes(v: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(v);
    if s.len() <= max && !s.chars().any(needs_escape) {
        return s.into_owned();
    }
    let mut out = String::with_capacity(s.len().min(max));
    let mut one = String::new();
    for c in s.chars() {
        one.clear();
        push(&mut one, c);
        if out.len() + one.len() > max {
            break;
        }
        out.push_str(&one);
    }
    out
}

fn push(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
    } else if (c as u32) < 0x100 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    }
}

/// Every character can be shown as it is.
pub fn is_printable(s: &str) -> bool {
    !s.chars().any(needs_escape)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_terminal_controls_and_invisibles() {
        assert_eq!(escape("GET /a"), "GET /a");
        assert!(matches!(escape("/café"), Cow::Borrowed(_)));
        assert_eq!(escape("\x1b]0;t\x07\x1b[2J\0"), "\\x1b]0;t\\x07\\x1b[2J\\x00");
        assert_eq!(escape("a\u{9b}b\u{7f}"), "a\\x9bb\\x7f");
        assert_eq!(escape("user\u{202e}gnp.exe"), "user\\u{202e}gnp.exe");
        assert_eq!(escape("tab\there\r\n"), "tab\\x09here\\x0d\\x0a");
        assert_eq!(from_bytes(b"\xff\x1bok", 100), "\u{fffd}\\x1bok");
        assert_eq!(from_bytes(b"ab\x1bcd", 4), "ab", "an escape is never cut");
    }

    proptest! {
        #[test]
        fn output_is_printable_and_bounded(v in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..300) {
            let s = from_bytes(&v, max);
            prop_assert!(s.len() <= max);
            prop_assert!(is_printable(&s));
            let lossy = String::from_utf8_lossy(&v);
            prop_assert!(is_printable(&escape(&lossy)));
        }
    }
}
