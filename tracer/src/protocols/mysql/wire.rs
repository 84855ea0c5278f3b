//! MySQL wire formats read from packets' kept bytes: the server's greeting,
//! the client's handshake response (its capabilities and schema; the user
//! name and auth data are stepped over, never copied), OK/ERR/EOF packets,
//! length-encoded integers and the command bytes.

/// Capability flags the parser needs.
pub const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
pub const CLIENT_COMPRESS: u32 = 0x0000_0020;
pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
pub const CLIENT_SSL: u32 = 0x0000_0800;
pub const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
pub const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x0020_0000;
pub const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 0x0800_0000;

/// Server status: another result follows this one.
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

/// Longest schema name kept (MySQL's limit is 64 characters).
pub const MAX_SCHEMA: usize = 64;

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_BINLOG_DUMP: u8 = 0x12;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
pub const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// The name of a command byte (`db.operation.name` of commands that carry
/// no statement), None: not a command.
pub fn command_name(c: u8) -> Option<&'static str> {
    Some(match c {
        0x01 => "QUIT",
        0x02 => "INIT_DB",
        0x03 => "QUERY",
        0x04 => "FIELD_LIST",
        0x05 => "CREATE_DB",
        0x06 => "DROP_DB",
        0x07 => "REFRESH",
        0x08 => "SHUTDOWN",
        0x09 => "STATISTICS",
        0x0a => "PROCESS_INFO",
        0x0c => "PROCESS_KILL",
        0x0d => "DEBUG",
        0x0e => "PING",
        0x11 => "CHANGE_USER",
        0x12 => "BINLOG_DUMP",
        0x15 => "REGISTER_SLAVE",
        0x16 => "PREPARE",
        0x17 => "EXECUTE",
        0x18 => "SEND_LONG_DATA",
        0x19 => "CLOSE",
        0x1a => "STMT_RESET",
        0x1b => "SET_OPTION",
        0x1c => "FETCH",
        0x1e => "BINLOG_DUMP_GTID",
        0x1f => "RESET_CONNECTION",
        0xfa => "BULK_EXECUTE",
        _ => return None,
    })
}

/// A length-encoded integer at the start of `b`: (value, bytes it took).
pub fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| -> Option<u64> {
        let s = b.get(1..1 + n)?;
        Some(s.iter().rev().fold(0u64, |v, x| (v << 8) | u64::from(*x)))
    };
    match *b.first()? {
        x @ 0..=0xfa => Some((u64::from(x), 1)),
        0xfc => Some((le(2)?, 3)),
        0xfd => Some((le(3)?, 4)),
        0xfe => Some((le(8)?, 9)),
        _ => None, // 0xfb is NULL, 0xff is not an integer
    }
}

/// What the server's greeting (HandshakeV10) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub mariadb: bool,
    pub caps: u32,
}

/// A HandshakeV10 packet's payload (protocol 10, a printable version).
pub fn greeting(p: &[u8]) -> Option<Greeting> {
    let rest = p.strip_prefix(&[10])?;
    let end = rest.iter().take(64).position(|b| *b == 0)?;
    let version = &rest[..end];
    if version.is_empty() || !version.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // conn id (4), auth data (8), filler (1), caps low (2), charset (1),
    // status (2), caps high (2).
    let after = &rest[end + 1..];
    let low = after.get(13..15).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    let high = after.get(18..20).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    let mariadb = version.windows(7).any(|w| w == b"MariaDB");
    Some(Greeting { mariadb, caps: u32::from(low) | (u32::from(high) << 16) })
}

/// What the client's handshake response says (never its user or auth data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    pub caps: u32,
    /// An SSLRequest: TLS follows.
    pub tls: bool,
    pub schema: Option<String>,
}

/// A HandshakeResponse41 (or SSLRequest) payload; `whole`: every byte kept.
pub fn login(p: &[u8], whole: bool) -> Option<Login> {
    let caps = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return None; // pre-4.1 clients: no server of the last 15 years speaks to them
    }
    if caps & CLIENT_SSL != 0 && p.len() == 32 && whole {
        return Some(Login { caps, tls: true, schema: None });
    }
    let rest = p.get(32..)?;
    let user_end = rest.iter().position(|b| *b == 0)?;
    let rest = &rest[user_end + 1..];
    let rest = if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        let (n, k) = lenenc(rest)?;
        rest.get(k + usize::try_from(n).ok()?..)?
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = usize::from(*rest.first()?);
        rest.get(1 + n..)?
    } else {
        &rest[rest.iter().position(|b| *b == 0)? + 1..]
    };
    let schema = (caps & CLIENT_CONNECT_WITH_DB != 0)
        .then(|| rest.iter().position(|b| *b == 0).and_then(|end| schema_name(&rest[..end])))
        .flatten();
    Some(Login { caps, tls: false, schema })
}

/// A schema name as it may be exported: printable, at most [`MAX_SCHEMA`].
pub fn schema_name(b: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?;
    let ok = !s.is_empty() && s.chars().count() <= MAX_SCHEMA && s.chars().all(|c| !crate::printable::needs_escape(c));
    ok.then(|| s.to_string())
}

/// `USE name` (any case, the name plain or in backticks): the schema.
pub fn use_schema(sql: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(sql).ok()?.trim().trim_end_matches(';').trim_end();
    let (kw, rest) = s.split_at_checked(3)?;
    if !kw.eq_ignore_ascii_case("use") || !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let name = rest.trim();
    let name = match name.strip_prefix('`') {
        Some(q) => q.strip_suffix('`').filter(|n| !n.contains('`'))?,
        None if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') => name,
        None => return None,
    };
    schema_name(name.as_bytes())
}

/// An ERR packet's payload: error code and SQLSTATE (the message is not read).
pub fn err(p: &[u8]) -> Option<(u16, Option<[u8; 5]>)> {
    if *p.first()? != 0xff {
        return None;
    }
    let code = u16::from_le_bytes(p.get(1..3)?.try_into().ok()?);
    let state = p
        .get(3..9)
        .filter(|s| s[0] == b'#' && s[1..].iter().all(u8::is_ascii_alphanumeric))
        .map(|s| [s[1], s[2], s[3], s[4], s[5]]);
    Some((code, state))
}

/// The status flags of an OK (0x00 or 0xFE header) or EOF packet; None
/// when not kept.
pub fn status(p: &[u8], len: u64) -> Option<u16> {
    let at = if p.first() == Some(&0xfe) && len < 9 {
        3 // EOF: header, warnings (2), status (2)
    } else {
        let (_, a) = lenenc(p.get(1..)?)?;
        let (_, b) = lenenc(p.get(1 + a..)?)?;
        1 + a + b
    };
    Some(u16::from_le_bytes(p.get(at..at + 2)?.try_into().ok()?))
}

/// A COM_STMT_PREPARE_OK: statement id, columns, parameters.
pub fn prepare_ok(p: &[u8]) -> Option<(u32, u16, u16)> {
    if *p.first()? != 0 {
        return None;
    }
    let id = u32::from_le_bytes(p.get(1..5)?.try_into().ok()?);
    let cols = u16::from_le_bytes(p.get(5..7)?.try_into().ok()?);
    let params = u16::from_le_bytes(p.get(7..9)?.try_into().ok()?);
    Some((id, cols, params))
}

/// Does a syscall start with a packet header of sequence id `seq_id`
/// (length below 16 MiB, so not a continuation) whose first payload byte,
/// when captured, `first` accepts?
pub fn starts_packet(b: &[u8], seq_id: impl Fn(u8) -> bool, first: impl Fn(u8) -> bool) -> bool {
    let Some(h) = b.get(..4) else { return false };
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
    len > 0 && len < 0xff_ffff && seq_id(h[3]) && b.get(4).is_none_or(|c| first(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_integers() {
        assert_eq!(lenenc(&[0x05]), Some((5, 1)));
        assert_eq!(lenenc(&[0xfc, 0x01, 0x02]), Some((0x0201, 3)));
        assert_eq!(lenenc(&[0xfd, 1, 0, 0]), Some((1, 4)));
        assert_eq!(lenenc(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 0]), Some((1, 9)));
        assert_eq!(lenenc(&[0xfe, 1]), None);
        assert_eq!(lenenc(&[0xfb]), None);
    }

    #[test]
    fn use_statements() {
        assert_eq!(use_schema(b"USE shop").as_deref(), Some("shop"));
        assert_eq!(use_schema(b"use `my shop`;").as_deref(), Some("my shop"));
        assert_eq!(use_schema(b"USEshop"), None);
        assert_eq!(use_schema(b"USE a; DROP TABLE x"), None);
        assert_eq!(use_schema(b"SELECT 1"), None);
    }
}
