//! Apdex(T): satisfied ≤ T, tolerating ≤ 4T, frustrated beyond or on error.

use std::time::Duration;

/// Default threshold when a transaction sets none (as Coroot and New Relic).
pub const DEFAULT_T: Duration = Duration::from_millis(500);

/// Mergeable Apdex counts for one transaction over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Apdex {
    pub satisfied: u64,
    pub tolerating: u64,
    pub frustrated: u64,
}

impl Apdex {
    /// Counts one request; a failed request is frustrated whatever its latency,
    /// since the user did not get what they asked for.
    pub fn record(&mut self, latency: Duration, error: bool, t: Duration) {
        if error || latency > t * 4 {
            self.frustrated += 1;
        } else if latency > t {
            self.tolerating += 1;
        } else {
            self.satisfied += 1;
        }
    }

    pub fn merge(&mut self, other: &Apdex) {
        self.satisfied += other.satisfied;
        self.tolerating += other.tolerating;
        self.frustrated += other.frustrated;
    }

    pub fn total(&self) -> u64 {
        self.satisfied + self.tolerating + self.frustrated
    }

    /// (satisfied + tolerating / 2) / total, or None with no sample.
    pub fn score(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| (self.satisfied as f64 + self.tolerating as f64 / 2.0) / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn boundaries_are_inclusive_of_t_and_4t() {
        let mut a = Apdex::default();
        a.record(MS(500), false, DEFAULT_T);
        a.record(MS(501), false, DEFAULT_T);
        a.record(MS(2000), false, DEFAULT_T);
        a.record(MS(2001), false, DEFAULT_T);
        a.record(MS(1), true, DEFAULT_T);
        assert_eq!(a, Apdex { satisfied: 1, tolerating: 2, frustrated: 2 });
        assert_eq!(a.score(), Some(0.4));
    }

    #[test]
    fn empty_has_no_score_and_merge_adds() {
        let mut a = Apdex::default();
        assert_eq!(a.score(), None);
        let b = Apdex { satisfied: 3, tolerating: 1, frustrated: 0 };
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.total(), 8);
        assert_eq!(a.score(), Some(0.875));
    }
}
