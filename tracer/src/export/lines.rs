//! One line per record on stdout: JSON (`--output json`, for machines and
//! tests) or text (`--output text`, the live view of `cargo xtask run`).
//!
//! Names, paths and process names come from untrusted programs and peers,
//! and stdout is often an operator's terminal: every string of a text line
//! goes through `printable::escape` (no ESC, BEL, NUL, C1 or bidi override
//! reaches the terminal as is), and JSON strings escape the same characters
//! as `\uXXXX` on top of what JSON requires, so a JSON line is valid JSON
//! and as safe on a terminal.

use std::io::Write as _;

use serde::Serialize;

use super::Item;
use crate::{
    clock::Clock,
    conntrack::{ConnRecord, DataRecord},
    printable::{escape, needs_escape},
    span::{Span, SpanKind, Status, Value, hex},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Json,
    Text,
    None,
}

#[derive(Serialize)]
struct JsonLine<'a, R> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    #[serde(flatten)]
    record: &'a R,
}

pub struct LineWriter {
    format: OutputFormat,
    clock: Clock,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl LineWriter {
    pub fn new(format: OutputFormat) -> Self {
        LineWriter { format, clock: Clock::new(), out: std::io::BufWriter::new(std::io::stdout()) }
    }

    /// An error (e.g. EPIPE: nobody reads stdout any more) is the caller's
    /// to act on: the output stage ends with it.
    pub fn write(&mut self, r: &Item) -> std::io::Result<()> {
        let ts = match r {
            Item::Conn(c) => c.ts_ns,
            Item::Data(d) => d.ts_ns,
            Item::Span(s) => s.end_ns,
        };
        let time = humantime::format_rfc3339_micros(self.clock.wall(ts)).to_string();
        match (self.format, r) {
            (OutputFormat::None, _) => Ok(()),
            (OutputFormat::Json, Item::Conn(c)) => self.json(&JsonLine { kind: "connection", time, record: c }),
            (OutputFormat::Json, Item::Data(d)) => self.json(&JsonLine { kind: "data", time, record: d }),
            (OutputFormat::Json, Item::Span(s)) => {
                let start = humantime::format_rfc3339_micros(self.clock.wall(s.start_ns)).to_string();
                self.json(&JsonLine { kind: "span", time, record: &JsonSpan::from(s, start) })
            }
            (OutputFormat::Text, Item::Conn(c)) => writeln!(self.out, "{}", text(&time, c)),
            (OutputFormat::Text, Item::Data(d)) => writeln!(self.out, "{}", data_text(&time, d)),
            (OutputFormat::Text, Item::Span(s)) => writeln!(self.out, "{}", span_text(&time, s)),
        }
    }

    fn json(&mut self, line: &impl Serialize) -> std::io::Result<()> {
        json_line(&mut self.out, line)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// One JSON line with the terminal-unsafe characters escaped as well.
fn json_line(out: &mut impl std::io::Write, line: &impl Serialize) -> std::io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, SafeFormatter);
    line.serialize(&mut ser).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// serde_json's compact output, with DEL, C1 controls and invisible
/// formatting characters written as `\uXXXX` (JSON escapes C0 itself).
struct SafeFormatter;

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if needs_escape(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

fn text(time: &str, r: &ConnRecord) -> String {
    let who = match r.pid {
        Some(pid) => format!("{}[{pid}]", escape(&r.comm)),
        None => "?".to_string(),
    };
    let ev = serde_json::to_value(r.event).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let role = serde_json::to_value(r.role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let mut s = format!("{time} {ev:<14} {role:<7} {who:<24} {} -> {}", r.local, r.remote);
    if r.event != crate::conntrack::table::ConnEventKind::Open {
        s.push_str(&format!(
            "  sent {}B/{} calls  recv {}B/{} calls  {:.1}ms",
            r.bytes_sent,
            r.calls_sent,
            r.bytes_received,
            r.calls_received,
            r.duration_ns as f64 / 1e6
        ));
        if let Some(reason) = r.close_reason {
            s.push_str(&format!(
                "  {}",
                serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            ));
        }
    }
    s
}

fn data_text(time: &str, d: &DataRecord) -> String {
    format!(
        "{time} data {:<7} {}[{}/{}] fd {} {} {}B {} -> {} {:?}",
        d.direction,
        escape(&d.comm),
        d.pid,
        d.tid,
        d.fd,
        d.syscall,
        d.bytes,
        d.local,
        d.remote,
        d.payload_head
    )
}

/// A span as one JSON object (`--output json`).
#[derive(Serialize)]
struct JsonSpan<'a> {
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    kind: SpanKind,
    name: &'a str,
    service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_version: Option<&'a str>,
    pid: Option<u32>,
    comm: &'a str,
    start: String,
    start_ns: u64,
    end_ns: u64,
    duration_ns: u64,
    /// Request's first byte to response's first byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_first_byte_ns: Option<u64>,
    status: Status,
    attributes: serde_json::Map<String, serde_json::Value>,
}

impl<'a> JsonSpan<'a> {
    fn from(s: &'a Span, start: String) -> Self {
        let attributes = s
            .attributes
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Str(x) => serde_json::Value::from(x.as_ref()),
                    Value::Shared(x) => serde_json::Value::from(&**x),
                    Value::Int(i) => serde_json::Value::from(*i),
                    Value::Ip(ip) => serde_json::Value::from(ip.to_string()),
                    Value::StrArray(a) => serde_json::Value::from(a.clone()),
                };
                (k.to_string(), v)
            })
            .collect();
        JsonSpan {
            trace_id: hex(&s.trace_id),
            span_id: hex(&s.span_id),
            parent_span_id: s.parent_span_id.map(|p| hex(&p)),
            kind: s.kind,
            name: &s.name,
            service: &s.service.name,
            service_version: s.service.version.as_deref(),
            pid: s.pid,
            comm: &s.comm,
            start,
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            duration_ns: s.end_ns - s.start_ns,
            time_to_first_byte_ns: s.response_first_ns.map(|f| f.saturating_sub(s.start_ns)),
            status: s.status,
            attributes,
        }
    }
}

fn span_text(time: &str, s: &Span) -> String {
    let status = s.status_text().map(|t| escape(&t).into_owned());
    format!(
        "{time} span {:<6} {:<20} {:<32} {} {:.2}ms{}",
        match s.kind {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        },
        escape(&s.service.name),
        escape(&s.name),
        status.unwrap_or_else(|| "-".into()),
        (s.end_ns - s.start_ns) as f64 / 1e6,
        if s.status == Status::Error { " ERROR" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printable::is_printable;

    #[test]
    fn json_lines_escape_terminal_controls_and_stay_json() {
        let nasty = "GET /\x1b]0;pwned\x07\x1b[2J\0\u{9b}\u{7f}\u{202e}x\"\\é";
        let mut out = Vec::new();
        json_line(&mut out, &serde_json::json!({ "name": nasty })).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(is_printable(text.trim_end()), "{text:?}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], nasty, "the escapes decode to the same string");
    }
}
