//! The few fields read from PostgreSQL message bodies (the captured prefix
//! [`super::frame`] kept): names of statements and portals, the SQL of
//! Query and Parse, the startup's database, CommandComplete's row count and
//! ErrorResponse's SQLSTATE. Bind values, DataRow and CopyData contents,
//! passwords and error messages are never read.

use super::{MAX_NAME, frame::be32};

/// A NUL-terminated string at the start of `b`, and what follows it.
/// None: no NUL in the captured bytes.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// A statement or portal name, as the cache keys it; None when longer than
/// [`MAX_NAME`] or not captured whole.
fn name(b: &[u8]) -> Option<(&[u8], &[u8])> {
    cstr(b).filter(|(n, _)| n.len() <= MAX_NAME)
}

/// The startup message's `database` parameter (after the 4-byte protocol
/// code). Every other parameter, the user's name first, is skipped.
pub fn startup_database(body: &[u8]) -> Option<&str> {
    let mut rest = body.get(4..)?;
    loop {
        let (key, after) = cstr(rest)?;
        if key.is_empty() {
            return None;
        }
        let (value, after) = cstr(after)?;
        if key == b"database" {
            let db = std::str::from_utf8(value).ok()?;
            let ok = !db.is_empty() && db.len() <= super::MAX_NAME && crate::protocols::sql::is_printable(db);
            return ok.then_some(db);
        }
        rest = after;
    }
}

/// Query: the SQL text (what was captured of it) and whether it is whole.
pub fn query(body: &[u8], len: u32) -> (&[u8], bool) {
    match cstr(body) {
        Some((sql, _)) => (sql, true),
        None => (body, body.len() as u64 >= u64::from(len)),
    }
}

/// Parse: the statement's name and its SQL (captured part, whole?).
pub fn parse(body: &[u8], len: u32) -> Option<(&[u8], &[u8], bool)> {
    let (name, rest) = name(body)?;
    let consumed = (body.len() - rest.len()) as u32;
    let (sql, whole) = query(rest, len.saturating_sub(consumed));
    Some((name, sql, whole))
}

/// Bind: the portal's and the statement's names (the values after them are
/// never looked at).
pub fn bind(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (portal, rest) = name(body)?;
    let (statement, _) = name(rest)?;
    Some((portal, statement))
}

/// Execute: the portal's name.
pub fn execute(body: &[u8]) -> Option<&[u8]> {
    name(body).map(|(n, _)| n)
}

/// Close: `S` (statement) or `P` (portal), and the name.
pub fn close(body: &[u8]) -> Option<(u8, &[u8])> {
    let (&kind, rest) = body.split_first()?;
    name(rest).map(|(n, _)| (kind, n))
}

/// The startup-phase request code (protocol version, SSLRequest, ...).
pub fn code(body: &[u8]) -> u32 {
    be32(body)
}

/// CommandComplete's tag: rows returned when the command returns rows
/// (`SELECT n`, `FETCH n`); None for the others (`INSERT 0 n` counts rows
/// written, not returned).
pub fn returned_rows(body: &[u8]) -> Option<u64> {
    let tag = cstr(body).map_or(body, |(t, _)| t);
    let tag = std::str::from_utf8(tag).ok()?;
    let mut words = tag.split(' ');
    let command = words.next()?;
    if !matches!(command, "SELECT" | "FETCH") {
        return None;
    }
    words.next_back()?.parse().ok()
}

/// ErrorResponse's SQLSTATE (the `C` field): five digits or upper-case
/// letters. The message and every other field are skipped.
pub fn sqlstate(body: &[u8]) -> Option<[u8; 5]> {
    let mut rest = body;
    loop {
        let (&field, after) = rest.split_first()?;
        if field == 0 {
            return None;
        }
        let (value, after) = cstr(after)?;
        if field == b'C' {
            let code: [u8; 5] = value.try_into().ok()?;
            return code.iter().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()).then_some(code);
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(startup_database(b"\0\x03\0\0user\0bob\0database\0shop\0\0"), Some("shop"));
        assert_eq!(startup_database(b"\0\x03\0\0user\0bob\0\0"), None);
        assert_eq!(startup_database(b"\0\x03\0\0database\0a\x1bb\0\0"), None);
        assert_eq!(query(b"SELECT 1\0", 9), (&b"SELECT 1"[..], true));
        assert_eq!(query(b"SELECT 1", 900), (&b"SELECT 1"[..], false));
        assert_eq!(parse(b"s1\0SELECT $1\0\0\0", 15), Some((&b"s1"[..], &b"SELECT $1"[..], true)));
        assert_eq!(bind(b"\0s1\0\0\x01\0\0\0\x04abcd"), Some((&b""[..], &b"s1"[..])));
        assert_eq!(close(b"Ss1\0"), Some((b'S', &b"s1"[..])));
        assert_eq!(returned_rows(b"SELECT 42\0"), Some(42));
        assert_eq!(returned_rows(b"FETCH 7\0"), Some(7));
        assert_eq!(returned_rows(b"INSERT 0 3\0"), None);
        assert_eq!(sqlstate(b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0"), Some(*b"42P01"));
        assert_eq!(sqlstate(b"SERROR\0C4\0\0"), None);
        assert_eq!(sqlstate(b"SERROR\0VERR"), None);
    }
}
