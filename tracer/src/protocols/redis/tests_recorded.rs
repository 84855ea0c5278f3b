//! Recorded sessions (`fixtures/`, the shape of
//! [`crate::protocols::fixture`]): real clients against redis-server 7.0,
//! through a recording proxy; each read is a segment.

use super::{
    span::describe,
    tests::{Run, Seg, feed},
};
use crate::protocols::{Info, ParserCounts};

/// A recorded stream: each read a segment, a millisecond apart.
fn recorded(text: &str) -> Run {
    let segs: Vec<Seg> = crate::protocols::fixture::load(text)
        .into_iter()
        .enumerate()
        .map(|(i, (side, b))| (side, i as u64 * 1_000_000, b, None))
        .collect();
    let mut run = feed(&segs);
    run.close();
    run
}

fn by_command(run: &Run) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for e in &run.ex {
        let Info::Redis(r) = &e.info else { unreachable!() };
        *m.entry(r.command.to_string()).or_default() += 1;
    }
    m
}

/// redis-py's session of tests/fixtures/db/redis_client.py: the counts it
/// printed ({"SET": 21, "GET": 22, "INCR": 10, "LPUSH": 1, "MULTI": 1,
/// "EXEC": 1, "errors": 1}) plus its AUTH, SELECT and CLIENT SETINFO calls.
/// redis-py's `incr` sends INCRBY, so the ten INCRs are INCRBY spans.
#[test]
fn recorded_redis_py_session() {
    let mut run = recorded(include_str!("fixtures/redis_py.txt"));
    let want = [
        ("AUTH", 1),
        ("CLIENT", 2),
        ("EXEC", 1),
        ("GET", 22),
        ("INCRBY", 10),
        ("LPUSH", 1),
        ("MULTI", 1),
        ("SELECT", 1),
        ("SET", 21),
    ];
    assert_eq!(by_command(&run), want.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    let errors: Vec<_> = run.lines().into_iter().filter(|l| l.contains("err=")).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[2].starts_with("GET db=2") && errors[2].ends_with("err=WRONGTYPE"), "{errors:?}");
    assert!(run.lines().iter().skip(4).all(|l| l.contains("db=2")), "SELECT 2 at connect");
    assert_eq!(run.counts(), ParserCounts::default());
    for e in &run.ex {
        let Info::Redis(r) = &e.info else { unreachable!() };
        let text = format!("{:?}", describe(r));
        assert!(!text.contains("secret") && !text.contains("4711"), "{text}");
    }
}

/// RESP3 from HELLO 3 on, a subscription to two channels, three pushed
/// messages, UNSUBSCRIBE answered by two pushes.
#[test]
fn recorded_resp3_pubsub_session() {
    let mut run = recorded(include_str!("fixtures/resp3_pubsub.txt"));
    let want = [
        ("CLIENT", 3),
        ("HELLO", 1),
        ("HGETALL", 1),
        ("HSET", 1),
        ("INCRBYFLOAT", 1),
        ("SADD", 1),
        ("SET", 1),
        ("SMEMBERS", 1),
        ("SUBSCRIBE", 1),
        ("UNSUBSCRIBE", 1),
        ("ZADD", 1),
        ("ZSCORE", 1),
    ];
    assert_eq!(by_command(&run), want.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    assert!(run.lines().iter().all(|l| !l.contains("no_response")), "{:#?}", run.lines());
    assert_eq!(run.counts(), ParserCounts { pushed: 3, ..Default::default() });
}
