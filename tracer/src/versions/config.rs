//! `[versions]` config: the thresholds of a verdict, the minimum samples,
//! the automatic comparison after a rollout, the store's caps; validated
//! with each error naming its key as written in the file.

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::business::kpi::HOUR;

/// `[versions]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VersionsConfig {
    /// Confidence of a verdict: a KPI is `better` or `worse` only when its
    /// test's p-value is below 1 - confidence (per transaction, divided by
    /// the number of transactions compared: Bonferroni). Default 0.99.
    pub confidence: f64,
    /// Smallest relative change of a latency percentile or of the Apdex that
    /// matters (0.1 = 10 %): a significant change smaller than it is
    /// `no_difference`. Default 0.1.
    pub min_relative_change: f64,
    /// Smallest change of the error rate that matters, absolute (0.01 = one
    /// point of percentage): relative changes of tiny rates mean nothing.
    /// Default 0.01.
    pub min_error_rate_change: f64,
    /// Requests each version needs in the window before any KPI of it is
    /// judged (else `insufficient_data`). At least 20 (the tests' normal
    /// approximations); default 100, below which a p99 is the maximum.
    pub min_requests: u64,
    /// A version first seen this long after another version of the service
    /// was is a rollout; versions seen together (an agent starting on a
    /// canary already running) are not. Default "1m".
    pub rollout_min_age: String,
    /// The automatic comparison of a rollout: the new version's `window`
    /// starting `delay` after the rollout against the old version's
    /// `window` ending at the rollout. Defaults as Coroot: "10m" and "20m".
    /// Whole minutes are compared (the store's resolution); delay + 2 x
    /// window must fit the hour the store keeps.
    pub rollout_delay: String,
    pub rollout_window: String,
    /// Default window of `GET /api/compare` (at most 1h). Default "15m".
    pub compare_window: String,
    /// (service, version) pairs kept; past it, one unseen for an hour makes
    /// room, else the new one is not tracked (counted). ~100 KiB each with
    /// traffic. Default 64.
    pub max_versions: usize,
    /// Transactions kept per (service, version); later ones count for the
    /// service only. Default 32.
    pub max_transactions_per_version: usize,
    /// Rollouts kept (oldest forgotten first). Default 100.
    pub max_rollouts: usize,
    /// Spans queued from the chain stage (chain_to_versions). Default 65536.
    pub queue: usize,
}

impl Default for VersionsConfig {
    fn default() -> Self {
        VersionsConfig {
            confidence: 0.99,
            min_relative_change: 0.1,
            min_error_rate_change: 0.01,
            min_requests: 100,
            rollout_min_age: "1m".into(),
            rollout_delay: "10m".into(),
            rollout_window: "20m".into(),
            compare_window: "15m".into(),
            max_versions: 64,
            max_transactions_per_version: 32,
            max_rollouts: 100,
            queue: 65_536,
        }
    }
}

fn duration(key: &str, v: &str) -> Result<Duration> {
    humantime::parse_duration(v)
        .map_err(|e| anyhow::anyhow!("versions.{key}: {v:?} is not a duration such as \"20m\": {e}"))
}

impl VersionsConfig {
    pub fn rollout_min_age(&self) -> Duration {
        humantime::parse_duration(&self.rollout_min_age).unwrap_or(Duration::from_secs(60))
    }

    pub fn rollout_delay(&self) -> Duration {
        humantime::parse_duration(&self.rollout_delay).unwrap_or(Duration::from_secs(600))
    }

    pub fn rollout_window(&self) -> Duration {
        humantime::parse_duration(&self.rollout_window).unwrap_or(Duration::from_secs(1200))
    }

    pub fn compare_window(&self) -> Duration {
        humantime::parse_duration(&self.compare_window).unwrap_or(Duration::from_secs(900))
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            bail!("versions.confidence: {} must be above 0.5 and below 1", self.confidence);
        }
        if !(self.min_relative_change >= 0.0 && self.min_relative_change.is_finite()) {
            bail!("versions.min_relative_change: {} must be a fraction of 0 or more", self.min_relative_change);
        }
        if !(0.0..=1.0).contains(&self.min_error_rate_change) {
            bail!("versions.min_error_rate_change: {} must be a fraction between 0 and 1", self.min_error_rate_change);
        }
        if self.min_requests < 20 {
            bail!(
                "versions.min_requests: {} is under 20 (the tests' normal approximations need more)",
                self.min_requests
            );
        }
        duration("rollout_min_age", &self.rollout_min_age)?;
        let delay = duration("rollout_delay", &self.rollout_delay)?;
        let window = duration("rollout_window", &self.rollout_window)?;
        if window < Duration::from_secs(10) {
            bail!("versions.rollout_window: {:?} is under 10s", self.rollout_window);
        }
        // Whole minutes either side, plus the rollout's own minute, in the hour kept.
        let minutes = |d: Duration| d.as_secs().div_ceil(60);
        if minutes(delay) + 2 * minutes(window) + 2 > HOUR {
            bail!(
                "versions.rollout_window: delay {:?} + 2 x window {:?} must fit the hour each version's minutes are kept",
                self.rollout_delay,
                self.rollout_window
            );
        }
        let w = duration("compare_window", &self.compare_window)?;
        if w < Duration::from_secs(60) || w > Duration::from_secs(3600) {
            bail!("versions.compare_window: {:?} must be between 1m and 1h", self.compare_window);
        }
        for (k, v) in [
            ("max_versions", self.max_versions),
            ("max_transactions_per_version", self.max_transactions_per_version),
            ("max_rollouts", self.max_rollouts),
        ] {
            if v == 0 {
                bail!("versions.{k}: must be above 0");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        VersionsConfig::default().validate().unwrap();
        let d = VersionsConfig::default();
        assert_eq!((d.rollout_delay(), d.rollout_window()), (Duration::from_secs(600), Duration::from_secs(1200)));
        let bad: [(&str, &str); 7] = [
            ("confidence = 1.0", "versions.confidence"),
            ("min_relative_change = -0.1", "versions.min_relative_change"),
            ("min_error_rate_change = 2", "versions.min_error_rate_change"),
            ("min_requests = 5", "versions.min_requests"),
            ("rollout_delay = \"soon\"", "versions.rollout_delay"),
            ("rollout_window = \"30m\"", "versions.rollout_window"),
            ("compare_window = \"2h\"", "versions.compare_window"),
        ];
        for (text, key) in bad {
            let c: VersionsConfig = toml::from_str(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }
}
