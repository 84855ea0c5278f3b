//! Every transaction's state: its parameters (Apdex T, targets, SLOs from
//! its rule or the defaults), KPIs of the transaction and of each
//! (service, service.version) it was served by, its two SLOs with their
//! alert states, and cumulative duration histograms for export. In: entry
//! spans with their unix minute. Out: what the API, /metrics and OTLP read.
//! Bounded: transactions by the matcher's cap, versions per transaction by
//! `max_versions` (later ones on version `__overflow__`, counted).

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::{sync::Arc, time::Duration};

use super::{
    config::{BusinessConfig, SloConfig, Targets},
    kpi::Kpis,
    matcher::{OVERFLOW, Transaction},
    slo::{ALERT_RULES, AlertState, Slo},
};
use crate::{
    span::{Span, Status},
    topology::Histogram,
};

/// service.version of a span whose service has none (`crate::identity`
/// gives every process one: declared, pod label, image tag or build).
pub const UNKNOWN_VERSION: &str = "unknown";

/// Which SLO of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloKind {
    Availability,
    Latency,
}

impl SloKind {
    pub const ALL: [SloKind; 2] = [SloKind::Availability, SloKind::Latency];

    pub fn label(self) -> &'static str {
        match self {
            SloKind::Availability => "availability",
            SloKind::Latency => "latency",
        }
    }
}

pub struct SloState {
    pub kind: SloKind,
    /// `{transaction} availability` / `{transaction} latency` (slo.name).
    pub name: String,
    pub slo: Slo,
    /// As of the last evaluation.
    pub alerts: Vec<AlertState>,
}

/// One (service, version) serving a transaction.
pub struct VersionState {
    pub service: String,
    pub version: String,
    pub kpis: Kpis,
    /// Cumulative durations since first seen, by error (false, true).
    pub durations: [Histogram; 2],
    /// Monotonic ns of the first request (the series' start time).
    pub created_ns: u64,
}

pub struct TxnState {
    pub t: Arc<Transaction>,
    pub apdex_t: Duration,
    pub targets: Targets,
    pub slo_cfg: SloConfig,
    pub slos: [SloState; 2],
    pub kpis: Kpis,
    pub versions: Vec<VersionState>,
}

impl TxnState {
    fn new(t: Arc<Transaction>, cfg: &BusinessConfig) -> TxnState {
        let rule = t.rule.and_then(|i| cfg.transactions.get(i));
        let slo_cfg = rule.and_then(|r| r.slo.clone()).unwrap_or_else(|| cfg.slo.clone());
        let window = slo_cfg.window();
        let slo = |kind: SloKind, objective: f64| SloState {
            kind,
            name: format!("{} {}", t.name, kind.label()),
            slo: Slo::new(objective / 100.0, window),
            alerts: vec![],
        };
        TxnState {
            apdex_t: Duration::from_millis(rule.and_then(|r| r.apdex_t_ms).unwrap_or(cfg.apdex_t_ms)),
            targets: rule.map(|r| r.targets.clone()).unwrap_or_default(),
            slos: [slo(SloKind::Availability, slo_cfg.availability), slo(SloKind::Latency, slo_cfg.latency)],
            slo_cfg,
            kpis: Kpis::new(true),
            versions: vec![],
            t,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerCounters {
    /// Requests counted on version `__overflow__` (max_versions hit).
    pub overflow_versions: u64,
}

pub struct Ledger {
    cfg: BusinessConfig,
    txns: Vec<TxnState>,
    by_name: HashMap<String, usize>,
    pub counters: LedgerCounters,
    /// (transaction index, unix minute) recorded since the history's last
    /// snapshot (`super::snapshot`).
    dirty: HashSet<(usize, u64)>,
}

impl Ledger {
    pub fn new(cfg: BusinessConfig) -> Ledger {
        Ledger {
            cfg,
            txns: vec![],
            by_name: HashMap::new(),
            counters: LedgerCounters::default(),
            dirty: HashSet::new(),
        }
    }

    pub fn config(&self) -> &BusinessConfig {
        &self.cfg
    }

    pub(super) fn transactions_mut(&mut self) -> &mut [TxnState] {
        &mut self.txns
    }

    /// The (transaction index, minute) pairs recorded since the last call.
    pub(super) fn take_dirty(&mut self) -> Vec<(usize, u64)> {
        let mut v: Vec<_> = self.dirty.drain().collect();
        v.sort_unstable();
        v
    }

    /// Marks again what a full history queue did not take.
    pub(super) fn mark_dirty(&mut self, items: impl IntoIterator<Item = (usize, u64)>) {
        self.dirty.extend(items);
    }

    /// The state of `name` for a restart to fill: created with the rule of
    /// that name (None: a default-named one); None when the rule is gone
    /// from the config or the transaction cap is reached.
    pub(super) fn restore_txn(&mut self, name: &str, rule: Option<&str>) -> Option<&mut TxnState> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(&mut self.txns[i]);
        }
        let rule = match rule {
            None => None,
            Some(r) => Some(self.cfg.transactions.iter().position(|x| x.name == r)?),
        };
        if self.txns.len() >= self.cfg.max_transactions.max(1) {
            return None;
        }
        let t = Arc::new(Transaction { name: name.into(), rule });
        self.txns.push(TxnState::new(t, &self.cfg));
        self.by_name.insert(name.to_string(), self.txns.len() - 1);
        self.txns.last_mut()
    }

    /// Index of (service, version) in `tx`, created if new; past
    /// `max_versions` the `__overflow__` version (counted in `overflow`).
    pub(super) fn version_index(
        tx: &mut TxnState,
        service: &str,
        version: &str,
        max_versions: usize,
        now_ns: u64,
        overflow: &mut u64,
    ) -> usize {
        let find =
            |v: &[VersionState], version: &str| v.iter().position(|x| x.service == service && x.version == version);
        if let Some(vi) = find(&tx.versions, version) {
            return vi;
        }
        let version = if tx.versions.len() >= max_versions.max(1) {
            *overflow += 1;
            OVERFLOW
        } else {
            version
        };
        if let Some(vi) = find(&tx.versions, version) {
            return vi;
        }
        tx.versions.push(VersionState {
            service: service.to_string(),
            version: version.to_string(),
            kpis: Kpis::new(false),
            durations: Default::default(),
            created_ns: now_ns,
        });
        tx.versions.len() - 1
    }

    pub fn transactions(&self) -> &[TxnState] {
        &self.txns
    }

    pub fn get(&self, name: &str) -> Option<&TxnState> {
        self.by_name.get(name).map(|&i| &self.txns[i])
    }

    /// Counts an entry span at unix `minute` (`now_ns`: monotonic, the
    /// start of a new series). Spans without a transaction are ignored.
    pub fn record(&mut self, span: &Span, minute: u64, now_ns: u64) {
        let Some(t) = &span.transaction else { return };
        let i = match self.by_name.get(&*t.name) {
            Some(&i) => i,
            None => {
                self.txns.push(TxnState::new(t.clone(), &self.cfg));
                self.by_name.insert(t.name.to_string(), self.txns.len() - 1);
                self.txns.len() - 1
            }
        };
        let latency = Duration::from_nanos(span.end_ns.saturating_sub(span.start_ns));
        let error = span.status == Status::Error;
        let tx = &mut self.txns[i];
        tx.kpis.record(minute, latency, error, tx.apdex_t);
        for s in &mut tx.slos {
            let good = match s.kind {
                SloKind::Availability => !error,
                SloKind::Latency => latency <= Duration::from_millis(tx.slo_cfg.latency_ms),
            };
            s.slo.record(minute, good);
        }
        let service = span.service.name.as_str();
        let version = span.service.version.as_deref().unwrap_or(UNKNOWN_VERSION);
        let mut overflow = 0;
        let vi = Self::version_index(tx, service, version, self.cfg.max_versions, now_ns, &mut overflow);
        self.counters.overflow_versions += overflow;
        self.dirty.insert((i, minute));
        let v = &mut tx.versions[vi];
        v.kpis.record(minute, latency, error, tx.apdex_t);
        v.durations[usize::from(error)].record(latency.as_nanos() as u64);
    }

    /// Re-evaluates every SLO's alert rules at `minute`; returns the
    /// transitions (slo name, rule, now firing) for the log.
    pub fn evaluate(&mut self, minute: u64) -> Vec<(String, &'static str, bool)> {
        let mut changes = vec![];
        for tx in &mut self.txns {
            for s in &mut tx.slos {
                let new = s.slo.evaluate(minute);
                for (i, a) in new.iter().enumerate() {
                    let was = s.alerts.get(i).is_some_and(|o| o.firing);
                    if a.firing != was {
                        changes.push((s.name.clone(), ALERT_RULES[i].name, a.firing));
                    }
                }
                s.alerts = new;
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Service;

    const M0: u64 = 29_000_000;

    fn entry(t: &Arc<Transaction>, version: Option<&str>, ms: u64, error: bool) -> Span {
        let mut s = crate::business::test_span::span("shop", "GET", "/checkout");
        s.service = Arc::new(Service { name: "shop".into(), version: version.map(Into::into), ..Default::default() });
        s.end_ns = ms * 1_000_000;
        s.status = if error { Status::Error } else { Status::Unset };
        s.transaction = Some(t.clone());
        s.business_entry = true;
        s
    }

    #[test]
    fn versions_slos_and_alerts() {
        let cfg = BusinessConfig { max_versions: 2, ..Default::default() };
        let mut l = Ledger::new(cfg);
        let t = Arc::new(Transaction { name: "checkout".into(), rule: None });
        for m in 0..60 {
            for i in 0..100u64 {
                let v = ["1.0", "1.1", "2.0"][(i % 3) as usize];
                // Minutes 50.. fail half their requests; every tenth is slow.
                l.record(&entry(&t, Some(v), if i % 10 == 0 { 900 } else { 20 }, m >= 50 && i % 2 == 0), M0 + m, 0);
            }
        }
        let tx = l.get("checkout").unwrap();
        assert_eq!(tx.kpis.summary(M0 + 59, 60).count, 6000);
        let versions: Vec<&str> = tx.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(versions, ["1.0", "1.1", OVERFLOW]);
        assert_eq!(l.counters.overflow_versions, 1980, "every request of version 2.0");
        assert_eq!(tx.versions[0].durations[1].count() + tx.versions[0].durations[0].count(), 2040);
        // 500 errors of 6000 in the hour: burn (1/12)/0.01 = 8.3 < 14.4 (no
        // page although the last 5 minutes burn 50), above 6 over 6 h and
        // 30 min: a ticket. 10 % slow: the latency SLO burns 10, a ticket.
        let changes = l.evaluate(M0 + 59);
        let ticket = |n: &str| (n.to_string(), "ticket", true);
        assert_eq!(changes, vec![ticket("checkout availability"), ticket("checkout latency")]);
        let tx = l.get("checkout").unwrap();
        let latency = &tx.slos[1].slo;
        assert!((latency.burn_rate(M0 + 59, 60).unwrap() - 10.0).abs() < 1e-9, "10 % slow over a 1 % allowance");
        for m in 60..70 {
            for _ in 0..100 {
                l.record(&entry(&t, Some("1.0"), 20, true), M0 + m, 0);
            }
        }
        let changes = l.evaluate(M0 + 69);
        assert_eq!(changes, vec![("checkout availability".to_string(), "page", true)]);
        assert!(l.get("checkout").unwrap().slos[0].alerts[0].since_minute == Some(M0 + 69));
    }
}
