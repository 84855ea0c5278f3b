//! Real PostgreSQL frames for the tests, written as libpq and the server
//! write them, and a driver that feeds them as syscalls (cut to a capture
//! limit, with sequence numbers), so a case from a capture is a few lines.

use super::Postgres;
use crate::protocols::{Exchange, ProtocolParser, Segment, Side};

/// A typed message: type, length (itself included), body.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(s);
    b.push(0);
}

pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = super::PROTOCOL_3.to_be_bytes().to_vec();
    for (k, v) in params {
        cstr(&mut body, k.as_bytes());
        cstr(&mut body, v.as_bytes());
    }
    body.push(0);
    let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

pub fn code_request(code: u32) -> Vec<u8> {
    let mut m = 8u32.to_be_bytes().to_vec();
    m.extend_from_slice(&code.to_be_bytes());
    m
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql.as_bytes());
    msg(b'Q', &b)
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name.as_bytes());
    cstr(&mut b, sql.as_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    msg(b'P', &b)
}

pub fn bind(portal: &str, statement: &str, values: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    cstr(&mut b, statement.as_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // parameter formats: text
    b.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v);
    }
    b.extend_from_slice(&0u16.to_be_bytes()); // result formats
    msg(b'B', &b)
}

pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name.as_bytes());
    msg(b'D', &b)
}

pub fn execute(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    msg(b'E', &b)
}

pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name.as_bytes());
    msg(b'C', &b)
}

pub fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

/// What the server answers a startup with trust authentication.
pub fn startup_answer() -> Vec<u8> {
    let mut m = msg(b'R', &0u32.to_be_bytes());
    m.extend(msg(b'S', b"server_version\x0015.8\0"));
    m.extend(msg(b'S', b"client_encoding\x00UTF8\0"));
    m.extend(msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
    m.extend(ready());
    m
}

pub fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

pub fn row_description(cols: &[&str]) -> Vec<u8> {
    let mut b = (cols.len() as u16).to_be_bytes().to_vec();
    for c in cols {
        cstr(&mut b, c.as_bytes());
        b.extend_from_slice(&[0; 18]);
    }
    msg(b'T', &b)
}

pub fn data_row(values: &[&[u8]]) -> Vec<u8> {
    let mut b = (values.len() as u16).to_be_bytes().to_vec();
    for v in values {
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v);
    }
    msg(b'D', &b)
}

pub fn complete(tag: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, tag.as_bytes());
    msg(b'C', &b)
}

pub fn error(code: &str, message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', message), (b'F', "parse_relation.c")] {
        b.push(f);
        cstr(&mut b, v.as_bytes());
    }
    b.push(0);
    msg(b'E', &b)
}

/// A SELECT's answer: RowDescription, the rows, CommandComplete.
pub fn rows(n: usize, value: &[u8]) -> Vec<u8> {
    let mut m = row_description(&["v"]);
    for _ in 0..n {
        m.extend(data_row(&[value]));
    }
    m.extend(complete(&format!("SELECT {n}")));
    m
}

pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Feeds a parser as the probes would: each call one syscall, its captured
/// prefix at most `capture` bytes, sequence numbers per direction.
pub struct Driver {
    pub parser: Postgres,
    pub capture: usize,
    pub ts: u64,
    seq: [u32; 2],
    pub out: Vec<Exchange>,
}

impl Driver {
    pub fn new() -> Self {
        Driver { parser: Postgres::new(true), capture: 512, ts: 1_000, seq: [1_000, 50_000], out: Vec::new() }
    }

    /// One syscall moving `bytes` in direction `side`.
    pub fn send(&mut self, side: Side, bytes: &[u8]) -> &mut Self {
        self.ts += 1_000;
        let i = usize::from(side == Side::Response);
        let seg = Segment {
            ts_ns: self.ts,
            bytes: bytes.len() as u32,
            payload: &bytes[..bytes.len().min(self.capture)],
            seq: Some(self.seq[i]),
            tid: 7 + i as u32,
        };
        self.seq[i] = self.seq[i].wrapping_add(bytes.len() as u32);
        self.parser.feed(side, &seg, &mut self.out);
        self
    }

    pub fn req(&mut self, bytes: &[u8]) -> &mut Self {
        self.send(Side::Request, bytes)
    }

    pub fn resp(&mut self, bytes: &[u8]) -> &mut Self {
        self.send(Side::Response, bytes)
    }

    /// A connection through startup (SSL refused, trust auth).
    pub fn connected(database: &str) -> Self {
        let mut d = Driver::new();
        d.req(&code_request(super::SSL_REQUEST)).resp(b"N");
        d.req(&startup(&[("user", "app_user_4711"), ("database", database), ("application_name", "psql")]));
        d.resp(&startup_answer());
        assert!(d.out.is_empty(), "startup is no span: {:?}", d.out);
        d
    }

    pub fn take(&mut self) -> Vec<Exchange> {
        std::mem::take(&mut self.out)
    }
}
