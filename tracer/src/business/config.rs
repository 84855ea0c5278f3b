//! `[business]` config: transaction rules, their KPI targets and SLOs, the
//! defaults used where the user gave none, and their validation (each error
//! names its key as written in the file).

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::{apdex, history::HistoryConfig, slo};

/// `[business]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessConfig {
    /// `[[business.transactions]]` rules, tried in order on each entry
    /// SERVER span (one with no traced caller on this node); the first
    /// that matches names the trace's transaction. With none, every entry
    /// route is a transaction named `{service} {method} {route}`.
    pub transactions: Vec<TransactionRule>,
    /// Transactions tracked at most (named by rules with split values, or by
    /// default); a new one past it is not tracked and is counted in
    /// tracer_business_overflow_total{cap="transactions"}. A busy
    /// transaction costs about 0.5 MiB (24 h of minute counts, the SLO rings,
    /// 156 latency sketches of ~2 KiB when its latencies span two decades),
    /// each version ~150 KiB more. Default 100.
    pub max_transactions: usize,
    /// Values of one rule's `split_by` key at most; later values go to
    /// `{name} {key}=__overflow__`. Default 50.
    pub max_split_values: usize,
    /// (service, service.version) pairs kept per transaction; later ones are
    /// counted on version "__overflow__". Default 4.
    pub max_versions: usize,
    /// Entry spans queued from the chain stage (chain_to_business); past it
    /// they are dropped and counted. Default 65536.
    pub queue: usize,
    /// Apdex T of transactions that set none. Default 500 ms.
    pub apdex_t_ms: u64,
    /// SLOs of transactions that set none: availability 99 %, latency 99 %
    /// under 500 ms, over 28 days (Coroot's defaults).
    pub slo: SloConfig,
    /// `[business.history]`: KPIs and SLO state on disk (restarts,
    /// baselines, the 7d window).
    pub history: HistoryConfig,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            transactions: vec![],
            max_transactions: 100,
            max_split_values: 50,
            max_versions: 4,
            queue: 65_536,
            apdex_t_ms: apdex::DEFAULT_T.as_millis() as u64,
            slo: SloConfig::default(),
            history: HistoryConfig::default(),
        }
    }
}

/// One `[[business.transactions]]` rule. Every condition given must hold;
/// a rule with only a name matches every entry span.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionRule {
    pub name: String,
    /// The entry span's service.name, exactly. Unset: any.
    pub service: Option<String>,
    /// The HTTP method (GET, POST...), case-insensitive. Unset: any.
    pub method: Option<String>,
    /// A route template (`/users/{id}`: equal to http.route), a glob
    /// (`/api/*/items`, `*` within one segment, `**` across segments,
    /// matched against url.path and http.route), or a literal path.
    pub route: Option<String>,
    /// Split the transaction by a request value: `header:<name>` (the
    /// header must be in `[http] request_headers`) or `query:<key>` (needs
    /// `[http] redact_query_values = false`). The name becomes
    /// `{name} {key}={value}`.
    pub split_by: Option<String>,
    /// Apdex T. Default `[business] apdex_t_ms`.
    pub apdex_t_ms: Option<u64>,
    pub targets: Targets,
    /// Default `[business.slo]`.
    pub slo: Option<SloConfig>,
}

/// KPI targets of one transaction, each met or missed over the window
/// asked for. Unset ones are not judged.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Targets {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Highest error rate, as a fraction (0.01 = 1 %).
    pub error_rate: Option<f64>,
    /// Lowest Apdex score (0..1).
    pub apdex: Option<f64>,
}

/// Availability and latency SLOs of one transaction.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloConfig {
    /// Share of requests that must not fail, in percent. Default 99.
    pub availability: f64,
    /// Share of requests that must answer under `latency_ms`, in percent. Default 99.
    pub latency: f64,
    /// Default 500 ms.
    pub latency_ms: u64,
    /// The SLO window (humantime: "28d", "7d", "1h"); at least 3 days are
    /// kept for the burn rates. Default 28d.
    pub window: String,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            availability: slo::DEFAULT_OBJECTIVE * 100.0,
            latency: slo::DEFAULT_OBJECTIVE * 100.0,
            latency_ms: 500,
            window: "28d".into(),
        }
    }
}

impl SloConfig {
    pub fn window(&self) -> Duration {
        humantime::parse_duration(&self.window).unwrap_or(slo::DEFAULT_WINDOW)
    }

    fn validate(&self, at: &str) -> Result<()> {
        for (k, v) in [("availability", self.availability), ("latency", self.latency)] {
            if v.is_nan() || v <= 0.0 || v >= 100.0 {
                bail!("{at}.{k}: {v} must be a percentage above 0 and below 100");
            }
        }
        if self.latency_ms == 0 {
            bail!("{at}.latency_ms: must be above 0");
        }
        match humantime::parse_duration(&self.window) {
            Ok(d) if d >= Duration::from_secs(60) && d <= Duration::from_secs(90 * 86_400) => Ok(()),
            Ok(_) => bail!("{at}.window: {:?} must be between 1m and 90d", self.window),
            Err(e) => bail!("{at}.window: {:?} is not a duration such as \"28d\": {e}", self.window),
        }
    }
}

/// Where a split value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitBy {
    /// Lower-case header name.
    Header(String),
    Query(String),
}

impl SplitBy {
    pub fn parse(v: &str) -> Option<SplitBy> {
        let (kind, key) = v.split_once(':')?;
        let key = key.trim();
        if key.is_empty() {
            return None;
        }
        match kind.trim() {
            "header" => Some(SplitBy::Header(key.to_ascii_lowercase())),
            "query" => Some(SplitBy::Query(key.to_string())),
            _ => None,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            SplitBy::Header(k) | SplitBy::Query(k) => k,
        }
    }
}

impl BusinessConfig {
    /// The longest SLO window of the defaults and the rules, in minutes:
    /// how long the history keeps hour records (the error budget's).
    pub fn longest_slo_minutes(&self) -> u64 {
        let rules = self.transactions.iter().filter_map(|r| r.slo.as_ref());
        std::iter::once(&self.slo).chain(rules).map(|s| s.window().as_secs() / 60).max().unwrap_or(0)
    }

    /// `request_headers` and `redact_query_values` are `[http]`'s: a split
    /// needs the value recorded on the span.
    pub fn validate(&self, request_headers: &[String], redact_query_values: bool) -> Result<()> {
        self.slo.validate("business.slo")?;
        self.history.validate()?;
        if self.apdex_t_ms == 0 {
            bail!("business.apdex_t_ms: must be above 0");
        }
        if self.max_transactions == 0 {
            bail!("business.max_transactions: must be above 0");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.transactions.iter().enumerate() {
            let at = format!("business.transactions[{i}]");
            if r.name.trim().is_empty() {
                bail!("{at}.name: must not be empty");
            }
            if !seen.insert(r.name.as_str()) {
                bail!("{at}.name: {:?} is used by an earlier rule", r.name);
            }
            if let Some(route) = &r.route
                && !route.starts_with('/')
            {
                bail!("{at}.route: {route:?} must start with '/'");
            }
            if let Some(s) = &r.split_by {
                match SplitBy::parse(s) {
                    None => bail!("{at}.split_by: {s:?} must be \"header:<name>\" or \"query:<key>\""),
                    Some(SplitBy::Header(h)) if !request_headers.iter().any(|x| x.eq_ignore_ascii_case(&h)) => {
                        bail!("{at}.split_by: header {h:?} is not recorded: add it to [http] request_headers")
                    }
                    Some(SplitBy::Query(_)) if redact_query_values => {
                        bail!("{at}.split_by: query values are redacted: set [http] redact_query_values = false")
                    }
                    Some(_) => {}
                }
            }
            if r.apdex_t_ms == Some(0) {
                bail!("{at}.apdex_t_ms: must be above 0");
            }
            let t = &r.targets;
            for (k, v) in [("p50_ms", t.p50_ms), ("p90_ms", t.p90_ms), ("p95_ms", t.p95_ms), ("p99_ms", t.p99_ms)] {
                if let Some(v) = v
                    && (v.is_nan() || v <= 0.0)
                {
                    bail!("{at}.targets.{k}: {v} must be above 0");
                }
            }
            for (k, v) in [("error_rate", t.error_rate), ("apdex", t.apdex)] {
                if let Some(v) = v
                    && !(0.0..=1.0).contains(&v)
                {
                    bail!("{at}.targets.{k}: {v} must be a fraction between 0 and 1");
                }
            }
            if let Some(s) = &r.slo {
                s.validate(&format!("{at}.slo"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> BusinessConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_are_the_issues() {
        let c = BusinessConfig::default();
        assert_eq!(c.apdex_t_ms, 500);
        assert_eq!((c.slo.availability, c.slo.latency, c.slo.latency_ms), (99.0, 99.0, 500));
        assert_eq!(c.slo.window(), Duration::from_secs(28 * 86_400));
        c.validate(&[], true).unwrap();
    }

    #[test]
    fn a_rule_parses_with_targets_and_slo() {
        let c = cfg(r#"
            [[transactions]]
            name = "checkout"
            service = "shop"
            method = "POST"
            route = "/checkout"
            split_by = "header:X-Tenant"
            apdex_t_ms = 300
            targets = { p95_ms = 300, error_rate = 0.01 }
            slo = { availability = 99.9, latency = 95, latency_ms = 300, window = "7d" }
        "#);
        let r = &c.transactions[0];
        assert_eq!(r.targets.p95_ms, Some(300.0));
        assert_eq!(r.slo.as_ref().unwrap().window(), Duration::from_secs(7 * 86_400));
        c.validate(&["x-tenant".into()], true).unwrap();
        let e = c.validate(&[], true).unwrap_err().to_string();
        assert!(e.starts_with("business.transactions[0].split_by") && e.contains("request_headers"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = [
            ("[[transactions]]\nname = \"\"", "business.transactions[0].name"),
            ("[[transactions]]\nname = \"a\"\n[[transactions]]\nname = \"a\"", "business.transactions[1].name"),
            ("[[transactions]]\nname = \"a\"\nroute = \"x\"", "business.transactions[0].route"),
            ("[[transactions]]\nname = \"a\"\nsplit_by = \"cookie:x\"", "business.transactions[0].split_by"),
            ("[[transactions]]\nname = \"a\"\nsplit_by = \"query:t\"", "business.transactions[0].split_by"),
            (
                "[[transactions]]\nname = \"a\"\ntargets = { error_rate = 5 }",
                "business.transactions[0].targets.error_rate",
            ),
            (
                "[[transactions]]\nname = \"a\"\nslo = { availability = 100 }",
                "business.transactions[0].slo.availability",
            ),
            ("[[transactions]]\nname = \"a\"\nslo = { window = \"soon\" }", "business.transactions[0].slo.window"),
            ("[slo]\nlatency_ms = 0", "business.slo.latency_ms"),
        ];
        for (text, key) in bad {
            let e = cfg(text).validate(&[], true).unwrap_err().to_string();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }
}
