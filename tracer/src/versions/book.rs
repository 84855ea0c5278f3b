//! Every (service, service.version) seen serving requests, with the KPIs
//! of its inbound spans (SERVER and CONSUMER, at any depth of a call chain:
//! a canary behind a proxy is not an entry span) in 1-minute rings of one
//! hour (`business::kpi::Kpis`: counts, errors, Apdex, DDSketch per
//! minute), for the service and per business transaction, with the pids
//! and pods that served it. In: spans with their wall-clock end. Out: what
//! the comparisons and the rollout detector read. Bounded by
//! `max_versions` and `max_transactions_per_version`.

use std::{sync::Arc, time::Duration};

use crate::{
    business::{BusinessConfig, Transaction, kpi::Kpis, ledger::UNKNOWN_VERSION},
    identity::Service,
    span::{Span, Status},
};

/// Pids and pods remembered per version (the first ones seen).
const MAX_PROCS: usize = 16;

pub struct Series {
    pub service: String,
    pub version: String,
    /// Unix ms of the first request's end.
    pub first_ms: u64,
    pub last_minute: u64,
    pub pids: Vec<u32>,
    /// `k8s.pod.name` of the processes, when in a cluster.
    pub pods: Vec<String>,
    /// Every inbound request of this version.
    pub all: Kpis,
    /// Per business transaction the requests served.
    pub txns: Vec<(Arc<str>, Kpis)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookCounters {
    /// Requests of a (service, version) not tracked (max_versions hit).
    pub overflow_versions: u64,
    /// Requests counted for their version but not their transaction.
    pub overflow_transactions: u64,
}

pub struct Book {
    max_versions: usize,
    max_transactions: usize,
    business: BusinessConfig,
    series: Vec<Series>,
    /// Indexes of series created since the last `take_new`.
    new: Vec<usize>,
    pub counters: BookCounters,
}

/// One request, as the book reads it.
pub struct Request<'a> {
    pub service: &'a Service,
    pub pid: Option<u32>,
    pub transaction: Option<&'a Transaction>,
    pub latency: Duration,
    pub error: bool,
    /// Unix ms of its end.
    pub end_ms: u64,
}

impl<'a> Request<'a> {
    /// An inbound span as a request; None for any other span.
    pub fn of(span: &'a Span, end_ms: u64) -> Option<Request<'a>> {
        span.kind.is_inbound().then(|| Request {
            service: &span.service,
            pid: span.pid,
            transaction: span.transaction.as_deref(),
            latency: Duration::from_nanos(span.end_ns.saturating_sub(span.start_ns)),
            error: span.status == Status::Error,
            end_ms,
        })
    }
}

impl Book {
    pub fn new(max_versions: usize, max_transactions: usize, business: BusinessConfig) -> Book {
        Book {
            max_versions: max_versions.max(1),
            max_transactions,
            business,
            series: vec![],
            new: vec![],
            counters: BookCounters::default(),
        }
    }

    pub fn series(&self) -> &[Series] {
        &self.series
    }

    pub fn get(&self, service: &str, version: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.service == service && s.version == version)
    }

    /// Versions of `service`, oldest first.
    pub fn versions_of<'s>(&'s self, service: &'s str) -> impl Iterator<Item = &'s Series> {
        self.series.iter().filter(move |s| s.service == service)
    }

    /// Series created since the last call (rollout candidates).
    pub fn take_new(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.new)
    }

    /// Apdex T of a transaction: its rule's, else the default.
    fn apdex_t(&self, t: Option<&Transaction>) -> Duration {
        let rule = t.and_then(|t| t.rule).and_then(|i| self.business.transactions.get(i));
        Duration::from_millis(rule.and_then(|r| r.apdex_t_ms).unwrap_or(self.business.apdex_t_ms))
    }

    fn slot(&mut self, service: &str, version: &str, end_ms: u64) -> Option<usize> {
        if let Some(i) = self.series.iter().position(|s| s.service == service && s.version == version) {
            return Some(i);
        }
        let minute = end_ms / 60_000;
        let fresh = Series {
            service: service.to_string(),
            version: version.to_string(),
            first_ms: end_ms,
            last_minute: minute,
            pids: vec![],
            pods: vec![],
            all: Kpis::new(false),
            txns: vec![],
        };
        let i = if self.series.len() < self.max_versions {
            self.series.push(fresh);
            self.series.len() - 1
        } else {
            // A version idle for the hour its ring holds makes room.
            let (i, stale) = self.series.iter().enumerate().min_by_key(|(_, s)| s.last_minute)?;
            if stale.last_minute + crate::business::kpi::HOUR > minute {
                return None;
            }
            self.series[i] = fresh;
            i
        };
        self.new.push(i);
        Some(i)
    }

    pub fn record(&mut self, r: &Request) {
        let version = r.service.version.as_deref().unwrap_or(UNKNOWN_VERSION);
        let Some(i) = self.slot(&r.service.name, version, r.end_ms) else {
            self.counters.overflow_versions += 1;
            return;
        };
        let t_service = self.apdex_t(None);
        let t_txn = self.apdex_t(r.transaction);
        let max_transactions = self.max_transactions;
        let s = &mut self.series[i];
        let minute = r.end_ms / 60_000;
        s.last_minute = s.last_minute.max(minute);
        if let Some(pid) = r.pid
            && s.pids.len() < MAX_PROCS
            && !s.pids.contains(&pid)
        {
            s.pids.push(pid);
        }
        if let Some((_, pod)) = r.service.attributes.iter().find(|(k, _)| k == "k8s.pod.name")
            && s.pods.len() < MAX_PROCS
            && !s.pods.contains(pod)
        {
            s.pods.push(pod.clone());
        }
        s.all.record(minute, r.latency, r.error, t_service);
        let Some(t) = r.transaction else { return };
        let k = match s.txns.iter().position(|(n, _)| Arc::ptr_eq(n, &t.name) || **n == *t.name) {
            Some(k) => k,
            None if s.txns.len() < max_transactions => {
                s.txns.push((t.name.clone(), Kpis::new(false)));
                s.txns.len() - 1
            }
            None => {
                self.counters.overflow_transactions += 1;
                return;
            }
        };
        s.txns[k].1.record(minute, r.latency, r.error, t_txn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const M0: u64 = 29_000_000;

    fn svc(name: &str, version: &str) -> Service {
        Service { name: name.into(), version: Some(version.into()), ..Default::default() }
    }

    #[test]
    fn versions_transactions_pids_and_caps() {
        let mut b = Book::new(2, 1, BusinessConfig::default());
        let t1 = Transaction { name: "checkout".into(), rule: None };
        let t2 = Transaction { name: "search".into(), rule: None };
        let (a, c) = (svc("shop", "1.0"), svc("shop", "1.1"));
        for i in 0..10u64 {
            let s = if i < 8 { &a } else { &c };
            let t = if i % 2 == 0 { &t1 } else { &t2 };
            let r = Request {
                service: s,
                pid: Some(100 + (i % 3) as u32),
                transaction: Some(t),
                latency: Duration::from_millis(10),
                error: false,
                end_ms: M0 * 60_000 + i,
            };
            b.record(&r);
        }
        assert_eq!(b.take_new(), vec![0, 1]);
        let s = b.get("shop", "1.0").unwrap();
        assert_eq!(s.all.summary(M0, 1).count, 8);
        assert_eq!(s.pids, vec![100, 101, 102]);
        // One transaction per version: search counts for the service only.
        assert_eq!(s.txns.len(), 1);
        assert_eq!(b.counters.overflow_transactions, 5);
        // A third version waits for one idle an hour.
        let d = svc("shop", "2.0");
        let r = |end_ms| Request {
            service: &d,
            pid: None,
            transaction: None,
            latency: Duration::from_millis(1),
            error: false,
            end_ms,
        };
        b.record(&r(M0 * 60_000 + 10));
        assert_eq!(b.counters.overflow_versions, 1);
        b.record(&r((M0 + 61) * 60_000));
        assert_eq!(b.get("shop", "2.0").unwrap().all.summary(M0 + 61, 1).count, 1);
        assert!(b.get("shop", "1.0").is_none());
    }
}
