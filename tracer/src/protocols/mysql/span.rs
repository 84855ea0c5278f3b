//! How a MySQL or MariaDB exchange is described on a span (OpenTelemetry
//! database conventions): the statement's operation, main table and
//! summary, which also names the span; the literal-free text only when
//! `db.query.text` is on; an ERR's code as `db.response.status_code` and
//! `error.type` (the conventions ask for the same value); rows returned.
//! Commands without a statement are named by the command (`PING`); a
//! prepare is `PREPARE` of its statement.

use std::borrow::Cow;

use super::MysqlExchange;
use crate::span::{Attributes, Described, Key, Value};

pub fn describe(m: &MysqlExchange, db_query_text: bool) -> Described {
    let mut a: Attributes = Vec::with_capacity(8);
    a.push((Key::DbSystemName, Value::Str(Cow::Borrowed(m.system))));
    if let Some(s) = &m.schema {
        a.push((Key::DbNamespace, s.to_string().into()));
    }
    let stmt = m.statement.as_deref();
    let operation = stmt.and_then(|s| s.operation.as_deref());
    let prepare = m.command == "PREPARE";
    let name = match (operation, prepare) {
        (Some(op), false) => {
            a.push((Key::DbOperationName, op.to_string().into()));
            stmt.map(|s| s.summary.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| op.to_string())
        }
        (Some(_), true) => {
            a.push((Key::DbOperationName, "PREPARE".into()));
            format!("PREPARE {}", stmt.map_or("", |s| s.summary.as_str()))
        }
        (None, _) => {
            a.push((Key::DbOperationName, Value::Str(Cow::Borrowed(m.command))));
            m.command.to_string()
        }
    };
    if let Some(s) = stmt {
        if let Some(c) = &s.collection {
            a.push((Key::DbCollectionName, c.clone().into()));
        }
        if !s.summary.is_empty() {
            let summary = if prepare { name.clone() } else { s.summary.clone() };
            a.push((Key::DbQuerySummary, summary.into()));
        }
        if db_query_text && !s.text.is_empty() {
            a.push((Key::DbQueryText, s.text.clone().into()));
        }
    }
    if let Some(n) = m.rows {
        a.push((Key::DbResponseReturnedRows, Value::Int(n as i64)));
    }
    let mut error_type: Option<Cow<'static, str>> = None;
    if let Some((code, _)) = m.error {
        let code = code.to_string();
        a.push((Key::DbResponseStatusCode, code.clone().into()));
        error_type = Some(code.into());
    } else if m.no_response {
        error_type = Some("no_response".into());
    }
    if m.response_incomplete {
        a.push((Key::TracerResponseIncomplete, "true".into()));
    }
    Described { name, protocol: "mysql", error_type, attributes: a, ..Default::default() }
}
