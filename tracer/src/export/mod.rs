//! Where records leave the agent: lines on stdout (JSON or text), OTLP, and
//! every other consumer of released spans (topology, store) as a [`Sink`].

pub mod lines;
pub mod otlp;

use std::sync::Arc;

use crate::{
    conntrack::{ConnRecord, DataRecord},
    identity::Service,
    span::Span,
};

/// A consumer of released spans and connection records. Implementations
/// never block the caller: they queue (bounded) or drop, and count drops.
pub trait Sink: Send + Sync {
    fn span(&self, span: &Arc<Span>);
    /// A connection event, with the service of its process when known.
    fn conn(&self, _conn: &ConnRecord, _service: Option<&Arc<Service>>) {}
}

impl Sink for otlp::SpanSender {
    fn span(&self, span: &Arc<Span>) {
        self.send(span.clone());
    }
}

/// What the output stage receives.
#[derive(Clone, Debug)]
pub enum Item {
    Conn(ConnRecord),
    Data(DataRecord),
    Span(std::sync::Arc<Span>),
}
