//! DNS messages (RFC 1035 §4) from bytes: the header, the first question,
//! and the address and alias answers. Pure and bounded: a name is at most
//! 255 bytes and [`MAX_JUMPS`] compression pointers (a pointer loop ends
//! there), answers past [`MAX_ANSWERS`] are counted, not kept, and a message
//! cut by the capture size yields what its captured bytes hold. Names are
//! lowercased and escaped as the conventions ask (`\DDD` for bytes outside
//! letters, digits, `-` and `_`; `\.` for a dot inside a label): attacker
//! bytes never reach a span raw.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Bytes of the fixed header.
pub const HEADER: usize = 12;
/// Compression pointers followed per name at most.
pub const MAX_JUMPS: usize = 16;
/// Wire length of a name at most (RFC 1035 §3.1).
pub const MAX_NAME: usize = 255;
/// Answers kept per message; the rest are counted in `more_answers`.
pub const MAX_ANSWERS: usize = 16;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("bad name (past the message, too long, or a pointer loop)")]
    Name,
    #[error("no question")]
    NoQuestion,
}

/// The question of a message: what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lowercased, escaped, without the final dot (the root is ".").
    pub name: String,
    pub qtype: u16,
}

/// One answer record the agent reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An A or AAAA record.
    Addr(IpAddr),
    /// A CNAME record: the name the owner is an alias of.
    Alias(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// QR bit: this is a response.
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    /// TC bit: the server truncated the answer (the client retries over TCP).
    pub truncated: bool,
    pub question: Question,
    pub answers: Vec<Answer>,
    /// Answer records not kept (past MAX_ANSWERS, or other types).
    pub more_answers: u16,
    /// The answer section ran past the captured bytes.
    pub cut: bool,
}

/// The message in `b` (a UDP payload, or a TCP message without its length).
pub fn parse(b: &[u8]) -> Result<Message, WireError> {
    if b.len() < HEADER {
        return Err(WireError::Short);
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let flags = u16::from_be_bytes([b[2], b[3]]);
    let qdcount = u16::from_be_bytes([b[4], b[5]]);
    let ancount = u16::from_be_bytes([b[6], b[7]]);
    if qdcount == 0 {
        return Err(WireError::NoQuestion);
    }
    let (qname, mut at) = name(b, HEADER)?;
    let qtype = be16(b, at).ok_or(WireError::Short)?;
    be16(b, at + 2).ok_or(WireError::Short)?;
    at += 4;
    let mut m = Message {
        id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        truncated: flags & 0x0200 != 0,
        question: Question { name: qname, qtype },
        answers: Vec::new(),
        more_answers: 0,
        cut: false,
    };
    // Further questions (no server sends them) are skipped.
    for _ in 1..qdcount.min(4) {
        match skip_name(b, at) {
            Some(next) if next + 4 <= b.len() => at = next + 4,
            _ => {
                m.cut = true;
                return Ok(m);
            }
        }
    }
    for i in 0..ancount {
        let Some((rtype, rdata, next)) = record(b, at) else {
            m.cut = true;
            m.more_answers = m.more_answers.saturating_add(ancount - i);
            break;
        };
        at = next;
        let answer = match (rtype, rdata.len()) {
            (TYPE_A, 4) => Some(Answer::Addr(IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])))),
            (TYPE_AAAA, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                Some(Answer::Addr(IpAddr::V6(Ipv6Addr::from(a))))
            }
            (TYPE_CNAME, _) => {
                // The name's offset in the message: its pointers are message offsets.
                let start = next - rdata.len();
                name(b, start).ok().map(|(n, _)| Answer::Alias(n))
            }
            _ => None,
        };
        match answer {
            Some(a) if m.answers.len() < MAX_ANSWERS => m.answers.push(a),
            _ => m.more_answers += 1,
        }
    }
    Ok(m)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// One resource record at `at`: its type, its data, and where the next starts.
fn record(b: &[u8], at: usize) -> Option<(u16, &[u8], usize)> {
    let at = skip_name(b, at)?;
    let rtype = be16(b, at)?;
    let rdlen = be16(b, at + 8)? as usize;
    let start = at + 10;
    let rdata = b.get(start..start + rdlen)?;
    Some((rtype, rdata, start + rdlen))
}

/// Where the bytes after the name at `at` start (a pointer ends a name).
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *b.get(at)? as usize;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return (at + 2 <= b.len()).then_some(at + 2),
            l if l & 0xc0 != 0 => return None,
            l => at += 1 + l,
        }
    }
    None
}

/// The name at `at`, decoded and escaped, and the offset after it.
pub fn name(b: &[u8], start: usize) -> Result<(String, usize), WireError> {
    let mut out = String::new();
    let mut at = start;
    // Where the name ends in the message: after its first pointer.
    let mut end = None;
    let mut jumps = 0;
    let mut wire_len = 0usize;
    loop {
        let len = *b.get(at).ok_or(WireError::Name)? as usize;
        if len & 0xc0 == 0xc0 {
            let lo = *b.get(at + 1).ok_or(WireError::Name)? as usize;
            end.get_or_insert(at + 2);
            jumps += 1;
            if jumps > MAX_JUMPS {
                return Err(WireError::Name);
            }
            at = ((len & 0x3f) << 8) | lo;
            continue;
        }
        if len & 0xc0 != 0 {
            // Extended label types (RFC 6891 deprecated them): not read.
            return Err(WireError::Name);
        }
        wire_len += len + 1;
        if wire_len > MAX_NAME {
            return Err(WireError::Name);
        }
        if len == 0 {
            let after = end.unwrap_or(at + 1);
            if out.is_empty() {
                out.push('.');
            }
            return Ok((out, after));
        }
        let label = b.get(at + 1..at + 1 + len).ok_or(WireError::Name)?;
        if !out.is_empty() {
            out.push('.');
        }
        escape_label(label, &mut out);
        at += 1 + len;
    }
}

fn escape_label(label: &[u8], out: &mut String) {
    for &c in label {
        match c.to_ascii_lowercase() {
            c @ (b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_') => out.push(c as char),
            b'.' => out.push_str("\\."),
            c => {
                let _ = write!(out, "\\{c:03}");
            }
        }
    }
}

/// The mnemonic of a record type (the common ones), else `TYPE<n>` (RFC 3597).
pub fn type_name(t: u16) -> std::borrow::Cow<'static, str> {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        t => return format!("TYPE{t}").into(),
    };
    s.into()
}

/// The mnemonic of a response code (RFC 1035, 2136), else `RCODE<n>`.
pub fn rcode_name(r: u8) -> std::borrow::Cow<'static, str> {
    let s = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        r => return format!("RCODE{r}").into(),
    };
    s.into()
}

/// A message builder for tests: a query, or its response with answers.
#[cfg(test)]
pub mod build {
    use std::net::IpAddr;

    pub fn encode_name(name: &str, out: &mut Vec<u8>) {
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    }

    pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        encode_name(name, &mut b);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        b
    }

    /// The response to `query(id, name, qtype)`: answers as compressed
    /// records owned by the question's name (a pointer to offset 12).
    pub fn response(id: u16, name: &str, qtype: u16, rcode: u8, answers: &[IpAddr]) -> Vec<u8> {
        let mut b = query(id, name, qtype);
        b[2] = 0x81;
        b[3] = 0x80 | rcode;
        b[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for a in answers {
            b.extend_from_slice(&[0xc0, 12]);
            let (t, data) = match a {
                IpAddr::V4(v) => (1u16, v.octets().to_vec()),
                IpAddr::V6(v) => (28u16, v.octets().to_vec()),
            };
            b.extend_from_slice(&t.to_be_bytes());
            b.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            b.extend_from_slice(&(data.len() as u16).to_be_bytes());
            b.extend_from_slice(&data);
        }
        b
    }
}
