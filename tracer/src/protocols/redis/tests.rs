//! Fixtures for the Redis parser: syscalls in, exchanges out.
//!
//! A fixture is a list of [`Seg`]: `(side, ts_ns, bytes)`, each the bytes
//! of one syscall, optionally captured only in part (`cut`). Exchanges are
//! summarised one line each:
//!
//! `COMMAND db=N | req FIRST..LAST | resp FIRST..LAST | flags`
//!
//! (`db=?`: not known, `-`: no response; flags: `err=CODE`, `batch=N`,
//! `incomplete`, `no_response`). To add a case from a capture (e.g.
//! `strace -e trace=read,write -xx redis-cli ...`), paste its syscalls.

use super::{MAX_PENDING, Redis, span::describe};
use crate::protocols::{Exchange, Info, ParserCounts, ProtocolParser, Segment, Side};

pub(super) use Side::{Request as Q, Response as R};

pub(super) const REQ_SEQ: u32 = 1_000;
pub(super) const RESP_SEQ: u32 = 900_000;

/// One syscall: direction, return time, bytes moved, bytes captured of them
/// (None: all).
pub(super) type Seg = (Side, u64, Vec<u8>, Option<usize>);

/// A command as clients send it: an array of bulk strings.
pub(super) fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(&bulk(a.as_bytes()));
    }
    v
}

pub(super) fn bulk(b: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
}

/// An aggregate of type `ty` (`*`, `>`, `%` counts pairs) of `items`.
pub(super) fn agg(ty: char, n: usize, items: &[Vec<u8>]) -> Vec<u8> {
    [format!("{ty}{n}\r\n").into_bytes(), items.concat()].concat()
}

pub(super) fn line(s: &str) -> Vec<u8> {
    format!("{s}\r\n").into_bytes()
}

pub(super) struct Run {
    pub parser: Redis,
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

    pub(super) fn counts(&mut self) -> ParserCounts {
        self.parser.take_counts()
    }
}

/// Feed the segments in order to a parser of a connection seen from its start.
pub(super) fn feed(segs: &[Seg]) -> Run {
    let mut run = Run { parser: Redis::new(true), ex: Vec::new() };
    let (mut qseq, mut rseq) = (REQ_SEQ, RESP_SEQ);
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

pub(super) fn summary(e: &Exchange) -> String {
    let Info::Redis(r) = &e.info else { panic!("not redis: {e:?}") };
    let db = r.db.map_or("?".to_string(), |d| d.to_string());
    let resp = e.response.map_or("-".to_string(), |t| format!("resp {}..{}", t.first_ns, t.last_ns));
    let mut s = format!("{} db={db} | req {}..{} | {resp}", r.command, e.request.first_ns, e.request.last_ns);
    let mut flags = vec![];
    if let Some(c) = r.error {
        flags.push(format!("err={c}"));
    }
    if let Some(n) = r.batch {
        flags.push(format!("batch={n}"));
    }
    if r.response_incomplete {
        flags.push("incomplete".into());
    }
    if r.no_response {
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

#[test]
fn set_and_get() {
    let mut run = feed(&[
        q(10, cmd(&["SET", "k", "v"])),
        r(20, line("+OK")),
        q(30, cmd(&["get", "k"])),
        r(40, bulk(b"v")),
        q(50, cmd(&["GET", "missing"])),
        r(60, line("$-1")),
    ]);
    run.expect(&[
        "SET db=0 | req 10..10 | resp 20..20",
        "GET db=0 | req 30..30 | resp 40..40",
        "GET db=0 | req 50..50 | resp 60..60",
    ]);
    assert_eq!(run.counts(), ParserCounts::default());
}

#[test]
fn pipelined_commands_are_one_exchange_each_with_their_own_sequence_number() {
    let reqs = [cmd(&["INCR", "c"]), cmd(&["INCR", "c"]), cmd(&["PING"])];
    let run = feed(&[q(10, reqs.concat()), r(20, [line(":1"), line(":2")].concat()), r(30, line("+PONG"))]);
    run.expect(&[
        "INCR db=0 | req 10..10 | resp 20..20",
        "INCR db=0 | req 10..10 | resp 20..20",
        "PING db=0 | req 10..10 | resp 30..30",
    ]);
    let seqs: Vec<_> = run.ex.iter().map(|e| e.request.seq.unwrap() - REQ_SEQ).collect();
    assert_eq!(seqs, [0, reqs[0].len() as u32, 2 * reqs[0].len() as u32]);
    let rseqs: Vec<_> = run.ex.iter().map(|e| e.response.unwrap().seq.unwrap() - RESP_SEQ).collect();
    assert_eq!(rseqs, [0, 4, 8]);
    assert_eq!((run.ex[0].request.tid, run.ex[0].response.unwrap().tid), (1, 2));
}

#[test]
fn a_message_split_across_syscalls_ends_in_the_last() {
    let set = cmd(&["SET", "key", "value"]);
    let reply = bulk(b"0123456789");
    let run = feed(&[
        q(10, set[..3].to_vec()),
        q(11, set[3..15].to_vec()),
        q(12, set[15..].to_vec()),
        r(20, line("+OK")),
        q(30, cmd(&["GET", "key"])),
        r(40, reply[..6].to_vec()),
        r(41, reply[6..].to_vec()),
    ]);
    run.expect(&["SET db=0 | req 10..12 | resp 20..20", "GET db=0 | req 30..30 | resp 40..41"]);
}

#[test]
fn bulk_strings_longer_than_the_capture_are_framed_by_their_length() {
    let big = "x".repeat(5000);
    let mut run = feed(&[
        (Q, 10, cmd(&["SET", "k", &big]), Some(512)),
        r(20, line("+OK")),
        q(30, cmd(&["GET", "k"])),
        (R, 40, bulk(big.as_bytes()), Some(512)),
        // The same value across two syscalls, neither captured whole.
        (Q, 50, cmd(&["SET", "k", &big])[..3000].to_vec(), Some(512)),
        (Q, 51, cmd(&["SET", "k", &big])[3000..].to_vec(), Some(16)),
        r(60, line("+OK")),
        q(70, cmd(&["DEL", "k"])),
        r(80, line(":1")),
    ]);
    run.expect(&[
        "SET db=0 | req 10..10 | resp 20..20",
        "GET db=0 | req 30..30 | resp 40..40",
        "SET db=0 | req 50..51 | resp 60..60",
        "DEL db=0 | req 70..70 | resp 80..80",
    ]);
    assert_eq!(run.counts(), ParserCounts::default());
}

#[test]
fn a_command_name_past_the_capture_is_other() {
    let run = feed(&[(Q, 10, cmd(&["SET", "k", "v"]), Some(9)), r(20, line("+OK"))]);
    run.expect(&["_OTHER db=0 | req 10..10 | resp 20..20"]);
}

#[test]
fn multi_exec_is_a_span_per_command() {
    let run = feed(&[
        q(10, cmd(&["MULTI"])),
        r(11, line("+OK")),
        q(12, cmd(&["SET", "k", "v"])),
        r(13, line("+QUEUED")),
        q(14, cmd(&["GET", "k"])),
        r(15, line("+QUEUED")),
        q(16, cmd(&["EXEC"])),
        r(17, agg('*', 2, &[line("+OK"), bulk(b"v")])),
        // Pipelined as redis-py sends a transaction, and an aborted one.
        q(20, [cmd(&["MULTI"]), cmd(&["INCR", "c"]), cmd(&["EXEC"])].concat()),
        r(21, [line("+OK"), line("+QUEUED"), agg('*', 1, &[line(":1")])].concat()),
        q(30, [cmd(&["MULTI"]), cmd(&["NOSUCH"]), cmd(&["EXEC"])].concat()),
        r(
            31,
            [
                line("+OK"),
                line("-ERR unknown command 'NOSUCH'"),
                line("-EXECABORT Transaction discarded because of previous errors."),
            ]
            .concat(),
        ),
        // WATCH failed: EXEC answers a null array.
        q(40, [cmd(&["MULTI"]), cmd(&["EXEC"])].concat()),
        r(41, [line("+OK"), line("*-1")].concat()),
    ]);
    run.expect(&[
        "MULTI db=0 | req 10..10 | resp 11..11",
        "SET db=0 | req 12..12 | resp 13..13",
        "GET db=0 | req 14..14 | resp 15..15",
        "EXEC db=0 | req 16..16 | resp 17..17 | batch=2",
        "MULTI db=0 | req 20..20 | resp 21..21",
        "INCR db=0 | req 20..20 | resp 21..21",
        "EXEC db=0 | req 20..20 | resp 21..21 | batch=1",
        "MULTI db=0 | req 30..30 | resp 31..31",
        "_OTHER db=0 | req 30..30 | resp 31..31 | err=ERR",
        "EXEC db=0 | req 30..30 | resp 31..31 | err=EXECABORT",
        "MULTI db=0 | req 40..40 | resp 41..41",
        "EXEC db=0 | req 40..40 | resp 41..41",
    ]);
    let exec = describe(match &run.ex[3].info {
        Info::Redis(r) => r,
        _ => unreachable!(),
    });
    assert!(exec.attributes.iter().any(|(k, v)| k.as_str() == "db.operation.batch.size" && v.int() == Some(2)));
}

#[test]
fn error_replies_keep_their_code_only() {
    let run = feed(&[
        q(10, cmd(&["GET", "list"])),
        r(11, line("-WRONGTYPE Operation against a key holding the wrong kind of value")),
        q(12, cmd(&["EVAL", "return redis.error_reply('SECRET4711 x')", "0"])),
        r(13, line("-SECRET4711 x")),
        q(14, cmd(&["FCALL", "f", "0"])),
        r(15, [b"!21\r\n".as_slice(), b"NOSCRIPT No matching \r\n"].concat()),
        q(16, cmd(&["AUTH", "secret-value-4711"])),
        r(17, line("-WRONGPASS invalid username-password pair or user is disabled.")),
    ]);
    run.expect(&[
        "GET db=0 | req 10..10 | resp 11..11 | err=WRONGTYPE",
        "EVAL db=0 | req 12..12 | resp 13..13 | err=_OTHER",
        "FCALL db=0 | req 14..14 | resp 15..15 | err=NOSCRIPT",
        "AUTH db=0 | req 16..16 | resp 17..17 | err=WRONGPASS",
    ]);
    let d = describe(match &run.ex[0].info {
        Info::Redis(r) => r,
        _ => unreachable!(),
    });
    assert_eq!(d.error_type.as_deref(), Some("WRONGTYPE"));
    assert_eq!(d.name, "GET");
}

#[test]
fn select_names_the_database_of_later_commands() {
    let mut run = feed(&[
        // Pipelined behind SELECT: already in database 2.
        q(10, [cmd(&["SELECT", "2"]), cmd(&["SET", "k", "v"])].concat()),
        r(11, [line("+OK"), line("+OK")].concat()),
        q(12, cmd(&["SELECT", "99999"])),
        r(13, line("-ERR DB index is out of range")),
        q(14, cmd(&["GET", "k"])),
        r(15, bulk(b"v")),
        q(16, cmd(&["RESET"])),
        r(17, line("+RESET")),
        q(18, cmd(&["GET", "k"])),
        r(19, line("$-1")),
    ]);
    run.expect(&[
        "SELECT db=2 | req 10..10 | resp 11..11",
        "SET db=2 | req 10..10 | resp 11..11",
        "SELECT db=2 | req 12..12 | resp 13..13 | err=ERR",
        "GET db=2 | req 14..14 | resp 15..15",
        "RESET db=2 | req 16..16 | resp 17..17",
        "GET db=0 | req 18..18 | resp 19..19",
    ]);
    // Mid-stream the database is not known until a SELECT.
    let mut mid = Run { parser: Redis::new(false), ex: vec![] };
    for (side, ts, b) in [(Q, 1, cmd(&["GET", "k"])), (R, 2, line("$-1")), (Q, 3, cmd(&["SELECT", "3"]))] {
        let seg = Segment { ts_ns: ts, bytes: b.len() as u32, payload: &b, seq: None, tid: 1 };
        mid.parser.feed(side, &seg, &mut mid.ex);
    }
    let b = line("+OK");
    mid.parser.feed(R, &Segment { ts_ns: 4, bytes: 3 + 2, payload: &b, seq: None, tid: 1 }, &mut mid.ex);
    mid.expect(&["GET db=? | req 1..1 | resp 2..2", "SELECT db=3 | req 3..3 | resp 4..4"]);
    assert_eq!(run.counts(), ParserCounts::default());
}

fn push(ty: char, kind: &str, channel: &str, last: Vec<u8>) -> Vec<u8> {
    agg(ty, 3, &[bulk(kind.as_bytes()), bulk(channel.as_bytes()), last])
}

#[test]
fn pubsub_deliveries_are_counted_not_paired() {
    let mut run = feed(&[
        q(10, cmd(&["SUBSCRIBE", "a", "b"])),
        r(11, [push('*', "subscribe", "a", line(":1")), push('*', "subscribe", "b", line(":2"))].concat()),
        r(12, push('*', "message", "a", bulk(b"secret-value-4711"))),
        q(13, cmd(&["PSUBSCRIBE", "n*"])),
        r(14, [push('*', "message", "b", bulk(b"m")), push('*', "psubscribe", "n*", line(":3"))].concat()),
        r(15, agg('*', 4, &[bulk(b"pmessage"), bulk(b"n*"), bulk(b"n1"), bulk(b"m")])),
        // PING in subscribed mode is answered by an array.
        q(16, cmd(&["PING"])),
        r(17, agg('*', 2, &[bulk(b"pong"), bulk(b"")])),
        q(18, cmd(&["UNSUBSCRIBE"])),
        r(19, [push('*', "unsubscribe", "a", line(":2")), push('*', "unsubscribe", "b", line(":1"))].concat()),
        q(20, cmd(&["PUNSUBSCRIBE"])),
        r(21, push('*', "punsubscribe", "n*", line(":0"))),
        // Out of subscribed mode an array starting with "message" is a value.
        q(22, cmd(&["LRANGE", "l", "0", "-1"])),
        r(23, agg('*', 2, &[bulk(b"message"), bulk(b"x")])),
    ]);
    run.expect(&[
        "SUBSCRIBE db=0 | req 10..10 | resp 11..11",
        "PSUBSCRIBE db=0 | req 13..13 | resp 14..14",
        "PING db=0 | req 16..16 | resp 17..17",
        "UNSUBSCRIBE db=0 | req 18..18 | resp 19..19",
        "PUNSUBSCRIBE db=0 | req 20..20 | resp 21..21",
        "LRANGE db=0 | req 22..22 | resp 23..23",
    ]);
    assert_eq!(run.counts(), ParserCounts { pushed: 3, ..Default::default() });
}

#[test]
fn resp3_replies_pushes_and_attributes() {
    let hello = agg('%', 2, &[bulk(b"server"), bulk(b"redis"), bulk(b"proto"), line(":3")]);
    let mut run = feed(&[
        q(10, cmd(&["HELLO", "3", "AUTH", "default", "secret-value-4711"])),
        r(11, hello),
        q(12, cmd(&["CLIENT", "TRACKING", "on"])),
        r(13, line("+OK")),
        q(14, cmd(&["GET", "k"])),
        // An invalidation push arrives before the reply; it answers nothing.
        r(15, [agg('>', 2, &[bulk(b"invalidate"), agg('*', 1, &[bulk(b"k")])]), line("_")].concat()),
        q(16, [cmd(&["EXISTS", "k"]), cmd(&["INCRBYFLOAT", "f", "1.5"]), cmd(&["ZSCORE", "z", "m"])].concat()),
        r(17, [line("#f"), line(",1.5"), line("(3492890328409238509324850943850943825024385")].concat()),
        q(18, [cmd(&["SMEMBERS", "s"]), cmd(&["LOLWUT"]), cmd(&["GET", "k"])].concat()),
        r(19, [agg('~', 2, &[bulk(b"a"), bulk(b"b")]), b"=15\r\ntxt:Some string\r\n".to_vec()].concat()),
        // An attribute map comes before the reply it describes.
        r(
            20,
            [agg('|', 1, &[bulk(b"key-popularity"), agg('%', 1, &[bulk(b"k"), line(",0.19")])]), line(":2")].concat(),
        ),
        q(21, cmd(&["SUBSCRIBE", "ch"])),
        r(22, push('>', "subscribe", "ch", line(":1"))),
        r(23, push('>', "message", "ch", bulk(b"m"))),
    ]);
    run.expect(&[
        "HELLO db=0 | req 10..10 | resp 11..11",
        "CLIENT db=0 | req 12..12 | resp 13..13",
        "GET db=0 | req 14..14 | resp 15..15",
        "EXISTS db=0 | req 16..16 | resp 17..17",
        "INCRBYFLOAT db=0 | req 16..16 | resp 17..17",
        "ZSCORE db=0 | req 16..16 | resp 17..17",
        "SMEMBERS db=0 | req 18..18 | resp 19..19",
        "LOLWUT db=0 | req 18..18 | resp 19..19",
        "GET db=0 | req 18..18 | resp 20..20",
        "SUBSCRIBE db=0 | req 21..21 | resp 22..22",
    ]);
    assert_eq!(run.counts(), ParserCounts { pushed: 2, ..Default::default() });
}

#[test]
fn monitor_output_is_counted() {
    let mut run = feed(&[
        q(10, cmd(&["MONITOR"])),
        r(11, line("+OK")),
        r(12, line("+1700000000.1 [0 127.0.0.1:5000] \"SET\" \"k\" \"secret-value-4711\"")),
        r(13, line("+1700000000.2 [0 127.0.0.1:5000] \"GET\" \"k\"")),
    ]);
    run.expect(&["MONITOR db=0 | req 10..10 | resp 11..11"]);
    assert_eq!(run.counts(), ParserCounts { pushed: 2, ..Default::default() });
}

#[test]
fn inline_commands() {
    let run = feed(&[
        q(10, b"PING\r\n".to_vec()),
        r(11, line("+PONG")),
        q(12, b"\r\n".to_vec()), // an empty line: Redis answers nothing
        q(13, b"select 4\r\nset k v\n".to_vec()),
        r(14, [line("+OK"), line("+OK")].concat()),
    ]);
    run.expect(&[
        "PING db=0 | req 10..10 | resp 11..11",
        "SELECT db=4 | req 13..13 | resp 14..14",
        "SET db=4 | req 13..13 | resp 14..14",
    ]);
}

#[test]
fn unknown_commands_are_other() {
    let run = feed(&[q(10, cmd(&["secret-value-4711", "x"])), r(11, line("-ERR unknown command"))]);
    run.expect(&["_OTHER db=0 | req 10..10 | resp 11..11 | err=ERR"]);
}

#[test]
fn close_flushes_what_waits() {
    let mut run = feed(&[q(10, cmd(&["BLPOP", "q", "0"])), q(11, cmd(&["GET", "k"])), r(12, b"$5\r\nab".to_vec())]);
    run.close();
    run.expect(&["BLPOP db=0 | req 10..10 | resp 12..12 | incomplete", "GET db=0 | req 11..11 | - | no_response"]);
}

#[test]
fn lost_request_bytes_leave_a_mark_the_replies_step_over() {
    // The second command's syscall was never reported (a sequence gap).
    let get = cmd(&["GET", "k"]);
    let mut run = feed(&[q(10, get.clone()), r(11, bulk(b"v"))]);
    let next = REQ_SEQ + get.len() as u32 + 100;
    let b = cmd(&["INCR", "c"]);
    run.parser.feed(
        R,
        &Segment { ts_ns: 15, bytes: 4, payload: b":7\r\n", seq: Some(RESP_SEQ + 7), tid: 2 },
        &mut run.ex,
    );
    run.parser.feed(
        Q,
        &Segment { ts_ns: 20, bytes: b.len() as u32, payload: &b, seq: Some(next), tid: 1 },
        &mut run.ex,
    );
    run.parser.feed(
        R,
        &Segment { ts_ns: 21, bytes: 4, payload: b":8\r\n", seq: Some(RESP_SEQ + 11), tid: 2 },
        &mut run.ex,
    );
    run.expect(&["GET db=0 | req 10..10 | resp 11..11", "INCR db=0 | req 20..20 | resp 21..21"]);
    // The reply at 15 answered the lost command.
    assert_eq!(run.counts(), ParserCounts { malformed: 1, unpaired: 1, ..Default::default() });
}

#[test]
fn garbage_replies_lose_framing_until_a_reply_starts_a_syscall() {
    let mut run = feed(&[
        q(10, cmd(&["GET", "a"])),
        r(11, b"?not resp\r\n".to_vec()),
        r(12, b"more garbage".to_vec()),
        q(13, cmd(&["GET", "b"])),
        r(14, bulk(b"v")),
    ]);
    run.expect(&["GET db=0 | req 10..10 | resp 14..14"]);
    run.close();
    assert_eq!(run.lines()[1], "GET db=0 | req 13..13 | - | no_response");
    assert_eq!(run.counts().malformed, 1);
}

#[test]
fn a_reply_line_past_the_capture_is_incomplete() {
    let long = format!("-ERR {}", "x".repeat(600));
    let run = feed(&[
        q(10, cmd(&["GET", "a"])),
        (R, 11, line(&long), Some(512)),
        q(12, cmd(&["GET", "b"])),
        r(13, bulk(b"v")),
    ]);
    run.expect(&["GET db=0 | req 10..10 | resp 11..11 | err=ERR incomplete", "GET db=0 | req 12..12 | resp 13..13"]);
}

#[test]
fn deep_pipelines_are_bounded_and_stay_in_order() {
    let n = MAX_PENDING + 50;
    let reqs: Vec<u8> = (0..n).flat_map(|_| cmd(&["INCR", "c"])).collect();
    let mut run = feed(&[q(10, reqs), q(11, cmd(&["GET", "k"]))]);
    assert!(run.parser.pending_len() <= MAX_PENDING + 1);
    let replies: Vec<u8> = (0..n).flat_map(|i| line(&format!(":{i}"))).collect();
    run.parser.feed(
        R,
        &Segment { ts_ns: 20, bytes: replies.len() as u32, payload: &replies, seq: None, tid: 2 },
        &mut run.ex,
    );
    let last = bulk(b"v");
    run.parser.feed(
        R,
        &Segment { ts_ns: 30, bytes: last.len() as u32, payload: &last, seq: None, tid: 2 },
        &mut run.ex,
    );
    let lines = run.lines();
    assert_eq!(lines.len(), MAX_PENDING - 1);
    assert!(lines.iter().all(|l| l.starts_with("INCR")), "the kept ones pair with their own replies");
    let c = run.counts();
    assert_eq!(c.overflow as usize, n + 1 - (MAX_PENDING - 1));
    assert_eq!(c.unpaired, 0);
}

#[test]
fn detection() {
    use super::detect;
    assert_eq!(detect(&cmd(&["PING"]), false), Some(Q));
    assert_eq!(detect(&cmd(&["set", "k", "v"]), false), Some(Q));
    assert_eq!(detect(&cmd(&["NOTACOMMAND"]), false), None, "unknown names need the port");
    assert_eq!(detect(&cmd(&["NOTACOMMAND"]), true), Some(Q));
    assert_eq!(detect(b"*3\r\n$3\r\n", true), Some(Q));
    assert_eq!(detect(b"*3\r\n$3\r\n", false), None);
    assert_eq!(detect(b"PING\r\n", false), None, "inline commands only on the port");
    assert_eq!(detect(b"PING\r\n", true), Some(Q));
    assert_eq!(detect(b"+OK\r\n", true), Some(R));
    assert_eq!(detect(b"-ERR x\r\n", true), Some(R));
    assert_eq!(detect(b"$5\r\nhello\r\n", true), Some(R));
    assert_eq!(detect(b"+OK\r\n", false), None);
    for other in [&b"GET / HTTP/1.1\r\n"[..], b"\x16\x03\x01\x02\x00", b"*", b"", b"SSH-2.0-OpenSSH\r\n"] {
        assert_eq!(detect(other, false), None, "{other:?}");
    }
}

/// Every distinctive argument value stays out of every span.
#[test]
fn arguments_never_reach_a_span() {
    const SECRET: &str = "secret-value-4711";
    let s = SECRET;
    let mut run = feed(&[
        q(1, cmd(&["AUTH", "default", s])),
        r(2, line("+OK")),
        q(3, cmd(&["HELLO", "3", "AUTH", "default", s, "SETNAME", s])),
        r(4, agg('%', 1, &[bulk(b"server"), bulk(s.as_bytes())])),
        q(5, cmd(&["SET", &format!("user:{s}"), s])),
        r(6, line("+OK")),
        q(7, cmd(&["MIGRATE", "host", "6379", s, "0", "5000", "AUTH", s])),
        r(8, line(&format!("-IOERR error or timeout {s}"))),
        q(9, cmd(&[s, s])),
        r(10, line(&format!("-ERR unknown command '{s}', with args beginning with: '{s}'"))),
        q(11, cmd(&["SELECT", s])),
        r(12, line("-ERR value is not an integer or out of range")),
        q(13, format!("GET {s}\r\n").into_bytes()),
        r(14, bulk(s.as_bytes())),
        q(15, cmd(&["EVAL", s, "0"])),
        r(16, line(&format!("-{} {s}", s.to_uppercase()))),
        q(17, cmd(&["SUBSCRIBE", s])),
        r(18, push('*', "subscribe", s, line(":1"))),
        r(19, push('*', "message", s, bulk(s.as_bytes()))),
    ]);
    run.close();
    assert_eq!(run.ex.len(), 9);
    for e in &run.ex {
        let Info::Redis(r) = &e.info else { unreachable!() };
        let d = describe(r);
        let text = format!("{d:?} {e:?}");
        assert!(!text.contains(SECRET) && !text.contains("4711"), "{text}");
    }
}
