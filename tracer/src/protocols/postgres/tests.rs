//! Fixture tests: real frames (built by [`super::wire`]) in, exchanges out,
//! one case per message type and per way a stream is cut.

use super::{
    PgExchange, Postgres, SSL_REQUEST, STOP_GSSENC, STOP_TLS, detect,
    wire::{self, Driver, cat, msg},
};
use crate::protocols::{Exchange, Info, ProtocolParser, Side};

fn pg(e: &Exchange) -> &PgExchange {
    match &e.info {
        Info::Postgres(p) => p,
        other => panic!("not postgres: {other:?}"),
    }
}

fn summary(e: &Exchange) -> &str {
    pg(e).statement.as_ref().map_or("", |s| s.summary.as_str())
}

/// Nothing of the bind values, row values, user name or error message is
/// anywhere in what the parser returns.
fn assert_no_secret(out: &[Exchange]) {
    let all = format!("{out:?}");
    for s in ["secret-literal-4711", "987654321", "alice@example.com", "app_user_4711", "does not exist"] {
        assert!(!all.contains(s), "{s} in {all}");
    }
}

#[test]
fn detection() {
    assert_eq!(detect(&wire::startup(&[("user", "u"), ("database", "d")]), false), Some(Side::Request));
    assert_eq!(detect(&wire::code_request(SSL_REQUEST), false), Some(Side::Request));
    assert_eq!(detect(&wire::code_request(super::GSSENC_REQUEST), false), Some(Side::Request));
    // Mid-stream messages only on the PostgreSQL port.
    let q = wire::query("SELECT 1");
    assert_eq!(detect(&q, false), None);
    assert_eq!(detect(&q, true), Some(Side::Request));
    assert_eq!(detect(&wire::parse("", "SELECT $1"), true), Some(Side::Request));
    for not in
        [&b"GET / HTTP/1.1\r\n"[..], b"Q\xff\xff\xff\xffxx", b"\0\0\0\x08\0\0\0\0", b"Q\0\0\0\x10\x01\x02binary", b""]
    {
        assert_eq!(detect(not, true), None, "{not:?}");
    }
}

#[test]
fn simple_query_after_startup() {
    let mut d = Driver::connected("shop");
    d.req(&wire::query("SELECT id FROM users WHERE email = 'alice@example.com'"));
    d.resp(&cat(&[wire::rows(2, b"987654321"), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 1);
    let (e, p) = (&out[0], pg(&out[0]));
    assert_eq!(summary(e), "SELECT users");
    assert_eq!(p.database.as_deref(), Some("shop"));
    assert_eq!(p.returned_rows, Some(2));
    assert!(!p.extended && !p.response_incomplete && !p.no_response && p.sqlstate.is_none());
    let st = p.statement.as_ref().unwrap();
    assert_eq!(st.text, "SELECT id FROM users WHERE email = ?");
    // Timing: the request's first byte and the answer's, with their threads.
    let r = e.response.unwrap();
    assert!(e.request.first_ns < r.first_ns && r.first_ns <= r.last_ns);
    assert_eq!((e.request.tid, r.tid), (7, 8));
    assert!(e.request.seq.is_some() && r.seq.is_some());
    assert_no_secret(&out);
}

#[test]
fn simple_query_with_several_statements_is_one_call() {
    let mut d = Driver::connected("shop");
    d.req(&wire::query("BEGIN; UPDATE accounts SET owner = 'alice@example.com' WHERE id = 1; COMMIT"));
    d.resp(&cat(&[wire::complete("BEGIN"), wire::complete("UPDATE 1"), wire::complete("COMMIT"), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 1);
    let st = pg(&out[0]).statement.clone().unwrap();
    assert_eq!((st.summary.as_str(), st.statements), ("BEGIN", 3));
    assert_eq!(pg(&out[0]).returned_rows, None, "UPDATE n counts rows written");
}

#[test]
fn simple_query_error_and_empty_query() {
    let mut d = Driver::connected("shop");
    d.req(&wire::query("SELECT * FROM missing_table WHERE secret = 'secret-literal-4711'"));
    d.resp(&cat(&[wire::error("42P01", "relation \"missing_table\" does not exist"), wire::ready()]));
    d.req(&wire::query(""));
    d.resp(&cat(&[msg(b'I', &[]), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 2);
    assert_eq!(pg(&out[0]).sqlstate, Some(*b"42P01"));
    assert_eq!(pg(&out[0]).statement.as_ref().unwrap().collection.as_deref(), Some("missing_table"));
    assert_eq!(pg(&out[1]).sqlstate, None);
    assert_eq!(summary(&out[1]), "");
    assert_no_secret(&out);
}

#[test]
fn extended_unnamed_statement() {
    let mut d = Driver::connected("shop");
    let values: &[&[u8]] = &[b"987654321", b"secret-literal-4711"];
    d.req(&cat(&[
        wire::parse("", "SELECT balance FROM accounts WHERE id = $1 AND owner = $2"),
        wire::bind("", "", values),
        wire::describe(b'P', ""),
        wire::execute(""),
        wire::sync(),
    ]));
    d.resp(&cat(&[msg(b'1', &[]), msg(b'2', &[]), wire::rows(1, b"987654321"), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 1);
    let p = pg(&out[0]);
    assert!(p.extended);
    assert_eq!(p.returned_rows, Some(1));
    assert_eq!(p.statement.as_ref().unwrap().text, "SELECT balance FROM accounts WHERE id = $1 AND owner = $2");
    assert_no_secret(&out);
}

#[test]
fn pipelined_executes_pair_in_order() {
    let mut d = Driver::connected("shop");
    d.req(&cat(&[
        wire::parse("", "INSERT INTO orders (id) VALUES ($1)"),
        wire::bind("", "", &[b"1"]),
        wire::execute(""),
        wire::parse("", "SELECT * FROM orders"),
        wire::bind("", "", &[]),
        wire::execute(""),
        wire::sync(),
    ]));
    let first = cat(&[msg(b'1', &[]), msg(b'2', &[]), wire::complete("INSERT 0 1")]);
    d.resp(&first);
    d.resp(&cat(&[msg(b'1', &[]), msg(b'2', &[]), wire::rows(3, b"x"), wire::ready()]));
    let out = d.take();
    let got: Vec<_> = out.iter().map(|e| (summary(e).to_string(), pg(e).returned_rows)).collect();
    assert_eq!(got, [("INSERT orders".to_string(), None), ("SELECT orders".to_string(), Some(3))]);
    // The second call's request starts at its Parse, its answer in the second write.
    assert!(out[1].request.seq > out[0].request.seq);
    assert!(out[1].response.unwrap().first_ns > out[0].response.unwrap().last_ns);
}

#[test]
fn named_statements_are_cached_and_closed() {
    let mut d = Driver::connected("shop");
    // Prepare (no span), then execute twice by name, then close.
    d.req(&cat(&[
        wire::parse("s1", "UPDATE accounts SET balance = $1 WHERE id = $2"),
        wire::describe(b'S', "s1"),
        wire::sync(),
    ]));
    d.resp(&cat(&[msg(b'1', &[]), msg(b't', &[0, 0]), msg(b'n', &[]), wire::ready()]));
    assert!(d.take().is_empty(), "a prepare is no span");
    for _ in 0..2 {
        d.req(&cat(&[wire::bind("", "s1", &[b"987654321", b"5"]), wire::execute(""), wire::sync()]));
        d.resp(&cat(&[msg(b'2', &[]), wire::complete("UPDATE 1"), wire::ready()]));
    }
    d.req(&cat(&[wire::close(b'S', "s1"), wire::sync()]));
    d.resp(&cat(&[msg(b'3', &[]), wire::ready()]));
    d.req(&cat(&[wire::bind("", "s1", &[]), wire::execute(""), wire::sync()]));
    d.resp(&cat(&[wire::error("26000", "prepared statement \"s1\" does not exist"), wire::ready()]));
    let out = d.take();
    let got: Vec<_> = out.iter().map(|e| summary(e).to_string()).collect();
    assert_eq!(got, ["UPDATE accounts", "UPDATE accounts", ""]);
    assert_eq!(pg(&out[2]).sqlstate, Some(*b"26000"));
    assert_no_secret(&out);
}

#[test]
fn named_portals() {
    let mut d = Driver::connected("shop");
    d.req(&cat(&[
        wire::parse("", "SELECT * FROM big"),
        wire::bind("c1", "", &[]),
        msg(b'E', b"c1\0\0\0\0\x02"),
        wire::sync(),
    ]));
    d.resp(&cat(&[
        msg(b'1', &[]),
        msg(b'2', &[]),
        wire::data_row(&[b"a"]),
        wire::data_row(&[b"b"]),
        msg(b's', &[]),
        wire::ready(),
    ]));
    let out = d.take();
    assert_eq!(out.len(), 1);
    assert_eq!(summary(&out[0]), "SELECT big");
}

#[test]
fn error_skips_the_rest_of_the_batch() {
    let mut d = Driver::connected("shop");
    d.req(&cat(&[
        wire::parse("", "SELECT * FROM nope"),
        wire::bind("", "", &[]),
        wire::execute(""),
        wire::parse("", "SELECT * FROM never_run"),
        wire::bind("", "", &[]),
        wire::execute(""),
        wire::sync(),
    ]));
    d.resp(&cat(&[wire::error("42P01", "relation does not exist"), wire::ready()]));
    // The next batch pairs as usual.
    d.req(&cat(&[wire::parse("", "SELECT 1"), wire::bind("", "", &[]), wire::execute(""), wire::sync()]));
    d.resp(&cat(&[msg(b'1', &[]), msg(b'2', &[]), wire::rows(1, b"1"), wire::ready()]));
    let out = d.take();
    let got: Vec<_> = out.iter().map(|e| (summary(e).to_string(), pg(e).sqlstate)).collect();
    assert_eq!(got, [("SELECT nope".to_string(), Some(*b"42P01")), ("SELECT".to_string(), None)]);
}

#[test]
fn parse_error_without_execute_is_a_span() {
    let mut d = Driver::connected("shop");
    d.req(&cat(&[wire::parse("s9", "SELEC broken FROM t"), wire::describe(b'S', "s9"), wire::sync()]));
    d.resp(&cat(&[wire::error("42601", "syntax error at or near \"SELEC\""), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 1);
    assert_eq!(pg(&out[0]).sqlstate, Some(*b"42601"));
    assert_eq!(summary(&out[0]), "SELEC");
}

#[test]
fn copy_in_and_out_are_counted_not_read() {
    let mut d = Driver::connected("shop");
    d.req(&wire::query("COPY items (a, b) FROM STDIN"));
    d.resp(&msg(b'G', &[0, 0, 2, 0, 0, 0, 0]));
    d.req(&msg(b'd', b"secret-literal-4711\t1\n"));
    d.req(&cat(&[msg(b'd', b"alice@example.com\t2\n"), msg(b'c', &[])]));
    d.resp(&cat(&[wire::complete("COPY 2"), wire::ready()]));
    d.req(&wire::query("COPY items TO STDOUT"));
    d.resp(&cat(&[
        msg(b'H', &[0, 0, 1, 0, 0]),
        msg(b'd', b"987654321\n"),
        msg(b'c', &[]),
        wire::complete("COPY 1"),
        wire::ready(),
    ]));
    let out = d.take();
    assert_eq!(out.len(), 2);
    assert_eq!(summary(&out[0]), "COPY items");
    assert_eq!(pg(&out[0]).copy_bytes, Some(22 + 20));
    // The request ends with its last CopyData.
    assert!(out[0].request.last_ns > out[0].response.unwrap().first_ns);
    assert_eq!(pg(&out[1]).copy_bytes, Some(10));
    assert_no_secret(&out);
}

#[test]
fn ssl_accepted_stops_parsing() {
    let mut d = Driver::new();
    d.req(&wire::code_request(SSL_REQUEST)).resp(b"S");
    assert_eq!(d.parser.stopped(), Some(STOP_TLS));
    d.req(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").resp(b"\x16\x03\x03\x00\x7a");
    assert!(d.out.is_empty());
    let mut d = Driver::new();
    d.req(&wire::code_request(super::GSSENC_REQUEST)).resp(b"G");
    assert_eq!(d.parser.stopped(), Some(STOP_GSSENC));
    // Refused: the startup follows in the clear.
    let mut d = Driver::connected("shop");
    assert_eq!(d.parser.stopped(), None);
    d.req(&wire::query("SELECT 1")).resp(&cat(&[wire::rows(1, b"1"), wire::ready()]));
    assert_eq!(d.take().len(), 1);
}

#[test]
fn authentication_and_its_failure_are_no_spans() {
    let mut d = Driver::new();
    d.req(&wire::startup(&[("user", "app_user_4711"), ("database", "shop")]));
    d.resp(&msg(b'R', &[0, 0, 0, 10, b'S', b'C', b'R', b'A', b'M', 0, 0]));
    d.req(&msg(b'p', b"SCRAM-SHA-256\0\0\0\0\x20n,,n=,r=secret-literal-4711"));
    d.resp(&cat(&[wire::error("28P01", "password authentication failed for user app_user_4711")]));
    d.parser.close(&mut d.out);
    assert!(d.out.is_empty(), "{:?}", d.out);
    assert_eq!(d.parser.take_counts(), Default::default());
}

#[test]
fn mid_stream_connection() {
    // No startup seen: the first bytes are a query.
    let mut d = Driver::new();
    d.req(&wire::query("SELECT now()")).resp(&cat(&[wire::rows(1, b"t"), wire::ready()]));
    // An Execute of a statement prepared before: no statement, still a span.
    d.req(&cat(&[wire::bind("", "before_4711", &[]), wire::execute(""), wire::sync()]));
    d.resp(&cat(&[msg(b'2', &[]), wire::complete("DELETE 3"), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 2);
    assert_eq!(summary(&out[0]), "SELECT");
    assert_eq!(pg(&out[0]).database, None);
    assert!(pg(&out[1]).statement.is_none() && pg(&out[1]).extended);
}

#[test]
fn long_query_cut_at_capture_frames_by_length() {
    let mut d = Driver::connected("shop");
    let long =
        format!("SELECT * FROM wide WHERE a IN ({}) AND b = 'secret-literal-4711'", vec!["987654321"; 400].join(", "));
    d.req(&wire::query(&long));
    d.resp(&cat(&[wire::rows(1, b"x"), wire::ready()]));
    d.req(&wire::query("SELECT 2"));
    d.resp(&cat(&[wire::rows(1, b"2"), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 2);
    let st = pg(&out[0]).statement.clone().unwrap();
    assert!(st.truncated);
    assert_eq!(st.summary, "SELECT wide");
    assert_eq!(summary(&out[1]), "SELECT");
    assert_no_secret(&out);
}

#[test]
fn long_parse_with_the_rest_of_its_batch_uncaptured() {
    let mut d = Driver::connected("shop");
    let long = format!("INSERT INTO events (payload) VALUES ($1) -- {}", "x".repeat(1000));
    d.req(&cat(&[
        wire::parse("", &long),
        wire::bind("", "", &[b"secret-literal-4711"]),
        wire::execute(""),
        wire::sync(),
    ]));
    d.resp(&cat(&[msg(b'1', &[]), msg(b'2', &[]), wire::complete("INSERT 0 1"), wire::ready()]));
    d.req(&wire::query("SELECT 1")).resp(&cat(&[wire::rows(1, b"1"), wire::ready()]));
    let out = d.take();
    let got: Vec<_> = out.iter().map(|e| summary(e).to_string()).collect();
    assert_eq!(got, ["INSERT events", "SELECT"]);
    assert!(!pg(&out[0]).response_incomplete);
}

#[test]
fn long_result_loses_framing_until_the_next_call() {
    let mut d = Driver::connected("shop");
    d.req(&wire::query("SELECT * FROM big"));
    // 8 KiB writes of rows: headers past the captured 512 bytes are unknown.
    let answer = cat(&[wire::rows(400, b"secret-literal-4711 row value"), wire::ready()]);
    for chunk in answer.chunks(8192) {
        d.resp(chunk);
    }
    assert!(d.out.is_empty());
    d.req(&wire::query("SELECT 2"));
    d.resp(&cat(&[wire::rows(1, b"2"), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 2);
    let big = pg(&out[0]);
    assert!(big.response_incomplete);
    assert_eq!(big.returned_rows, None, "rows were missed");
    assert_eq!(pg(&out[1]).returned_rows, Some(1));
    assert_eq!(d.parser.take_counts().malformed, 0, "lost is not malformed");
}

#[test]
fn long_result_ending_in_a_captured_write_is_complete() {
    let mut d = Driver::connected("shop");
    d.req(&wire::query("SELECT * FROM big"));
    let rows = cat(&(0..300).map(|_| wire::data_row(&[b"row value"])).collect::<Vec<_>>());
    d.resp(&cat(&[wire::row_description(&["v"]), rows]));
    // The last write (small, captured whole) starts inside a row.
    d.resp(&cat(&[b"w value".to_vec(), wire::complete("SELECT 301"), wire::ready()]));
    let out = d.take();
    assert_eq!(out.len(), 1);
    assert_eq!(pg(&out[0]).returned_rows, Some(301));
}

#[test]
fn prepared_statement_cache_is_bounded() {
    let mut d = Driver::connected("shop");
    for i in 0..super::MAX_STATEMENTS + 44 {
        d.req(&cat(&[wire::parse(&format!("s{i}"), "SELECT 1"), wire::sync()]));
        d.resp(&cat(&[msg(b'1', &[]), wire::ready()]));
    }
    assert_eq!(d.parser.take_counts().evicted, 44);
    assert_eq!(d.parser.take_counts().evicted, 0, "counts restart");
    assert!(d.parser.pairing.statements.len() <= super::MAX_STATEMENTS);
}

#[test]
fn unpaired_answers_and_close() {
    let mut d = Driver::connected("shop");
    d.resp(&cat(&[wire::complete("SELECT 1"), wire::ready()]));
    assert_eq!(d.parser.take_counts().unpaired, 2);
    d.req(&wire::query("SELECT pg_sleep(10)"));
    d.parser.close(&mut d.out);
    let out = d.take();
    assert_eq!(out.len(), 1);
    assert!(pg(&out[0]).no_response && out[0].response.is_none());
}

#[test]
fn garbage_is_malformed_and_resyncs() {
    let mut d = Driver::connected("shop");
    d.req(b"\x01\x02\x03\x04\x05 not postgres");
    assert_eq!(d.parser.take_counts().malformed, 1);
    d.req(&wire::query("SELECT 3")).resp(&cat(&[wire::rows(1, b"3"), wire::ready()]));
    assert_eq!(d.take().len(), 1);
}

#[test]
fn messages_split_anywhere_across_syscalls() {
    let stream = cat(&[wire::query("SELECT * FROM t WHERE x = 'alice@example.com'"), wire::query("SELECT 2")]);
    let answer = cat(&[wire::rows(2, b"v"), wire::ready(), wire::rows(1, b"w"), wire::ready()]);
    for cut in 1..stream.len() {
        let mut d = Driver::connected("shop");
        d.req(&stream[..cut]).req(&stream[cut..]);
        let c = cut.min(answer.len() - 1);
        d.resp(&answer[..c]).resp(&answer[c..]);
        let out = d.take();
        assert_eq!(out.len(), 2, "cut at {cut}");
        assert_eq!(pg(&out[0]).returned_rows, Some(2));
    }
}

#[test]
fn fresh_parser_holds_nothing() {
    assert_eq!(Postgres::new(true).held(), (0, 0));
}

#[test]
fn without_query_text_only_the_shape_is_read() {
    let mut d = Driver::connected("shop");
    d.parser = Postgres::new(false);
    for _ in 0..2 {
        d.req(&wire::query("SELECT id FROM users WHERE email = 'alice@example.com'"));
        d.resp(&cat(&[wire::rows(1, b"1"), wire::ready()]));
    }
    let out = d.take();
    let (a, b) = (pg(&out[0]).statement.clone().unwrap(), pg(&out[1]).statement.clone().unwrap());
    assert_eq!((a.summary.as_str(), a.text.as_str()), ("SELECT users", ""));
    // A text seen again is not read again.
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_no_secret(&out);
}
