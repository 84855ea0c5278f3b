use std::sync::Arc;

use super::*;
use crate::{identity::Service, span::Status};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn span(kind: SpanKind, local: &str, remote: &str, seq: u32, pid: u32, tid: u32, start: u64, end: u64) -> Span {
    Span {
        trace_id: [7; 16],
        span_id: [9; 8],
        parent_span_id: None,
        kind,
        name: "GET /".into(),
        protocol: "http",
        start_ns: start,
        end_ns: end,
        response_first_ns: Some(end - 1),
        status: Status::Unset,
        attributes: vec![],
        service: Arc::new(Service::default()),
        pid: Some(pid),
        comm: "x".into(),
        request_tid: tid,
        response_tid: Some(tid),
        request_goid: 0,
        response_goid: 0,
        request_seq: Some(seq),
        local: addr(local),
        remote: addr(remote),
        context_from_header: false,
        peer_service: None,
        transaction: None,
        business_entry: false,
    }
}

fn release_all(l: &mut Linker) -> Vec<Span> {
    let mut out = Vec::new();
    l.release_due(u64::MAX, &mut out);
    out
}

fn find(v: &[Span], kind: SpanKind, pid: u32) -> &Span {
    v.iter().find(|s| s.kind == kind && s.pid == Some(pid)).unwrap()
}

/// curl(1) -> nginx(2, one thread) -> backend(3): one trace, every parent
/// right, whatever the order spans finish in.
#[test]
fn chain_on_one_node() {
    let curl = span(SpanKind::Client, "127.0.0.1:40000", "127.0.0.1:80", 100, 1, 1, 10, 100);
    let ngx_in = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 100, 2, 20, 20, 90);
    let ngx_out = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 555, 2, 20, 30, 80);
    let back = span(SpanKind::Server, "127.0.0.1:8000", "127.0.0.1:50000", 555, 3, 30, 40, 70);
    let mut l = Linker::new(LinkConfig::default());
    let mut out = vec![];
    for s in [back, ngx_out, ngx_in, curl] {
        l.insert(s, &mut out);
    }
    assert!(out.is_empty());
    let v = release_all(&mut l);
    let (c, ni, no, b) = (
        find(&v, SpanKind::Client, 1),
        find(&v, SpanKind::Server, 2),
        find(&v, SpanKind::Client, 2),
        find(&v, SpanKind::Server, 3),
    );
    let k1 = PeerKey { server: addr("127.0.0.1:80"), client: addr("127.0.0.1:40000"), seq: 100 };
    assert_eq!(c.trace_id, k1.trace_id());
    assert!(v.iter().all(|s| s.trace_id == c.trace_id), "one trace");
    assert_eq!(c.parent_span_id, None);
    assert_eq!(c.span_id, k1.client_span_id());
    assert_eq!(ni.parent_span_id, Some(c.span_id));
    assert_eq!(no.parent_span_id, Some(ni.span_id));
    assert_eq!(b.parent_span_id, Some(no.span_id));
    assert_eq!(l.counters.thread_links, 1);
    assert_eq!(l.counters.peer_links, 2);
    // Each end learns the service at the other end.
    assert!(Arc::ptr_eq(b.peer_service.as_ref().unwrap(), &no.service));
    assert!(Arc::ptr_eq(no.peer_service.as_ref().unwrap(), &b.service));
    assert!(c.peer_service.is_some() && ni.peer_service.is_some());
    assert!(l.is_empty());
}

/// An event loop with two requests in flight on the thread when the call
/// goes out: which one caused it is not known, so it stays unlinked.
#[test]
fn ambiguous_thread_is_not_linked() {
    let a = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100);
    let b = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 20, 15, 100);
    let call = span(SpanKind::Client, "127.0.0.1:50000", "10.0.0.9:8000", 3, 2, 20, 30, 60);
    let mut l = Linker::new(LinkConfig { remote_parent: false, ..LinkConfig::default() });
    for s in [call, a, b] {
        l.insert(s, &mut vec![]);
    }
    let v = release_all(&mut l);
    let c = find(&v, SpanKind::Client, 2);
    assert_eq!(c.parent_span_id, None);
    assert_eq!(l.counters.ambiguous, 1);
}

/// A proxy streams the response while its upstream call is still read: the
/// call started before the response, so it is a child.
#[test]
fn streaming_proxy_call_is_a_child() {
    let mut srv = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100);
    srv.response_first_ns = Some(50);
    let call = span(SpanKind::Client, "127.0.0.1:50000", "10.0.0.9:8000", 3, 2, 20, 30, 90);
    let mut l = Linker::new(LinkConfig::default());
    l.insert(call, &mut vec![]);
    l.insert(srv, &mut vec![]);
    let v = release_all(&mut l);
    assert_eq!(find(&v, SpanKind::Client, 2).parent_span_id, Some(find(&v, SpanKind::Server, 2).span_id));
}

/// A call made by another thread, or after the response started, is not a child.
#[test]
fn other_thread_or_after_response_is_not_a_child() {
    let srv = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 50);
    let other_thread = span(SpanKind::Client, "127.0.0.1:50000", "10.0.0.9:8000", 3, 2, 21, 20, 30);
    let after = span(SpanKind::Client, "127.0.0.1:50001", "10.0.0.9:8000", 4, 2, 20, 60, 70);
    let mut l = Linker::new(LinkConfig::default());
    for s in [srv, other_thread, after] {
        l.insert(s, &mut vec![]);
    }
    let v = release_all(&mut l);
    assert!(v.iter().filter(|s| s.kind == SpanKind::Client).all(|s| s.parent_span_id.is_none()));
}

/// Two agents on two nodes derive the same ids: the server span's parent is
/// the client span's id, and a root client's trace id is shared.
#[test]
fn two_nodes_agree_without_talking() {
    let client = span(SpanKind::Client, "10.0.0.1:40000", "10.0.0.2:80", 42, 1, 1, 10, 100);
    let server = span(SpanKind::Server, "10.0.0.2:80", "10.0.0.1:40000", 42, 2, 2, 20, 90);
    let mut node_a = Linker::new(LinkConfig::default());
    let mut node_b = Linker::new(LinkConfig::default());
    node_a.insert(client, &mut vec![]);
    node_b.insert(server, &mut vec![]);
    let c = release_all(&mut node_a).remove(0);
    let s = release_all(&mut node_b).remove(0);
    assert_eq!(s.parent_span_id, Some(c.span_id));
    assert_eq!(s.trace_id, c.trace_id);
    assert_ne!(s.span_id, c.span_id);
    assert_eq!(node_b.counters.remote_links, 1);
}

#[test]
fn remote_parent_off_keeps_server_roots() {
    let server = span(SpanKind::Server, "10.0.0.2:80", "10.0.0.1:40000", 42, 2, 2, 20, 90);
    let mut l = Linker::new(LinkConfig { remote_parent: false, ..LinkConfig::default() });
    l.insert(server, &mut vec![]);
    assert_eq!(release_all(&mut l)[0].parent_span_id, None);
}

/// A traceparent header wins over every derived link.
#[test]
fn header_context_is_kept() {
    let mut s = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 50);
    s.context_from_header = true;
    s.trace_id = [1; 16];
    s.parent_span_id = Some([2; 8]);
    let c = span(SpanKind::Client, "127.0.0.1:40000", "127.0.0.1:80", 1, 1, 1, 5, 60);
    let mut l = Linker::new(LinkConfig::default());
    l.insert(s, &mut vec![]);
    l.insert(c, &mut vec![]);
    let v = release_all(&mut l);
    let srv = find(&v, SpanKind::Server, 2);
    assert_eq!((srv.trace_id, srv.parent_span_id), ([1; 16], Some([2; 8])));
}

/// Spans wait for their hold; a full buffer releases the oldest early.
#[test]
fn hold_and_bound() {
    let mut l = Linker::new(LinkConfig { enabled: true, hold_ms: 1, max_spans: 2, remote_parent: false });
    let mut out = vec![];
    for i in 0..3u32 {
        let s = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", i, 2, 20 + i, 10, 1_000);
        l.insert(s, &mut out);
    }
    assert_eq!(out.len(), 1, "oldest released early");
    assert_eq!(l.counters.released_early, 1);
    l.release_due(1_000 + 500_000, &mut out);
    assert_eq!(out.len(), 1, "hold not over yet");
    l.release_due(1_000 + 1_000_000, &mut out);
    assert_eq!(out.len(), 3);
    assert!(l.is_empty());
}

/// Go: thread 20 read request A, then wrote B's call (B was read on thread
/// 21). Linking by thread would put B's call under A.
#[test]
fn multiplexed_process_is_never_linked_by_thread() {
    let a = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100);
    let b = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 21, 12, 100);
    let b_call = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80);
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    for s in [b_call, a, b] {
        l.insert(s, &mut out);
    }
    let v = release_all(&mut l);
    assert_eq!(find(&v, SpanKind::Client, 2).parent_span_id, None);
    assert_eq!((l.counters.thread_links, l.counters.multiplexed), (0, 1));
}

fn on_goroutine(mut s: Span, request: u64, response: u64) -> Span {
    s.request_goid = request;
    s.response_goid = response;
    s
}

/// Go with goroutine ids: the same multiplexed process, now keyed by
/// goroutine. B's call was written by a writeLoop goroutine (7) working for
/// B's goroutine (101, credited in the kernel), on A's thread, its response
/// read by a readLoop (8): it is B's child, not A's.
#[test]
fn go_calls_link_by_goroutine_across_threads() {
    let a = on_goroutine(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), 100, 100);
    let b = on_goroutine(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 21, 12, 100), 101, 101);
    let mut b_call =
        on_goroutine(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80), 101, 8);
    b_call.response_tid = Some(22);
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    for s in [b_call, a, b] {
        l.insert(s, &mut out);
    }
    let v = release_all(&mut l);
    let b_id = v.iter().find(|s| s.kind == SpanKind::Server && s.request_seq == Some(2)).unwrap().span_id;
    assert_eq!(find(&v, SpanKind::Client, 2).parent_span_id, Some(b_id));
    assert_eq!((l.counters.thread_links, l.counters.multiplexed), (1, 0));
}

/// net/http's background-read goroutine (50) read the request's first byte;
/// conn.serve's goroutine (100) ran the handler and answered: the request is
/// keyed on the goroutine that answered it.
#[test]
fn go_request_is_keyed_on_the_goroutine_that_answered() {
    let a = on_goroutine(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), 50, 100);
    let call = on_goroutine(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 21, 30, 80), 100, 9);
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    for s in [call, a] {
        l.insert(s, &mut out);
    }
    let v = release_all(&mut l);
    assert_eq!(find(&v, SpanKind::Client, 2).parent_span_id, Some(find(&v, SpanKind::Server, 2).span_id));
}

/// Goroutine ids are no thread ids: goroutine 20 is not thread 20, and a Go
/// span without a goroutine (unreadable, or a hand-off missed) is keyed by
/// its thread, which in a multiplexed process links nothing.
#[test]
fn goroutines_and_threads_never_meet() {
    let a = on_goroutine(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), 20, 20);
    let call = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80);
    let mut l = Linker::new(LinkConfig::default());
    let mut out = vec![];
    for s in [call, a] {
        l.insert(s, &mut out);
    }
    assert_eq!(find(&release_all(&mut l), SpanKind::Client, 2).parent_span_id, None);
    assert_eq!(l.counters.thread_links, 0);
}

/// Two requests overlapping on one goroutine (a goroutine id credited
/// wrongly could do it): the call is ambiguous, not linked.
#[test]
fn crowded_goroutine_is_ambiguous() {
    let a = on_goroutine(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), 100, 100);
    let b = on_goroutine(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 21, 12, 100), 100, 100);
    let call = on_goroutine(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 22, 30, 80), 100, 9);
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    for s in [call, a, b] {
        l.insert(s, &mut out);
    }
    assert!(release_all(&mut l).iter().all(|s| s.kind != SpanKind::Client || s.parent_span_id.is_none()));
    assert_eq!((l.counters.thread_links, l.counters.ambiguous), (0, 1));
}

/// A request read on one thread and answered on another: the process hands
/// work between threads, so its threads are no evidence from then on.
#[test]
fn request_moving_between_threads_turns_the_thread_rule_off() {
    let mut moved = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 20);
    moved.response_tid = Some(21);
    let a = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 20, 30, 100);
    let call = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 40, 80);
    let mut l = Linker::new(LinkConfig::default());
    let mut out = vec![];
    for s in [moved, call, a] {
        l.insert(s, &mut out);
    }
    assert!(l.is_multiplexed(2));
    let v = release_all(&mut l);
    assert!(v.iter().filter(|s| s.kind == SpanKind::Client).all(|s| s.parent_span_id.is_none()));
}

/// Two threads each serving overlapping requests (tokio, Netty): a call on
/// either may belong to a request of the other.
#[test]
fn two_event_loop_threads_turn_the_thread_rule_off() {
    let mut l = Linker::new(LinkConfig::default());
    let mut out = vec![];
    // Thread 20 serves two requests at once: one event loop is fine.
    l.insert(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 50), &mut out);
    l.insert(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 20, 20, 60), &mut out);
    assert!(!l.is_multiplexed(2));
    // So does thread 21.
    l.insert(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40002", 3, 2, 21, 10, 50), &mut out);
    l.insert(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40003", 4, 2, 21, 20, 60), &mut out);
    assert!(l.is_multiplexed(2));
}

/// An event loop answered B, then (a deferred task of B's) wrote a call
/// while A was the only request open: A is no evidence.
#[test]
fn call_after_another_request_answered_on_the_thread_is_ambiguous() {
    let a = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100);
    let b = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 20, 5, 20);
    let call = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80);
    let mut l = Linker::new(LinkConfig::default());
    let mut out = vec![];
    for s in [b, call, a] {
        l.insert(s, &mut out);
    }
    let v = release_all(&mut l);
    assert_eq!(find(&v, SpanKind::Client, 2).parent_span_id, None);
    assert_eq!(l.counters.ambiguous, 1);
}

/// Sequential requests on one thread (thread per connection, keep-alive):
/// the earlier, finished one does not make the later call ambiguous.
#[test]
fn sequential_requests_on_a_thread_still_link() {
    let first = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 20);
    let second = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 2, 2, 20, 30, 100);
    let call = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 40, 80);
    let mut l = Linker::new(LinkConfig::default());
    let mut out = vec![];
    for s in [first, call, second] {
        l.insert(s, &mut out);
    }
    let v = release_all(&mut l);
    let second = v.iter().find(|s| s.request_seq == Some(2)).unwrap();
    assert_eq!(find(&v, SpanKind::Client, 2).parent_span_id, Some(second.span_id));
}

/// The backend's SERVER span ends (and is released) after the middle's
/// CLIENT span: it still gets that span's trace id, not a derived one.
#[test]
fn server_released_after_its_client_keeps_the_clients_trace() {
    const MS: u64 = 1_000_000;
    let root = span(SpanKind::Client, "127.0.0.1:39999", "127.0.0.1:80", 7, 1, 1, 0, 200 * MS);
    let mid_in = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:39999", 7, 2, 20, 5 * MS, 150 * MS);
    let mid_out = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 555, 2, 20, 30 * MS, 80 * MS);
    // Ends after its client read the response, and reaches the linker late.
    let back = span(SpanKind::Server, "127.0.0.1:8000", "127.0.0.1:50000", 555, 3, 30, 40 * MS, 90 * MS);
    let mut l = Linker::new(LinkConfig { hold_ms: 100, ..LinkConfig::default() });
    let mut out = vec![];
    l.insert_at(mid_out, 80 * MS, &mut out);
    l.insert_at(mid_in, 150 * MS, &mut out);
    // The middle's CLIENT span is released before the backend span arrives.
    l.release_due(180 * MS, &mut out);
    assert!(out.iter().any(|s| s.kind == SpanKind::Client && s.pid == Some(2)));
    l.insert_at(back, 190 * MS, &mut out);
    l.insert_at(root, 200 * MS, &mut out);
    out.extend(release_all(&mut l));
    let no = find(&out, SpanKind::Client, 2);
    let b = find(&out, SpanKind::Server, 3);
    assert_eq!(b.parent_span_id, Some(no.span_id));
    assert_eq!(b.trace_id, no.trace_id, "one trace along the parent link");
    assert!(out.iter().all(|s| s.trace_id == no.trace_id), "{out:#?}");
}

/// Release everything at a realistic time (hold passed, recent spans'
/// identifiers still remembered).
fn release_at(l: &mut Linker) -> Vec<Span> {
    let mut out = Vec::new();
    l.release_due(3_000_000_000, &mut out);
    out
}

fn with_path(mut s: Span, path: &str) -> Span {
    s.attributes.push(("url.path".into(), crate::span::Value::Str(path.to_string().into())));
    s
}

/// Go (threads no evidence): each call repeats the order id of exactly one
/// request in flight, whatever thread wrote it.
#[test]
fn call_repeating_a_requests_id_is_its_child() {
    let a = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), "/orders/1000001");
    let b = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 21, 12, 100), "/orders/1000002");
    // B's call written on A's thread.
    let b_call =
        with_path(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80), "/stock/1000002");
    let a_call =
        with_path(span(SpanKind::Client, "127.0.0.1:50001", "127.0.0.1:8000", 4, 2, 21, 31, 81), "/stock/1000001");
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    for s in [b_call, a_call, a, b] {
        l.insert(s, &mut out);
    }
    let v = release_at(&mut l);
    let by_seq = |seq| v.iter().find(|s| s.request_seq == Some(seq)).unwrap();
    assert_eq!(by_seq(3).parent_span_id, Some(by_seq(2).span_id));
    assert_eq!(by_seq(4).parent_span_id, Some(by_seq(1).span_id));
    assert_eq!(l.counters.content_links, 2);
}

/// Two requests with the same id in flight, or one request calling twice
/// with its id while another call repeats it: nothing is linked by content.
#[test]
fn shared_or_repeated_ids_link_nothing() {
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    let a = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), "/users/7777777");
    let b = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 21, 12, 100), "/users/7777777");
    let call = with_path(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80), "/u/7777777");
    for s in [call, a, b] {
        l.insert(s, &mut out);
    }
    assert!(release_at(&mut l).iter().all(|s| s.kind != SpanKind::Client || s.parent_span_id.is_none()));

    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let a = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), "/users/8888888");
    let c1 = with_path(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 40), "/u/8888888");
    let c2 = with_path(span(SpanKind::Client, "127.0.0.1:50001", "127.0.0.1:8000", 4, 2, 21, 50, 60), "/u/8888888");
    for s in [c1, c2, a] {
        l.insert(s, &mut out);
    }
    let v = release_at(&mut l);
    assert!(v.iter().all(|s| s.kind != SpanKind::Client || s.parent_span_id.is_none()), "{v:#?}");
    assert_eq!(l.counters.content_links, 0);
}

/// Short numbers and words are not evidence.
#[test]
fn short_numbers_are_not_identifiers() {
    let a = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), "/items/42");
    let call = with_path(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 21, 30, 80), "/stock/42");
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    for s in [call, a] {
        l.insert(s, &mut out);
    }
    assert!(release_at(&mut l).iter().all(|s| s.kind != SpanKind::Client || s.parent_span_id.is_none()));
}

/// A reverse proxy on one event loop (nginx): each upstream call repeats its
/// request's whole target; two requests in flight with the same target link
/// neither of their calls.
#[test]
fn a_proxied_target_links_its_call_unless_shared() {
    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let mut out = vec![];
    let a = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), "/items/m6p0-3-17");
    let b = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 20, 12, 100), "/items/m6p0-3-18");
    let b_call =
        with_path(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80), "/items/m6p0-3-18");
    let a_call =
        with_path(span(SpanKind::Client, "127.0.0.1:50001", "127.0.0.1:8000", 4, 2, 20, 31, 81), "/items/m6p0-3-17");
    for s in [b_call, a_call, a, b] {
        l.insert(s, &mut out);
    }
    let v = release_at(&mut l);
    let by_seq = |seq| v.iter().find(|s| s.request_seq == Some(seq)).unwrap();
    assert_eq!(by_seq(3).parent_span_id, Some(by_seq(2).span_id));
    assert_eq!(by_seq(4).parent_span_id, Some(by_seq(1).span_id));

    let mut l = Linker::new(LinkConfig::default());
    l.mark_multiplexed(2);
    let a = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 1, 2, 20, 10, 100), "/items/list");
    let b = with_path(span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40001", 2, 2, 20, 12, 100), "/items/list");
    let c1 = with_path(span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 3, 2, 20, 30, 80), "/items/list");
    let c2 = with_path(span(SpanKind::Client, "127.0.0.1:50001", "127.0.0.1:8000", 4, 2, 20, 31, 81), "/items/list");
    for s in [c1, c2, a, b] {
        l.insert(s, &mut out);
    }
    let v = release_at(&mut l);
    assert!(v.iter().all(|s| s.kind != SpanKind::Client || s.parent_span_id.is_none()), "{v:#?}");
}

/// Names every entry after its span and counts the calls.
struct ByName(Arc<std::sync::atomic::AtomicUsize>);

impl Classify for ByName {
    fn classify(&mut self, entry: &Span) -> Option<Arc<Transaction>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Arc::new(Transaction { name: format!("t {}", entry.name).into(), rule: None }))
    }
}

/// curl(1) -> nginx(2) -> backend(3): nginx's SERVER span is the entry
/// (curl serves no request), classified once; every span below carries its
/// transaction, released leaf first (children end before their parents).
#[test]
fn the_entry_span_names_the_transaction_of_its_chain() {
    let curl = span(SpanKind::Client, "127.0.0.1:40000", "127.0.0.1:80", 100, 1, 1, 10, 100);
    let mut ngx_in = span(SpanKind::Server, "127.0.0.1:80", "127.0.0.1:40000", 100, 2, 20, 20, 90);
    ngx_in.name = "GET /checkout".into();
    let ngx_out = span(SpanKind::Client, "127.0.0.1:50000", "127.0.0.1:8000", 555, 2, 20, 30, 80);
    let back = span(SpanKind::Server, "127.0.0.1:8000", "127.0.0.1:50000", 555, 3, 30, 40, 70);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut l = Linker::new(LinkConfig::default()).with_classifier(Some(Box::new(ByName(calls.clone()))));
    let mut out = vec![];
    for s in [back, ngx_out, ngx_in, curl] {
        let end = s.end_ns;
        l.insert_at(s, end, &mut out);
    }
    let mut out = Vec::new();
    // The two children first, as their holds end first.
    l.release_due(81 + 2_000_000_000, &mut out);
    assert_eq!(out.len(), 2);
    l.release_due(u64::MAX, &mut out);
    assert_eq!(out.len(), 4);
    let curl = out.iter().find(|s| s.kind == SpanKind::Client && s.pid == Some(1)).unwrap();
    assert!(curl.transaction.is_none() && !curl.business_entry, "above the entry");
    for s in out.iter().filter(|s| s.pid != Some(1)) {
        assert_eq!(s.transaction.as_ref().map(|t| &*t.name), Some("t GET /checkout"), "{:?}", s.kind);
        assert!(s.attr_text(&Key::BusinessTransactionName).is_some_and(|n| n == "t GET /checkout"));
    }
    assert!(find(&out, SpanKind::Server, 2).business_entry);
    assert!(!find(&out, SpanKind::Server, 3).business_entry && !find(&out, SpanKind::Client, 2).business_entry);
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1, "classified once");
}
