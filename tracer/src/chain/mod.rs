//! From exchanges to spans: each protocol describes its exchange
//! (`crate::protocols::registry`), `build` adds timing, ids and addresses,
//! service identity of each process comes from `crate::identity`, and the
//! linker (`link`, `threads`, `content`) puts spans into call chains.
//! Connection and data records pass through to the output unchanged.

pub mod build;
pub mod content;
pub mod link;
pub mod names;
pub mod threads;

use std::sync::Arc;

use tokio::sync::mpsc;

use self::{
    link::{LinkConfig, LinkCounters, Linker},
    names::Names,
};
use crate::{
    conntrack::Record,
    export::{Item, Sink},
    identity::Identity,
    protocols::{
        Info,
        registry::{DescribeConfig, Describer},
    },
    runtimes::{ThreadModel, ThreadModels},
    span::{Key, Value},
    telemetry::Telemetry,
};

pub struct ChainConfig {
    /// How protocols describe their spans (HTTP routes, query redaction).
    pub describe: DescribeConfig,
    pub link: LinkConfig,
    /// Every released span and connection record also goes to these
    /// (OTLP, topology, store); they never block.
    pub sinks: Vec<Arc<dyn Sink>>,
    /// Pod metadata names services in a cluster.
    pub k8s: Option<crate::k8s::K8sMetadata>,
    /// What processes were started as (exec/fork records).
    pub starts: crate::identity::ProcessStarts,
    /// Names the business transaction of each entry span (`crate::business`).
    pub classify: Option<Box<dyn link::Classify>>,
}

/// The span stage: builds spans, holds them in the linker until their
/// parents had time to arrive, releases them linked. A full output queue
/// drops the item (counted).
pub async fn run(
    mut cfg: ChainConfig,
    mut from_conntrack: mpsc::Receiver<Vec<Record>>,
    to_export: Option<mpsc::Sender<Item>>,
    telemetry: Arc<Telemetry>,
) -> anyhow::Result<()> {
    let mut describer = Describer::new(&cfg.describe)?;
    let mut identity = Identity::new().with_k8s(cfg.k8s.clone()).with_starts(cfg.starts.clone());
    let mut linker = Linker::new(cfg.link.clone()).with_classifier(cfg.classify.take());
    let mut thread_models = ThreadModels::new();
    let mut names = Names::new(names::MAX_NAMES);
    let mut released = Vec::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    // No line output (`--output none`): records are not even queued for it.
    // Closed: the output stage ended (the supervisor reports why).
    let send = |item: Item| {
        if let Some(tx) = &to_export {
            match tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => telemetry.drop_event("chain_to_export", "queue_full", 1),
                Err(mpsc::error::TrySendError::Closed(_)) => telemetry.drop_event("chain_to_export", "closed", 1),
            }
        }
    };
    let link_counters = LinkCounters::default()
        .by_rule()
        .map(|(rule, _)| telemetry.chain_links.get_or_create(&vec![("rule", rule)]).clone());
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            n = from_conntrack.recv_many(&mut batch, 64) => {
                if n == 0 {
                    break;
                }
                for r in batch.drain(..).flatten() {
                    match r {
                        Record::Conn(c) => {
                            if !cfg.sinks.is_empty() {
                                let service = c.pid.map(|pid| identity.service(pid, &c.comm));
                                for sink in &cfg.sinks {
                                    sink.conn(&c, service.as_ref());
                                }
                            }
                            send(Item::Conn(c));
                        }
                        Record::Data(d) => send(Item::Data(d)),
                        Record::Call(call) => {
                            let service = match call.pid {
                                Some(pid) => identity.service(pid, &call.comm),
                                None => Arc::new(crate::identity::Service { name: call.comm.clone(), ..Default::default() }),
                            };
                            let kind = build::kind_of(&call);
                            let d = describer.describe(&call.exchange.info, kind, &service.name);
                            let kind = d.kind.unwrap_or(kind);
                            let mut span = build::span(&call, d, kind, service);
                            // The process's comm, not the thread's (Java names its threads).
                            if let Some(c) = call.pid.and_then(|p| identity.process_comm(p)) { span.comm = c.to_string(); }
                            // Answers name addresses; calls to them carry the name.
                            match &call.exchange.info {
                                Info::Dns(d) => names.learn(d),
                                _ => names.name_span(&mut span),
                            }
                            // In a cluster, a peer that is a pod or a Service is
                            // named (`checkout -> payments`, not an IP).
                            if let Some(name) = cfg.k8s.as_ref().and_then(|k| k.name_for_ip(span.remote.ip())) {
                                span.attributes.push((Key::PeerService, Value::Str(name.into())));
                            }
                            if cfg.link.enabled {
                                if let Some(pid) = span.pid
                                    && thread_models.of(pid) == ThreadModel::Multiplexed
                                {
                                    linker.mark_multiplexed(pid);
                                }
                                linker.insert_at(span, crate::clock::monotonic_ns(), &mut released);
                            } else {
                                linker.classify_unlinked(&mut span);
                                released.push(span);
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => linker.release_due(crate::clock::monotonic_ns(), &mut released),
        }
        for s in released.drain(..) {
            let s = Arc::new(s);
            for sink in &cfg.sinks {
                sink.span(&s);
            }
            send(Item::Span(s));
        }
        let overflowed = describer.take_route_overflow();
        if overflowed > 0 {
            telemetry.http_route_overflow.inc_by(overflowed);
        }
        telemetry.chain_held.set(linker.len() as i64);
        telemetry.dns_names.set(names.len() as i64);
        telemetry.dns_names_evicted.inc_by(names.take_evicted());
        let c = std::mem::take(&mut linker.counters);
        for (counter, (_, n)) in link_counters.iter().zip(c.by_rule()) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }
    // Input closed (shutdown): release everything held.
    linker.release_due(u64::MAX, &mut released);
    for s in released.drain(..) {
        let s = Arc::new(s);
        for sink in &cfg.sinks {
            sink.span(&s);
        }
        send(Item::Span(s));
    }
    Ok(())
}
