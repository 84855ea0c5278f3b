//! Fixed-bucket latency histograms of the topology edges. In: durations in
//! ns. Out: bucket counts, quantile estimates (p50/p90/p99), and the
//! buckets of the OpenTelemetry Collector servicegraph connector for export.
//!
//! The internal bounds are a superset of the connector's default bounds
//! (2 ms ... 15 s) with three finer ones below 2 ms: calls between processes
//! on one node often take well under a millisecond, and a p50 interpolated
//! inside a 0-2 ms bucket would say nothing. Exported histograms merge the
//! extra buckets away, so they carry exactly the connector's bounds.

/// Upper bounds (inclusive, `le`) of the internal buckets, in µs; one more
/// bucket counts everything above the last bound.
pub const BOUNDS_US: [u64; 19] = [
    250, 500, 1_000, 2_000, 4_000, 6_000, 8_000, 10_000, 50_000, 100_000, 200_000, 400_000, 800_000, 1_000_000,
    1_400_000, 2_000_000, 5_000_000, 10_000_000, 15_000_000,
];
/// Buckets per histogram (the bounds and the overflow bucket).
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// The servicegraph connector's default latency buckets, in seconds
/// (connector/servicegraphconnector: defaultLatencyHistogramBuckets).
pub const EXPORT_BOUNDS_S: [f64; 16] =
    [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0];

/// The internal bucket of a duration.
pub fn bucket_of(ns: u64) -> usize {
    let us = ns.div_ceil(1_000);
    BOUNDS_US.partition_point(|b| *b < us)
}

/// Cumulative histogram: counts per internal bucket, with the sum of the
/// durations for the exported `_sum`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl Histogram {
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Counts per exported (connector) bucket, the last one above 15 s.
    pub fn export_counts(&self) -> [u64; EXPORT_BOUNDS_S.len() + 1] {
        let mut out = [0u64; EXPORT_BOUNDS_S.len() + 1];
        for (i, c) in self.counts.iter().enumerate() {
            out[export_bucket(i)] += c;
        }
        out
    }

    /// (upper bound, count) per exported bucket, the last bound `f64::MAX`
    /// (prometheus-client's +Inf; it accumulates the counts itself).
    pub fn export_buckets(&self) -> Vec<(f64, u64)> {
        let bounds = EXPORT_BOUNDS_S.iter().copied().chain([f64::MAX]);
        bounds.zip(self.export_counts()).collect()
    }
}

/// The exported bucket an internal bucket falls in: the first connector
/// bound at or above its upper bound (every connector bound is an internal
/// bound, so no bucket straddles two).
fn export_bucket(internal: usize) -> usize {
    match BOUNDS_US.get(internal) {
        Some(&us) => EXPORT_BOUNDS_S.partition_point(|b| ((b * 1e6).round() as u64) < us),
        None => EXPORT_BOUNDS_S.len(),
    }
}

/// Windowed histogram slot: u32 counts (a slot covers at most a minute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotHistogram {
    pub counts: [u32; BUCKETS],
}

impl SlotHistogram {
    pub fn record(&mut self, ns: u64) {
        let c = &mut self.counts[bucket_of(ns)];
        *c = c.saturating_add(1);
    }

    pub fn merge(&mut self, other: &SlotHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a = a.saturating_add(b);
        }
    }

    /// Quantile `q` (0..1) in ms, interpolated linearly inside its bucket
    /// (as Prometheus `histogram_quantile` does); values above the last bound
    /// report the last bound. None without samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.counts.iter().map(|c| u64::from(*c)).sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            let c = u64::from(*c);
            if c > 0 && (below + c) as f64 >= rank {
                let Some(&upper) = BOUNDS_US.get(i) else {
                    return Some(BOUNDS_US[BOUNDS_US.len() - 1] as f64 / 1e3);
                };
                let lower = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
                let frac = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some((lower as f64 + (upper - lower) as f64 * frac) / 1e3);
            }
            below += c;
        }
        Some(BOUNDS_US[BOUNDS_US.len() - 1] as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_bounds_are_internal_bounds() {
        for b in EXPORT_BOUNDS_S {
            let us = (b * 1e6).round() as u64;
            assert!(BOUNDS_US.contains(&us), "{b} s is not an internal bound");
        }
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(250_000), 0, "250 µs is in the le=250µs bucket");
        assert_eq!(bucket_of(250_001), 1);
        assert_eq!(bucket_of(2_000_000), 3);
        assert_eq!(bucket_of(15_000_000_000), BUCKETS - 2);
        assert_eq!(bucket_of(15_000_000_001), BUCKETS - 1);
    }

    #[test]
    fn export_merges_the_fine_buckets() {
        let mut h = Histogram::default();
        for ns in [100_000, 400_000, 900_000, 2_000_000, 3_000_000, 20_000_000_000] {
            h.record(ns);
        }
        let e = h.export_counts();
        assert_eq!(e[0], 4, "everything up to 2 ms");
        assert_eq!(e[1], 1, "2-4 ms");
        assert_eq!(e[16], 1, "above 15 s");
        assert_eq!(e.iter().sum::<u64>(), h.count());
        let b = h.export_buckets();
        assert_eq!(b.last().unwrap(), &(f64::MAX, 1));
        assert_eq!(b[0], (0.002, 4));
        assert_eq!(h.sum_ns, 20_006_400_000);
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let mut h = SlotHistogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        // 100 samples in (10 ms, 50 ms]: p50 is halfway through the bucket.
        for _ in 0..100 {
            h.record(20_000_000);
        }
        assert!((h.quantile_ms(0.5).unwrap() - 30.0).abs() < 1e-9);
        assert!((h.quantile_ms(0.99).unwrap() - 49.6).abs() < 1e-9);
        // One slow outlier above 15 s reports the last bound.
        let mut slow = SlotHistogram::default();
        slow.record(60_000_000_000);
        assert_eq!(slow.quantile_ms(0.99), Some(15_000.0));
        // p50 of 90 fast and 10 slow samples stays in the fast bucket; p99 is slow.
        let mut mix = SlotHistogram::default();
        for _ in 0..90 {
            mix.record(300_000);
        }
        for _ in 0..10 {
            mix.record(150_000_000);
        }
        let p50 = mix.quantile_ms(0.5).unwrap();
        assert!(p50 > 0.25 && p50 <= 0.5, "{p50}");
        let p99 = mix.quantile_ms(0.99).unwrap();
        assert!(p99 > 100.0 && p99 <= 200.0, "{p99}");
        let mut merged = SlotHistogram::default();
        merged.merge(&mix);
        merged.merge(&h);
        assert_eq!(merged.counts.iter().map(|c| *c as u64).sum::<u64>(), 200);
    }
}
