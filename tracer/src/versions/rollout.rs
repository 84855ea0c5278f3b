//! Rollouts: a version of a service first seen at least `rollout_min_age`
//! after another version of it was (one that served in the last hour) is a
//! rollout from the version that served most in the 5 minutes before; its
//! automatic comparison (the new version's `rollout_window` starting
//! `rollout_delay` after the rollout against the old one's `rollout_window`
//! ending at it, whole minutes) runs once the new window is over. In: the
//! book's new series, and a tick. Out: the events with their verdicts.
//! Bounded: `max_rollouts`, oldest forgotten first.

use std::collections::VecDeque;

use serde::Serialize;

use super::{
    book::Book,
    compare::{Comparison, Minutes, Verdict, compare},
    config::VersionsConfig,
};
use crate::business::kpi::HOUR;

#[derive(Clone, Debug, Serialize)]
pub struct Rollout {
    pub id: u64,
    pub service: String,
    pub old_version: String,
    pub new_version: String,
    /// Unix ms of the new version's first request.
    #[serde(skip)]
    pub at_ms: u64,
    pub at: String,
    /// Processes (and pods, in a cluster) of each version, as last seen.
    pub old_pids: Vec<u32>,
    pub new_pids: Vec<u32>,
    pub old_pods: Vec<String>,
    pub new_pods: Vec<String>,
    /// When the automatic comparison runs (the new version's window ends).
    pub compare_at: String,
    #[serde(skip)]
    pub due_ms: u64,
    /// Null until it ran.
    pub verdict: Option<Verdict>,
    pub comparison: Option<Comparison>,
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

#[derive(Default)]
pub struct Rollouts {
    pub list: VecDeque<Rollout>,
    next_id: u64,
    /// Rollouts detected since start.
    pub total: u64,
}

impl Rollouts {
    /// Looks at the series the book created since the last call.
    pub fn detect(&mut self, book: &mut Book, cfg: &VersionsConfig) {
        let min_age = cfg.rollout_min_age().as_millis() as u64;
        for i in book.take_new() {
            let new = &book.series()[i];
            let minute = new.first_ms / 60_000;
            let old = book
                .versions_of(&new.service)
                .filter(|o| {
                    o.version != new.version && o.first_ms + min_age <= new.first_ms && o.last_minute + HOUR > minute
                })
                // Most requests in the 5 minutes before; the newest on a tie.
                .max_by_key(|o| (o.all.summary(minute, 5).count, o.first_ms));
            let Some(old) = old else { continue };
            let due_ms = new.first_ms + (cfg.rollout_delay() + cfg.rollout_window()).as_millis() as u64;
            self.next_id += 1;
            self.total += 1;
            tracing::info!(
                service = %crate::printable::escape(&new.service),
                old = %crate::printable::escape(&old.version),
                new = %crate::printable::escape(&new.version),
                "rollout detected; comparing at {}", rfc3339(due_ms)
            );
            self.list.push_back(Rollout {
                id: self.next_id,
                service: new.service.clone(),
                old_version: old.version.clone(),
                new_version: new.version.clone(),
                at_ms: new.first_ms,
                at: rfc3339(new.first_ms),
                old_pids: old.pids.clone(),
                new_pids: new.pids.clone(),
                old_pods: old.pods.clone(),
                new_pods: new.pods.clone(),
                compare_at: rfc3339(due_ms),
                due_ms,
                verdict: None,
                comparison: None,
            });
            while self.list.len() > cfg.max_rollouts.max(1) {
                self.list.pop_front();
            }
        }
    }

    /// The windows of a rollout's comparison: the old version's ending at
    /// the rollout's minute, the new one's from `delay` after it.
    pub fn windows(at_ms: u64, cfg: &VersionsConfig) -> (Minutes, Minutes) {
        let (delay, window) = (cfg.rollout_delay().as_millis() as u64, cfg.rollout_window().as_millis() as u64);
        let baseline = Minutes { from: at_ms.saturating_sub(window) / 60_000, to: at_ms / 60_000 };
        let start = at_ms + delay;
        let candidate = Minutes { from: start / 60_000, to: (start + window - 1) / 60_000 };
        (baseline, candidate)
    }

    /// Refreshes the pids and runs the comparisons now due; returns the ids
    /// of those that ran.
    pub fn evaluate(&mut self, book: &Book, now_ms: u64, cfg: &VersionsConfig) -> Vec<u64> {
        let mut done = vec![];
        for r in &mut self.list {
            if let Some(s) = book.get(&r.service, &r.old_version) {
                (r.old_pids, r.old_pods) = (s.pids.clone(), s.pods.clone());
            }
            if let Some(s) = book.get(&r.service, &r.new_version) {
                (r.new_pids, r.new_pods) = (s.pids.clone(), s.pods.clone());
            }
            if r.verdict.is_some() || now_ms < r.due_ms {
                continue;
            }
            let (bw, cw) = Self::windows(r.at_ms, cfg);
            let c = compare(book, &r.service, &r.old_version, &r.new_version, None, bw, cw, cfg);
            r.verdict = Some(c.as_ref().map_or(Verdict::InsufficientData, |c| c.verdict));
            let verdict = r.verdict.map_or("", Verdict::label);
            let (service, old, new) = (
                crate::printable::escape(&r.service),
                crate::printable::escape(&r.old_version),
                crate::printable::escape(&r.new_version),
            );
            if r.verdict == Some(Verdict::Worse) {
                tracing::warn!(service = %service, old = %old, new = %new, verdict, "rollout compared");
            } else {
                tracing::info!(service = %service, old = %old, new = %new, verdict, "rollout compared");
            }
            r.comparison = c.ok();
            done.push(r.id);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{business::BusinessConfig, identity::Service, versions::book::Request};

    const M0: u64 = 29_000_000;

    #[test]
    fn a_replacement_is_a_rollout_compared_when_its_window_ends() {
        let cfg = VersionsConfig {
            rollout_min_age: "30s".into(),
            rollout_delay: "1m".into(),
            rollout_window: "2m".into(),
            ..Default::default()
        };
        let mut book = Book::new(8, 8, BusinessConfig::default());
        let mut ro = Rollouts::default();
        let svc = |v: &str| Service { name: "shop".into(), version: Some(v.into()), ..Default::default() };
        let (a, b, canary) = (svc("1.0"), svc("1.1"), svc("1.0-canary"));
        let rec = |book: &mut Book, s: &Service, pid, ms: f64, t_ms: u64| {
            book.record(&Request {
                service: s,
                pid: Some(pid),
                transaction: None,
                latency: Duration::from_secs_f64(ms / 1e3),
                error: false,
                end_ms: t_ms,
            })
        };
        let t0 = M0 * 60_000;
        // 1.0 and a canary start together: no rollout.
        rec(&mut book, &a, 10, 5.0, t0);
        rec(&mut book, &canary, 11, 5.0, t0 + 5_000);
        ro.detect(&mut book, &cfg);
        assert!(ro.list.is_empty());
        // 1.0 serves 3 minutes, then 1.1 replaces it, 3 times slower.
        for i in 0..600 {
            rec(&mut book, &a, 10, 5.0 + (i % 7) as f64, t0 + i * 300);
        }
        let at = t0 + 180_000;
        for i in 0..600 {
            rec(&mut book, &b, 20, 15.0 + (i % 7) as f64 * 3.0, at + i * 300);
            if i == 0 {
                ro.detect(&mut book, &cfg);
            }
        }
        let r = &ro.list[0];
        assert_eq!((r.old_version.as_str(), r.new_version.as_str(), r.at_ms), ("1.0", "1.1", at));
        assert_eq!((r.old_pids.clone(), r.new_pids.clone()), (vec![10], vec![20]));
        let (bw, cw) = Rollouts::windows(at, &cfg);
        assert_eq!((bw, cw), (Minutes { from: M0 + 1, to: M0 + 3 }, Minutes { from: M0 + 4, to: M0 + 5 }));
        assert!(ro.evaluate(&book, at + 179_999, &cfg).is_empty());
        assert_eq!(ro.evaluate(&book, at + 180_000, &cfg), vec![1]);
        assert_eq!(ro.list[0].verdict, Some(Verdict::Worse));
        assert_eq!(ro.total, 1);
    }
}
