//! The exporter end to end in-process, against a scripted OTLP/HTTP server
//! (axum; prost decodes what arrives): batching, splitting, partial
//! success, shutdown flush. The e2e tests do the same against the official
//! Python receiver with the real agent.

use std::sync::Mutex;

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

use super::*;
use crate::{export::otlp::encode::tests::test_span, identity::Service};

#[derive(Default)]
struct Seen {
    /// Spans and encoded bytes of each request.
    requests: Vec<(usize, usize)>,
    /// Partial-success rejections to report, per request, in order.
    reject: Vec<i64>,
}

async fn serve(seen: Arc<Mutex<Seen>>) -> String {
    async fn traces(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> (StatusCode, Vec<u8>) {
        let req = ExportTraceServiceRequest::decode(body.clone()).expect("a valid OTLP request");
        let n = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        let mut s = seen.lock().unwrap();
        s.requests.push((n, body.len()));
        let rejected = if s.reject.is_empty() { 0 } else { s.reject.remove(0) };
        let resp = ExportTraceServiceResponse {
            partial_success: (rejected > 0)
                .then(|| ExportTracePartialSuccess { rejected_spans: rejected, error_message: "too old".into() }),
        };
        (StatusCode::OK, resp.encode_to_vec())
    }
    let app = Router::new().route("/v1/traces", post(traces)).with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn settings(endpoint: &str, file: OtlpConfig) -> ResolvedOtlp {
    let endpoint = endpoint.to_string();
    OtlpConfig::resolve(&file, &move |k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| endpoint.clone()))
        .unwrap()
        .unwrap()
}

fn spans(n: usize) -> Vec<Arc<Span>> {
    let svc = Arc::new(Service { name: "svc".into(), version: None, attributes: vec![] });
    (0..n).map(|i| Arc::new(test_span(&svc, 1 + (i % 3) as u32, "GET /x"))).collect()
}

#[tokio::test]
async fn batches_then_flushes_at_shutdown() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = serve(seen.clone()).await;
    let cfg = settings(
        &url,
        OtlpConfig { schedule_delay_ms: Some(60_000), max_export_batch_size: Some(10), ..Default::default() },
    );
    let t = Telemetry::new();
    let exporter = OtlpExporter::new(cfg, t.clone()).await.unwrap();
    let tx = exporter.sender();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(exporter.run(stop_rx));
    for s in spans(25) {
        tx.send(s);
    }
    // Two full batches go at once; the last 5 wait for the (long) delay.
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().requests.len() < 2 {
        assert!(Instant::now() < deadline, "full batches were not sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.lock().unwrap().requests.iter().map(|r| r.0).collect::<Vec<_>>(), [10, 10]);
    drop(tx);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("run returns after the flush").unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().requests.iter().map(|r| r.0).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(t.otlp.exported_items("traces"), 25);
}

#[tokio::test]
async fn partial_success_is_counted_and_not_retried() {
    let seen = Arc::new(Mutex::new(Seen { reject: vec![3], ..Default::default() }));
    let url = serve(seen.clone()).await;
    let cfg = settings(&url, OtlpConfig { schedule_delay_ms: Some(10), ..Default::default() });
    let t = Telemetry::new();
    let exporter = OtlpExporter::new(cfg, t.clone()).await.unwrap();
    let tx = exporter.sender();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(exporter.run(stop_rx));
    for s in spans(8) {
        tx.send(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.otlp.exported_items("traces") + t.otlp.dropped_items("traces", "partial_success") < 8 {
        assert!(Instant::now() < deadline, "not exported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().requests.len(), 1, "a partial success is not retried");
    assert_eq!((t.otlp.exported_items("traces"), t.otlp.dropped_items("traces", "partial_success")), (5, 3));
}

#[tokio::test]
async fn large_batches_are_split_under_the_request_limit() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = serve(seen.clone()).await;
    let limit = 16 << 10;
    let cfg = settings(
        &url,
        OtlpConfig {
            schedule_delay_ms: Some(10),
            max_export_batch_size: Some(500),
            max_request_bytes: Some(limit),
            ..Default::default()
        },
    );
    let t = Telemetry::new();
    let exporter = OtlpExporter::new(cfg, t.clone()).await.unwrap();
    let tx = exporter.sender();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(exporter.run(stop_rx));
    for s in spans(500) {
        tx.send(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.otlp.exported_items("traces") < 500 {
        assert!(Instant::now() < deadline, "not exported: {}", t.otlp.exported_items("traces"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    let reqs = seen.lock().unwrap().requests.clone();
    assert!(reqs.len() > 3, "{reqs:?}");
    assert!(reqs.iter().all(|(_, bytes)| *bytes <= limit), "{reqs:?}");
    assert_eq!(reqs.iter().map(|r| r.0).sum::<usize>(), 500);
}

#[tokio::test]
async fn bad_tls_settings_fail_in_new() {
    let dir = std::env::temp_dir().join(format!("tracer-otlp-mod-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A well-formed PEM block whose content is not a certificate.
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let file = OtlpConfig { certificate: Some(bogus.clone()), ..Default::default() };
    let cfg = settings("https://127.0.0.1:4318", file);
    let e = OtlpExporter::new(cfg, Telemetry::new()).await.err().expect("a bogus CA is refused");
    let msg = format!("{e:#}");
    assert!(msg.contains("TLS settings") && msg.contains("CA certificate"), "{msg}");
}
