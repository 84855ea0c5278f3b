//! The connection table: every TCP connection the probes saw, keyed by socket
//! identity, with its owner, role, and byte/call counts each way.

pub mod listen;
pub mod table;

pub use table::{CloseReason, ConnRecord, Role, Table, TableConfig};

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use self::{listen::ProcListen, table::Refused};
use crate::{capture::event::Event, clock::monotonic_ns, telemetry::Telemetry};

/// The connection-table stage: events in, connection records out. A full
/// output queue drops the record (counted), never blocks capture.
pub async fn run(
    cfg: TableConfig,
    mut from_capture: mpsc::Receiver<Vec<Event>>,
    to_export: mpsc::Sender<ConnRecord>,
    telemetry: Arc<Telemetry>,
) {
    let mut table = Table::new(cfg, ProcListen::new());
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    let mut out = Vec::new();
    let full = telemetry
        .connections_evicted
        .get_or_create(&vec![("reason", "table_full")])
        .clone();
    let idle = telemetry
        .connections_evicted
        .get_or_create(&vec![("reason", "idle")])
        .clone();
    loop {
        tokio::select! {
            batch = from_capture.recv() => {
                let Some(batch) = batch else { break };
                for ev in &batch {
                    if let Err(Refused::Full) = table.apply(ev, &mut out) {
                        full.inc();
                    }
                }
                for r in out.drain(..) {
                    if to_export.try_send(r).is_err() {
                        telemetry.drop_event("conntrack_to_export", "queue_full", 1);
                    }
                }
                telemetry.connections_live.set(table.len() as i64);
            }
            _ = sweep.tick() => {
                idle.inc_by(table.expire(monotonic_ns()) as u64);
                telemetry.connections_live.set(table.len() as i64);
            }
        }
    }
}
