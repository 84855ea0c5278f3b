//! What the history store holds, one record per transaction and period (a
//! unix minute or hour): the KPI counts with the latency sketch (DDSketch's
//! own binary encoding), the two SLOs' good/bad counts and, in minute
//! records, each version's KPIs. Encoded with postcard; a record that does
//! not decode (a damaged file) is skipped and counted by the caller.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::DDSketch;

use super::apdex::Apdex;

/// KPIs of one series over one period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiRecord {
    pub count: u64,
    pub errors: u64,
    pub satisfied: u64,
    pub tolerating: u64,
    pub frustrated: u64,
    /// `DDSketch::to_java_bytes` of the period's latencies (ms); empty: none.
    pub sketch: Vec<u8>,
}

impl KpiRecord {
    pub fn new(count: u64, errors: u64, apdex: Apdex, sketch: Option<&DDSketch>) -> KpiRecord {
        KpiRecord {
            count,
            errors,
            satisfied: apdex.satisfied,
            tolerating: apdex.tolerating,
            frustrated: apdex.frustrated,
            sketch: sketch.filter(|s| s.count() > 0).map(DDSketch::to_java_bytes).unwrap_or_default(),
        }
    }

    pub fn apdex(&self) -> Apdex {
        Apdex { satisfied: self.satisfied, tolerating: self.tolerating, frustrated: self.frustrated }
    }

    /// The sketch, None when there is none or it does not decode.
    pub fn sketch(&self) -> Option<DDSketch> {
        if self.sketch.is_empty() {
            return None;
        }
        DDSketch::from_java_bytes(&self.sketch).ok()
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
    use crate::business::kpi::sketch;

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
        let q = back.kpis.sketch().unwrap().quantile(0.5).unwrap().unwrap();
        assert!((q - 10.0).abs() <= 0.1, "{q}");
        assert_eq!(back.kpis.apdex(), a);
        assert!(decode::<TxnRecord>(&[0xff; 7]).is_none());
        assert!(KpiRecord { sketch: vec![9, 9, 9], ..Default::default() }.sketch().is_none());
    }
}
