//! Verdicts of `compare` on synthetic traffic with known differences, and
//! the false-alarm rate of A/A comparisons (the same distribution twice).

use std::time::Duration;

use super::*;
use crate::{
    business::{BusinessConfig, Transaction},
    identity::Service,
    versions::book::Request,
};

const M0: u64 = 29_000_000;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` requests of `version` over 5 minutes: latency `base_ms` times a
/// log-normal-ish spread (long tail), failing with probability `fail`.
fn feed(book: &mut Book, rng: &mut Rng, version: &str, n: u64, base_ms: f64, fail: f64) {
    let svc = Service { name: "shop".into(), version: Some(version.into()), ..Default::default() };
    let t = Transaction { name: "checkout".into(), rule: None };
    for i in 0..n {
        // Sum of uniforms, exponentiated: a skewed distribution with a tail.
        let g = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
        let ms = base_ms * (0.6 * g).exp();
        book.record(&Request {
            service: &svc,
            pid: Some(1),
            transaction: Some(&t),
            latency: Duration::from_secs_f64(ms / 1e3),
            error: rng.unit() < fail,
            end_ms: (M0 + i % 5) * 60_000,
        });
    }
}

const W: Minutes = Minutes { from: M0, to: M0 + 4 };

fn run(b: (u64, f64, f64), c: (u64, f64, f64), seed: u64) -> Comparison {
    let mut book = Book::new(8, 8, BusinessConfig::default());
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    feed(&mut book, &mut rng, "1.0", b.0, b.1, b.2);
    feed(&mut book, &mut rng, "1.1", c.0, c.1, c.2);
    compare(&book, "shop", "1.0", "1.1", None, W, W, &VersionsConfig::default()).unwrap()
}

fn verdict(c: &Comparison, kpi: &str) -> Option<Verdict> {
    c.service_set.kpis.iter().find(|k| k.kpi == kpi).unwrap().verdict
}

#[test]
fn a_slower_failing_canary_is_worse() {
    let c = run((2000, 20.0, 0.005), (500, 30.0, 0.1), 1);
    assert_eq!(c.verdict, Verdict::Worse);
    for kpi in ["error_rate", "p50_ms", "p95_ms", "p99_ms"] {
        assert_eq!(verdict(&c, kpi), Some(Verdict::Worse), "{kpi}: {:#?}", c.service_set);
    }
    assert_eq!(verdict(&c, "throughput_share"), None);
    let share = &c.service_set.kpis[0];
    assert_eq!((share.baseline, share.candidate), (Some(0.8), Some(0.2)));
    let p50 = c.service_set.kpis.iter().find(|k| k.kpi == "p50_ms").unwrap();
    assert!((p50.relative_change.unwrap() - 0.5).abs() < 0.1, "{p50:?}");
    assert!(p50.prob_candidate_slower.unwrap() > 0.6, "{p50:?}");
    assert_eq!(c.transactions[0].set.verdict, Verdict::Worse);
}

#[test]
fn a_faster_candidate_is_better_and_a_small_one_is_insufficient() {
    let c = run((2000, 40.0, 0.0), (2000, 20.0, 0.0), 2);
    assert_eq!(c.verdict, Verdict::Better, "{:#?}", c.service_set);
    assert_eq!(verdict(&c, "error_rate"), Some(Verdict::NoDifference));
    let c = run((2000, 20.0, 0.0), (99, 60.0, 0.5), 3);
    assert_eq!(c.verdict, Verdict::InsufficientData);
    assert!(c.service_set.kpis.iter().filter_map(|k| k.verdict).all(|v| v == Verdict::InsufficientData));
    // A latency change under the threshold is no difference, however sure.
    let c = run((20_000, 20.0, 0.0), (20_000, 21.0, 0.0), 4);
    let p50 = c.service_set.kpis.iter().find(|k| k.kpi == "p50_ms").unwrap();
    assert!(p50.p_value.unwrap() < 0.01, "{p50:?}");
    assert_eq!(p50.verdict, Some(Verdict::NoDifference));
}

/// The false-alarm rate of A/A comparisons: 300 runs of 2000 vs 500
/// requests from one distribution (1 % errors). Measured: 3 of 300 (1 %;
/// the seeds are fixed, so the count is too). The confidence (0.99) bounds
/// each test's alarms to 1 %; the minimum change that matters removes most
/// of the rest.
#[test]
fn a_a_comparisons_raise_no_alarm() {
    let mut alarms = 0;
    for seed in 0..300 {
        let c = run((2000, 20.0, 0.01), (500, 20.0, 0.01), 1000 + seed);
        assert_ne!(c.verdict, Verdict::InsufficientData);
        if c.verdict != Verdict::NoDifference {
            alarms += 1;
        }
    }
    assert!(alarms <= 3, "{alarms} false alarms in 300 A/A comparisons");
}

#[test]
fn unknown_versions_and_transactions_are_named() {
    let mut book = Book::new(8, 8, BusinessConfig::default());
    feed(&mut book, &mut Rng(7), "1.0", 10, 5.0, 0.0);
    let cfg = VersionsConfig::default();
    let e = compare(&book, "shop", "1.0", "9.9", None, W, W, &cfg).unwrap_err();
    assert_eq!(e, Missing::Version("9.9".into()));
    let e = compare(&book, "shop", "1.0", "1.0", Some("nope"), W, W, &cfg).unwrap_err();
    assert_eq!(e, Missing::Transaction("nope".into()));
    let c = compare(&book, "shop", "1.0", "1.0", Some("checkout"), W, W, &cfg).unwrap();
    assert_eq!(c.transactions.len(), 1);
}
