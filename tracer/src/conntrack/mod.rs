//! The connection table: every TCP connection the probes saw (and every UDP
//! flow to a DNS server), keyed by socket identity, with its owner, role,
//! and byte/call counts each way.

pub mod goroutines;
pub mod l7;
pub mod listen;
pub mod table;
pub mod tls_seq;

pub use table::{CallRecord, CloseReason, ConnRecord, Role, Table, TableConfig};

use serde::Serialize;

use crate::capture::event::{Data, Direction, Tls};

/// What the connection stage hands to the output.
#[derive(Clone, Debug)]
#[expect(clippy::large_enum_variant, reason = "one record per channel slot; boxing would allocate per event")]
pub enum Record {
    Conn(ConnRecord),
    /// A finished request/response exchange.
    Call(CallRecord),
    /// One data event (only with `--data-events`, for inspecting capture).
    Data(DataRecord),
}

/// A data event as printed by `--data-events`. The payload is not printed,
/// only its first line (a request or status line), at most 64 bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataRecord {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub fd: i32,
    pub syscall: &'static str,
    pub direction: &'static str,
    pub local: String,
    pub remote: String,
    pub bytes: u32,
    pub seq: Option<u32>,
    pub payload_len: usize,
    pub payload_head: String,
    /// "plain": TLS plaintext from a library call; "cipher": ciphertext
    /// inside one (no payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<&'static str>,
    /// The task (Go goroutine, Node callback task) the bytes belong to.
    #[serde(skip_serializing_if = "is_zero")]
    pub task: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl DataRecord {
    pub fn from(d: &Data) -> Self {
        let head = &d.payload[..d.payload.len().min(64)];
        let head = head.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
        DataRecord {
            ts_ns: d.ts_ns,
            pid: d.task.pid,
            tid: d.task.tid,
            comm: d.task.comm.to_string(),
            fd: d.fd,
            syscall: d.syscall.name(),
            direction: match d.direction {
                Direction::Egress => "egress",
                Direction::Ingress => "ingress",
            },
            local: d.tuple.local.to_string(),
            remote: d.tuple.remote.to_string(),
            bytes: d.bytes,
            seq: d.seq,
            payload_len: d.payload.len(),
            payload_head: String::from_utf8_lossy(head).into_owned(),
            tls: match d.tls {
                Tls::No => None,
                Tls::Plain => Some("plain"),
                Tls::Cipher => Some("cipher"),
            },
            task: d.goid,
        }
    }
}

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use self::{listen::ProcListen, table::Refused};
use tracer_common::maps::{VERDICT_COUNT_ONLY, VERDICT_WIDE};

use crate::{
    capture::event::{Event, SockId},
    clock::monotonic_ns,
    telemetry::Telemetry,
};

/// The kernel's per-socket verdicts (`SOCK_VERDICT`), written from here.
pub struct Verdicts {
    map: aya::maps::HashMap<aya::maps::MapData, u64, u8>,
}

impl Verdicts {
    pub fn new(map: aya::maps::HashMap<aya::maps::MapData, u64, u8>) -> Self {
        Verdicts { map }
    }

    /// These sockets' syscalls ship `verdict` (`VERDICT_*`, named `what` on
    /// /metrics) from now on.
    fn say(&mut self, socks: impl Iterator<Item = SockId>, verdict: u8, what: &'static str, telemetry: &Telemetry) {
        for sk in socks {
            let what = match self.map.insert(sk, verdict, 0) {
                Ok(()) => what,
                Err(_) => "failed",
            };
            telemetry.sock_verdicts.get_or_create(&vec![("verdict", what)]).inc();
        }
    }
}

/// The connection-table stage: events in, connection records out. A full
/// output queue drops the record (counted), never blocks capture.
pub async fn run(
    cfg: TableConfig,
    mut from_capture: mpsc::Receiver<Vec<Event>>,
    to_export: mpsc::Sender<Vec<Record>>,
    telemetry: Arc<Telemetry>,
    data_events: bool,
    protocols: crate::protocols::ProtocolConfig,
    mut verdicts: Option<Verdicts>,
) {
    let mut table = Table::new(cfg, ProcListen::new()).with_protocols(protocols);
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    // Closed connections waiting for their last reads are reported on time
    // even when no event comes.
    let mut linger = tokio::time::interval(Duration::from_millis(100));
    linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    let idle = telemetry.connections_evicted.get_or_create(&vec![("reason", "idle")]).clone();
    loop {
        tokio::select! {
            batch = from_capture.recv() => {
                let Some(batch) = batch else { break };
                // One output batch per input batch: a channel send (and a
                // wakeup of the next stage) per record cost more than the record.
                let mut records = Vec::with_capacity(batch.len());
                for ev in &batch {
                    match table.apply(ev, &mut out) {
                        Ok(()) => {}
                        Err(Refused::Full) => telemetry.drop_event("conntrack", "table_full", 1),
                        Err(Refused::AfterClose) => telemetry.drop_event("conntrack", "after_close", 1),
                    }
                    records.extend(out.drain(..).map(Record::Conn));
                    records.extend(table.take_calls().map(Record::Call));
                    if let Event::Data(d) = ev
                        && data_events
                    {
                        records.push(Record::Data(DataRecord::from(d)));
                    }
                }
                send(&to_export, records, &telemetry);
                telemetry.connections_live.set(table.len() as i64);
                match verdicts.as_mut() {
                    Some(v) => {
                        v.say(table.take_count_only(), VERDICT_COUNT_ONLY, "count_only", &telemetry);
                        v.say(table.take_wide(), VERDICT_WIDE, "wide", &telemetry);
                    }
                    None => {
                        table.take_count_only().for_each(drop);
                        table.take_wide().for_each(drop);
                    }
                }
            }
            _ = linger.tick() => {
                table.flush_closed(monotonic_ns(), &mut out);
                let mut records: Vec<Record> = out.drain(..).map(Record::Conn).collect();
                records.extend(table.take_calls().map(Record::Call));
                send(&to_export, records, &telemetry);
            }
            _ = sweep.tick() => {
                let l7 = table.take_l7_counters();
                telemetry.l7_connections.get_or_create(&vec![("result", "detected")]).inc_by(l7.detected);
                telemetry.l7_connections.get_or_create(&vec![("result", "unknown")]).inc_by(l7.unknown);
                for (protocol, counts) in l7.parsers {
                    for (reason, n) in counts.by_reason() {
                        if n > 0 {
                            telemetry.protocol_dropped.get_or_create(&vec![("protocol", protocol), ("reason", reason)]).inc_by(n);
                        }
                    }
                }
                idle.inc_by(table.expire(monotonic_ns()) as u64);
                telemetry.connections_live.set(table.len() as i64);
                // Queries of expired UDP flows that no answer came for.
                send(&to_export, table.take_calls().map(Record::Call).collect(), &telemetry);
            }
        }
    }
}

/// Hand a batch to the chain stage; never blocks. Closed: the chain stage
/// ended (the supervisor reports why), which is not a full queue.
fn send(to_chain: &mpsc::Sender<Vec<Record>>, records: Vec<Record>, telemetry: &Telemetry) {
    if records.is_empty() {
        return;
    }
    let n = records.len() as u64;
    match to_chain.try_send(records) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => telemetry.drop_event("conntrack_to_chain", "queue_full", n),
        Err(mpsc::error::TrySendError::Closed(_)) => telemetry.drop_event("conntrack_to_chain", "closed", n),
    }
}
