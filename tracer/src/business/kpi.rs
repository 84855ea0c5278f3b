//! KPIs of one series (a transaction, or one version of it) at 1-minute
//! resolution: counts, errors, Apdex per minute in a ring of 24 h (or 1 h
//! for a version), latency sketches per minute for the last hour and per
//! quarter hour for the day. In: requests at a unix minute (the caller's
//! clock, so tests drive it). Out: [`Summary`] over a window, and the
//! window's 1-minute points.
//!
//! Latency percentiles come from DDSketch (`sketches-ddsketch`, the
//! Datadog algorithm): mergeable, with a relative error of at most
//! [`RELATIVE_ERROR`] on every quantile (the value returned is within 1 %
//! of the sample at rank ⌊q·(n−1)⌋). A sketch holds up to 2048 bins and
//! grows 128 at a time (1 KiB each step), so a minute with traffic costs
//! ~1 KiB and an idle one nothing; a transaction's ring is at most
//! 60 + 96 sketches and 1440 × 40 bytes of counts.

use std::time::Duration;

use serde::Serialize;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use super::{apdex::Apdex, record::KpiRecord};

/// Relative error of every latency quantile.
pub const RELATIVE_ERROR: f64 = 0.01;
/// Minutes of counts kept for a transaction (24 h) and for one version (1 h).
pub const DAY: u64 = 1440;
pub const HOUR: u64 = 60;
/// Quarter-hour sketches serve windows longer than the minute sketches.
const QUARTER: u64 = 15;

pub fn sketch() -> DDSketch {
    // Values in ms; under 1 µs counts as zero.
    DDSketch::new(SketchConfig::new(RELATIVE_ERROR, 2048, 1e-3))
}

/// The value (ms) a sketch bin stands for: what `DDSketch::quantile`
/// answers for a sample in that bin (`crate::versions` reads the bins).
pub fn bin_value(key: i32) -> f64 {
    SketchConfig::new(RELATIVE_ERROR, 2048, 1e-3).value(key)
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    minute: u64,
    count: u64,
    errors: u64,
    apdex: Apdex,
}

/// A sketch of one period (minute or quarter), stale when `at` differs.
#[derive(Clone, Default)]
struct Timed {
    at: u64,
    sketch: Option<Box<DDSketch>>,
}

impl Timed {
    fn at(ring: &mut [Timed], at: u64) -> &mut DDSketch {
        let len = ring.len() as u64;
        let slot = &mut ring[(at % len) as usize];
        if slot.at != at || slot.sketch.is_none() {
            *slot = Timed { at, sketch: Some(Box::new(sketch())) };
        }
        slot.sketch.as_mut().expect("just set")
    }
}

pub struct Kpis {
    minutes: Vec<Counts>,
    minute_sketches: Vec<Timed>,
    /// Empty for a version's series (1 h only).
    quarter_sketches: Vec<Timed>,
    /// Unix minute of the first request: a window longer than the series'
    /// life divides its count by the life, not by the window.
    pub first_minute: Option<u64>,
}

/// KPIs over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// Requests per second over the part of the window the series lived.
    pub rate_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub apdex: Option<f64>,
    pub satisfied: u64,
    pub tolerating: u64,
    pub frustrated: u64,
}

/// Mergeable counts and latencies of a window, from the rings or the
/// history's records; [`Accum::summary`] turns it into KPIs.
#[derive(Clone, Default)]
pub struct Accum {
    pub count: u64,
    pub errors: u64,
    pub apdex: Apdex,
    pub sketch: Option<DDSketch>,
}

impl Accum {
    pub fn add(&mut self, r: &KpiRecord) {
        self.count += r.count;
        self.errors += r.errors;
        self.apdex.merge(&r.apdex());
        if let Some(s) = r.sketch() {
            self.merge_sketch(&s);
        }
    }

    pub fn merge(&mut self, o: &Accum) {
        self.count += o.count;
        self.errors += o.errors;
        self.apdex.merge(&o.apdex);
        if let Some(s) = &o.sketch {
            self.merge_sketch(s);
        }
    }

    fn merge_sketch(&mut self, s: &DDSketch) {
        match &mut self.sketch {
            None => self.sketch = Some(s.clone()),
            // A sketch of another config (a damaged record) is left out.
            Some(o) => {
                let _ = o.merge(s);
            }
        }
    }

    /// KPIs; the rate divides by `lived` minutes (the part of the window
    /// the series existed).
    pub fn summary(&self, lived: u64) -> Summary {
        let pct = |p: f64| self.sketch.as_ref().and_then(|s| s.quantile(p).ok().flatten());
        let (count, errors) = (self.count, self.errors);
        Summary {
            count,
            errors,
            error_rate: (count > 0).then(|| errors as f64 / count as f64),
            rate_per_s: count as f64 / (lived.max(1) * 60) as f64,
            p50_ms: pct(0.5),
            p90_ms: pct(0.9),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            apdex: self.apdex.score(),
            satisfied: self.apdex.satisfied,
            tolerating: self.apdex.tolerating,
            frustrated: self.apdex.frustrated,
        }
    }
}

/// One minute of a series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Unix time of the minute's start, in seconds.
    pub t: u64,
    pub count: u64,
    pub errors: u64,
    pub apdex: Option<f64>,
    /// Null beyond the last hour (minute sketches are kept 1 h).
    pub p95_ms: Option<f64>,
}

impl Kpis {
    /// `day`: keep 24 h of counts and quarter sketches; else 1 h.
    pub fn new(day: bool) -> Kpis {
        Kpis {
            minutes: vec![Counts::default(); if day { DAY } else { HOUR } as usize],
            minute_sketches: vec![Timed::default(); HOUR as usize],
            quarter_sketches: if day { vec![Timed::default(); (DAY / QUARTER) as usize] } else { vec![] },
            first_minute: None,
        }
    }

    pub fn span_minutes(&self) -> u64 {
        self.minutes.len() as u64
    }

    pub fn record(&mut self, minute: u64, latency: Duration, error: bool, t: Duration) {
        self.first_minute.get_or_insert(minute);
        let len = self.minutes.len() as u64;
        let c = &mut self.minutes[(minute % len) as usize];
        if c.minute != minute {
            *c = Counts { minute, ..Counts::default() };
        }
        c.count += 1;
        c.errors += u64::from(error);
        c.apdex.record(latency, error, t);
        let ms = latency.as_secs_f64() * 1e3;
        Timed::at(&mut self.minute_sketches, minute).add(ms);
        if !self.quarter_sketches.is_empty() {
            Timed::at(&mut self.quarter_sketches, minute / QUARTER).add(ms);
        }
    }

    fn counts(&self, now: u64, minutes: u64) -> impl Iterator<Item = &Counts> {
        let first = now.saturating_sub(minutes.saturating_sub(1));
        self.minutes.iter().filter(move |c| c.count > 0 && c.minute >= first && c.minute <= now)
    }

    /// The window's latencies merged: minute sketches for up to an hour,
    /// quarter sketches beyond (the window then starts at a quarter).
    pub fn merged(&self, now: u64, minutes: u64) -> Option<DDSketch> {
        let (ring, now, n) = if minutes <= HOUR || self.quarter_sketches.is_empty() {
            (&self.minute_sketches, now, minutes.min(HOUR))
        } else {
            (&self.quarter_sketches, now / QUARTER, minutes.div_ceil(QUARTER))
        };
        let first = now.saturating_sub(n.saturating_sub(1));
        let mut out: Option<DDSketch> = None;
        for t in ring.iter().filter(|t| t.at >= first && t.at <= now) {
            if let Some(s) = &t.sketch {
                match &mut out {
                    None => out = Some((**s).clone()),
                    // Same config on every sketch: merge cannot fail.
                    Some(o) => o.merge(s).expect("sketches share one config"),
                }
            }
        }
        out
    }

    /// KPIs over the `minutes` ending with minute `now` (inclusive).
    pub fn summary(&self, now: u64, minutes: u64) -> Summary {
        let minutes = minutes.min(self.span_minutes()).max(1);
        let lived = self.first_minute.map_or(1, |f| now.saturating_sub(f) + 1).min(minutes);
        self.accum(now, minutes).summary(lived)
    }

    /// Counts and merged sketch over the `minutes` ending with `now`.
    pub fn accum(&self, now: u64, minutes: u64) -> Accum {
        let minutes = minutes.min(self.span_minutes()).max(1);
        let mut a = Accum::default();
        for c in self.counts(now, minutes) {
            a.count += c.count;
            a.errors += c.errors;
            a.apdex.merge(&c.apdex);
        }
        a.sketch = self.merged(now, minutes);
        a
    }

    /// The record of `minute` (None without requests in it, or when it
    /// left the ring); its sketch when the minute is within the hour.
    pub fn minute_record(&self, minute: u64) -> Option<KpiRecord> {
        let c = self.minutes[(minute % self.span_minutes()) as usize];
        if c.minute != minute || c.count == 0 {
            return None;
        }
        let slot = &self.minute_sketches[(minute % HOUR) as usize];
        let sketch = (slot.at == minute).then_some(slot.sketch.as_deref()).flatten();
        Some(KpiRecord::new(c.count, c.errors, c.apdex, sketch))
    }

    /// The record of unix `hour` from the ring: its minutes' counts and its
    /// four quarter sketches (a day series only; None for a version's).
    pub fn hour_record(&self, hour: u64) -> Option<KpiRecord> {
        if self.quarter_sketches.is_empty() {
            return None;
        }
        let mut a = Accum::default();
        for c in self.counts(hour * 60 + 59, 60) {
            a.count += c.count;
            a.errors += c.errors;
            a.apdex.merge(&c.apdex);
        }
        let len = self.quarter_sketches.len() as u64;
        for q in hour * 4..hour * 4 + 4 {
            let t = &self.quarter_sketches[(q % len) as usize];
            if t.at == q
                && let Some(s) = &t.sketch
            {
                a.merge_sketch(s);
            }
        }
        (a.count > 0).then(|| KpiRecord::new(a.count, a.errors, a.apdex, a.sketch.as_ref()))
    }

    /// Puts back `minute` from the history (restart): its counts when the
    /// ring still covers it at `now`, its sketch in the hour's and the
    /// quarter's ring. Call on an empty series, oldest minute first.
    pub fn restore_minute(&mut self, minute: u64, r: &KpiRecord, now: u64) {
        if r.count == 0 || minute > now || now - minute >= self.span_minutes() {
            return;
        }
        self.first_minute = Some(self.first_minute.map_or(minute, |f| f.min(minute)));
        let len = self.span_minutes();
        self.minutes[(minute % len) as usize] = Counts { minute, count: r.count, errors: r.errors, apdex: r.apdex() };
        let Some(s) = r.sketch() else { return };
        if now - minute < HOUR {
            let slot = Timed::at(&mut self.minute_sketches, minute);
            let _ = slot.merge(&s);
        }
        if !self.quarter_sketches.is_empty() {
            // Same config on every sketch: merge cannot fail.
            let _ = Timed::at(&mut self.quarter_sketches, minute / QUARTER).merge(&s);
        }
    }

    /// One point per minute of the window with requests, oldest first.
    pub fn points(&self, now: u64, minutes: u64) -> Vec<Point> {
        let mut v: Vec<&Counts> = self.counts(now, minutes.min(self.span_minutes())).collect();
        v.sort_by_key(|c| c.minute);
        v.into_iter()
            .map(|c| {
                let slot = &self.minute_sketches[(c.minute % HOUR) as usize];
                let p95 = (slot.at == c.minute)
                    .then_some(slot.sketch.as_ref())
                    .flatten()
                    .and_then(|s| s.quantile(0.95).ok().flatten());
                Point { t: c.minute * 60, count: c.count, errors: c.errors, apdex: c.apdex.score(), p95_ms: p95 }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M0: u64 = 29_000_000;
    const T: Duration = Duration::from_millis(100);
    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn counts_apdex_and_percentiles_within_the_stated_error() {
        let mut k = Kpis::new(true);
        let mut all = vec![];
        for i in 0..1000u64 {
            let l = 1 + (i * 7919) % 997; // 1..997 ms, spread
            let err = i % 20 == 0;
            k.record(M0 + i % 10, ms(l), err, T);
            all.push(l as f64);
        }
        let s = k.summary(M0 + 9, 60);
        assert_eq!((s.count, s.errors), (1000, 50));
        assert_eq!(s.error_rate, Some(0.05));
        assert_eq!(s.satisfied + s.tolerating + s.frustrated, 1000);
        all.sort_by(f64::total_cmp);
        for (q, got) in [(0.5, s.p50_ms), (0.9, s.p90_ms), (0.95, s.p95_ms), (0.99, s.p99_ms)] {
            let exact = all[(q * (all.len() - 1) as f64) as usize];
            let got = got.unwrap();
            assert!((got - exact).abs() <= exact * RELATIVE_ERROR, "p{q}: {got} vs {exact}");
        }
        // 10 minutes lived: the rate divides by them, not by the hour.
        assert!((s.rate_per_s - 1000.0 / 600.0).abs() < 1e-9, "{}", s.rate_per_s);
        assert_eq!(k.points(M0 + 9, 60).len(), 10);
    }

    #[test]
    fn windows_slide_and_long_ones_use_quarter_sketches() {
        let mut k = Kpis::new(true);
        k.record(M0, ms(10), false, T);
        k.record(M0 + 120, ms(500), true, T);
        let hour = k.summary(M0 + 120, 60);
        assert_eq!((hour.count, hour.errors), (1, 1));
        assert!((hour.p50_ms.unwrap() - 500.0).abs() <= 5.0);
        let day = k.summary(M0 + 120, DAY);
        assert_eq!(day.count, 2);
        assert!((day.p50_ms.unwrap() - 10.0).abs() <= 0.1, "{day:?}");
        // The oldest minute leaves the 24 h ring.
        assert_eq!(k.summary(M0 + DAY + 5, DAY).count, 1);
        // A version keeps one hour.
        let mut v = Kpis::new(false);
        v.record(M0, ms(10), false, T);
        assert_eq!(v.summary(M0 + 30, DAY).count, 1);
        assert_eq!(v.summary(M0 + 61, DAY).count, 0);
    }
}
