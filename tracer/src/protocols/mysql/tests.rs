//! Fixtures for the MySQL/MariaDB parser: syscalls in, exchanges out.
//! Packets are built with small helpers ([`pkt`], [`ok`], [`err_pkt`], ...);
//! each exchange is summarised as one line:
//!
//! `SYSTEM SCHEMA NAME | req FIRST..LAST | resp FIRST..LAST | flags`
//!
//! (`-`: none; flags: `rows=N`, `code=N`, `incomplete`, `no_response`).
//! Recorded sessions are in `fixtures/` (the shape of
//! [`crate::protocols::fixture`]).

use super::{MAX_PENDING, Mysql, STOP_TLS, span::describe, statements::MAX_PREPARED, wire::*};
use crate::protocols::{Exchange, Info, ParserCounts, ProtocolParser, Segment, Side};

pub(super) use Side::{Request as Q, Response as R};

/// One syscall: side, return time, bytes, bytes captured (None: all).
pub(super) type Seg = (Side, u64, Vec<u8>, Option<usize>);

pub(super) fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    [&n.to_le_bytes()[..3], &[seq], payload].concat()
}

pub(super) const MARIADB: &str = "5.5.5-10.11.19-MariaDB-0+deb12u1";
pub(super) const CAPS: u32 = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | 0x0008_0000; // PLUGIN_AUTH

pub(super) fn greeting(version: &str, caps: u32) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&[1, 0, 0, 0]); // connection id
    p.extend_from_slice(b"abcdefgh\0");
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.extend_from_slice(&[0x2d, 2, 0]);
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    pkt(0, &p)
}

pub(super) fn login(caps: u32, user: &str, password: &str, schema: Option<&str>) -> Vec<u8> {
    let caps = caps | if schema.is_some() { CLIENT_CONNECT_WITH_DB } else { 0 };
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(password.len() as u8);
    p.extend_from_slice(password.as_bytes());
    if let Some(s) = schema {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(b"mysql_native_password\0");
    pkt(1, &p)
}

pub(super) fn command(c: u8, args: &[u8]) -> Vec<u8> {
    pkt(0, &[&[c], args].concat())
}

pub(super) fn query(sql: &str) -> Vec<u8> {
    command(COM_QUERY, sql.as_bytes())
}

pub(super) fn ok(seq: u8, status: u16) -> Vec<u8> {
    pkt(seq, &[&[0, 0, 0][..], &status.to_le_bytes(), &[0, 0]].concat())
}

/// The OK that ends rows when EOF is deprecated.
pub(super) fn ok_fe(seq: u8, status: u16) -> Vec<u8> {
    pkt(seq, &[&[0xfe, 0, 0][..], &status.to_le_bytes(), &[0, 0]].concat())
}

pub(super) fn eof(seq: u8, status: u16) -> Vec<u8> {
    pkt(seq, &[&[0xfe, 0, 0][..], &status.to_le_bytes()].concat())
}

pub(super) fn err_pkt(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
    pkt(seq, &[&[0xff][..], &code.to_le_bytes(), b"#", state.as_bytes(), msg.as_bytes()].concat())
}

pub(super) fn coldef(seq: u8, name: &str) -> Vec<u8> {
    let lenc = |s: &str| [&[s.len() as u8][..], s.as_bytes()].concat();
    let p = [lenc("def"), lenc("shop"), lenc("orders"), lenc("orders"), lenc(name), lenc(name)].concat();
    pkt(seq, &[&p[..], &[0x0c, 0x3f, 0, 11, 0, 0, 0, 3, 0, 0, 0, 0]].concat())
}

pub(super) fn row(seq: u8, values: &[&str]) -> Vec<u8> {
    let lenenc = |n: usize| match n {
        0..=250 => vec![n as u8],
        _ => vec![0xfc, n as u8, (n >> 8) as u8],
    };
    let p: Vec<u8> = values.iter().flat_map(|v| [lenenc(v.len()), v.as_bytes().to_vec()].concat()).collect();
    pkt(seq, &p)
}

/// A text result set: column count, definitions, EOF (unless deprecated),
/// rows, then EOF or OK.
pub(super) fn result_set(cols: &[&str], rows: &[&[&str]], deprecate: bool, status: u16) -> Vec<u8> {
    let mut seq = 1u8;
    let mut next = || {
        let s = seq;
        seq = seq.wrapping_add(1);
        s
    };
    let mut v = pkt(next(), &[cols.len() as u8]);
    for c in cols {
        v.extend(coldef(next(), c));
    }
    if !deprecate {
        v.extend(eof(next(), 2));
    }
    for r in rows {
        v.extend(row(next(), r));
    }
    v.extend(if deprecate { ok_fe(next(), status) } else { eof(next(), status) });
    v
}

pub(super) fn prepare_ok(id: u32, cols: u16, params: u16, deprecate: bool) -> Vec<u8> {
    let mut v = pkt(1, &[&[0][..], &id.to_le_bytes(), &cols.to_le_bytes(), &params.to_le_bytes(), &[0, 0, 0]].concat());
    let mut seq = 2;
    for (n, _) in [(params, 0), (cols, 1)] {
        for _ in 0..n {
            v.extend(coldef(seq, "?"));
            seq += 1;
        }
        if n > 0 && !deprecate {
            v.extend(eof(seq, 2));
            seq += 1;
        }
    }
    v
}

pub(super) fn execute(id: u32, values: &[&str]) -> Vec<u8> {
    let mut p = id.to_le_bytes().to_vec();
    p.extend_from_slice(&[0, 1, 0, 0, 0]); // flags, iteration count
    p.push(0); // null bitmap (one byte for up to 8)
    p.push(1); // new params bound
    for _ in values {
        p.extend_from_slice(&[0xfe, 0]); // string type
    }
    for v in values {
        p.push(v.len() as u8);
        p.extend_from_slice(v.as_bytes());
    }
    command(COM_STMT_EXECUTE, &p)
}

pub(super) struct Run {
    pub parser: Mysql,
    pub ex: Vec<Exchange>,
}

impl Run {
    pub(super) fn lines(&self) -> Vec<String> {
        self.ex.iter().map(summary).collect()
    }

    #[track_caller]
    fn expect(&self, want: &[&str]) {
        assert_eq!(self.lines(), want);
    }

    pub(super) fn close(&mut self) {
        self.parser.close(&mut self.ex);
    }
}

pub(super) fn feed(segs: &[Seg]) -> Run {
    let mut run = Run { parser: Mysql::new(), ex: Vec::new() };
    let (mut qseq, mut rseq) = (1_000u32, 900_000u32);
    for (side, ts_ns, bytes, captured) in segs {
        let (seq, tid) = match side {
            Q => (&mut qseq, 1),
            R => (&mut rseq, 2),
        };
        let payload = &bytes[..captured.unwrap_or(bytes.len()).min(bytes.len())];
        let seg = Segment { ts_ns: *ts_ns, bytes: bytes.len() as u32, payload, seq: Some(*seq), tid };
        *seq = seq.wrapping_add(bytes.len() as u32);
        run.parser.feed(*side, &seg, &mut run.ex);
    }
    run
}

fn mysql(e: &Exchange) -> &super::MysqlExchange {
    match &e.info {
        Info::Mysql(m) => m,
        other => panic!("not mysql: {other:?}"),
    }
}

pub(super) fn summary(e: &Exchange) -> String {
    let m = mysql(e);
    let d = describe(m, false);
    let resp = e.response.map_or("-".to_string(), |t| format!("resp {}..{}", t.first_ns, t.last_ns));
    let schema = m.schema.as_deref().unwrap_or("-");
    let mut s =
        format!("{} {schema} {} | req {}..{} | {resp}", m.system, d.name, e.request.first_ns, e.request.last_ns);
    let mut flags = vec![];
    if let Some(n) = m.rows {
        flags.push(format!("rows={n}"));
    }
    if let Some((code, _)) = m.error {
        flags.push(format!("code={code}"));
    }
    if m.response_incomplete {
        flags.push("incomplete".into());
    }
    if m.no_response {
        flags.push("no_response".into());
    }
    if !flags.is_empty() {
        s.push_str(" | ");
        s.push_str(&flags.join(" "));
    }
    s
}

fn q(ts: u64, b: Vec<u8>) -> Seg {
    (Q, ts, b, None)
}

fn r(ts: u64, b: Vec<u8>) -> Seg {
    (R, ts, b, None)
}

/// Greeting, login (with a schema) and its OK.
fn connect(caps: u32, schema: Option<&str>) -> Vec<Seg> {
    vec![r(1, greeting(MARIADB, caps | 0xffff)), q(2, login(caps, "app", "pw", schema)), r(3, ok(2, 2))]
}

#[test]
fn handshake_schema_and_simple_commands() {
    let mut segs = connect(CAPS, Some("shop"));
    segs.extend([
        q(10, query("INSERT INTO orders (id) VALUES (1)")),
        r(11, pkt(1, &[0, 1, 0, 2, 0, 0, 0])),
        q(12, command(0x0e, b"")),
        r(13, ok(1, 2)),
        q(14, command(COM_STATISTICS, b"")),
        r(15, pkt(1, b"Uptime: 5  Threads: 1  Questions: 3")),
        q(16, command(COM_QUIT, b"")),
    ]);
    let mut run = feed(&segs);
    run.close();
    run.expect(&[
        "mariadb shop INSERT orders | req 10..10 | resp 11..11",
        "mariadb shop PING | req 12..12 | resp 13..13",
        "mariadb shop STATISTICS | req 14..14 | resp 15..15",
    ]);
    assert_eq!(run.parser.take_counts(), ParserCounts::default());
}

#[test]
fn mysql_servers_are_mysql() {
    let segs = [
        r(1, greeting("8.0.36", 0xffff)),
        q(2, login(CAPS, "u", "p", None)),
        r(3, ok(2, 2)),
        q(4, query("SELECT 1")),
        r(5, result_set(&["1"], &[&["1"]], false, 2)),
    ];
    feed(&segs).expect(&["mysql - SELECT | req 4..4 | resp 5..5 | rows=1"]);
}

#[test]
fn result_sets_with_and_without_eof() {
    for deprecate in [false, true] {
        let caps = CAPS | if deprecate { CLIENT_DEPRECATE_EOF } else { 0 };
        let mut segs = connect(caps, None);
        segs.extend([
            q(10, query("SELECT id, customer FROM orders")),
            r(11, result_set(&["id", "customer"], &[&["1", "a"], &["2", "b"], &["3", "c"]], deprecate, 2)),
            q(12, query("SELECT id FROM orders WHERE 0")),
            r(13, result_set(&["id"], &[], deprecate, 2)),
        ]);
        feed(&segs).expect(&[
            "mariadb - SELECT orders | req 10..10 | resp 11..11 | rows=3",
            "mariadb - SELECT orders | req 12..12 | resp 13..13 | rows=0",
        ]);
        // Seen mid-stream, without the capabilities: the same.
        feed(&segs[3..]).expect(&[
            "mysql - SELECT orders | req 10..10 | resp 11..11 | rows=3",
            "mysql - SELECT orders | req 12..12 | resp 13..13 | rows=0",
        ]);
    }
}

#[test]
fn rows_across_syscalls_and_multiple_results() {
    let rs = result_set(&["id"], &[&["1"], &["2"]], false, 2 | SERVER_MORE_RESULTS_EXISTS);
    let more = [rs.clone(), ok(7, 2)].concat();
    let mut segs = connect(CAPS, None);
    segs.extend([
        q(10, query("CALL p()")),
        r(11, more[..9].to_vec()),
        r(12, more[9..30].to_vec()),
        r(13, more[30..].to_vec()),
    ]);
    feed(&segs).expect(&["mariadb - CALL | req 10..10 | resp 11..13 | rows=2"]);
}

#[test]
fn errors_keep_their_code_never_their_message() {
    let mut segs = connect(CAPS, Some("shop"));
    segs.extend([
        q(10, query("SELECT * FROM missing_table WHERE secret = 'secret-value-4711'")),
        r(11, err_pkt(1, 1146, "42S02", "Table 'shop.missing_table' doesn't exist secret-value-4711")),
    ]);
    let run = feed(&segs);
    run.expect(&["mariadb shop SELECT missing_table | req 10..10 | resp 11..11 | code=1146"]);
    let d = describe(mysql(&run.ex[0]), true);
    assert_eq!(d.error_type.as_deref(), Some("1146"));
    let status = d.attributes.iter().find(|(k, _)| k.as_str() == "db.response.status_code").map(|(_, v)| v.text());
    assert_eq!(status.flatten().as_deref(), Some("1146"));
    assert!(!format!("{d:?}").contains("secret-value-4711"));
    assert_eq!(mysql(&run.ex[0]).error, Some((1146, Some(*b"42S02"))));
}

#[test]
fn init_db_and_use_switch_the_schema() {
    let mut segs = connect(CAPS, None);
    segs.extend([
        q(10, command(COM_INIT_DB, b"shop")),
        r(11, ok(1, 2)),
        q(12, query("SELECT 1 FROM orders")),
        r(13, result_set(&["1"], &[], false, 2)),
        q(14, command(COM_INIT_DB, b"nope")),
        r(15, err_pkt(1, 1049, "42000", "Unknown database 'nope'")),
        q(16, query("use `stock`")),
        r(17, ok(1, 2)),
        q(18, query("SELECT 1")),
        r(19, result_set(&["1"], &[&["1"]], false, 2)),
    ]);
    feed(&segs).expect(&[
        "mariadb - INIT_DB | req 10..10 | resp 11..11",
        "mariadb shop SELECT orders | req 12..12 | resp 13..13 | rows=0",
        "mariadb shop INIT_DB | req 14..14 | resp 15..15 | code=1049",
        "mariadb shop USE | req 16..16 | resp 17..17",
        "mariadb stock SELECT | req 18..18 | resp 19..19 | rows=1",
    ]);
}

#[test]
fn prepared_statements_are_named_by_their_prepare() {
    for deprecate in [false, true] {
        let caps = CAPS | if deprecate { CLIENT_DEPRECATE_EOF } else { 0 };
        let mut segs = connect(caps, Some("shop"));
        let binary_row = pkt(4, &[0, 0, 0x58, 0xe2, 0x47, 0, 0, 0, 0, 0]);
        let rows =
            [pkt(1, &[1]), coldef(2, "total"), if deprecate { vec![] } else { eof(3, 2) }, binary_row, eof(5, 2)];
        segs.extend([
            q(10, command(COM_STMT_PREPARE, b"SELECT total FROM orders WHERE id = ? AND customer = ?")),
            r(11, prepare_ok(7, 1, 2, deprecate)),
            q(12, execute(7, &["1", "secret-value-4711"])),
            r(13, rows.concat()),
            q(14, command(0x1a, &7u32.to_le_bytes())),
            r(15, ok(1, 2)),
            q(16, command(COM_STMT_CLOSE, &7u32.to_le_bytes())),
            q(17, execute(7, &["2"])),
            r(18, err_pkt(1, 1243, "HY000", "Unknown prepared statement handler")),
        ]);
        let run = feed(&segs);
        run.expect(&[
            "mariadb shop PREPARE SELECT orders | req 10..10 | resp 11..11",
            "mariadb shop SELECT orders | req 12..12 | resp 13..13 | rows=1",
            "mariadb shop STMT_RESET | req 14..14 | resp 15..15",
            "mariadb shop EXECUTE | req 17..17 | resp 18..18 | code=1243",
        ]);
        assert_eq!(run.parser.statements_len(), 0, "CLOSE forgets it");
    }
}

#[test]
fn the_statement_cache_is_bounded() {
    let mut segs = connect(CAPS | CLIENT_DEPRECATE_EOF, None);
    for i in 0..MAX_PREPARED as u32 + 5 {
        segs.push(q(10, command(COM_STMT_PREPARE, format!("SELECT {i} FROM t{i}").as_bytes())));
        segs.push(r(11, prepare_ok(i, 1, 0, true)));
    }
    segs.push(q(12, execute(0, &[])));
    segs.push(r(13, ok(1, 2)));
    segs.push(q(14, execute(MAX_PREPARED as u32 + 4, &[])));
    segs.push(r(15, ok(1, 2)));
    let mut run = feed(&segs);
    assert_eq!(run.parser.statements_len(), MAX_PREPARED);
    let lines = run.lines();
    assert_eq!(lines[lines.len() - 2], "mariadb - EXECUTE | req 12..12 | resp 13..13", "evicted");
    assert!(lines[lines.len() - 1].starts_with(&format!("mariadb - SELECT t{}", MAX_PREPARED + 4)));
    assert_eq!(run.parser.take_counts().evicted, 5);
}

#[test]
fn ssl_request_stops_parsing() {
    let ssl = pkt(1, &[&(CAPS | CLIENT_SSL).to_le_bytes()[..], &[0; 28]].concat());
    let segs = [r(1, greeting(MARIADB, 0xffff)), q(2, ssl), q(3, vec![0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])];
    let run = feed(&segs);
    assert_eq!(run.parser.stopped(), Some(STOP_TLS));
    assert!(run.ex.is_empty());
}

#[test]
fn after_ssl_request_the_tls_plaintext_continues_the_handshake() {
    let ssl = pkt(1, &[&(CAPS | CLIENT_SSL).to_le_bytes()[..], &[0; 28]].concat());
    let mut run = feed(&[r(1, greeting(MARIADB, 0xffff)), q(2, ssl)]);
    assert!(run.parser.tls_started(), "an in-band TLS upgrade goes on in the plaintext");
    assert_eq!(run.parser.stopped(), None);
    // Inside TLS: the handshake response again (sequence id 2), its OK, a query.
    let mut response = login(CAPS | CLIENT_SSL, "app", "pw", Some("shop"));
    response[3] = 2;
    let tail = [q(3, response), r(4, ok(3, 2)), q(5, query("SELECT 1 FROM orders")), r(6, ok(1, 2))];
    // Plaintext offsets from 0 each way (conntrack::tls_seq), not the
    // cleartext's sequence numbers.
    let mut at = [0u32; 2];
    for (side, ts_ns, bytes, _) in &tail {
        let off = &mut at[usize::from(*side == R)];
        let seg = Segment { ts_ns: *ts_ns, bytes: bytes.len() as u32, payload: bytes, seq: Some(*off), tid: 1 };
        *off += bytes.len() as u32;
        run.parser.feed(*side, &seg, &mut run.ex);
    }
    run.expect(&["mariadb shop SELECT orders | req 5..5 | resp 6..6"]);
}

#[test]
fn packets_longer_than_the_capture_are_framed_by_their_length() {
    let long = format!("SELECT customer FROM orders WHERE note = '{}'", "x".repeat(3000));
    let big_row = row(4, &[&"y".repeat(200), &"z".repeat(200)]);
    let mut segs = connect(CAPS, None);
    let rs_head = [pkt(1, &[2]), coldef(2, "a"), coldef(3, "b"), eof(4, 2)].concat();
    segs.extend([
        (Q, 10, query(&long), Some(512)),
        r(11, rs_head),
        (R, 12, row(5, &[&"y".repeat(250), &"z".repeat(250)]), Some(64)),
        (R, 13, big_row.clone(), Some(16)),
        r(14, eof(7, 2)),
        q(20, query("SELECT 1")),
        r(21, result_set(&["1"], &[&["1"]], false, 2)),
    ]);
    let run = feed(&segs);
    run.expect(&[
        "mariadb - SELECT orders | req 10..10 | resp 11..14 | rows=2",
        "mariadb - SELECT | req 20..20 | resp 21..21 | rows=1",
    ]);
    assert!(mysql(&run.ex[0]).statement.as_ref().unwrap().truncated);
}

#[test]
fn a_lost_answer_ends_at_the_next_command() {
    let rows: Vec<u8> = (0..100).flat_map(|i| row(5 + i as u8, &["abcdefghij"])).collect();
    let mut segs = connect(CAPS, None);
    segs.extend([
        q(10, query("SELECT name FROM big")),
        r(11, [pkt(1, &[1]), coldef(2, "name"), eof(3, 2), rows].concat()),
        q(20, query("SELECT 2")),
        r(21, result_set(&["2"], &[&["2"]], false, 2)),
    ]);
    segs[4].3 = Some(512); // the rows' headers are past the capture
    let mut run = feed(&segs);
    run.expect(&[
        "mariadb - SELECT big | req 10..10 | resp 11..11 | incomplete",
        "mariadb - SELECT | req 20..20 | resp 21..21 | rows=1",
    ]);
    assert_eq!(run.parser.take_counts().malformed, 1);
}

#[test]
fn close_flushes_what_waits() {
    let mut segs = connect(CAPS, None);
    segs.extend([q(10, query("SELECT SLEEP(10)")), q(11, query("SELECT 1"))]);
    let mut run = feed(&segs);
    run.close();
    run.expect(&["mariadb - SELECT | req 10..10 | - | no_response", "mariadb - SELECT | req 11..11 | - | no_response"]);
}

#[test]
fn pending_commands_are_bounded() {
    let mut segs = connect(CAPS, None);
    segs.extend((0..MAX_PENDING + 10).map(|i| q(10 + i as u64, query("DO 1"))));
    let mut run = feed(&segs);
    assert_eq!(run.parser.pending_len(), MAX_PENDING);
    assert_eq!(run.parser.take_counts().overflow, 10);
}

#[test]
fn detection() {
    use super::detect;
    assert_eq!(detect(&greeting(MARIADB, 0xffff), false), Some(R));
    assert_eq!(detect(&greeting("8.0.36", 0xffff), false), Some(R));
    assert_eq!(detect(&query("SELECT 1"), false), None, "client packets need the port");
    assert_eq!(detect(&query("SELECT 1"), true), Some(Q));
    assert_eq!(detect(&command(0x0e, b""), true), Some(Q));
    assert_eq!(detect(&login(CAPS, "u", "p", None), true), Some(Q));
    assert_eq!(detect(&ok(1, 2), true), Some(R));
    for other in
        [&b"GET / HTTP/1.1\r\n"[..], b"*1\r\n$4\r\nPING\r\n", b"\x16\x03\x01\x02\x00", b"", b"\x00\x00\x00\x00"]
    {
        assert_eq!(detect(other, false), None, "{other:?}");
        assert_eq!(detect(other, true), None, "{other:?}");
    }
}

/// Every distinctive value (user, password, literals, bound values, an
/// error message that echoes one) stays out of every span, text on.
#[test]
fn literals_and_bound_values_never_reach_a_span() {
    const SECRET: &str = "secret-value-4711";
    let mut segs =
        vec![r(1, greeting(MARIADB, 0xffff)), q(2, login(CAPS, SECRET, SECRET, Some("shop"))), r(3, ok(2, 2))];
    segs.extend([
        q(10, query(&format!("INSERT INTO orders (customer, total) VALUES ('{SECRET}', 4711)"))),
        r(11, ok(1, 2)),
        q(12, query(&format!("SELECT * FROM orders WHERE customer IN ('{SECRET}', \"{SECRET}\") AND total = 4711"))),
        r(13, result_set(&["customer"], &[&[SECRET]], false, 2)),
        q(14, command(COM_STMT_PREPARE, b"UPDATE orders SET customer = ? WHERE id = ?")),
        r(15, prepare_ok(1, 0, 2, false)),
        q(16, execute(1, &[SECRET, "4711"])),
        r(17, err_pkt(1, 1062, "23000", &format!("Duplicate entry '{SECRET}' for key 'PRIMARY'"))),
        (Q, 18, query(&format!("SELECT '{}{SECRET}'", "x".repeat(490))), Some(512)),
        r(19, result_set(&["x"], &[&[SECRET]], false, 2)),
    ]);
    let mut run = feed(&segs);
    run.close();
    assert_eq!(run.ex.len(), 5);
    for e in &run.ex {
        let d = describe(mysql(e), true);
        let text = format!("{d:?} {:?}", mysql(e));
        assert!(!text.contains(SECRET) && !text.contains("4711"), "{text}");
    }
}

/// A recorded session, each read a segment (a millisecond apart), captured
/// up to `cap` bytes as the agent would.
fn recorded(text: &str, cap: usize) -> Run {
    let segs: Vec<Seg> = crate::protocols::fixture::load(text)
        .into_iter()
        .enumerate()
        .map(|(i, (side, b))| (side, i as u64 * 1_000_000, b, Some(cap)))
        .collect();
    let mut run = feed(&segs);
    run.close();
    run
}

fn by_name(run: &Run) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for e in &run.ex {
        *m.entry(describe(mysql(e), false).name).or_default() += 1;
    }
    m
}

fn assert_no_literal(run: &Run) {
    for e in &run.ex {
        let text = format!("{:?}", describe(mysql(e), true));
        assert!(!text.contains("secret-value") && !text.contains("4711"), "{text}");
    }
}

/// tests/fixtures/db/mysql_client.py's PyMySQL half ({"query": 16,
/// "errors": 1} with its SET NAMES), at the default capture and a small one.
#[test]
fn recorded_pymysql_session() {
    for cap in [512, 96] {
        let mut run = recorded(include_str!("fixtures/pymysql.txt"), cap);
        let want = [
            ("CREATE orders", 1),
            ("CREATE", 1),
            ("DROP orders", 1),
            ("INSERT orders", 10),
            ("SELECT missing_table", 1),
            ("SELECT orders", 1),
            ("SET", 1),
            ("USE", 1),
        ];
        assert_eq!(by_name(&run), want.iter().map(|(k, v)| (k.to_string(), *v)).collect(), "capture {cap}");
        let lines = run.lines();
        assert!(lines.iter().skip(3).all(|l| l.starts_with("mariadb shop ")), "USE shop: {lines:#?}");
        // At 96 bytes the rows' headers are past the capture: the answer
        // is cut, the next command ends it.
        let (rows, malformed) = if cap == 512 { ("rows=10", 0) } else { ("incomplete", 1) };
        assert!(lines.iter().any(|l| l.starts_with("mariadb shop SELECT orders") && l.ends_with(rows)), "{lines:#?}");
        assert_eq!(lines.iter().filter(|l| l.contains("code=1146")).count(), 1);
        assert_eq!(run.parser.take_counts(), ParserCounts { malformed, ..Default::default() });
        assert_no_literal(&run);
    }
}

/// Its mysql-connector half: one PREPARE, ten STMT_RESET + EXECUTE pairs
/// named by the statement prepared, with the schema from the handshake.
#[test]
fn recorded_mysql_connector_session() {
    let mut run = recorded(include_str!("fixtures/mysql_connector.txt"), 512);
    let want = [("PING", 1), ("PREPARE SELECT orders", 1), ("SELECT orders", 10), ("SET", 2), ("STMT_RESET", 10)];
    assert_eq!(by_name(&run), want.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    assert!(run.lines().iter().all(|l| l.starts_with("mariadb shop ")), "{:#?}", run.lines());
    assert!(
        run.lines().iter().filter(|l| l.starts_with("mariadb shop SELECT orders")).all(|l| l.ends_with("rows=1")),
        "{:#?}",
        run.lines()
    );
    assert_eq!(run.parser.take_counts(), ParserCounts::default());
    assert_no_literal(&run);
}
