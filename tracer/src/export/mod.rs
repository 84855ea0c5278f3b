//! Where records leave the agent. For now: lines on stdout (JSON or text).

pub mod lines;
pub mod otlp;

use crate::{
    chain::span::Span,
    conntrack::{ConnRecord, DataRecord},
};

/// What the output stage receives.
#[derive(Clone, Debug)]
pub enum Item {
    Conn(ConnRecord),
    Data(DataRecord),
    Span(std::sync::Arc<Span>),
}
