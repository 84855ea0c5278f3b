//! The statistical tests of a version comparison: a two-proportion z test
//! (error rates), Mann-Whitney U on binned latencies (the DDSketch bins of
//! both windows: a bin is a group of ties), and Welch's z test on per-request
//! Apdex scores. All two-sided, with normal approximations: the comparison
//! asks for at least `min_requests` per side (100 by default), where they
//! hold. No resampling: each test is one pass over counts, cheap enough to
//! run under the lock of the store.

use std::f64::consts::SQRT_2;

/// A test's statistic and its two-sided p-value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// erfc(x) with a fractional error below 1.2e-7 everywhere (the Chebyshev
/// fit of Numerical Recipes' `erfcc`): plenty for a p-value judged against
/// 0.01 or 0.05.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

fn two_sided(z: f64) -> f64 {
    (2.0 * normal_sf(z.abs())).min(1.0)
}

/// Pooled two-proportion z test of `x1`/`n1` (baseline) against `x2`/`n2`
/// (candidate); z > 0 when the candidate's proportion is higher. The same
/// p-value as a 2x2 chi-square test without continuity correction. None
/// without requests on a side.
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<TestResult> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 as f64 / n1f, x2 as f64 / n2f);
    let p = (x1 + x2) as f64 / (n1f + n2f);
    let var = p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f);
    if var <= 0.0 {
        // Both all-success or all-failure: nothing tells them apart.
        return Some(TestResult { statistic: 0.0, p_value: 1.0 });
    }
    let z = (p2 - p1) / var.sqrt();
    Some(TestResult { statistic: z, p_value: two_sided(z) })
}

/// Mann-Whitney U of two binned samples, each `(bin key, count)` sorted by
/// key (equal keys are equal values: ties). Returns U of the baseline (pairs
/// where the baseline is larger, ties half) and the two-sided p-value of
/// the normal approximation with tie correction and continuity correction,
/// as `scipy.stats.mannwhitneyu(method="asymptotic")`. Also the probability
/// that a candidate request is slower than a baseline one (ties half).
pub fn mann_whitney_u(baseline: &[(i32, u64)], candidate: &[(i32, u64)]) -> Option<(TestResult, f64)> {
    let n1: u64 = baseline.iter().map(|b| b.1).sum();
    let n2: u64 = candidate.iter().map(|b| b.1).sum();
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (mut i, mut j) = (0, 0);
    let (mut below, mut r1, mut ties) = (0.0f64, 0.0f64, 0.0f64);
    while i < baseline.len() || j < candidate.len() {
        let key = match (baseline.get(i), candidate.get(j)) {
            (Some(a), Some(b)) => a.0.min(b.0),
            (Some(a), None) => a.0,
            (None, Some(b)) => b.0,
            (None, None) => unreachable!(),
        };
        let take = |v: &[(i32, u64)], k: &mut usize| {
            if v.get(*k).is_some_and(|x| x.0 == key) {
                *k += 1;
                v[*k - 1].1 as f64
            } else {
                0.0
            }
        };
        let a = take(baseline, &mut i);
        let b = take(candidate, &mut j);
        let t = a + b;
        // Ranks below+1 ..= below+t share their mean.
        r1 += a * (below + (t + 1.0) / 2.0);
        ties += t * t * t - t;
        below += t;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let n = n1f + n2f;
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let p = if var <= 0.0 { 1.0 } else { (2.0 * normal_sf((u1.max(u2) - mu - 0.5) / var.sqrt())).clamp(0.0, 1.0) };
    Some((TestResult { statistic: u1, p_value: p }, u2 / (n1f * n2f)))
}

/// Apdex counts of one side: satisfied (score 1), tolerating (1/2),
/// frustrated (0).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ApdexCounts {
    pub satisfied: u64,
    pub tolerating: u64,
    pub frustrated: u64,
}

impl ApdexCounts {
    fn n(&self) -> f64 {
        (self.satisfied + self.tolerating + self.frustrated) as f64
    }

    /// Mean and sample variance (n-1) of the per-request scores.
    fn moments(&self) -> (f64, f64) {
        let n = self.n();
        let sum = self.satisfied as f64 + self.tolerating as f64 * 0.5;
        let sq = self.satisfied as f64 + self.tolerating as f64 * 0.25;
        let mean = sum / n;
        (mean, ((sq - n * mean * mean) / (n - 1.0)).max(0.0))
    }
}

/// Welch's z test on the per-request Apdex scores (the Apdex is their
/// mean); z > 0 when the candidate's score is higher. None with fewer than
/// two requests on a side.
pub fn apdex_welch_z(baseline: &ApdexCounts, candidate: &ApdexCounts) -> Option<TestResult> {
    if baseline.n() < 2.0 || candidate.n() < 2.0 {
        return None;
    }
    let ((m1, v1), (m2, v2)) = (baseline.moments(), candidate.moments());
    let se = (v1 / baseline.n() + v2 / candidate.n()).sqrt();
    if se == 0.0 {
        let p = if m1 == m2 { 1.0 } else { 0.0 };
        return Some(TestResult {
            statistic: if m1 == m2 { 0.0 } else { (m2 - m1).signum() * f64::INFINITY },
            p_value: p,
        });
    }
    let z = (m2 - m1) / se;
    Some(TestResult { statistic: z, p_value: two_sided(z) })
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
