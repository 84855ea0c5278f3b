//! The export queue between the chain stage and the OTLP exporter, bounded
//! by span count and by estimated bytes.
//!
//! Drop policy: DROP OLDEST. When a new span does not fit, the oldest queued
//! spans are dropped until it does (counted as `queue_full` or `queue_bytes`).
//! While a backend is down, what it gets once it is back is the most recent
//! window of traffic, which is what an operator looks at; the newest-drop
//! policy of the SDKs would instead deliver stale spans and lose the
//! recovery period. `send` never blocks and never awaits: a short mutex
//! hold (push + pops) is all it costs the caller.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

use super::encode::estimate_bytes;
use crate::{
    span::{Span, SpanKind},
    telemetry::Telemetry,
};

const SIGNAL: &str = "traces";

pub struct SpanQueue {
    inner: Mutex<Inner>,
    /// Wakes the exporter when a full batch is waiting.
    ready: Notify,
    max_items: usize,
    max_bytes: usize,
    batch_size: usize,
    /// The backend's own addresses: SERVER spans there are the backend
    /// receiving our exports (when it is traced too); exporting them would
    /// feed back forever. Counted as dropped, reason own_traffic.
    own: Vec<SocketAddr>,
    telemetry: Arc<Telemetry>,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<(Arc<Span>, usize)>,
    bytes: usize,
    /// Spans ever accepted into the queue (tests and flush bookkeeping).
    pushed: u64,
}

/// The capture side's handle: clone it freely, `send` never blocks.
#[derive(Clone)]
pub struct SpanSender {
    queue: Option<Arc<SpanQueue>>,
}

impl SpanSender {
    /// Queue a span for export; when the queue is full, the oldest spans go.
    pub fn send(&self, span: Arc<Span>) {
        if let Some(q) = &self.queue {
            q.push(span);
        }
    }

    /// A sender that discards (no traces endpoint: nothing to export).
    pub fn disabled() -> Self {
        SpanSender { queue: None }
    }
}

impl SpanQueue {
    pub fn new(
        max_items: usize,
        max_bytes: usize,
        batch_size: usize,
        own: Vec<SocketAddr>,
        telemetry: Arc<Telemetry>,
    ) -> Arc<Self> {
        Arc::new(SpanQueue {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            max_items: max_items.max(1),
            max_bytes: max_bytes.max(1),
            batch_size: batch_size.clamp(1, max_items.max(1)),
            own,
            telemetry,
        })
    }

    pub fn sender(self: &Arc<Self>) -> SpanSender {
        SpanSender { queue: Some(self.clone()) }
    }

    /// Senders alive (other than the queue's owner).
    pub fn senders(self: &Arc<Self>) -> usize {
        Arc::strong_count(self) - 1
    }

    pub fn push(&self, span: Arc<Span>) {
        let m = &self.telemetry.otlp;
        m.enqueued.get_or_create(&vec![("signal", SIGNAL)]).inc();
        let own =
            |a: &SocketAddr| a.port() == span.local.port() && a.ip().to_canonical() == span.local.ip().to_canonical();
        if span.kind == SpanKind::Server && self.own.iter().any(own) {
            m.drop_items(SIGNAL, "own_traffic", 1);
            return;
        }
        let size = estimate_bytes(&span);
        if size > self.max_bytes {
            m.drop_items(SIGNAL, "too_large", 1);
            return;
        }
        let (full, len, bytes) = {
            let mut q = self.inner.lock().expect("otlp queue lock");
            let (mut by_count, mut by_bytes) = (0, 0);
            while q.items.len() >= self.max_items || q.bytes + size > self.max_bytes {
                let over_count = q.items.len() >= self.max_items;
                let Some((_, n)) = q.items.pop_front() else { break };
                q.bytes -= n;
                if over_count {
                    by_count += 1;
                } else {
                    by_bytes += 1;
                }
            }
            q.items.push_back((span, size));
            q.bytes += size;
            q.pushed += 1;
            drop_counts(&self.telemetry, by_count, by_bytes);
            (q.items.len() >= self.batch_size, q.items.len(), q.bytes)
        };
        m.queue_items.set(len as i64);
        m.queue_bytes.set(bytes as i64);
        if full {
            self.ready.notify_one();
        }
    }

    /// Up to `batch_size` spans, oldest first.
    pub fn take_batch(&self) -> Vec<Arc<Span>> {
        let (batch, len, bytes) = {
            let mut q = self.inner.lock().expect("otlp queue lock");
            let q = &mut *q;
            let n = q.items.len().min(self.batch_size);
            let mut out = Vec::with_capacity(n);
            for (s, b) in q.items.drain(..n) {
                out.push(s);
                q.bytes -= b;
            }
            (out, q.items.len(), q.bytes)
        };
        self.telemetry.otlp.queue_items.set(len as i64);
        self.telemetry.otlp.queue_bytes.set(bytes as i64);
        batch
    }

    /// Empty the queue, counting every span as dropped for `reason`.
    pub fn drop_all(&self, reason: &'static str) -> usize {
        let n = {
            let mut q = self.inner.lock().expect("otlp queue lock");
            let n = q.items.len();
            q.items.clear();
            q.bytes = 0;
            n
        };
        self.telemetry.otlp.drop_items(SIGNAL, reason, n as u64);
        self.telemetry.otlp.queue_items.set(0);
        self.telemetry.otlp.queue_bytes.set(0);
        n
    }

    pub fn queued(&self) -> usize {
        self.inner.lock().expect("otlp queue lock").items.len()
    }

    pub fn has_full_batch(&self) -> bool {
        self.queued() >= self.batch_size
    }

    #[cfg(test)]
    pub fn pushed(&self) -> u64 {
        self.inner.lock().expect("otlp queue lock").pushed
    }

    /// Resolves once a full batch was signalled since the last call.
    pub async fn full_batch(&self) {
        self.ready.notified().await
    }
}

fn drop_counts(t: &Telemetry, by_count: u64, by_bytes: u64) {
    t.otlp.drop_items(SIGNAL, "queue_full", by_count);
    t.otlp.drop_items(SIGNAL, "queue_bytes", by_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::otlp::encode::tests::test_span;
    use crate::identity::Service;

    fn span(i: u32) -> Arc<Span> {
        let svc = Arc::new(Service { name: "s".into(), version: None, attributes: vec![] });
        let mut s = test_span(&svc, i, "x");
        s.request_tid = i;
        Arc::new(s)
    }

    #[test]
    fn count_bound_drops_oldest_and_counts() {
        let t = Telemetry::new();
        let q = SpanQueue::new(10, usize::MAX, 4, vec![], t.clone());
        let tx = q.sender();
        for i in 0..25 {
            tx.send(span(i));
        }
        assert_eq!(q.queued(), 10);
        assert_eq!(t.otlp.dropped_items("traces", "queue_full"), 15);
        // The newest ten are left, oldest first.
        let mut got = Vec::new();
        while q.queued() > 0 {
            got.extend(q.take_batch().iter().map(|s| s.request_tid));
        }
        assert_eq!(got, (15..25).collect::<Vec<_>>());
        assert_eq!(t.otlp.queue_items.get(), 0);
        assert_eq!(t.otlp.queue_bytes.get(), 0);
    }

    #[test]
    fn byte_bound_drops_oldest_and_counts() {
        let t = Telemetry::new();
        let one = estimate_bytes(&span(0));
        let q = SpanQueue::new(1000, one * 3 + one / 2, 512, vec![], t.clone());
        for i in 0..10 {
            q.push(span(i));
        }
        assert_eq!(q.queued(), 3);
        assert_eq!(t.otlp.dropped_items("traces", "queue_bytes"), 7);
        assert_eq!(t.otlp.queue_bytes.get() as usize, one * 3);
        // Accounting: everything sent is either queued or counted as dropped.
        assert_eq!(q.pushed(), 10);
    }

    #[test]
    fn a_span_larger_than_the_byte_bound_is_refused() {
        let t = Telemetry::new();
        let q = SpanQueue::new(10, 10, 4, vec![], t.clone());
        q.push(span(1));
        assert_eq!(q.queued(), 0);
        assert_eq!(t.otlp.dropped_items("traces", "too_large"), 1);
    }

    #[test]
    fn the_backends_own_server_spans_are_not_exported() {
        let t = Telemetry::new();
        let own: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let q = SpanQueue::new(10, usize::MAX, 4, vec![own], t.clone());
        q.push(span(1)); // test_span: SERVER on 127.0.0.1:8080
        let mut client = (*span(2)).clone();
        client.kind = SpanKind::Client;
        q.push(Arc::new(client));
        assert_eq!(q.queued(), 1);
        assert_eq!(t.otlp.dropped_items("traces", "own_traffic"), 1);
    }

    #[tokio::test]
    async fn a_full_batch_wakes_the_exporter() {
        let t = Telemetry::new();
        let q = SpanQueue::new(100, usize::MAX, 3, vec![], t);
        let tx = q.sender();
        assert_eq!(q.senders(), 1);
        for i in 0..3 {
            tx.send(span(i));
        }
        tokio::time::timeout(std::time::Duration::from_secs(1), q.full_batch()).await.expect("woken");
        assert!(q.has_full_batch());
        assert_eq!(q.take_batch().len(), 3);
        drop(tx);
        assert_eq!(q.senders(), 0);
        assert_eq!(q.drop_all("shutdown"), 0);
    }
}
