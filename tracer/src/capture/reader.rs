//! Drains the kernel ring buffer. The probes submit without a wakeup until the
//! buffer passes a fill threshold, so the reader wakes on the fd (threshold
//! reached) or on a short timer, whichever comes first, and forwards decoded
//! events in batches. The queue to the next stage is never waited on: a full
//! queue drops the batch and counts every event in it.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
    time::{MissedTickBehavior, interval},
};

use super::{decode::decode, event::Event, process::decode_process};
use crate::{identity::ProcessStarts, telemetry::Telemetry};

/// Events per batch sent downstream.
const BATCH: usize = 256;

pub struct Reader {
    pub ring: RingBuf<MapData>,
    pub out: mpsc::Sender<Vec<Event>>,
    pub telemetry: Arc<Telemetry>,
    pub drain_interval: Duration,
    /// Exec and fork records go here, not downstream: the span stage reads
    /// them from it (before the events that follow them in the ring).
    pub starts: ProcessStarts,
    /// Pids of exec records, for the watchers that probe new processes
    /// (`crate::runtimes::go`, `crate::tls`), each with the name its drops
    /// are counted under; never waited on (full: counted).
    pub execs: Vec<(&'static str, std::sync::mpsc::SyncSender<u32>)>,
}

impl Reader {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let Reader { ring, out, telemetry, drain_interval, starts, execs } = self;
        let execs = execs.as_slice();
        // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, so the
        // fd stays open for as long as it is registered.
        let mut fd =
            unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("registering the ring buffer fd: {e}"))?;
        let mut tick = interval(drain_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                guard = fd.readable_mut() => {
                    let mut guard = guard?;
                    drain(guard.get_inner_mut(), &out, &telemetry, &starts, execs);
                    guard.clear_ready();
                }
                _ = tick.tick() => drain(fd.get_mut(), &out, &telemetry, &starts, execs),
                _ = shutdown.changed() => {
                    drain(fd.get_mut(), &out, &telemetry, &starts, execs);
                    return Ok(());
                }
            }
        }
    }
}

fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mpsc::Sender<Vec<Event>>,
    tel: &Telemetry,
    starts: &ProcessStarts,
    execs: &[(&'static str, std::sync::mpsc::SyncSender<u32>)],
) {
    let mut batch = Vec::with_capacity(BATCH);
    // Counted per drain, not per record: a labelled counter lookup costs
    // more than decoding the record.
    let mut received: [(&'static str, u64); 5] = [("state", 0), ("accept", 0), ("data", 0), ("exec", 0), ("fork", 0)];
    while let Some(item) = ring.next() {
        if let Some(p) = decode_process(&item) {
            match p {
                Ok(ev) => {
                    if let Some(c) = received.iter_mut().find(|(k, _)| *k == ev.kind()) {
                        c.1 += 1;
                    }
                    starts.apply(&ev);
                    if let super::process::ProcessEvent::Exec(e) = &ev {
                        for (stage, tx) in execs {
                            if let Err(std::sync::mpsc::TrySendError::Full(_)) = tx.try_send(e.pid) {
                                // The watcher's /proc rescan finds it later.
                                tel.drop_event(stage, "queue_full", 1);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable process record");
                    tel.drop_event("decode", "malformed_record", 1);
                }
            }
            continue;
        }
        match decode(&item) {
            Ok(ev) => {
                let kind = ev.kind();
                if let Some(c) = received.iter_mut().find(|(k, _)| *k == kind) {
                    c.1 += 1;
                }
                batch.push(ev);
                if batch.len() == BATCH {
                    send(out, std::mem::replace(&mut batch, Vec::with_capacity(BATCH)), tel);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "undecodable ring buffer record");
                tel.drop_event("decode", "malformed_record", 1);
            }
        }
    }
    if !batch.is_empty() {
        send(out, batch, tel);
    }
    for (kind, n) in received {
        if n > 0 {
            tel.events_received.get_or_create(&vec![("kind", kind)]).inc_by(n);
        }
    }
}

fn send(out: &mpsc::Sender<Vec<Event>>, batch: Vec<Event>, tel: &Telemetry) {
    match out.try_send(batch) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(b)) => tel.drop_event("capture_to_conntrack", "queue_full", b.len() as u64),
        Err(mpsc::error::TrySendError::Closed(b)) => tel.drop_event("capture_to_conntrack", "closed", b.len() as u64),
    }
}
