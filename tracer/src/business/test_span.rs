//! A SERVER span for the business tests.

use std::sync::Arc;

use crate::{
    identity::Service,
    span::{Key, Span, SpanKind, Status},
};

pub fn span(service: &str, method: &'static str, route: &str) -> Span {
    Span {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: None,
        kind: SpanKind::Server,
        name: format!("{method} {route}"),
        protocol: "http",
        start_ns: 0,
        end_ns: 1,
        response_first_ns: None,
        status: Status::Unset,
        attributes: vec![
            (Key::HttpRequestMethod, method.into()),
            (Key::HttpRoute, route.to_string().into()),
            (Key::UrlPath, route.to_string().into()),
        ],
        service: Arc::new(Service { name: service.into(), ..Default::default() }),
        pid: Some(1),
        comm: "x".into(),
        request_tid: 1,
        response_tid: None,
        request_goid: 0,
        response_goid: 0,
        request_seq: None,
        local: "127.0.0.1:80".parse().unwrap(),
        remote: "10.0.0.1:4000".parse().unwrap(),
        context_from_header: false,
        peer_service: None,
        transaction: None,
        business_entry: false,
    }
}
