//! One line per record on stdout: JSON (`--output json`, for machines and
//! tests) or text (`--output text`, the live view of `cargo xtask run`).

use std::io::Write as _;

use serde::Serialize;

use crate::{
    clock::Clock,
    conntrack::{ConnRecord, DataRecord, Record},
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
        LineWriter {
            format,
            clock: Clock::new(),
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    pub fn write(&mut self, r: &Record) {
        let ts = match r {
            Record::Conn(c) => c.ts_ns,
            Record::Data(d) => d.ts_ns,
        };
        let time = humantime::format_rfc3339_micros(self.clock.wall(ts)).to_string();
        let res = match (self.format, r) {
            (OutputFormat::None, _) => Ok(()),
            (OutputFormat::Json, Record::Conn(c)) => self.json(&JsonLine {
                kind: "connection",
                time,
                record: c,
            }),
            (OutputFormat::Json, Record::Data(d)) => self.json(&JsonLine {
                kind: "data",
                time,
                record: d,
            }),
            (OutputFormat::Text, Record::Conn(c)) => writeln!(self.out, "{}", text(&time, c)),
            (OutputFormat::Text, Record::Data(d)) => writeln!(self.out, "{}", data_text(&time, d)),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "writing to stdout failed");
        }
    }

    fn json(&mut self, line: &impl Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, line).map_err(std::io::Error::other)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

fn text(time: &str, r: &ConnRecord) -> String {
    let who = match r.pid {
        Some(pid) => format!("{}[{pid}]", r.comm),
        None => "?".to_string(),
    };
    let ev = serde_json::to_value(r.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let role = serde_json::to_value(r.role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut s = format!(
        "{time} {ev:<14} {role:<7} {who:<24} {} -> {}",
        r.local, r.remote
    );
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
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ));
        }
    }
    s
}

fn data_text(time: &str, d: &DataRecord) -> String {
    format!(
        "{time} data {:<7} {}[{}/{}] fd {} {} {}B {} -> {} {:?}",
        d.direction,
        d.comm,
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
