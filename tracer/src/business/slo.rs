//! SLOs: per-minute good/bad counts, error budget remaining, burn rates and
//! the multi-window burn-rate alerts of the SRE workbook (chapter 5).
//!
//! Time comes in as unix minutes from the caller, so tests drive it directly.

use std::time::Duration;

/// Default objective when the user gave none (as Coroot): 99 %.
pub const DEFAULT_OBJECTIVE: f64 = 0.99;
/// Default SLO window: 28 days.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(28 * 24 * 3600);

/// Burn-rate windows reported (1 h, 6 h, 3 d), in minutes.
pub const BURN_WINDOWS: [(&str, u64); 3] = [("1h", 60), ("6h", 360), ("3d", 4320)];

/// One multi-window rule: fires when both the long and the short window burn
/// faster than `factor` (the short one makes the alert clear soon after the
/// errors stop instead of an hour later).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlertRule {
    pub name: &'static str,
    pub factor: f64,
    pub long_min: u64,
    pub short_min: u64,
}

/// Workbook table 5-8: 2 % of a 30-day budget in 1 h; 5 % in 6 h.
pub const ALERT_RULES: [AlertRule; 2] = [
    AlertRule { name: "page", factor: 14.4, long_min: 60, short_min: 5 },
    AlertRule { name: "ticket", factor: 6.0, long_min: 360, short_min: 30 },
];

/// Counts of one slot (a minute or an hour); u32 holds 4 billion events a
/// slot, and keeps 3 days of minutes at 52 KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Unix minute (or hour) this slot holds; a slot with another is stale.
    at: u32,
    good: u32,
    bad: u32,
}

/// A ring of slots indexed by time.
#[derive(Debug)]
struct Ring(Vec<Slot>);

impl Ring {
    fn record(&mut self, at: u64, good: bool) {
        let len = self.0.len() as u64;
        let slot = &mut self.0[(at % len) as usize];
        let at = at as u32;
        if slot.at != at || slot.good + slot.bad == 0 {
            *slot = Slot { at, good: 0, bad: 0 };
        }
        if good {
            slot.good = slot.good.saturating_add(1);
        } else {
            slot.bad = slot.bad.saturating_add(1);
        }
    }

    /// (good, bad) of the slot at `at` exactly.
    fn at(&self, at: u64) -> (u64, u64) {
        let m = self.0[(at % self.0.len() as u64) as usize];
        if m.at == at as u32 { (u64::from(m.good), u64::from(m.bad)) } else { (0, 0) }
    }

    /// Sets the slot of `at` (a restart puts back what the history held).
    fn set(&mut self, at: u64, good: u64, bad: u64) {
        let len = self.0.len() as u64;
        let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        self.0[(at % len) as usize] = Slot { at: at as u32, good: sat(good), bad: sat(bad) };
    }

    /// (good, bad) over the `n` slots ending with `now` (inclusive).
    fn counts(&self, now: u64, n: u64) -> (u64, u64) {
        let n = n.min(self.0.len() as u64).max(1);
        let (first, now) = (now.saturating_sub(n - 1) as u32, now as u32);
        self.0
            .iter()
            .filter(|m| m.at >= first && m.at <= now && (m.good + m.bad) > 0)
            .fold((0, 0), |(g, b), m| (g + u64::from(m.good), b + u64::from(m.bad)))
    }
}

/// One SLO (availability or latency) of one transaction.
#[derive(Debug)]
pub struct Slo {
    pub objective: f64,
    /// Minutes of the longest burn window (3 d): the burn rates.
    minutes: Ring,
    /// Hours of the SLO window: the budget (28 d is 672 slots).
    hours: Ring,
    window_minutes: u64,
    /// Start minute of each firing alert, by rule index.
    firing: [Option<u64>; ALERT_RULES.len()],
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlertState {
    pub rule: &'static str,
    pub firing: bool,
    /// Unix minute the alert started, while it fires.
    pub since_minute: Option<u64>,
}

impl Slo {
    /// Burn rates read a ring of minutes as long as the longest burn window;
    /// the budget reads hours over the SLO window (its first hour is whole
    /// or left out: the budget is exact to the hour). 28 d costs 60 KiB.
    pub fn new(objective: f64, window: Duration) -> Self {
        let window_minutes = (window.as_secs() / 60).max(1);
        Slo {
            objective,
            minutes: Ring(vec![Slot::default(); BURN_WINDOWS[2].1 as usize]),
            hours: Ring(vec![Slot::default(); window_minutes.div_ceil(60) as usize]),
            window_minutes,
            firing: [None; ALERT_RULES.len()],
        }
    }

    pub fn window_minutes(&self) -> u64 {
        self.window_minutes
    }

    pub fn record(&mut self, minute: u64, good: bool) {
        self.minutes.record(minute, good);
        self.hours.record(minute / 60, good);
    }

    /// (good, bad) of one minute, while the burn ring holds it.
    pub fn minute_counts(&self, minute: u64) -> (u64, u64) {
        self.minutes.at(minute)
    }

    /// (good, bad) of one unix hour, while the budget ring holds it.
    pub fn hour_counts(&self, hour: u64) -> (u64, u64) {
        self.hours.at(hour)
    }

    /// Puts back a minute of the history when the burn ring covers it at `now`.
    pub fn restore_minute(&mut self, minute: u64, good: u64, bad: u64, now: u64) {
        if good + bad > 0 && minute <= now && now - minute < self.minutes.0.len() as u64 {
            self.minutes.set(minute, good, bad);
        }
    }

    /// Puts back an hour of the history when the SLO window covers it at `now`.
    pub fn restore_hour(&mut self, hour: u64, good: u64, bad: u64, now: u64) {
        let now = now / 60;
        if good + bad > 0 && hour <= now && now - hour < self.hours.0.len() as u64 {
            self.hours.set(hour, good, bad);
        }
    }

    /// Start minute of each firing alert (by rule), as last evaluated.
    pub fn firing_since(&self) -> [Option<u64>; ALERT_RULES.len()] {
        self.firing
    }

    /// Keeps the start of alerts that fired before a restart: the next
    /// evaluation keeps it when the alert still fires, clears it if not.
    pub fn restore_firing(&mut self, since: [Option<u64>; ALERT_RULES.len()]) {
        self.firing = since;
    }

    /// (good, bad) over the `minutes` ending with `now` (inclusive).
    fn counts(&self, now: u64, minutes: u64) -> (u64, u64) {
        self.minutes.counts(now, minutes)
    }

    /// Error rate over the window divided by the rate the objective allows;
    /// 1.0 spends the budget exactly over the SLO window. None with no event.
    pub fn burn_rate(&self, now: u64, minutes: u64) -> Option<f64> {
        let (good, bad) = self.counts(now, minutes);
        let total = good + bad;
        (total > 0).then(|| (bad as f64 / total as f64) / (1.0 - self.objective))
    }

    /// Share of the error budget left over the SLO window: 1 − bad / allowed,
    /// where allowed = (1 − objective) × events. Negative once overspent.
    pub fn budget_remaining(&self, now: u64) -> Option<f64> {
        let (good, bad) = self.hours.counts(now / 60, self.window_minutes.div_ceil(60));
        let total = good + bad;
        (total > 0).then(|| 1.0 - bad as f64 / ((1.0 - self.objective) * total as f64))
    }

    /// Re-evaluates every rule at `now`, keeping the start of firing alerts.
    pub fn evaluate(&mut self, now: u64) -> Vec<AlertState> {
        let mut states = Vec::with_capacity(ALERT_RULES.len());
        for (i, rule) in ALERT_RULES.iter().enumerate() {
            let over = |m| self.burn_rate(now, m).is_some_and(|b| b > rule.factor);
            let fires = over(rule.long_min) && over(rule.short_min);
            self.firing[i] = match (fires, self.firing[i]) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
                (false, _) => None,
            };
            states.push(AlertState { rule: rule.name, firing: fires, since_minute: self.firing[i] });
        }
        states
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 29_000_000; // some unix minute in 2025

    fn fill(slo: &mut Slo, from: u64, to: u64, good: u64, bad: u64) {
        for m in from..to {
            (0..good).for_each(|_| slo.record(m, true));
            (0..bad).for_each(|_| slo.record(m, false));
        }
    }

    #[test]
    fn burn_rate_is_error_rate_over_allowed_rate() {
        let mut slo = Slo::new(0.99, DEFAULT_WINDOW);
        fill(&mut slo, T0, T0 + 60, 98, 2);
        let b = slo.burn_rate(T0 + 59, 60).unwrap();
        assert!((b - 2.0).abs() < 1e-9, "{b}");
        assert_eq!(slo.burn_rate(T0 + 200, 60), None, "old minutes leave the window");
    }

    #[test]
    fn budget_remaining_halves_at_half_the_allowed_errors() {
        let mut slo = Slo::new(0.99, Duration::from_secs(3 * 86400));
        fill(&mut slo, T0, T0 + 100, 199, 1); // 0.5 % errors, 1 % allowed
        let r = slo.budget_remaining(T0 + 99).unwrap();
        assert!((r - 0.5).abs() < 1e-9, "{r}");
    }

    #[test]
    fn page_fires_on_a_burst_and_clears_when_the_short_window_recovers() {
        let mut slo = Slo::new(0.99, DEFAULT_WINDOW);
        fill(&mut slo, T0, T0 + 60, 100, 0);
        assert!(!slo.evaluate(T0 + 59)[0].firing);
        // 10 minutes at 50 % errors: 1 h burn = (10·50)/(6000) / 0.01 ≈ 8.3 … not yet.
        fill(&mut slo, T0 + 60, T0 + 70, 50, 50);
        assert!(!slo.evaluate(T0 + 69)[0].firing);
        // 10 more: 1 000 bad of 6 000 in the last hour → burn 16.7 > 14.4.
        fill(&mut slo, T0 + 70, T0 + 80, 50, 50);
        let s = slo.evaluate(T0 + 79);
        assert!(s[0].firing, "{s:?}");
        let since = s[0].since_minute;
        assert!(since.is_some());
        // Still burning a minute later: the start time is kept.
        fill(&mut slo, T0 + 80, T0 + 81, 50, 50);
        assert_eq!(slo.evaluate(T0 + 80)[0].since_minute, since);
        // Errors stop: after 5 clean minutes the short window clears the page
        // although the hour still burns above 14.4.
        fill(&mut slo, T0 + 81, T0 + 86, 100, 0);
        let s = slo.evaluate(T0 + 85);
        assert!(slo.burn_rate(T0 + 85, 60).unwrap() > 14.4);
        assert!(!s[0].firing && s[0].since_minute.is_none(), "{s:?}");
    }

    #[test]
    fn budget_reads_the_whole_window_beyond_the_burn_minutes() {
        let mut slo = Slo::new(0.99, Duration::from_secs(7 * 86400));
        fill(&mut slo, T0, T0 + 60, 99, 1); // 1 % errors 5 days ago: the whole budget
        let now = T0 + 5 * 1440;
        fill(&mut slo, now - 60, now, 100, 0);
        assert_eq!(slo.burn_rate(now, 4320), Some(0.0), "gone from the 3 d burn window");
        let r = slo.budget_remaining(now).unwrap();
        assert!((r - 0.5).abs() < 1e-9, "{r}");
        assert_eq!(slo.budget_remaining(now + 3 * 1440), Some(1.0), "out of the 7 d window");
    }

    #[test]
    fn ticket_needs_six_hours_of_slow_burn() {
        let mut slo = Slo::new(0.99, DEFAULT_WINDOW);
        fill(&mut slo, T0, T0 + 360, 93, 7); // burn 7: above 6, below 14.4
        let s = slo.evaluate(T0 + 359);
        assert!(!s[0].firing && s[1].firing, "{s:?}");
    }
}
