//! `tracer compare`: asks an agent's `GET /api/compare` and prints the
//! verdicts as a table (names through `printable::escape`: they come from
//! untrusted command lines and requests), for a CI/CD step. Exit status: 0,
//! or 2 when the overall verdict is one of `--fail-on`; 1 when there is no
//! comparison (agent unreachable, unknown version: the error is printed).

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::compare::Verdict;
use crate::printable::escape;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The agent's API, http://host:port.
    #[arg(long, default_value = "http://127.0.0.1:9400")]
    pub api: String,
    /// service.name of both versions.
    #[arg(long)]
    pub service: String,
    /// The version compared against (the stable one).
    #[arg(long)]
    pub baseline: String,
    /// The version judged (the canary, the new release).
    #[arg(long)]
    pub candidate: String,
    /// Only this business transaction.
    #[arg(long)]
    pub transaction: Option<String>,
    /// The window, ending now (1m..1h; default the agent's compare_window).
    #[arg(long)]
    pub window: Option<String>,
    /// Exit 2 when the overall verdict is one of these (comma-separated:
    /// worse, insufficient_data, no_difference, better).
    #[arg(long, value_delimiter = ',')]
    pub fail_on: Vec<String>,
    /// Print the agent's JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Query-string encoding of one value (RFC 3986 unreserved kept).
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// GET `path` at `api` (http only): (status, body).
fn get(api: &str, path: &str) -> Result<(u16, String)> {
    let Some(rest) = api.strip_prefix("http://") else { bail!("--api {api:?}: only http://host:port is supported") };
    let host = rest.split('/').next().unwrap_or(rest);
    let addr = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let mut s = TcpStream::connect(&addr).with_context(|| format!("connecting to the agent at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).context("reading the agent's answer")?;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn num(v: &Value, kpi: &str) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(x) if kpi.ends_with("_ms") => format!("{x:.2}"),
        Some(x) => format!("{x:.4}"),
    }
}

fn row(out: &mut String, scope: &str, k: &Value) {
    let kpi = k["kpi"].as_str().unwrap_or("");
    let change = k["relative_change"].as_f64().map_or("-".into(), |c| format!("{:+.1}%", c * 100.0));
    let p = k["p_value"].as_f64().map_or("-".into(), |p| format!("{p:.2e}"));
    let _ = writeln!(
        out,
        "{:<32} {:<16} {:>12} {:>12} {:>9} {:<16} {:>9}  {}",
        escape(scope),
        kpi,
        num(&k["baseline"], kpi),
        num(&k["candidate"], kpi),
        change,
        k["test"].as_str().unwrap_or(""),
        p,
        k["verdict"].as_str().unwrap_or("-"),
    );
}

/// The table of a comparison (`/api/compare`'s JSON).
pub fn table(c: &Value) -> String {
    let s = |k: &str| escape(c[k].as_str().unwrap_or("")).into_owned();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "service {}: candidate {} vs baseline {}\nwindows: baseline {} .. {}, candidate {} .. {}",
        s("service"),
        s("candidate"),
        s("baseline"),
        c["baseline_window"][0].as_str().unwrap_or(""),
        c["baseline_window"][1].as_str().unwrap_or(""),
        c["candidate_window"][0].as_str().unwrap_or(""),
        c["candidate_window"][1].as_str().unwrap_or(""),
    );
    let _ = writeln!(
        out,
        "{:<32} {:<16} {:>12} {:>12} {:>9} {:<16} {:>9}  verdict",
        "scope", "kpi", "baseline", "candidate", "change", "test", "p-value"
    );
    let mut set = |scope: &str, v: &Value| {
        let _ = writeln!(
            out,
            "{:<32} {:<16} {:>12} {:>12} {:>9} {:<16} {:>9}  {}",
            escape(scope),
            "requests",
            v["baseline_requests"],
            v["candidate_requests"],
            "",
            "",
            "",
            v["verdict"].as_str().unwrap_or("-")
        );
        for k in v["kpis"].as_array().into_iter().flatten() {
            row(&mut out, scope, k);
        }
    };
    set("(service)", &c["service_kpis"]);
    for t in c["transactions"].as_array().into_iter().flatten() {
        set(t["name"].as_str().unwrap_or(""), t);
    }
    let _ = writeln!(out, "verdict: {}", c["verdict"].as_str().unwrap_or("-"));
    out
}

/// Runs the comparison and prints it; Ok(true) when the gate fails.
pub fn run(a: &CompareArgs) -> Result<bool> {
    let mut fail_on = vec![];
    for f in &a.fail_on {
        match Verdict::parse(f.trim()) {
            Some(v) => fail_on.push(v),
            None => bail!("--fail-on {f:?}: must be worse, insufficient_data, no_difference or better"),
        }
    }
    let mut path = format!(
        "{}?service={}&baseline={}&candidate={}",
        super::api::COMPARE_PATH,
        encode(&a.service),
        encode(&a.baseline),
        encode(&a.candidate)
    );
    if let Some(t) = &a.transaction {
        path += &format!("&transaction={}", encode(t));
    }
    if let Some(w) = &a.window {
        path += &format!("&window={}", encode(w));
    }
    let (status, body) = get(&a.api, &path)?;
    if status != 200 {
        bail!("the agent answered {status}: {}", escape(body.trim()));
    }
    let c: Value = serde_json::from_str(&body).context("the agent's answer is not JSON")?;
    if a.json {
        println!("{body}");
    } else {
        print!("{}", table(&c));
    }
    let verdict = c["verdict"].as_str().and_then(Verdict::parse).context("no verdict in the agent's answer")?;
    Ok(fail_on.contains(&verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_values_encoded() {
        assert_eq!(encode("shop GET /a?b"), "shop%20GET%20%2Fa%3Fb");
        let c = serde_json::json!({
            "service": "sh\u{1b}[31mop", "baseline": "1.0", "candidate": "1.1", "verdict": "worse",
            "baseline_window": ["a", "b"], "candidate_window": ["a", "b"],
            "service_kpis": {"verdict": "worse", "baseline_requests": 10, "candidate_requests": 5,
              "kpis": [{"kpi": "p95_ms", "baseline": 10.0, "candidate": 20.0, "relative_change": 1.0,
                        "test": "mann_whitney_u", "p_value": 0.001, "verdict": "worse"}]},
            "transactions": [{"name": "x\u{7}", "verdict": "worse", "baseline_requests": 1, "candidate_requests": 1, "kpis": []}]
        });
        let t = table(&c);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t}");
        assert!(t.contains("sh\\x1b[31mop") && t.contains("+100.0%") && t.contains("1.00e-3"), "{t}");
        assert!(t.ends_with("verdict: worse\n"), "{t}");
    }
}
