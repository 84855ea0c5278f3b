//! The business view's history on disk (issue 16 item 6): one redb file
//! (an embedded, crash-safe B-tree store) with a record per transaction and
//! minute (kept `retention`, default 8 days: a week ago plus a day's
//! window) and per hour (kept over the longest SLO window, for the error
//! budget), and each transaction's alert start times.
//!
//! ```text
//! business stage --snapshot every 10 s (Batch)--> business_to_history
//!   (bounded, drop newest when full, counted; the minutes stay marked and
//!   go with the next batch) --> writer thread: one write transaction per
//!   batch, then evictions by age and by the size cap
//! ```
//!
//! The cap bounds the bytes of the records (keys and values), counted in
//! the file itself; past it the oldest minute records go first, then the
//! oldest hours, each counted (tracer_business_history_evicted_total).
//! redb reuses freed pages, so the file stays near the cap times its page
//! overhead (2.3x measured with large batches). A write that fails (disk full) turns the history off, logged
//! once, and tracing goes on; redb refuses every write after an I/O error,
//! so the writer closes the file and opens it again with the next batch
//! until that works (logged again). Readers (restart, baselines, long
//! windows) run beside the writer (MVCC).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;

use super::{
    record::{AlertsRecord, TxnRecord, decode},
    snapshot::{Batch, Loaded, RESTORE_MINUTES},
};

/// `[business.history]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep KPIs and SLO state across restarts, and serve baselines and
    /// the 7d window from them. Default true.
    pub enabled: bool,
    /// The redb file (its directory is created). `--history` overrides it.
    /// Default /var/lib/tracer/history.redb.
    pub path: PathBuf,
    /// Minute records kept (humantime); baselines reach back a week, so
    /// less than 8d leaves the week-ago baseline empty. Default "8d".
    pub retention: String,
    /// Bytes of records kept at most; past it the oldest go first, counted.
    /// Default 256 MiB (a transaction stores 0.1 KiB a minute at 10
    /// requests a minute, up to ~2 KiB with full sketches: 1-23 MiB in 8 days).
    pub max_bytes: u64,
    /// Snapshots (one every 10 s) queued for the writer; past it they are
    /// dropped and counted, their minutes written with the next. Default 64.
    pub queue: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            path: PathBuf::from("/var/lib/tracer/history.redb"),
            retention: "8d".into(),
            max_bytes: 256 << 20,
            queue: 64,
        }
    }
}

impl HistoryConfig {
    pub fn retention_minutes(&self) -> u64 {
        humantime::parse_duration(&self.retention).map_or(8 * 1440, |d| (d.as_secs() / 60).max(1))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        match humantime::parse_duration(&self.retention) {
            Ok(d) if d.as_secs() >= 3600 => {}
            _ => anyhow::bail!("business.history.retention: {:?} must be a duration of 1h or more", self.retention),
        }
        if self.max_bytes < 1 << 20 {
            anyhow::bail!("business.history.max_bytes: {} must be at least 1 MiB", self.max_bytes);
        }
        Ok(())
    }
}

type PeriodTable = TableDefinition<'static, (u64, &'static str), &'static [u8]>;
const MINUTES: PeriodTable = TableDefinition::new("minutes");
const HOURS: PeriodTable = TableDefinition::new("hours");
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// `stored_bytes`: keys and values of MINUTES and HOURS.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const STORED: &str = "stored_bytes";

/// What the writer and readers count (on /metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub minutes_written: AtomicU64,
    pub evicted_age: AtomicU64,
    pub evicted_cap: AtomicU64,
    pub stored_bytes: AtomicU64,
    /// Records that did not decode (a damaged file), skipped.
    pub bad_records: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Where each limit comes from, for the writer.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub retention_minutes: u64,
    pub hour_retention_minutes: u64,
    pub max_bytes: u64,
}

/// The open file; None while the writer reopens it after a failure.
#[derive(Default)]
struct DbSlot(Mutex<Option<Arc<Database>>>);

impl DbSlot {
    fn get(&self) -> Option<Arc<Database>> {
        self.0.lock().expect("history lock").clone()
    }
}

pub struct History {
    db: Arc<DbSlot>,
    path: PathBuf,
    tx: Mutex<Option<SyncSender<Batch>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pub counters: Arc<Counters>,
    /// Why writes fail, while they do.
    failing: Arc<Mutex<Option<String>>>,
}

fn key_len(name: &str, value: usize) -> u64 {
    (8 + name.len() + value) as u64
}

impl History {
    /// Opens (or creates) the file; Err says what failed and what to do.
    pub fn open(cfg: &HistoryConfig, limits: Limits) -> Result<History, String> {
        let path = cfg.path.clone();
        let hint = "set [business.history] path (or --history) to a writable file, or enabled = false";
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}; {hint}", dir.display()))?;
        }
        let db = Database::create(&path).map_err(|e| format!("opening {}: {e}; {hint}", path.display()))?;
        let stored = init(&db).map_err(|e| format!("writing {}: {e}; {hint}", path.display()))?;
        let counters = Arc::new(Counters::default());
        counters.stored_bytes.store(stored, Ordering::Relaxed);
        let db = Arc::new(DbSlot(Mutex::new(Some(Arc::new(db)))));
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let failing = Arc::new(Mutex::new(None));
        let w =
            Writer { db: db.clone(), path: path.clone(), limits, counters: counters.clone(), failing: failing.clone() };
        let writer = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || w.run(rx))
            .map_err(|e| format!("starting the history writer thread: {e}"))?;
        Ok(History { db, path, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)), counters, failing })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the history is not written, while writes fail.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().expect("history lock").clone()
    }

    /// Queues a snapshot without waiting; Err(batch) when the queue is full
    /// or closed (the caller counts it and marks its minutes again).
    pub fn submit(&self, b: Batch) -> Result<(), Batch> {
        let tx = self.tx.lock().expect("history lock");
        let Some(tx) = tx.as_ref() else { return Err(b) };
        tx.try_send(b).map_err(|e| match e {
            TrySendError::Full(b) | TrySendError::Disconnected(b) => b,
        })
    }

    /// Writes `last` (waiting for room), then ends the writer once it wrote
    /// everything queued. Blocking: call off the async workers.
    pub fn close(&self, last: Batch) {
        if let Some(tx) = self.tx.lock().expect("history lock").take() {
            let _ = tx.send(last);
        }
        if let Some(w) = self.writer.lock().expect("history lock").take()
            && w.join().is_err()
        {
            tracing::error!("business history: the writer thread panicked");
        }
    }

    fn read(&self, table: PeriodTable, from: u64, to: u64) -> Result<Vec<(u64, String, TxnRecord)>, redb::Error> {
        let Some(db) = self.db.get() else { return Ok(vec![]) };
        let r = db.begin_read()?;
        let t = r.open_table(table)?;
        let mut out = vec![];
        for row in t.range((from, "")..(to.saturating_add(1), ""))? {
            let (k, v) = row?;
            let (at, name) = k.value();
            match decode::<TxnRecord>(v.value()).filter(TxnRecord::sane) {
                Some(rec) => out.push((at, name.to_string(), rec)),
                None => {
                    self.counters.bad_records.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(out)
    }

    fn logged<T: Default>(&self, what: &str, r: Result<T, redb::Error>) -> T {
        r.unwrap_or_else(|e| {
            tracing::warn!("business history: reading {what} from {}: {e}", self.path.display());
            T::default()
        })
    }

    /// Minute records in [from, to], in time order. Blocking.
    pub fn minutes(&self, from: u64, to: u64) -> Vec<(u64, String, TxnRecord)> {
        self.logged("minutes", self.read(MINUTES, from, to))
    }

    /// Hour records in [from, to] (unix hours), in time order. Blocking.
    pub fn hours(&self, from: u64, to: u64) -> Vec<(u64, String, TxnRecord)> {
        self.logged("hours", self.read(HOURS, from, to))
    }

    /// What a restart at minute `now` puts back: the minutes of the rings,
    /// the hours of an SLO window of `slo_minutes`, the alerts. Blocking.
    pub fn load(&self, now: u64, slo_minutes: u64) -> Loaded {
        let alerts = || -> Result<Vec<(String, AlertsRecord)>, redb::Error> {
            let Some(db) = self.db.get() else { return Ok(vec![]) };
            let r = db.begin_read()?;
            let t = r.open_table(ALERTS)?;
            let mut out = vec![];
            for row in t.iter()? {
                let (k, v) = row?;
                if let Some(a) = decode::<AlertsRecord>(v.value()) {
                    out.push((k.value().to_string(), a));
                }
            }
            Ok(out)
        };
        Loaded {
            minutes: self.minutes(now.saturating_sub(RESTORE_MINUTES - 1), now),
            hours: self.hours((now / 60).saturating_sub(slo_minutes.div_ceil(60)), now / 60),
            alerts: self.logged("alerts", alerts()),
        }
    }
}

/// Creates the tables; returns the bytes stored.
fn init(db: &Database) -> Result<u64, redb::Error> {
    let w = db.begin_write()?;
    let stored = {
        w.open_table(MINUTES)?;
        w.open_table(HOURS)?;
        w.open_table(ALERTS)?;
        let meta = w.open_table(META)?;
        meta.get(STORED)?.map_or(0, |v| v.value())
    };
    w.commit()?;
    Ok(stored)
}

struct Writer {
    db: Arc<DbSlot>,
    path: PathBuf,
    limits: Limits,
    counters: Arc<Counters>,
    failing: Arc<Mutex<Option<String>>>,
}

impl Writer {
    fn run(self, rx: Receiver<Batch>) {
        while let Ok(b) = rx.recv() {
            let res = match self.db.get() {
                Some(db) => self.write(&db, &b),
                None => self.reopen().and_then(|db| self.write(&db, &b)),
            };
            let mut failing = self.failing.lock().expect("history lock");
            match res {
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!("business history: writing {} again", self.path.display());
                    }
                }
                Err(e) => {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    if failing.is_none() {
                        tracing::error!(
                            "business history off: writing {}: {e} (disk full or read-only?); tracing goes on, \
                             KPIs are kept in memory only until a write succeeds (retried every 10 s)",
                            self.path.display()
                        );
                    }
                    *failing = Some(format!("writing {}: {e}", self.path.display()));
                    drop(failing);
                    self.close_db();
                }
            }
        }
    }

    /// Closes the file (redb takes no write after an I/O error), once the
    /// readers holding it (for one read each) let go.
    fn close_db(&self) {
        let Some(mut db) = self.db.0.lock().expect("history lock").take() else { return };
        for _ in 0..200 {
            match Arc::try_unwrap(db) {
                Ok(d) => return drop(d),
                Err(still) => db = still,
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn reopen(&self) -> Result<Arc<Database>, redb::Error> {
        let db = Database::create(&self.path)?;
        let stored = init(&db)?;
        self.counters.stored_bytes.store(stored, Ordering::Relaxed);
        let db = Arc::new(db);
        *self.db.0.lock().expect("history lock") = Some(db.clone());
        Ok(db)
    }

    fn write(&self, db: &Database, b: &Batch) -> Result<(), redb::Error> {
        let w = db.begin_write()?;
        let stored = {
            let mut meta = w.open_table(META)?;
            let mut stored = meta.get(STORED)?.map_or(0, |v| v.value());
            let mut minutes = w.open_table(MINUTES)?;
            for (at, name, v) in &b.minutes {
                if let Some(old) = minutes.insert((*at, name.as_str()), v.as_slice())? {
                    stored = stored.saturating_sub(key_len(name, old.value().len()));
                }
                stored += key_len(name, v.len());
            }
            let mut hours = w.open_table(HOURS)?;
            for (at, name, v) in &b.hours {
                if let Some(old) = hours.insert((*at, name.as_str()), v.as_slice())? {
                    stored = stored.saturating_sub(key_len(name, old.value().len()));
                }
                stored += key_len(name, v.len());
            }
            let mut alerts = w.open_table(ALERTS)?;
            for (name, v) in &b.alerts {
                alerts.insert(name.as_str(), v.as_slice())?;
            }
            // The batch holds every transaction of the ledger: the others'
            // alerts are stale (and names, e.g. split values, would pile up).
            if !b.alerts.is_empty() {
                let names: std::collections::HashSet<&str> = b.alerts.iter().map(|(n, _)| n.as_str()).collect();
                alerts.retain(|k, _| names.contains(k))?;
            }
            // By age: minutes past the retention, hours past the SLO window.
            let l = self.limits;
            let cut = |t: &mut redb::Table<(u64, &str), &[u8]>, before: u64, stored: &mut u64| -> redb::Result<u64> {
                let mut n = 0;
                loop {
                    let older = t.first()?.is_some_and(|(k, _)| k.value().0 < before);
                    if !older {
                        return Ok(n);
                    }
                    let Some((k, v)) = t.pop_first()? else { return Ok(n) };
                    *stored = stored.saturating_sub(key_len(k.value().1, v.value().len()));
                    n += 1;
                }
            };
            let aged = cut(&mut minutes, b.now.saturating_sub(l.retention_minutes - 1), &mut stored)?
                + cut(&mut hours, (b.now / 60).saturating_sub(l.hour_retention_minutes.div_ceil(60)), &mut stored)?;
            self.counters.evicted_age.fetch_add(aged, Ordering::Relaxed);
            // By size: the oldest minutes, then the oldest hours.
            let mut capped = 0;
            while stored > l.max_bytes {
                let t = if minutes.is_empty()? { &mut hours } else { &mut minutes };
                let Some((k, v)) = t.pop_first()? else { break };
                let (_, name) = k.value();
                stored = stored.saturating_sub(key_len(name, v.value().len()));
                capped += 1;
            }
            self.counters.evicted_cap.fetch_add(capped, Ordering::Relaxed);
            meta.insert(STORED, stored)?;
            stored
        };
        w.commit()?;
        self.counters.stored_bytes.store(stored, Ordering::Relaxed);
        self.counters.minutes_written.fetch_add(b.minutes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
