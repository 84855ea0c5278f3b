//! The comparison of two versions of a service, for the service and per
//! business transaction, each on its own window (the same one for a canary
//! running beside the stable version; before and after for a rollout):
//! each KPI's baseline and candidate values, relative change, test,
//! p-value and verdict, and the verdict of each set and of the whole.
//!
//! Tests: error rate, a pooled two-proportion z test; latency (p50, p95,
//! p99), Mann-Whitney U on the DDSketch bins of the two windows (a bin is a
//! group of ties; 1 % wide, so little is lost), one p-value for the three
//! percentiles: it says whether one version's latencies sit above the
//! other's, the percentile's change says by how much there; Apdex, Welch's
//! z on per-request scores. A KPI is `worse` or `better` when p < 1 -
//! confidence (divided by the number of transactions compared, for a
//! transaction: Bonferroni) and the change matters (`min_relative_change`,
//! `min_error_rate_change`); `insufficient_data` when either side has fewer
//! than `min_requests`; else `no_difference`. Throughput share is shown,
//! not judged.

use serde::Serialize;

use super::{
    bins::bins,
    book::{Book, Series},
    config::VersionsConfig,
    stats::{ApdexCounts, apdex_welch_z, mann_whitney_u, two_proportion_z},
};
use crate::business::kpi::{Kpis, Summary};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    NoDifference,
    InsufficientData,
    Worse,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::NoDifference => "no_difference",
            Verdict::InsufficientData => "insufficient_data",
            Verdict::Worse => "worse",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        [Verdict::Better, Verdict::NoDifference, Verdict::InsufficientData, Verdict::Worse]
            .into_iter()
            .find(|v| v.label() == s)
    }

    /// Worse beats insufficient data, which beats better, which beats no
    /// difference: a gate must not pass on too little evidence.
    fn combine(verdicts: impl Iterator<Item = Verdict>) -> Verdict {
        let mut out = Verdict::NoDifference;
        for v in verdicts {
            out = match (out, v) {
                (Verdict::Worse, _) | (_, Verdict::Worse) => Verdict::Worse,
                (Verdict::InsufficientData, _) | (_, Verdict::InsufficientData) => Verdict::InsufficientData,
                (Verdict::Better, _) | (_, Verdict::Better) => Verdict::Better,
                _ => Verdict::NoDifference,
            };
        }
        out
    }
}

/// Whole unix minutes, both inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Minutes {
    pub from: u64,
    pub to: u64,
}

impl Minutes {
    fn len(&self) -> u64 {
        self.to.saturating_sub(self.from) + 1
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Thresholds {
    pub confidence: f64,
    pub min_relative_change: f64,
    pub min_error_rate_change: f64,
    pub min_requests: u64,
}

impl From<&VersionsConfig> for Thresholds {
    fn from(c: &VersionsConfig) -> Self {
        Thresholds {
            confidence: c.confidence,
            min_relative_change: c.min_relative_change,
            min_error_rate_change: c.min_error_rate_change,
            min_requests: c.min_requests,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct KpiComparison {
    pub kpi: &'static str,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    pub relative_change: Option<f64>,
    /// two_proportion_z, mann_whitney_u, welch_z, or none (not judged).
    pub test: &'static str,
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    /// Null for a KPI shown but not judged (throughput share).
    pub verdict: Option<Verdict>,
    /// Latency: the probability that a candidate request is slower than a
    /// baseline one (0.5: the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prob_candidate_slower: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KpiSet {
    pub verdict: Verdict,
    pub baseline_requests: u64,
    pub candidate_requests: u64,
    /// The p-value a KPI must be under (1 - confidence, Bonferroni-divided).
    pub alpha: f64,
    pub kpis: Vec<KpiComparison>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TxnComparison {
    pub name: String,
    #[serde(flatten)]
    pub set: KpiSet,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub service: String,
    pub baseline: String,
    pub candidate: String,
    pub transaction: Option<String>,
    /// RFC 3339, the start of the first minute and the end of the last.
    pub baseline_window: [String; 2],
    pub candidate_window: [String; 2],
    pub verdict: Verdict,
    pub thresholds: Thresholds,
    /// Every inbound request of each version.
    #[serde(rename = "service_kpis")]
    pub service_set: KpiSet,
    pub transactions: Vec<TxnComparison>,
}

fn rfc3339(unix_s: u64) -> String {
    humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_s)).to_string()
}

/// One side: the window's summary and latency bins.
struct Side {
    s: Summary,
    bins: Option<Vec<(i32, u64)>>,
}

fn side(k: &Kpis, w: Minutes) -> Side {
    let s = k.summary(w.to, w.len());
    let bins = match k.merged(w.to, w.len()) {
        Some(sk) => bins(&sk),
        None => Some(vec![]),
    };
    Side { s, bins }
}

fn rel(b: Option<f64>, c: Option<f64>) -> Option<f64> {
    match (b, c) {
        (Some(b), Some(c)) if b != 0.0 => Some((c - b) / b),
        _ => None,
    }
}

fn kpi_set(b: &Side, c: &Side, th: &Thresholds, alpha: f64) -> KpiSet {
    let enough = b.s.count >= th.min_requests && c.s.count >= th.min_requests;
    let judge = |p: Option<f64>, matters: bool, candidate_worse: bool| {
        if !enough {
            return Verdict::InsufficientData;
        }
        match p {
            Some(p) if p < alpha && matters => {
                if candidate_worse {
                    Verdict::Worse
                } else {
                    Verdict::Better
                }
            }
            Some(_) => Verdict::NoDifference,
            None => Verdict::InsufficientData,
        }
    };
    let total = (b.s.count + c.s.count) as f64;
    let share = |n: u64| (total > 0.0).then(|| n as f64 / total);
    let mut kpis = vec![KpiComparison {
        kpi: "throughput_share",
        baseline: share(b.s.count),
        candidate: share(c.s.count),
        relative_change: None,
        test: "none",
        statistic: None,
        p_value: None,
        verdict: None,
        prob_candidate_slower: None,
    }];
    let z = two_proportion_z(b.s.errors, b.s.count, c.s.errors, c.s.count);
    let (be, ce) = (b.s.error_rate, c.s.error_rate);
    let delta = ce.zip(be).map(|(c, b)| c - b);
    kpis.push(KpiComparison {
        kpi: "error_rate",
        baseline: be,
        candidate: ce,
        relative_change: rel(be, ce),
        test: "two_proportion_z",
        statistic: z.map(|z| z.statistic),
        p_value: z.map(|z| z.p_value),
        verdict: Some(judge(
            z.map(|z| z.p_value),
            delta.is_some_and(|d| d.abs() >= th.min_error_rate_change),
            delta.is_some_and(|d| d > 0.0),
        )),
        prob_candidate_slower: None,
    });
    let mwu = match (&b.bins, &c.bins) {
        (Some(x), Some(y)) => mann_whitney_u(x, y),
        _ => None,
    };
    for (kpi, bv, cv) in
        [("p50_ms", b.s.p50_ms, c.s.p50_ms), ("p95_ms", b.s.p95_ms, c.s.p95_ms), ("p99_ms", b.s.p99_ms, c.s.p99_ms)]
    {
        let r = rel(bv, cv);
        kpis.push(KpiComparison {
            kpi,
            baseline: bv,
            candidate: cv,
            relative_change: r,
            test: "mann_whitney_u",
            statistic: mwu.map(|m| m.0.statistic),
            p_value: mwu.map(|m| m.0.p_value),
            verdict: Some(judge(
                mwu.map(|m| m.0.p_value),
                r.is_some_and(|r| r.abs() >= th.min_relative_change),
                r.is_some_and(|r| r > 0.0),
            )),
            prob_candidate_slower: mwu.map(|m| m.1),
        });
    }
    let counts =
        |s: &Summary| ApdexCounts { satisfied: s.satisfied, tolerating: s.tolerating, frustrated: s.frustrated };
    let w = apdex_welch_z(&counts(&b.s), &counts(&c.s));
    let r = rel(b.s.apdex, c.s.apdex);
    kpis.push(KpiComparison {
        kpi: "apdex",
        baseline: b.s.apdex,
        candidate: c.s.apdex,
        relative_change: r,
        test: "welch_z",
        statistic: w.map(|w| w.statistic),
        p_value: w.map(|w| w.p_value),
        verdict: Some(judge(
            w.map(|w| w.p_value),
            r.is_some_and(|r| r.abs() >= th.min_relative_change),
            r.is_some_and(|r| r < 0.0),
        )),
        prob_candidate_slower: None,
    });
    KpiSet {
        verdict: Verdict::combine(kpis.iter().filter_map(|k| k.verdict)),
        baseline_requests: b.s.count,
        candidate_requests: c.s.count,
        alpha,
        kpis,
    }
}

/// What the book lacks to compare.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    Version(String),
    Transaction(String),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Version(v) => write!(f, "no requests of version {v:?} of that service in the last hour"),
            Missing::Transaction(t) => write!(f, "no transaction {t:?} served by these versions"),
        }
    }
}

fn txn<'a>(s: &'a Series, name: &str) -> Option<&'a Kpis> {
    s.txns.iter().find(|(n, _)| &**n == name).map(|(_, k)| k)
}

/// Compares `candidate` against `baseline` of `service`, each on its window;
/// only `transaction` when given (the overall verdict is then its own).
#[allow(clippy::too_many_arguments, reason = "each is one question of the comparison")]
pub fn compare(
    book: &Book,
    service: &str,
    baseline: &str,
    candidate: &str,
    transaction: Option<&str>,
    bw: Minutes,
    cw: Minutes,
    cfg: &VersionsConfig,
) -> Result<Comparison, Missing> {
    let b = book.get(service, baseline).ok_or_else(|| Missing::Version(baseline.to_string()))?;
    let c = book.get(service, candidate).ok_or_else(|| Missing::Version(candidate.to_string()))?;
    let th = Thresholds::from(cfg);
    let alpha = 1.0 - cfg.confidence;
    let service_set = kpi_set(&side(&b.all, bw), &side(&c.all, cw), &th, alpha);
    let mut names: Vec<&str> = b.txns.iter().chain(&c.txns).map(|(n, _)| &**n).collect();
    names.sort_unstable();
    names.dedup();
    if let Some(t) = transaction {
        if !names.contains(&t) {
            return Err(Missing::Transaction(t.to_string()));
        }
        names = vec![t];
    }
    let empty = Kpis::new(false);
    let sides: Vec<(&str, Side, Side)> = names
        .into_iter()
        .map(|n| (n, side(txn(b, n).unwrap_or(&empty), bw), side(txn(c, n).unwrap_or(&empty), cw)))
        .filter(|(_, x, y)| x.s.count + y.s.count > 0 || transaction.is_some())
        .collect();
    // Bonferroni over the transactions that can be judged at all.
    let judged =
        sides.iter().filter(|(_, x, y)| x.s.count >= th.min_requests && y.s.count >= th.min_requests).count().max(1);
    let transactions: Vec<TxnComparison> = sides
        .iter()
        .map(|(n, x, y)| TxnComparison { name: n.to_string(), set: kpi_set(x, y, &th, alpha / judged as f64) })
        .collect();
    let verdict = match transaction {
        Some(_) => transactions[0].set.verdict,
        // A regression of one transaction is one of the service; a
        // transaction too small to judge does not hold the service back.
        None if transactions.iter().any(|t| t.set.verdict == Verdict::Worse) => Verdict::Worse,
        None => service_set.verdict,
    };
    let window = |w: Minutes| [rfc3339(w.from * 60), rfc3339((w.to + 1) * 60)];
    Ok(Comparison {
        service: service.to_string(),
        baseline: baseline.to_string(),
        candidate: candidate.to_string(),
        transaction: transaction.map(str::to_string),
        baseline_window: window(bw),
        candidate_window: window(cw),
        verdict,
        thresholds: th,
        service_set,
        transactions,
    })
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
