//! Retry classification, backoff bounds, Retry-After, and the retry driver
//! on tokio's paused clock.

use std::sync::{Arc, Mutex};

use super::*;

#[test]
fn retryable_grpc_codes() {
    use tonic::Code::*;
    for c in [Cancelled, DeadlineExceeded, Aborted, OutOfRange, Unavailable, DataLoss] {
        assert!(grpc_retryable(c, false), "{c:?}");
    }
    for c in [
        Ok,
        Unknown,
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        FailedPrecondition,
        Unimplemented,
        Internal,
        Unauthenticated,
    ] {
        assert!(!grpc_retryable(c, true), "{c:?}");
    }
    assert!(!grpc_retryable(ResourceExhausted, false));
    assert!(grpc_retryable(ResourceExhausted, true));
}

#[test]
fn retryable_http_statuses() {
    for s in [429, 502, 503, 504] {
        assert!(http_retryable(s), "{s}");
    }
    for s in [200, 400, 401, 403, 404, 413, 500, 501, 505] {
        assert!(!http_retryable(s), "{s}");
    }
    assert_eq!(http_error_label(503), "http_503");
    assert_eq!(http_error_label(418), "http_4xx");
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
    for attempt in 0..40 {
        let base = (100u64 << attempt.min(20)).min(5000);
        let lo = b.delay(attempt, 0.0);
        let hi = b.delay(attempt, 0.999_999);
        assert_eq!(lo, Duration::from_millis(base / 2), "attempt {attempt}");
        assert!(hi <= Duration::from_secs(5) && hi >= lo, "attempt {attempt}: {hi:?}");
        if base * 3 / 2 <= 5000 {
            assert!(hi >= Duration::from_millis(base * 3 / 2 - 1), "attempt {attempt}: {hi:?}");
        }
    }
    // Random units stay within the band.
    for _ in 0..1000 {
        let d = b.delay(3, fastrand::f64());
        assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(1200), "{d:?}");
    }
}

#[test]
fn retry_after_values() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
    assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO), "past dates mean now");
    assert_eq!(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", UNIX_EPOCH), Some(Duration::ZERO));
    assert_eq!(parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"), Some(UNIX_EPOCH + Duration::from_secs(1_835_481_599)));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-1", now), None);
}

/// A scripted server: one outcome per attempt, and when each came.
fn script(outcomes: Vec<Outcome>) -> (impl FnMut() -> std::future::Ready<Outcome>, Arc<Mutex<Vec<Instant>>>) {
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let mut it = outcomes.into_iter();
    let f = move || {
        t.lock().unwrap().push(Instant::now());
        std::future::ready(it.next().expect("no more scripted outcomes"))
    };
    (f, times)
}

fn ok() -> Outcome {
    Outcome::Accepted { rejected: 0, message: String::new() }
}

fn unavailable(after: Option<u64>) -> Outcome {
    Outcome::Retryable { after: after.map(Duration::from_secs), error: "http_503", detail: "503".into() }
}

const B: Backoff = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) };

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_then_sent() {
    let t = Telemetry::new();
    let (_tx, rx) = watch::channel(false);
    let mut stop = Stop::new(rx, Duration::from_secs(5));
    let (send, times) = script(vec![unavailable(Some(7)), ok()]);
    let start = Instant::now();
    let d = deliver(send, B, Duration::from_secs(30), &mut stop, &t, "traces").await;
    assert_eq!(d, Delivery::Sent { rejected: 0, message: String::new() });
    let times = times.lock().unwrap();
    assert_eq!(times[1] - start, Duration::from_secs(7), "waited exactly Retry-After");
    assert_eq!(t.otlp.retries.get_or_create(&vec![("signal", "traces")]).get(), 1);
    assert_eq!(t.otlp.send_errors.get_or_create(&vec![("signal", "traces"), ("error", "http_503")]).get(), 1);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let t = Telemetry::new();
    let (_tx, rx) = watch::channel(false);
    let mut stop = Stop::new(rx, Duration::from_secs(5));
    let (send, times) = script(vec![Outcome::Permanent { error: "http_400", detail: "bad".into() }]);
    let d = deliver(send, B, Duration::from_secs(30), &mut stop, &t, "traces").await;
    assert_eq!(d, Delivery::Dropped { reason: "rejected", detail: "bad".into() });
    assert_eq!(times.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_until_the_budget_runs_out() {
    let t = Telemetry::new();
    let (_tx, rx) = watch::channel(false);
    let mut stop = Stop::new(rx, Duration::from_secs(5));
    let (send, times) = script((0..100).map(|_| unavailable(None)).collect());
    let start = Instant::now();
    let d = deliver(send, B, Duration::from_secs(30), &mut stop, &t, "traces").await;
    assert!(matches!(d, Delivery::Dropped { reason: "retries_exhausted", .. }), "{d:?}");
    let times = times.lock().unwrap();
    // 1 s, 2 s, 4 s, 8 s, ... each ±50 %: between 4 and 7 attempts fit in 30 s.
    assert!((4..=7).contains(&times.len()), "{} attempts", times.len());
    for w in times.windows(2).enumerate() {
        let (i, w) = w;
        let gap = w[1] - w[0];
        let base = Duration::from_secs(1 << i);
        assert!(gap >= base / 2 && gap <= base * 3 / 2, "retry {i}: waited {gap:?}");
    }
    assert!(*times.last().unwrap() - start < Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_budget_drops_at_once() {
    let t = Telemetry::new();
    let (_tx, rx) = watch::channel(false);
    let mut stop = Stop::new(rx, Duration::from_secs(5));
    let (send, times) = script(vec![unavailable(Some(3600))]);
    let start = Instant::now();
    let d = deliver(send, B, Duration::from_secs(30), &mut stop, &t, "traces").await;
    assert!(matches!(d, Delivery::Dropped { reason: "retries_exhausted", .. }));
    assert_eq!(times.lock().unwrap().len(), 1);
    assert_eq!(Instant::now() - start, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cuts_the_wait_and_bounds_the_flush() {
    let t = Telemetry::new();
    let (tx, rx) = watch::channel(false);
    let mut stop = Stop::new(rx, Duration::from_secs(2));
    let (send, times) = script(vec![unavailable(Some(20)), unavailable(Some(1)), unavailable(Some(5))]);
    let start = Instant::now();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(true).unwrap();
        tx
    });
    let d = deliver(send, B, Duration::from_secs(60), &mut stop, &t, "traces").await;
    let _tx = stopper.await.unwrap();
    // Attempt at 0 (asks 20 s), shutdown at 3 s: retry at once; it asks 1 s
    // (fits the 2 s flush window), then 5 s (does not): dropped as shutdown.
    let times: Vec<Duration> = times.lock().unwrap().iter().map(|t| *t - start).collect();
    assert_eq!(times, [Duration::ZERO, Duration::from_secs(3), Duration::from_secs(4)]);
    assert!(matches!(d, Delivery::Dropped { reason: "shutdown", .. }), "{d:?}");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_hangs_is_cut_by_the_budget() {
    let t = Telemetry::new();
    let (_tx, rx) = watch::channel(false);
    let mut stop = Stop::new(rx, Duration::from_secs(5));
    let d = deliver(std::future::pending::<Outcome>, B, Duration::from_secs(10), &mut stop, &t, "traces").await;
    assert!(matches!(d, Delivery::Dropped { reason: "retries_exhausted", .. }), "{d:?}");
    assert_eq!(t.otlp.send_errors.get_or_create(&vec![("signal", "traces"), ("error", "timeout")]).get(), 1);
}
