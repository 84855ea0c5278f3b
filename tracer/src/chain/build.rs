//! A span from one exchange, whatever its protocol: the protocol's
//! [`Described`] part plus what every span has — timing, ids, the trace
//! context, and the addresses of both ends (typed; text only at export).

use std::sync::Arc;

use crate::{
    conntrack::CallRecord,
    identity::Service,
    span::{Described, Key, Span, SpanKind, Status, Value, random_span_id, random_trace_id},
};

/// Which end of the exchange this process is.
pub fn kind_of(call: &CallRecord) -> SpanKind {
    if call.requests_inbound { SpanKind::Server } else { SpanKind::Client }
}

pub fn span(call: &CallRecord, d: Described, kind: SpanKind, service: Arc<Service>) -> Span {
    let ex = &call.exchange;
    let Described { name, protocol, error_type, mut attributes, context, server, kind: _ } = d;
    let (server_sock, _) = match kind.is_inbound() {
        true => (call.tuple.local, call.tuple.remote),
        false => (call.tuple.remote, call.tuple.local),
    };
    let a = &mut attributes;
    match server {
        Some((host, port)) => {
            a.push((Key::ServerAddress, host.into()));
            a.push((Key::ServerPort, Value::Int(i64::from(port.unwrap_or(server_sock.port())))));
        }
        None => {
            a.push((Key::ServerAddress, Value::Ip(server_sock.ip())));
            a.push((Key::ServerPort, Value::Int(i64::from(server_sock.port()))));
        }
    }
    if kind.is_inbound() {
        a.push((Key::ClientAddress, Value::Ip(call.tuple.remote.ip())));
    }
    a.push((Key::NetworkPeerAddress, Value::Ip(call.tuple.remote.ip())));
    a.push((Key::NetworkPeerPort, Value::Int(i64::from(call.tuple.remote.port()))));
    a.push((Key::NetworkTransport, if call.udp { "udp" } else { "tcp" }.into()));
    let status = if error_type.is_some() { Status::Error } else { Status::Unset };
    if let Some(e) = error_type {
        a.push((Key::ErrorType, Value::Str(e)));
    }
    let (trace_id, parent) = match context {
        Some((t, p)) => (t, Some(p)),
        None => (random_trace_id(), None),
    };
    let response = ex.response;
    let end_ns = response.map(|r| r.last_ns).filter(|n| *n > 0).unwrap_or(ex.request.last_ns.max(ex.request.first_ns));
    Span {
        trace_id,
        span_id: random_span_id(),
        parent_span_id: parent,
        kind,
        name,
        protocol,
        start_ns: ex.request.first_ns,
        end_ns: end_ns.max(ex.request.first_ns),
        response_first_ns: response.map(|r| r.first_ns),
        status,
        attributes,
        service,
        pid: call.pid,
        comm: call.comm.clone(),
        request_tid: ex.request.tid,
        response_tid: response.map(|r| r.tid),
        request_goid: call.request_goid,
        response_goid: call.response_goid,
        request_seq: ex.request.seq,
        local: call.tuple.local,
        remote: call.tuple.remote,
        context_from_header: context.is_some(),
        peer_service: None,
        transaction: None,
        business_entry: false,
    }
}
