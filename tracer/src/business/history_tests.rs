//! The history with injected time: a restart puts back the same KPIs, SLO
//! state and alerts; evictions by age and at the size cap; baselines and
//! bands read from days written "earlier"; an unwritable path is an error.

use std::{path::PathBuf, sync::Arc};

use super::{
    BusinessConfig, Ledger, Transaction,
    api::{Past, past_hours, txn_view},
    baseline,
    history::{History, HistoryConfig, Limits},
    record::{KpiRecord, TxnRecord, encode},
    snapshot::{self, Batch},
};
use crate::{identity::Service, span::Status};

const M0: u64 = 29_000_000;

/// A fresh directory for one test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tracer-history-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cfg(path: PathBuf) -> HistoryConfig {
    HistoryConfig { path, queue: 100_000, ..HistoryConfig::default() }
}

const LIMITS: Limits = Limits { retention_minutes: 8 * 1440, hour_retention_minutes: 28 * 1440, max_bytes: 256 << 20 };

fn record(l: &mut Ledger, t: &Arc<Transaction>, minute: u64, ms: u64, error: bool) {
    let mut s = super::test_span::span("shop", "GET", "/checkout");
    s.service = Arc::new(Service { name: "shop".into(), version: Some("1.0".into()), ..Default::default() });
    s.end_ns = ms * 1_000_000;
    s.status = if error { Status::Error } else { Status::Unset };
    s.transaction = Some(t.clone());
    s.business_entry = true;
    l.record(&s, minute, 0);
}

#[test]
fn a_restart_puts_back_kpis_slo_state_and_alerts() {
    let d = dir("restart");
    let bcfg = BusinessConfig::default();
    let mut l = Ledger::new(bcfg.clone());
    let t = Arc::new(Transaction { name: "checkout".into(), rule: None });
    let h = History::open(&cfg(d.join("h.redb")), LIMITS).unwrap();
    // 30 hours of traffic; the last 20 minutes fail half their requests.
    let now = M0 + 30 * 60 - 1;
    for m in M0..=now {
        for i in 0..10u64 {
            record(&mut l, &t, m, 5 + (i * 37 + m) % 400, m > now - 20 && i % 2 == 0);
        }
        if m % 7 == 0 {
            // A snapshot every few minutes, as the stage takes one every 10 s.
            h.submit(snapshot::take(&mut l, m)).unwrap();
        }
    }
    l.evaluate(now);
    h.close(snapshot::take(&mut l, now));
    drop(h);

    let h = History::open(&cfg(d.join("h.redb")), LIMITS).unwrap();
    let stored = h.counters.stored_bytes.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "30 h of 10 requests a minute (1 version, latencies over 400 ms): {stored} bytes of records, {} a minute",
        stored / (30 * 60)
    );
    let loaded = h.load(now, bcfg.longest_slo_minutes());
    let mut back = Ledger::new(bcfg);
    assert_eq!(snapshot::restore(&mut back, &loaded, now, 0), 1);
    back.evaluate(now);
    let (a, b) = (l.get("checkout").unwrap(), back.get("checkout").unwrap());
    for w in [5, 60, 360, 1440] {
        let (va, vb) = (txn_view(a, now, w, &Past::default()), txn_view(b, now, w, &Past::default()));
        assert_eq!(va.kpis, vb.kpis, "window {w}");
        assert_eq!(serde_json::to_value(&va.slos).unwrap(), serde_json::to_value(&vb.slos).unwrap(), "window {w}");
        assert_eq!(serde_json::to_value(&va.versions).unwrap(), serde_json::to_value(&vb.versions).unwrap());
    }
    assert_eq!(a.kpis.summary(now, 1440).count, 24 * 600);
    let page = &b.slos[0].alerts[0];
    assert!(page.firing && page.since_minute == a.slos[0].alerts[0].since_minute, "{page:?}");
    // The 7d view: the history's hours before this one plus this hour from memory.
    let hours = past_hours(&h, now, 7 * 1440);
    let long = txn_view(b, now, 7 * 1440, &Past { days: None, hours: Some(hours) });
    assert_eq!(long.kpis.count, 30 * 600, "every request of the 30 hours");
    assert_eq!(h.counters.bad_records.load(std::sync::atomic::Ordering::Relaxed), 0);
    let _ = std::fs::remove_dir_all(&d);
}

/// One minute record of `name` holding `count` requests of `ms`.
fn minute(at: u64, name: &str, count: u64, ms: f64) -> (u64, String, Vec<u8>) {
    let mut s = super::kpi::sketch();
    (0..count).for_each(|_| s.add(ms));
    let kpis = KpiRecord::new(count, 0, super::apdex::Apdex { satisfied: count, ..Default::default() }, Some(&s));
    (at, name.to_string(), encode(&TxnRecord { kpis, ..Default::default() }))
}

#[test]
fn evictions_by_age_and_at_the_cap_are_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let d = dir("evict");
    let path = d.join("h.redb");
    let limits = Limits { retention_minutes: 60, hour_retention_minutes: 120, max_bytes: 1 << 20 };
    let h = History::open(&cfg(path.clone()), limits).unwrap();
    // Two hours of minutes for one transaction: the first hour ages out.
    for m in 0..120 {
        let b = Batch { now: M0 + m, minutes: vec![minute(M0 + m, "a", 10, 20.0)], ..Batch::default() };
        h.submit(b).unwrap();
    }
    h.close(Batch { now: M0 + 119, ..Batch::default() });
    assert_eq!(h.counters.evicted_age.load(Relaxed), 60);
    assert_eq!(h.minutes(0, u64::MAX).first().map(|r| r.0), Some(M0 + 60));
    drop(h);

    // Past the 1 MiB cap: the oldest go, the stored bytes stay under it.
    let limits = Limits { retention_minutes: 100_000, ..limits };
    let h = History::open(&cfg(path.clone()), limits).unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("txn-{i:02}-{}", "x".repeat(40))).collect();
    for m in 0..400 {
        let minutes = names.iter().map(|n| minute(M0 + 1000 + m, n, 100, 1.0 + m as f64)).collect();
        h.submit(Batch { now: M0 + 1000 + m, minutes, ..Batch::default() }).unwrap_or_else(|_| panic!("queue"));
    }
    h.close(Batch { now: M0 + 1399, ..Batch::default() });
    let stored = h.counters.stored_bytes.load(Relaxed);
    let evicted = h.counters.evicted_cap.load(Relaxed);
    let kept = h.minutes(0, u64::MAX);
    let file = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "cap 1 MiB: {stored} bytes of records kept ({} records), {evicted} evicted, file {file} bytes",
        kept.len()
    );
    assert!(stored <= 1 << 20 && evicted > 0, "{stored} {evicted}");
    assert_eq!(kept.len() as u64 + evicted, 60 + 50 * 400, "every record kept or counted");
    assert_eq!(kept.last().map(|r| r.0), Some(M0 + 1399), "the newest are kept");
    assert!(file < 8 << 20, "the file stays near the cap: {file}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn baselines_read_the_same_window_on_earlier_days() {
    let d = dir("baseline");
    let h = History::open(&cfg(d.join("h.redb")), LIMITS).unwrap();
    let now = M0 + 10 * 1440;
    // 1..6 days ago p95 ~100 ms, 20 requests a minute; a week ago 200 ms.
    for day in 1..=7u64 {
        let ms = if day == 7 { 200.0 } else { 100.0 + day as f64 };
        let minutes = (0..5).map(|i| minute(now - day * 1440 - i, "checkout", 20, ms)).collect();
        h.submit(Batch { now, minutes, ..Batch::default() }).unwrap();
    }
    // Outside the 5-minute window: not counted.
    h.submit(Batch { now, minutes: vec![minute(now - 1440 - 5, "checkout", 1000, 1.0)], ..Batch::default() }).unwrap();
    h.close(Batch { now, ..Batch::default() });
    let days = baseline::read(&h, now, 5);
    let v = &days["checkout"];
    assert_eq!(v.iter().flatten().count(), 7);
    assert_eq!(v[0].as_ref().unwrap().count, 100);
    let mut today = v[0].clone().unwrap();
    today.p95_ms = Some(150.0);
    let b = baseline::view(&today, v);
    let p95 = &b.kpis["p95_ms"];
    let y = v[0].as_ref().unwrap().p95_ms.unwrap();
    assert!((p95.vs_yesterday.unwrap() - 150.0 / y).abs() < 1e-9);
    assert!(p95.vs_week_ago.unwrap() < 0.8, "{p95:?}");
    assert_eq!(p95.flag, Some("above"), "{p95:?}");
    assert_eq!(b.kpis["rate_per_s"].flag, Some("inside"));
    // Hour windows: the whole hours before the same minute.
    assert!(baseline::read(&h, now, 360).is_empty(), "no hour records were written");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_unwritable_path_is_a_clear_error() {
    let d = dir("unwritable");
    let file = d.join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = History::open(&cfg(file.join("h.redb")), LIMITS).err().unwrap();
    assert!(e.contains(&file.display().to_string()) && e.contains("[business.history] path"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn damaged_records_are_skipped_and_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let d = dir("damaged");
    let h = History::open(&cfg(d.join("h.redb")), LIMITS).unwrap();
    let huge = TxnRecord { kpis: KpiRecord { count: u64::MAX, ..Default::default() }, ..Default::default() };
    let minutes = vec![
        minute(M0, "good", 5, 10.0),
        (M0, "garbage".to_string(), vec![0xff; 9]),
        (M0, "huge".to_string(), encode(&huge)),
    ];
    h.submit(Batch { now: M0, minutes, ..Batch::default() }).unwrap();
    h.close(Batch { now: M0, ..Batch::default() });
    let rows = h.minutes(M0, M0);
    assert_eq!(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["good"]);
    assert_eq!(h.counters.bad_records.load(Relaxed), 2);
    let mut l = Ledger::new(BusinessConfig::default());
    let loaded = h.load(M0, 60);
    assert_eq!(snapshot::restore(&mut l, &loaded, M0, 0), 1);
    let _ = std::fs::remove_dir_all(&d);
}

/// What a restart and a baseline cost with 20 busy transactions held for
/// 8 days (README figures): `cargo test -p tracer --lib history_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn history_cost() {
    use std::time::Instant;
    let d = dir("cost");
    let h = History::open(&cfg(d.join("h.redb")), LIMITS).unwrap();
    let now = M0 + 8 * 1440;
    let t0 = Instant::now();
    let mut s = super::kpi::sketch();
    (0..600).for_each(|i| s.add(1.0 + (i * 7 % 600) as f64)); // ~350 bins: 1 ms .. 600 ms
    let kpis =
        KpiRecord::new(600, 6, super::apdex::Apdex { satisfied: 594, frustrated: 6, ..Default::default() }, Some(&s));
    let rec = encode(&TxnRecord { kpis, ..Default::default() });
    for day in 0..8u64 {
        let minutes = (0..1440u64)
            .flat_map(|m| (0..20).map(move |t| (now - day * 1440 - m, format!("txn-{t}"))))
            .map(|(at, n)| (at, n, rec.clone()))
            .collect();
        h.submit(Batch { now, minutes, ..Batch::default() }).unwrap();
    }
    h.close(Batch { now, ..Batch::default() });
    let stored = h.counters.stored_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let file = std::fs::metadata(d.join("h.redb")).unwrap().len();
    eprintln!(
        "wrote 20 x 8 days of minutes ({} B each) in {:?}: {stored} B of records, file {file} B",
        rec.len(),
        t0.elapsed()
    );
    let t = Instant::now();
    let loaded = h.load(now, 28 * 1440);
    let mut l = Ledger::new(BusinessConfig::default());
    snapshot::restore(&mut l, &loaded, now, 0);
    eprintln!("restart: {} minute records read and restored in {:?}", loaded.minutes.len(), t.elapsed());
    for w in [60, 1440] {
        let t = Instant::now();
        let days = baseline::read(&h, now, w);
        eprintln!(
            "baseline of the {w}-minute window, 7 days x 20 transactions: {:?} ({} txns)",
            t.elapsed(),
            days.len()
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}
