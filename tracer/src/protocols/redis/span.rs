//! How a Redis exchange is described on a span (OpenTelemetry database
//! conventions for Redis): the name is the command, `db.namespace` the
//! database index, an error reply's code is `error.type`. No argument and
//! no key is recorded (the conventions allow `db.collection.name` absent
//! for Redis; keys often hold user data), nor `db.query.text`.

use std::borrow::Cow;

use super::RedisExchange;
use crate::span::{Attributes, Described, Key, Value};

pub fn describe(r: &RedisExchange) -> Described {
    let mut a: Attributes = Vec::with_capacity(5);
    a.push((Key::DbSystemName, "redis".into()));
    a.push((Key::DbOperationName, Value::Str(r.command.clone())));
    if let Some(db) = r.db {
        a.push((Key::DbNamespace, db.to_string().into()));
    }
    // The conventions count a batch from two operations on.
    if let Some(n) = r.batch.filter(|n| *n >= 2) {
        a.push((Key::DbOperationBatchSize, Value::Int(i64::from(n))));
    }
    if r.response_incomplete {
        a.push((Key::TracerResponseIncomplete, "true".into()));
    }
    let error_type: Option<Cow<'static, str>> = match (r.error, r.no_response) {
        (Some(code), _) => Some(Cow::Borrowed(code)),
        (None, true) => Some("no_response".into()),
        _ => None,
    };
    Described { name: r.command.to_string(), protocol: "redis", error_type, attributes: a, ..Default::default() }
}
