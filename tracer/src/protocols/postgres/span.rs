//! How a PostgreSQL call is described on a span: OpenTelemetry database
//! conventions (`db.system.name` postgresql, namespace, operation,
//! collection, summary, SQLSTATE as `db.response.status_code` and, on an
//! ErrorResponse, `error.type`); the name is the summary, else the system.
//! The literal-free text goes in `db.query.text` only when configured.

use std::borrow::Cow;

use super::PgExchange;
use crate::span::{Attributes, Described, Key, Value};

pub const SYSTEM: &str = "postgresql";

/// The span of one call. `query_text`: put the literal-free statement in
/// `db.query.text`.
pub fn describe(p: &PgExchange, query_text: bool) -> Described {
    let mut a: Attributes = Vec::with_capacity(10);
    a.push((Key::DbSystemName, SYSTEM.into()));
    if let Some(db) = &p.database {
        a.push((Key::DbNamespace, Value::Str(Cow::Owned(db.to_string()))));
    }
    let st = p.statement.as_deref();
    let mut name = None;
    if let Some(s) = st {
        if let Some(op) = &s.operation {
            a.push((Key::DbOperationName, op.clone().into()));
        }
        if let Some(c) = &s.collection {
            a.push((Key::DbCollectionName, c.clone().into()));
        }
        if !s.summary.is_empty() {
            a.push((Key::DbQuerySummary, s.summary.clone().into()));
            name = Some(s.summary.clone());
        }
        if query_text && !s.text.is_empty() {
            a.push((Key::DbQueryText, s.text.clone().into()));
        }
        if s.statements > 1 {
            a.push((Key::DbOperationBatchSize, Value::Int(i64::from(s.statements))));
        }
    }
    let status = p.sqlstate.map(|c| String::from_utf8_lossy(&c).into_owned());
    if let Some(c) = &status {
        a.push((Key::DbResponseStatusCode, c.clone().into()));
    }
    if let Some(n) = p.returned_rows {
        a.push((Key::DbResponseReturnedRows, Value::Int(n.min(i64::MAX as u64) as i64)));
    }
    if let Some(n) = p.copy_bytes {
        a.push((Key::Other("tracer.db.copy.bytes".into()), Value::Int(n.min(i64::MAX as u64) as i64)));
    }
    if p.response_incomplete {
        a.push((Key::TracerResponseIncomplete, "true".into()));
    }
    // SQLSTATE class 00 is success, 01 a warning, 02 no data: not errors.
    let failed = status.filter(|c| !matches!(&c[..2], "00" | "01" | "02"));
    let error_type: Option<Cow<'static, str>> = match failed {
        Some(c) => Some(c.into()),
        None if p.no_response => Some("no_response".into()),
        None => None,
    };
    Described {
        name: name.unwrap_or_else(|| SYSTEM.to_string()),
        protocol: SYSTEM,
        error_type,
        attributes: a,
        context: None,
        server: None,
        kind: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocols::sql::{Dialect, sanitize};

    fn exchange(sql: &str) -> PgExchange {
        PgExchange {
            statement: Some(Arc::new(sanitize(sql.as_bytes(), Dialect::Postgres, false))),
            database: Some("shop".into()),
            returned_rows: Some(3),
            ..Default::default()
        }
    }

    fn attr<'a>(d: &'a Described, k: &Key) -> Option<&'a Value> {
        d.attributes.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }

    #[test]
    fn attributes_and_name() {
        let d = describe(&exchange("SELECT * FROM users WHERE email = 'alice@example.com'"), false);
        assert_eq!(d.name, "SELECT users");
        assert_eq!(d.protocol, "postgresql");
        assert_eq!(attr(&d, &Key::DbSystemName), Some(&Value::from("postgresql")));
        assert_eq!(attr(&d, &Key::DbNamespace), Some(&Value::from("shop".to_string())));
        assert_eq!(attr(&d, &Key::DbOperationName), Some(&Value::from("SELECT".to_string())));
        assert_eq!(attr(&d, &Key::DbCollectionName), Some(&Value::from("users".to_string())));
        assert_eq!(attr(&d, &Key::DbResponseReturnedRows), Some(&Value::Int(3)));
        assert_eq!(attr(&d, &Key::DbQueryText), None, "off by default");
        assert_eq!(d.error_type, None);
        let d = describe(&exchange("SELECT * FROM users WHERE email = 'alice@example.com'"), true);
        assert_eq!(attr(&d, &Key::DbQueryText), Some(&Value::from("SELECT * FROM users WHERE email = ?".to_string())));
    }

    #[test]
    fn errors_and_fallback_name() {
        let mut e = exchange("SELECT * FROM missing");
        e.sqlstate = Some(*b"42P01");
        let d = describe(&e, false);
        assert_eq!(d.error_type.as_deref(), Some("42P01"));
        assert_eq!(attr(&d, &Key::DbResponseStatusCode), Some(&Value::from("42P01".to_string())));
        e.sqlstate = Some(*b"01000"); // a warning is no error
        assert_eq!(describe(&e, false).error_type, None);
        // A prepared statement the agent never saw parsed: the system names it.
        let d = describe(&PgExchange { extended: true, ..Default::default() }, true);
        assert_eq!(d.name, "postgresql");
        assert_eq!(d.attributes.len(), 1);
        let d = describe(&PgExchange { no_response: true, ..Default::default() }, false);
        assert_eq!(d.error_type.as_deref(), Some("no_response"));
    }
}
