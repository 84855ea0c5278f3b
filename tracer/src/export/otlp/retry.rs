//! When to send a request again, and how long to wait first (OTLP
//! specification, "Failures" and "OTLP/HTTP Throttling"): only the retryable
//! gRPC codes and HTTP statuses are retried, with exponential backoff and
//! jitter, or after exactly the delay the server asked for (Retry-After,
//! google.rpc.RetryInfo). A batch has a time budget; at shutdown the budget
//! shrinks to the flush deadline. In: a closure that sends one attempt. Out:
//! `Delivery`, sent (maybe partially rejected) or dropped with a reason.

use std::{
    future::Future,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    sync::watch,
    time::{Instant, sleep_until, timeout_at},
};

use crate::telemetry::Telemetry;

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx / OK. `rejected` items were refused in a partial success: they
    /// are counted and never retried (the specification says so).
    Accepted { rejected: u64, message: String },
    /// Worth another try, after `after` when the server said so.
    Retryable { after: Option<Duration>, error: &'static str, detail: String },
    /// Never worth another try (bad request, auth, ...).
    Permanent { error: &'static str, detail: String },
}

/// How a request ended, after its retries.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Sent { rejected: u64, message: String },
    Dropped { reason: &'static str, detail: String },
}

/// gRPC codes the OTLP specification lists as retryable. RESOURCE_EXHAUSTED
/// only when the server attached RetryInfo (it can recover).
pub fn grpc_retryable(code: tonic::Code, has_retry_info: bool) -> bool {
    use tonic::Code::*;
    match code {
        Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss => true,
        ResourceExhausted => has_retry_info,
        _ => false,
    }
}

/// HTTP statuses the OTLP/HTTP specification lists as retryable.
pub fn http_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Metric label of a gRPC failure.
pub fn grpc_error_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
        _ => "grpc_other",
    }
}

/// Metric label of an HTTP failure status.
pub fn http_error_label(status: u16) -> &'static str {
    const KNOWN: [(u16, &str); 10] = [
        (400, "http_400"),
        (401, "http_401"),
        (403, "http_403"),
        (404, "http_404"),
        (413, "http_413"),
        (429, "http_429"),
        (500, "http_500"),
        (502, "http_502"),
        (503, "http_503"),
        (504, "http_504"),
    ];
    match KNOWN.iter().find(|(s, _)| *s == status) {
        Some((_, label)) => label,
        None if (400..500).contains(&status) => "http_4xx",
        None if (500..600).contains(&status) => "http_5xx",
        None => "http_other",
    }
}

/// A Retry-After value: delay-seconds or an HTTP-date (IMF-fixdate).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(v: &str) -> Option<SystemTime> {
    let f: Vec<&str> = v.split_whitespace().collect();
    if f.len() != 6 || f[5] != "GMT" {
        return None;
    }
    let day: u32 = f[1].parse().ok()?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == f[2])? as u32 + 1;
    let year: i64 = f[3].parse().ok()?;
    let t: Vec<u64> = f[4].split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if t.len() != 3 || t[0] > 23 || t[1] > 59 || t[2] > 60 || !(1..=31).contains(&day) {
        return None;
    }
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * i64::from(m) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Exponential backoff: `initial * 2^attempt`, capped at `max`, then
/// jittered by ±50 % so agents that lost the same backend do not come back
/// in lockstep (never above `max`).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (0 = the first retry); `unit` is
    /// a random number in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.initial.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(self.max);
        base.mul_f64(0.5 + unit.clamp(0.0, 1.0)).min(self.max)
    }
}

/// The shutdown signal as the exporter sees it: once it fires, every wait
/// ends by `deadline` (shutdown time + the flush timeout).
pub struct Stop {
    rx: watch::Receiver<bool>,
    grace: Duration,
    deadline: Option<Instant>,
}

impl Stop {
    pub fn new(rx: watch::Receiver<bool>, grace: Duration) -> Self {
        let mut s = Stop { rx, grace, deadline: None };
        s.stopping();
        s
    }

    /// Whether shutdown has fired (a dropped sender counts as fired).
    pub fn stopping(&mut self) -> bool {
        if self.deadline.is_none() && (*self.rx.borrow() || self.rx.has_changed().is_err()) {
            self.deadline = Some(Instant::now() + self.grace);
        }
        self.deadline.is_some()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Resolves when shutdown fires.
    pub async fn fired(&mut self) {
        while !self.stopping() {
            if self.rx.changed().await.is_err() {
                // The sender is gone: nobody will ever say stop, so stop.
                self.stopping();
                return;
            }
        }
    }

    /// Sleep until `at`, or until shutdown fires (returns false then).
    pub async fn sleep_until(&mut self, at: Instant) -> bool {
        if self.stopping() {
            sleep_until(at.min(self.deadline.expect("stopping"))).await;
            return true;
        }
        tokio::select! {
            _ = sleep_until(at) => true,
            _ = self.fired() => false,
        }
    }
}

/// Send with retries until accepted, refused for good, or out of time
/// (`budget` from now, or the shutdown deadline, whichever comes first).
pub async fn deliver<F, Fut>(
    mut send: F,
    backoff: Backoff,
    budget: Duration,
    stop: &mut Stop,
    telemetry: &Telemetry,
    signal: &'static str,
) -> Delivery
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let give_up = Instant::now() + budget;
    let limit = |stop: &Stop| stop.deadline().map_or(give_up, |d| d.min(give_up));
    let m = &telemetry.otlp;
    let mut attempt = 0u32;
    loop {
        let outcome = match timeout_at(limit(stop), send()).await {
            Ok(o) => o,
            Err(_) => {
                Outcome::Retryable { after: None, error: "timeout", detail: "no answer within the time left".into() }
            }
        };
        let (after, error, detail) = match outcome {
            Outcome::Accepted { rejected, message } => return Delivery::Sent { rejected, message },
            Outcome::Permanent { error, detail } => {
                m.send_errors.get_or_create(&vec![("signal", signal), ("error", error)]).inc();
                return Delivery::Dropped { reason: "rejected", detail };
            }
            Outcome::Retryable { after, error, detail } => (after, error, detail),
        };
        m.send_errors.get_or_create(&vec![("signal", signal), ("error", error)]).inc();
        let delay = after.unwrap_or_else(|| backoff.delay(attempt, fastrand::f64()));
        let wake = Instant::now() + delay;
        if wake >= limit(stop) {
            let reason = if stop.stopping() { "shutdown" } else { "retries_exhausted" };
            return Delivery::Dropped {
                reason,
                detail: format!("{detail} (next retry in {delay:?} would pass the deadline)"),
            };
        }
        tracing::debug!(signal, error, ?delay, "OTLP export failed, retrying: {detail}");
        // Shutdown during the wait: retry at once, the flush deadline bounds it.
        stop.sleep_until(wake).await;
        m.retries.get_or_create(&vec![("signal", signal)]).inc();
        attempt += 1;
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
