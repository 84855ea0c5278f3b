//! The ledger to and from the history's records. Out: a [`Batch`] of the
//! minutes recorded since the last snapshot (each the minute's whole state,
//! so writing one again is harmless), the hours they fall in, and every
//! transaction's alert start times. In (at start): the records of the last
//! days, put back into the rings so KPIs, budgets, burn rates and alerts
//! go on where the previous run stopped.

use super::{
    kpi::{DAY, HOUR},
    ledger::{Ledger, TxnState},
    record::{AlertsRecord, TxnRecord, VersionRecord, encode},
    slo::{ALERT_RULES, AlertState, BURN_WINDOWS},
};

/// What one snapshot hands the history's writer.
#[derive(Debug, Default)]
pub struct Batch {
    /// The minute the snapshot was taken (age eviction counts from it).
    pub now: u64,
    pub minutes: Vec<(u64, String, Vec<u8>)>,
    pub hours: Vec<(u64, String, Vec<u8>)>,
    pub alerts: Vec<(String, Vec<u8>)>,
    /// The ledger's dirty marks behind `minutes`, to mark again if the
    /// batch cannot be queued.
    pub marks: Vec<(usize, u64)>,
}

/// What a restart reads back, oldest first.
#[derive(Debug, Default)]
pub struct Loaded {
    pub minutes: Vec<(u64, String, TxnRecord)>,
    pub hours: Vec<(u64, String, TxnRecord)>,
    pub alerts: Vec<(String, AlertsRecord)>,
}

fn rule_name(l: &Ledger, tx: &TxnState) -> Option<String> {
    tx.t.rule.and_then(|i| l.config().transactions.get(i)).map(|r| r.name.clone())
}

fn slo_minute(tx: &TxnState, minute: u64) -> [(u64, u64); 2] {
    [tx.slos[0].slo.minute_counts(minute), tx.slos[1].slo.minute_counts(minute)]
}

/// The record of transaction `tx` at `minute`, None when it left the ring.
pub fn minute_record(l: &Ledger, tx: &TxnState, minute: u64) -> Option<TxnRecord> {
    let kpis = tx.kpis.minute_record(minute)?;
    let versions = tx
        .versions
        .iter()
        .filter_map(|v| {
            let kpis = v.kpis.minute_record(minute)?;
            Some(VersionRecord { service: v.service.clone(), version: v.version.clone(), kpis })
        })
        .collect();
    Some(TxnRecord { rule: rule_name(l, tx), kpis, slo: slo_minute(tx, minute), versions })
}

/// The record of `tx` over unix `hour` (counts and quarter sketches).
pub fn hour_record(l: &Ledger, tx: &TxnState, hour: u64) -> Option<TxnRecord> {
    let kpis = tx.kpis.hour_record(hour)?;
    let slo = [tx.slos[0].slo.hour_counts(hour), tx.slos[1].slo.hour_counts(hour)];
    Some(TxnRecord { rule: rule_name(l, tx), kpis, slo, versions: vec![] })
}

/// Everything recorded since the last snapshot, at minute `now`.
pub fn take(l: &mut Ledger, now: u64) -> Batch {
    let marks = l.take_dirty();
    let mut b = Batch { now, ..Batch::default() };
    let mut hours = vec![];
    for &(i, minute) in &marks {
        let tx = &l.transactions()[i];
        if let Some(r) = minute_record(l, tx, minute) {
            b.minutes.push((minute, tx.t.name.to_string(), encode(&r)));
        }
        hours.push((i, minute / 60));
    }
    hours.dedup();
    for (i, hour) in hours {
        let tx = &l.transactions()[i];
        if let Some(r) = hour_record(l, tx, hour) {
            b.hours.push((hour, tx.t.name.to_string(), encode(&r)));
        }
    }
    for tx in l.transactions() {
        let a: AlertsRecord = [tx.slos[0].slo.firing_since(), tx.slos[1].slo.firing_since()];
        b.alerts.push((tx.t.name.to_string(), encode(&a)));
    }
    b.marks = marks;
    b
}

/// Minutes of history a restart reads: the longest ring (24 h of KPIs,
/// 3 d of burn rates).
pub const RESTORE_MINUTES: u64 = if BURN_WINDOWS[2].1 > DAY { BURN_WINDOWS[2].1 } else { DAY };

/// Puts `loaded` (oldest first) into an empty ledger at minute `now`
/// (`now_ns`: monotonic, the start of the versions' export series, which
/// begin again at 0). Returns the transactions restored.
pub fn restore(l: &mut Ledger, loaded: &Loaded, now: u64, now_ns: u64) -> usize {
    let max_versions = l.config().max_versions;
    let mut overflow = 0;
    for (minute, name, r) in &loaded.minutes {
        let Some(tx) = l.restore_txn(name, r.rule.as_deref()) else { continue };
        tx.kpis.restore_minute(*minute, &r.kpis, now);
        for (s, (good, bad)) in tx.slos.iter_mut().zip(r.slo) {
            s.slo.restore_minute(*minute, good, bad, now);
        }
        for v in &r.versions {
            if now.saturating_sub(*minute) >= HOUR {
                continue;
            }
            let vi = Ledger::version_index(tx, &v.service, &v.version, max_versions, now_ns, &mut overflow);
            tx.versions[vi].kpis.restore_minute(*minute, &v.kpis, now);
        }
    }
    for (hour, name, r) in &loaded.hours {
        let Some(tx) = l.restore_txn(name, r.rule.as_deref()) else { continue };
        for (s, (good, bad)) in tx.slos.iter_mut().zip(r.slo) {
            s.slo.restore_hour(*hour, good, bad, now);
        }
    }
    for tx in l.transactions_mut() {
        if let Some((_, a)) = loaded.alerts.iter().find(|(n, _)| *n == *tx.t.name) {
            for (s, since) in tx.slos.iter_mut().zip(a) {
                s.slo.restore_firing(*since);
                // As last evaluated, so the restart logs no transition.
                s.alerts = ALERT_RULES
                    .iter()
                    .zip(since)
                    .map(|(r, at)| AlertState { rule: r.name, firing: at.is_some(), since_minute: *at })
                    .collect();
            }
        }
    }
    l.counters.overflow_versions += overflow;
    // The restored minutes are in the history already.
    l.take_dirty();
    l.transactions().len()
}
