//! From exchanges to spans: kind, name, attributes, route and trace context
//! (`span`), routes templated with bounded cardinality (`route`), service
//! identity of each process (`crate::identity`). Connection and data records
//! pass through to the output unchanged.

pub mod route;
pub mod span;

use std::sync::Arc;

use tokio::sync::mpsc;

use self::{
    route::{RouteConfig, Router},
    span::{SpanConfig, http_span, kind_of},
};
use crate::{conntrack::Record, export::Item, identity::Identity, telemetry::Telemetry};

pub struct ChainConfig {
    pub span: SpanConfig,
    pub routes: RouteConfig,
}

/// The span stage. A full output queue drops the item (counted).
pub async fn run(
    cfg: ChainConfig,
    mut from_conntrack: mpsc::Receiver<Record>,
    to_export: mpsc::Sender<Item>,
    telemetry: Arc<Telemetry>,
) -> anyhow::Result<()> {
    let mut router = Router::new(&cfg.routes)?;
    let mut identity = Identity::new();
    let overflow = telemetry.http_route_overflow.clone();
    while let Some(r) = from_conntrack.recv().await {
        let item = match r {
            Record::Conn(c) => Item::Conn(c),
            Record::Data(d) => Item::Data(d),
            Record::Call(call) => {
                let Some(h) = span::http(&call) else { continue };
                let service = match call.pid {
                    Some(pid) => identity.service(pid, &call.comm),
                    None => Arc::new(crate::identity::Service { name: call.comm.clone(), ..Default::default() }),
                };
                let path = h.request.target.split('?').next().unwrap_or("");
                let (route, overflowed) = router.route(&service.name, path);
                if overflowed {
                    overflow.inc();
                }
                let kind = kind_of(&call);
                Item::Span(Box::new(http_span(&call, h, kind, &route, service, &cfg.span)))
            }
        };
        if to_export.try_send(item).is_err() {
            telemetry.drop_event("chain_to_export", "queue_full", 1);
        }
    }
    Ok(())
}
