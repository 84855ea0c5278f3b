//! The tests of `stats` against SciPy: every expected value below was
//! computed once with SciPy 1.17.1 / NumPy 2.4.6 (in a scratch virtualenv,
//! not the project's) by this script, and pasted:
//!
//! ```python
//! import numpy as np, scipy.stats as st
//! # two proportions: the 2x2 chi-square without continuity correction
//! chi2, p, _, _ = st.chi2_contingency([[x1, n1-x1], [x2, n2-x2]], correction=False)
//! z = np.sign(x2/n2 - x1/n1) * np.sqrt(chi2)
//! # Mann-Whitney: each bin's key repeated `count` times (a bin = ties)
//! xa = np.repeat(keys_a, counts_a); xb = np.repeat(keys_b, counts_b)
//! r = st.mannwhitneyu(xa, xb, alternative="two-sided", method="asymptotic", use_continuity=True)
//! # Apdex: per-request scores 1 / 0.5 / 0, Welch's z with the normal tail
//! xa = np.repeat([1, 0.5, 0], a); xb = np.repeat([1, 0.5, 0], b)
//! z = (xb.mean() - xa.mean()) / np.sqrt(xa.var(ddof=1)/len(xa) + xb.var(ddof=1)/len(xb))
//! p = 2 * st.norm.sf(abs(z))
//! # the normal tail
//! st.norm.sf(z)
//! ```

use super::*;

/// erfc's fractional error is 1.2e-7; the rest is exact arithmetic.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 2e-7 * want.abs().max(1e-300) + 1e-12
}

#[test]
fn normal_tail_matches_scipy() {
    for (z, want) in [
        (0.5, 0.3085375387259869),
        (1.96, 0.024997895148220435),
        (3.0, 0.0013498980316300933),
        (5.0, 2.866515718791933e-07),
        (8.0, 6.22096057427174e-16),
    ] {
        let got = normal_sf(z);
        assert!((got - want).abs() <= 1.2e-7 * want, "sf({z}) = {got}, scipy {want}");
        assert!((normal_sf(-z) - (1.0 - want)).abs() < 1e-7);
    }
}

#[test]
fn two_proportions_match_scipy_chi_square() {
    for (x1, n1, x2, n2, z, p) in [
        (12, 1000, 30, 1000, 2.8070911436484303, 0.004999109504464614),
        (0, 500, 5, 120, 4.582871373615047, 4.5863417824674705e-06),
        (3, 200, 2, 210, -0.5049897991414476, 0.6135660007093935),
        (40, 2000, 41, 1900, 0.3456005436375263, 0.7296429373545708),
    ] {
        let r = two_proportion_z(x1, n1, x2, n2).unwrap();
        assert!((r.statistic - z).abs() < 1e-12, "{x1}/{n1} vs {x2}/{n2}: z {} scipy {z}", r.statistic);
        assert!(close(r.p_value, p), "{x1}/{n1} vs {x2}/{n2}: p {} scipy {p}", r.p_value);
    }
    assert_eq!(two_proportion_z(0, 100, 0, 100).unwrap().p_value, 1.0);
    assert_eq!(two_proportion_z(0, 0, 1, 10), None);
}

#[test]
fn mann_whitney_matches_scipy_with_ties() {
    let shifted_a = [(10, 1), (11, 3), (12, 5), (13, 2), (14, 4), (15, 1), (16, 3), (17, 5), (18, 2), (19, 4), (20, 1)];
    let shifted_b = [
        (12, 1),
        (13, 4),
        (14, 3),
        (15, 2),
        (16, 1),
        (17, 4),
        (18, 3),
        (19, 2),
        (20, 1),
        (21, 4),
        (22, 3),
        (23, 2),
        (24, 1),
        (25, 4),
    ];
    type Bins<'a> = &'a [(i32, u64)];
    let cases: [(Bins, Bins, f64, f64); 4] = [
        (&shifted_a, &shifted_b, 269.5, 0.0004417813370894606),
        (&[(1, 50), (2, 30), (3, 20)], &[(1, 40), (2, 35), (3, 25)], 4475.0, 0.16777368428922057),
        (&[(5, 10), (6, 20), (7, 10)], &[(5, 10), (6, 20), (7, 10)], 800.0, 1.0),
        (&[(-3, 4), (0, 10), (7, 3)], &[(-5, 2), (0, 8), (9, 9)], 98.0, 0.03113868595248057),
    ];
    for (a, b, u, p) in cases {
        let (r, slower) = mann_whitney_u(a, b).unwrap();
        assert!((r.statistic - u).abs() < 1e-9, "{a:?} {b:?}: U {} scipy {u}", r.statistic);
        assert!(close(r.p_value, p), "{a:?} {b:?}: p {} scipy {p}", r.p_value);
        let (n1, n2) = (a.iter().map(|x| x.1).sum::<u64>() as f64, b.iter().map(|x| x.1).sum::<u64>() as f64);
        assert!((slower - (1.0 - u / (n1 * n2))).abs() < 1e-12);
    }
    // One bin for everything: no evidence either way.
    assert_eq!(mann_whitney_u(&[(3, 10)], &[(3, 7)]).unwrap().0.p_value, 1.0);
    assert_eq!(mann_whitney_u(&[], &[(3, 7)]), None);
}

#[test]
fn apdex_welch_matches_scipy() {
    let c = |s, t, f| ApdexCounts { satisfied: s, tolerating: t, frustrated: f };
    for ((a, b), z, p) in [
        ((c(900, 60, 40), c(850, 80, 70)), -3.5337656968169275, 0.00040968408330928254),
        ((c(95, 3, 2), c(95, 3, 2)), 0.0, 1.0),
        ((c(50, 10, 0), c(40, 15, 5)), -2.592589243852904, 0.009525646355308264),
        ((c(300, 0, 0), c(280, 10, 10)), -4.368650407503301, 1.2501670324639613e-05),
    ] {
        let r = apdex_welch_z(&a, &b).unwrap();
        assert!((r.statistic - z).abs() < 1e-9, "{a:?} {b:?}: z {} scipy {z}", r.statistic);
        assert!(close(r.p_value, p), "{a:?} {b:?}: p {} scipy {p}", r.p_value);
    }
    // Every request satisfied on both sides: no variance, no difference.
    assert_eq!(apdex_welch_z(&c(10, 0, 0), &c(20, 0, 0)).unwrap().p_value, 1.0);
    assert_eq!(apdex_welch_z(&c(1, 0, 0), &c(20, 0, 0)), None);
}
