//! Baselines (issue 16 item 4): each transaction's KPIs over the same
//! window on each of the last 7 days, read from the history; now / yesterday
//! and now / a week ago; and the usual band of each KPI:
//!
//!   median ± max(3 × 1.4826 × MAD, 5 % of the median)
//!
//! over the days of the last week that had requests in that window (MAD:
//! median absolute deviation; 1.4826 × MAD estimates the standard deviation
//! of normal data, so ±3 holds ~99.7 % of usual values while one odd day
//! cannot move the band; the 5 % floor keeps days that were all alike from
//! flagging every small change). Fewer than 3 such days: no band, and the
//! view says how many there were. Windows up to 1 h read minute records;
//! longer ones whole hours (the `window/60` hours that end before the same
//! minute on that day). Computed at most once a minute per window (cached).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::Serialize;

use super::{
    history::History,
    kpi::{Accum, HOUR, Summary},
};

/// Days back the band looks at (yesterday is 1, a week ago 7).
pub const BAND_DAYS: u64 = 7;
/// Days with requests a band needs.
pub const MIN_DAYS: usize = 3;
const K: f64 = 3.0;
const MAD_SCALE: f64 = 1.4826;
const FLOOR: f64 = 0.05;
const DAY_MINUTES: u64 = 1440;

/// Per transaction, its window's KPIs `d` days ago at index d-1 (None: no
/// request then, or not held).
pub type Days = BTreeMap<String, Vec<Option<Summary>>>;

/// Reads the window of `minutes` ending at `now` on each of the last
/// BAND_DAYS days. Blocking.
pub fn read(h: &History, now: u64, minutes: u64) -> Days {
    let mut out = Days::new();
    for d in 1..=BAND_DAYS {
        let Some(end) = now.checked_sub(d * DAY_MINUTES) else { break };
        let rows = if minutes <= HOUR {
            h.minutes(end.saturating_sub(minutes - 1), end)
        } else {
            let e = (end + 1) / 60; // hours before it end by `end`
            h.hours(e.saturating_sub(minutes / 60), e.saturating_sub(1))
        };
        let mut acc: BTreeMap<String, Accum> = BTreeMap::new();
        for (_, name, r) in &rows {
            acc.entry(name.clone()).or_default().add(&r.kpis);
        }
        for (name, a) in acc {
            let v = out.entry(name).or_insert_with(|| vec![None; BAND_DAYS as usize]);
            v[(d - 1) as usize] = (a.count > 0).then(|| a.summary(minutes));
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Band {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiBaseline {
    pub now: Option<f64>,
    /// now / yesterday's value (null when either is missing or it is 0).
    pub vs_yesterday: Option<f64>,
    pub vs_week_ago: Option<f64>,
    pub band: Option<Band>,
    /// "above", "below" or "inside" the band; null without band or value.
    pub flag: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BaselineView {
    pub yesterday: Option<Summary>,
    pub week_ago: Option<Summary>,
    /// Days of the last 7 with requests in this window: the band's sample.
    pub days: usize,
    /// Why there is no band, when there is none.
    pub band_note: Option<String>,
    pub kpis: BTreeMap<&'static str, KpiBaseline>,
}

fn kpi_values(s: &Summary) -> [(&'static str, Option<f64>); 7] {
    [
        ("rate_per_s", Some(s.rate_per_s)),
        ("error_rate", s.error_rate),
        ("p50_ms", s.p50_ms),
        ("p90_ms", s.p90_ms),
        ("p95_ms", s.p95_ms),
        ("p99_ms", s.p99_ms),
        ("apdex", s.apdex),
    ]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The band of `values` (one per day with data), None under MIN_DAYS.
pub fn band(values: &[f64]) -> Option<Band> {
    if values.len() < MIN_DAYS {
        return None;
    }
    let mut v = values.to_vec();
    let m = median(&mut v);
    let mut dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    let half = (K * MAD_SCALE * median(&mut dev)).max(FLOOR * m.abs());
    Some(Band { median: m, low: m - half, high: m + half })
}

fn ratio(now: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (now, base) {
        (Some(n), Some(b)) if b != 0.0 => Some(n / b),
        _ => None,
    }
}

/// The baseline of KPIs `now` against `days` (index d-1: d days ago).
pub fn view(now: &Summary, days: &[Option<Summary>]) -> BaselineView {
    let day = |d: usize| days.get(d - 1).cloned().flatten();
    let (yesterday, week_ago) = (day(1), day(BAND_DAYS as usize));
    let held: Vec<&Summary> = days.iter().flatten().collect();
    let mut kpis = BTreeMap::new();
    for (i, (name, value)) in kpi_values(now).into_iter().enumerate() {
        let of = |s: &Option<Summary>| s.as_ref().and_then(|s| kpi_values(s)[i].1);
        let values: Vec<f64> = held.iter().filter_map(|s| kpi_values(s)[i].1).collect();
        let band = band(&values);
        let flag = match (&band, value) {
            (Some(b), Some(v)) if v > b.high => Some("above"),
            (Some(b), Some(v)) if v < b.low => Some("below"),
            (Some(_), Some(_)) => Some("inside"),
            _ => None,
        };
        let k = KpiBaseline {
            now: value,
            vs_yesterday: ratio(value, of(&yesterday)),
            vs_week_ago: ratio(value, of(&week_ago)),
            band,
            flag,
        };
        kpis.insert(name, k);
    }
    let band_note = (held.len() < MIN_DAYS).then(|| {
        format!(
            "no band: {} of the last {BAND_DAYS} days had requests in this window, {MIN_DAYS} are needed",
            held.len()
        )
    });
    BaselineView { yesterday, week_ago, days: held.len(), band_note, kpis }
}

/// The last `Days` read per window, valid for the minute it was read at.
#[derive(Default)]
pub struct Cache(Mutex<BTreeMap<u64, (u64, Arc<Days>)>>);

impl Cache {
    /// The days of the window of `minutes` at `now`, read once a minute.
    pub async fn get(&self, h: Arc<History>, now: u64, minutes: u64) -> Arc<Days> {
        if let Some((at, d)) = self.0.lock().expect("baseline cache").get(&minutes)
            && *at == now
        {
            return d.clone();
        }
        let days = tokio::task::spawn_blocking(move || read(&h, now, minutes)).await.map(Arc::new).unwrap_or_default();
        self.0.lock().expect("baseline cache").insert(minutes, (now, days.clone()));
        days
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(count: u64, p95: f64) -> Summary {
        Summary { count, rate_per_s: count as f64 / 3600.0, p95_ms: Some(p95), ..Default::default() }
    }

    #[test]
    fn band_is_median_plus_minus_three_scaled_mads() {
        // Median 100, deviations 0 2 2 4 4 50 -> MAD 3: half width 3 × 1.4826 × 3 = 13.34.
        let b = band(&[100.0, 98.0, 102.0, 96.0, 104.0, 150.0]).unwrap();
        assert!((b.median - 101.0).abs() < 1e-9, "{b:?}");
        let half = 3.0 * 1.4826 * 3.0;
        assert!((b.high - (101.0 + half)).abs() < 1e-9 && (b.low - (101.0 - half)).abs() < 1e-9, "{b:?}");
        // Alike days: the 5 % floor.
        let b = band(&[200.0, 200.0, 200.0]).unwrap();
        assert_eq!((b.low, b.high), (190.0, 210.0));
        assert_eq!(band(&[1.0, 2.0]), None, "two days are not a band");
    }

    #[test]
    fn ratios_and_flags_against_the_days_held() {
        // p95 ~100 ms on 5 of the last 7 days; now 180 ms.
        let mut days = vec![None; 7];
        for (d, p95) in [(0, 100.0), (1, 104.0), (2, 96.0), (4, 101.0), (6, 99.0)] {
            days[d] = Some(summary(3600, p95));
        }
        let v = view(&summary(7200, 180.0), &days);
        assert_eq!(v.days, 5);
        assert_eq!(v.band_note, None);
        let p95 = &v.kpis["p95_ms"];
        assert!((p95.vs_yesterday.unwrap() - 1.8).abs() < 1e-9);
        assert!((p95.vs_week_ago.unwrap() - 180.0 / 99.0).abs() < 1e-9);
        assert_eq!(p95.flag, Some("above"));
        let rate = &v.kpis["rate_per_s"];
        assert!((rate.vs_yesterday.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(rate.flag, Some("above"), "twice the usual traffic");
        // No errors anywhere: no value, no ratio, no flag.
        assert_eq!(v.kpis["error_rate"].flag, None);
        // Usual again: inside.
        assert_eq!(view(&summary(3600, 102.0), &days).kpis["p95_ms"].flag, Some("inside"));
    }

    #[test]
    fn too_few_days_give_no_band_and_say_so() {
        let mut days = vec![None; 7];
        days[0] = Some(summary(10, 50.0));
        days[3] = Some(summary(10, 50.0));
        let v = view(&summary(10, 500.0), &days);
        assert!(v.kpis.values().all(|k| k.band.is_none() && k.flag.is_none()));
        assert_eq!(
            v.band_note.as_deref(),
            Some("no band: 2 of the last 7 days had requests in this window, 3 are needed")
        );
        assert!((v.kpis["p95_ms"].vs_yesterday.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(v.week_ago, None);
        assert_eq!(v.kpis["p95_ms"].vs_week_ago, None);
    }
}
