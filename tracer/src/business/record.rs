//! What the history store holds, one record per transaction and period (a
//! unix minute or hour): the KPI counts with the latency sketch's bins
//! (`(key, count)`, what every quantile is read from; a sketch decoded by
//! the crate itself carries another config and would not merge), the two
//! SLOs' good/bad counts and, in minute
//! records, each version's KPIs. Encoded with postcard; a record that does
//! not decode (a damaged file) is skipped and counted by the caller.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::DDSketch;

use super::{
    apdex::Apdex,
    kpi::{bin_value, sketch},
};
use crate::versions::bins::{ZERO_KEY, bins};

/// Requests of one period at most (2^40): sums over a week of minutes of
/// every transaction stay far from u64's end.
const MAX_COUNT: u64 = 1 << 40;
/// A sketch holds up to 2048 bins.
const MAX_BINS: usize = 4096;
/// Bin keys of the agent's sketches stay within ±3000 (1 µs to ~10^12 ms).
const MAX_KEY: i32 = 20_000;

/// KPIs of one series over one period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiRecord {
    pub count: u64,
    pub errors: u64,
    pub satisfied: u64,
    pub tolerating: u64,
    pub frustrated: u64,
    /// Bins of the period's latency sketch (ms), in key order; empty: none.
    pub sketch: Vec<(i32, u64)>,
}

impl KpiRecord {
    pub fn new(count: u64, errors: u64, apdex: Apdex, sketch: Option<&DDSketch>) -> KpiRecord {
        KpiRecord {
            count,
            errors,
            satisfied: apdex.satisfied,
            tolerating: apdex.tolerating,
            frustrated: apdex.frustrated,
            sketch: sketch.and_then(bins).unwrap_or_default(),
        }
    }

    /// Plausible counts and bins: what a damaged file holds is skipped
    /// (counted), never summed into overflowing counters or huge sketches.
    pub fn sane(&self) -> bool {
        let small = |v: u64| v <= MAX_COUNT;
        let apdex = self.satisfied.checked_add(self.tolerating).and_then(|v| v.checked_add(self.frustrated));
        small(self.count)
            && self.errors <= self.count
            && apdex == Some(self.count)
            && self.sketch.len() <= MAX_BINS
            && self.sketch.iter().all(|&(k, c)| small(c) && (k == ZERO_KEY || (-MAX_KEY..=MAX_KEY).contains(&k)))
    }

    pub fn apdex(&self) -> Apdex {
        Apdex { satisfied: self.satisfied, tolerating: self.tolerating, frustrated: self.frustrated }
    }

    /// The sketch (the agent's config), None when there is none. Each bin
    /// is added back at the value the sketch answers for it, so it lands in
    /// the same bin and every quantile but 0 and 1 (min, max) is the same.
    pub fn sketch(&self) -> Option<DDSketch> {
        if self.sketch.is_empty() {
            return None;
        }
        let mut s = sketch();
        for &(key, count) in &self.sketch {
            s.add_with_count(if key == ZERO_KEY { 0.0 } else { bin_value(key) }, count);
        }
        Some(s)
    }
}

/// One (service, version) of a transaction over one minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub service: String,
    pub version: String,
    pub kpis: KpiRecord,
}

/// One transaction over one minute or one hour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// Name of the rule that named it; None: named by default.
    pub rule: Option<String>,
    pub kpis: KpiRecord,
    /// (good, bad) of the availability and the latency SLO.
    pub slo: [(u64, u64); 2],
    /// Minute records only (versions are kept one hour).
    pub versions: Vec<VersionRecord>,
}

impl TxnRecord {
    pub fn sane(&self) -> bool {
        self.kpis.sane()
            && self.slo.iter().all(|&(g, b)| g <= MAX_COUNT && b <= MAX_COUNT)
            && self.versions.len() <= 256
            && self.versions.iter().all(|v| v.kpis.sane())
    }
}

/// Start minute of each firing alert of a transaction's two SLOs, by rule.
pub type AlertsRecord = [[Option<u64>; 2]; 2];

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain structs into a Vec cannot fail.
    postcard::to_allocvec(v).expect("postcard encodes into a Vec")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_none() {
        let mut s = sketch();
        for v in [1.0, 10.0, 100.0, 250.0] {
            s.add(v);
        }
        let a = Apdex { satisfied: 2, tolerating: 1, frustrated: 1 };
        let r = TxnRecord {
            rule: Some("checkout".into()),
            kpis: KpiRecord::new(4, 1, a, Some(&s)),
            slo: [(3, 1), (4, 0)],
            versions: vec![VersionRecord { service: "shop".into(), version: "1".into(), kpis: KpiRecord::default() }],
        };
        let back: TxnRecord = decode(&encode(&r)).unwrap();
        assert_eq!(back, r);
        let restored = back.kpis.sketch().unwrap();
        for q in [0.25, 0.5, 0.9, 0.99] {
            assert_eq!(restored.quantile(q).unwrap(), s.quantile(q).unwrap(), "q {q}");
        }
        let mut merged = sketch();
        merged.merge(&restored).expect("the agent's own config");
        assert_eq!(back.kpis.apdex(), a);
        assert!(decode::<TxnRecord>(&[0xff; 7]).is_none());
        assert!(back.sane());
        let huge = KpiRecord { count: u64::MAX, satisfied: u64::MAX, ..Default::default() };
        assert!(!TxnRecord { kpis: huge, ..Default::default() }.sane());
        let bins = KpiRecord { sketch: vec![(i32::MAX, 1)], count: 1, satisfied: 1, ..Default::default() };
        assert!(!bins.sane());
    }
}
