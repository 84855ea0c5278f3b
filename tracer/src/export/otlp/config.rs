//! `[otlp]` settings and how they resolve with the OpenTelemetry SDK
//! environment variables into one `ResolvedOtlp`.
//!
//! Precedence, later wins: defaults, the generic `OTEL_EXPORTER_OTLP_*`
//! variable, its signal-specific `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_*`
//! variant, then the config file (`[otlp]`, where the lead's CLI flags land
//! too). The environment is the base an operator shares with every SDK; an
//! explicit config is the more specific intent. Empty variables count as
//! unset, as the specification says.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use reqwest::{
    Url,
    header::{HeaderName, HeaderValue},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;

/// `[otlp]` in the config file. Every key is optional: unset keys fall back
/// to the OTEL_* variable named in its comment, then to the default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Base URL for every signal (OTEL_EXPORTER_OTLP_ENDPOINT). With
    /// http/protobuf, /v1/traces and /v1/metrics are appended. Unset
    /// everywhere: nothing is exported.
    pub endpoint: Option<String>,
    /// Traces URL used as is (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
    pub traces_endpoint: Option<String>,
    /// Metrics URL used as is (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT).
    pub metrics_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (OTEL_EXPORTER_OTLP_PROTOCOL). Default http/protobuf.
    pub protocol: Option<String>,
    /// Headers sent with every request, on top of OTEL_EXPORTER_OTLP_HEADERS.
    pub headers: BTreeMap<String, String>,
    /// Timeout of one request, ms (OTEL_EXPORTER_OTLP_TIMEOUT). Default 10000.
    pub timeout_ms: Option<u64>,
    /// `gzip` or `none` (OTEL_EXPORTER_OTLP_COMPRESSION). Default none.
    pub compression: Option<String>,
    /// PEM file of the CA that signs the backend's certificate
    /// (OTEL_EXPORTER_OTLP_CERTIFICATE). Default: the system's roots.
    pub certificate: Option<PathBuf>,
    /// PEM client certificate for mTLS (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE).
    pub client_certificate: Option<PathBuf>,
    /// PEM private key of the client certificate (OTEL_EXPORTER_OTLP_CLIENT_KEY).
    pub client_key: Option<PathBuf>,
    /// Added to every resource where the traced process did not set the key
    /// itself, on top of OTEL_RESOURCE_ATTRIBUTES.
    pub resource_attributes: BTreeMap<String, String>,
    /// Longest wait before a partial batch is sent, ms (OTEL_BSP_SCHEDULE_DELAY). Default 1000.
    pub schedule_delay_ms: Option<u64>,
    /// Spans per batch (OTEL_BSP_MAX_EXPORT_BATCH_SIZE). Default 512.
    pub max_export_batch_size: Option<usize>,
    /// Spans queued at most (OTEL_BSP_MAX_QUEUE_SIZE). Default 8192: one agent
    /// carries a whole node's services, more than one SDK's 2048.
    pub max_queue_size: Option<usize>,
    /// Estimated bytes queued at most. Default 32 MiB.
    pub max_queue_bytes: Option<usize>,
    /// Encoded size one request stays under; larger batches are split.
    /// Default 4 MiB less 64 KiB of headroom (gRPC servers' default limit is 4 MiB).
    pub max_request_bytes: Option<usize>,
    /// Time one batch may take, retries included, ms (OTEL_BSP_EXPORT_TIMEOUT). Default 30000.
    pub export_timeout_ms: Option<u64>,
    /// First retry delay, ms; doubles up to `max_backoff_ms`, with ±50 % jitter. Default 1000.
    pub initial_backoff_ms: Option<u64>,
    /// Longest retry delay, ms. Default 30000.
    pub max_backoff_ms: Option<u64>,
    /// At shutdown, time to flush what is queued, ms. Default 5000.
    pub shutdown_timeout_ms: Option<u64>,
    /// Metrics export period, ms (OTEL_METRIC_EXPORT_INTERVAL). Default 60000.
    pub metric_export_interval_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// Label value on the exporter's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }

    /// Path the OTLP/HTTP specification appends to a base endpoint.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// PEM contents read (and checked) at resolution, so a bad file fails the
/// start and not the first export.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsFiles {
    // Never print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca_pem.as_ref().map(Vec::len))
            .field("client_cert", &self.client_cert_pem.as_ref().map(Vec::len))
            .field("client_key", &self.client_key_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where and how one signal is sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub signal: Signal,
    /// Final URL: for HTTP the request target; for gRPC the server (its path is ignored).
    pub url: Url,
    /// Which setting the URL came from, for error messages.
    pub source: String,
    pub protocol: Protocol,
    /// Lower-case names, validated as HTTP header names and values.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    pub tls: TlsFiles,
}

/// Everything the exporter needs, validated.
#[derive(Clone, Debug)]
pub struct ResolvedOtlp {
    pub traces: Option<Endpoint>,
    pub metrics: Option<Endpoint>,
    /// The agent's OTEL_RESOURCE_ATTRIBUTES and `resource_attributes`.
    pub resource_attributes: Vec<(String, String)>,
    pub schedule_delay: Duration,
    pub max_export_batch_size: usize,
    pub max_queue_size: usize,
    pub max_queue_bytes: usize,
    pub max_request_bytes: usize,
    pub export_timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub shutdown_timeout: Duration,
    pub metric_export_interval: Duration,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A set value and the name of the setting it came from.
type Sourced<T> = Option<(T, String)>;

impl OtlpConfig {
    /// Defaults, then OTEL_* variables, then this config on top. `None` when
    /// no endpoint is set anywhere (nothing is exported).
    pub fn resolve(file: &OtlpConfig, env: Env<'_>) -> Result<Option<ResolvedOtlp>> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let traces = file.endpoint_for(Signal::Traces, &env)?;
        let metrics = file.endpoint_for(Signal::Metrics, &env)?;
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        let ms = |file: Option<u64>, var: &str, default: u64| -> Result<Duration> {
            Ok(Duration::from_millis(match (file, env(var)) {
                (Some(v), _) => v,
                (None, Some(v)) => parse_u64(&v, var)?,
                (None, None) => default,
            }))
        };
        let count = |file: Option<usize>, var: &str, default: usize| -> Result<usize> {
            let v = match (file, env(var)) {
                (Some(v), _) => v,
                (None, Some(v)) => parse_u64(&v, var)? as usize,
                (None, None) => default,
            };
            if v == 0 {
                bail!("{var} (or its [otlp] key) must be greater than 0");
            }
            Ok(v)
        };
        let mut resource_attributes = match env("OTEL_RESOURCE_ATTRIBUTES") {
            // The specification: a malformed value is discarded whole, with an error logged.
            Some(v) => parse_key_values(&v).unwrap_or_else(|e| {
                tracing::warn!("ignoring OTEL_RESOURCE_ATTRIBUTES: {e}");
                Vec::new()
            }),
            None => Vec::new(),
        };
        overlay(&mut resource_attributes, &file.resource_attributes);
        let max_queue_size = count(file.max_queue_size, "OTEL_BSP_MAX_QUEUE_SIZE", 8192)?;
        // The specification: the batch size must not exceed the queue size.
        let max_export_batch_size =
            count(file.max_export_batch_size, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.min(max_queue_size);
        Ok(Some(ResolvedOtlp {
            traces,
            metrics,
            resource_attributes,
            schedule_delay: ms(file.schedule_delay_ms, "OTEL_BSP_SCHEDULE_DELAY", 1000)?.max(Duration::from_millis(1)),
            max_export_batch_size,
            max_queue_size,
            max_queue_bytes: file.max_queue_bytes.unwrap_or(32 << 20).max(1),
            max_request_bytes: file.max_request_bytes.unwrap_or((4 << 20) - (64 << 10)).max(1024),
            export_timeout: ms(file.export_timeout_ms, "OTEL_BSP_EXPORT_TIMEOUT", 30_000)?,
            initial_backoff: Duration::from_millis(file.initial_backoff_ms.unwrap_or(1000).max(1)),
            max_backoff: Duration::from_millis(file.max_backoff_ms.unwrap_or(30_000).max(1)),
            shutdown_timeout: Duration::from_millis(file.shutdown_timeout_ms.unwrap_or(5000)),
            metric_export_interval: ms(file.metric_export_interval_ms, "OTEL_METRIC_EXPORT_INTERVAL", 60_000)?
                .max(Duration::from_millis(1)),
        }))
    }

    fn endpoint_for(&self, signal: Signal, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Endpoint>> {
        let sig = signal.env();
        // A per-signal variable wins over the generic one.
        let var = |suffix: &str| -> Sourced<String> {
            let specific = format!("OTEL_EXPORTER_OTLP_{sig}_{suffix}");
            let generic = format!("OTEL_EXPORTER_OTLP_{suffix}");
            env(&specific).map(|v| (v, specific)).or_else(|| env(&generic).map(|v| (v, generic)))
        };
        let file_str = |v: &Option<String>, key: &str| v.clone().map(|v| (v, format!("otlp.{key}")));

        let protocol = match file_str(&self.protocol, "protocol").or_else(|| var("PROTOCOL")) {
            None => Protocol::HttpProtobuf,
            Some((v, src)) => match v.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                "http/json" => bail!("{src}=http/json is not supported: use grpc or http/protobuf"),
                other => bail!("{src}={other:?} is not a protocol: use grpc or http/protobuf"),
            },
        };
        // (value, source, append the signal path)
        let specific_file = match signal {
            Signal::Traces => file_str(&self.traces_endpoint, "traces_endpoint"),
            Signal::Metrics => file_str(&self.metrics_endpoint, "metrics_endpoint"),
        };
        let specific_env = format!("OTEL_EXPORTER_OTLP_{sig}_ENDPOINT");
        let raw = specific_file
            .map(|(v, s)| (v, s, false))
            .or_else(|| file_str(&self.endpoint, "endpoint").map(|(v, s)| (v, s, true)))
            .or_else(|| env(&specific_env).map(|v| (v, specific_env.clone(), false)))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|v| (v, "OTEL_EXPORTER_OTLP_ENDPOINT".into(), true)));
        let Some((raw, source, base)) = raw else { return Ok(None) };
        let url =
            parse_endpoint(&raw, &source, (base && protocol == Protocol::HttpProtobuf).then(|| signal.http_path()))?;

        let mut headers = match var("HEADERS") {
            Some((v, src)) => parse_key_values(&v).with_context(|| format!("parsing {src}"))?,
            None => Vec::new(),
        };
        overlay(&mut headers, &self.headers);
        for (k, v) in &mut headers {
            *k = k.to_ascii_lowercase();
            HeaderName::from_bytes(k.as_bytes()).with_context(|| format!("OTLP header name {k:?} is not valid"))?;
            HeaderValue::from_str(v)
                .with_context(|| format!("OTLP header {k}: its value is not a valid header value"))?;
        }
        let timeout = match self.timeout_ms {
            Some(v) => v,
            None => match var("TIMEOUT") {
                Some((v, src)) => parse_u64(&v, &src)?,
                None => 10_000,
            },
        };
        let compression = match file_str(&self.compression, "compression").or_else(|| var("COMPRESSION")) {
            None => Compression::None,
            Some((v, src)) => match v.trim() {
                "gzip" => Compression::Gzip,
                "none" | "" => Compression::None,
                other => bail!("{src}={other:?} is not supported: use gzip or none"),
            },
        };
        let path = |file: &Option<PathBuf>, key: &str, suffix: &str| -> Sourced<PathBuf> {
            file.clone().map(|p| (p, format!("otlp.{key}"))).or_else(|| var(suffix).map(|(v, s)| (PathBuf::from(v), s)))
        };
        let tls = read_tls(
            path(&self.certificate, "certificate", "CERTIFICATE"),
            path(&self.client_certificate, "client_certificate", "CLIENT_CERTIFICATE"),
            path(&self.client_key, "client_key", "CLIENT_KEY"),
        )?;
        Ok(Some(Endpoint {
            signal,
            url,
            source,
            protocol,
            headers,
            timeout: Duration::from_millis(timeout.max(1)),
            compression,
            tls,
        }))
    }
}

/// Parse and check an endpoint; `append` is the signal path for a base URL.
fn parse_endpoint(raw: &str, source: &str, append: Option<&str>) -> Result<Url> {
    let raw = raw.trim();
    let bad = |why: &str| anyhow::anyhow!("OTLP endpoint {raw:?} (from {source}) {why}");
    let mut url = Url::parse(raw)
        .map_err(|e| bad(&format!("is not a URL: {e}; expected http://host:port or https://host:port")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if url.port_or_known_default() == Some(0) {
        return Err(bad("has port 0"));
    }
    if let Some(p) = append {
        let joined = format!("{}{p}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
    }
    Ok(url)
}

fn read_tls(ca: Sourced<PathBuf>, cert: Sourced<PathBuf>, key: Sourced<PathBuf>) -> Result<TlsFiles> {
    let read = |what: &str, f: &Sourced<PathBuf>| -> Result<Option<Vec<u8>>> {
        let Some((p, src)) = f else { return Ok(None) };
        std::fs::read(p).with_context(|| format!("reading the OTLP {what} {} (from {src})", p.display())).map(Some)
    };
    let files = TlsFiles {
        ca_pem: read("CA certificate", &ca)?,
        client_cert_pem: read("client certificate", &cert)?,
        client_key_pem: read("client key", &key)?,
    };
    let certs = |pem: &[u8], what: &str, f: &Sourced<PathBuf>| -> Result<()> {
        let src = f.as_ref().map(|(p, s)| format!("{} (from {s})", p.display())).unwrap_or_default();
        let n = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("the OTLP {what} {src} is not valid PEM"))?
            .len();
        if n == 0 {
            bail!("the OTLP {what} {src} holds no PEM CERTIFICATE block");
        }
        Ok(())
    };
    if let Some(pem) = &files.ca_pem {
        certs(pem, "CA certificate", &ca)?;
    }
    if let Some(pem) = &files.client_cert_pem {
        certs(pem, "client certificate", &cert)?;
    }
    if let Some(pem) = &files.client_key_pem {
        let (p, s) = key.as_ref().expect("read above");
        PrivateKeyDer::from_pem_slice(pem)
            .with_context(|| format!("the OTLP client key {} (from {s}) holds no PEM private key", p.display()))?;
    }
    match (&files.client_cert_pem, &files.client_key_pem) {
        (Some(_), None) => {
            bail!("an OTLP client certificate is set without its key (OTEL_EXPORTER_OTLP_CLIENT_KEY / otlp.client_key)")
        }
        (None, Some(_)) => bail!(
            "an OTLP client key is set without its certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE / otlp.client_certificate)"
        ),
        _ => Ok(files),
    }
}

fn parse_u64(v: &str, src: &str) -> Result<u64> {
    v.trim().parse().with_context(|| format!("{src}={v:?} is not a whole number of milliseconds"))
}

/// `k1=v1,k2=v2` with percent-encoded values (W3C baggage form, used by
/// OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES).
pub fn parse_key_values(s: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else { bail!("{item:?} is not key=value") };
        let k = percent_decode(k.trim())?;
        if k.is_empty() {
            bail!("{item:?} has an empty key");
        }
        let v = percent_decode(v.trim())?;
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(x) = hex else { bail!("{s:?} has a bad %-escape") };
            out.push(x);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).with_context(|| format!("{s:?} is not UTF-8 once decoded"))
}

/// Set every key of `over` in `base` (replacing, else appending).
fn overlay(base: &mut Vec<(String, String)>, over: &BTreeMap<String, String>) {
    for (k, v) in over {
        match base.iter_mut().find(|(bk, _)| bk == k) {
            Some(e) => e.1 = v.clone(),
            None => base.push((k.clone(), v.clone())),
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
