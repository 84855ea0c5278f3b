//! One attempt of one OTLP request, over gRPC (tonic, the generated
//! TraceService/MetricsService clients) or HTTP/protobuf (reqwest), with
//! gzip, headers, timeout, TLS and mTLS (rustls with ring). In: an encoded
//! request. Out: `retry::Outcome` (accepted with its partial-success count,
//! retryable with the delay the server asked for, or permanent).

use std::{io::Write as _, str::FromStr, sync::Arc, time::SystemTime};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse, metrics_service_client::MetricsServiceClient,
    },
    trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_client::TraceServiceClient},
};
use prost::Message as _;
use reqwest::{
    Url,
    header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tonic::{
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_types::{RpcStatusExt as _, StatusExt as _};

use super::{
    config::{Compression, Endpoint, Protocol, Signal},
    encode::{AGENT_NAME, AGENT_VERSION},
    retry::{Outcome, grpc_error_label, grpc_retryable, http_error_label, http_retryable, parse_retry_after},
};

/// A request ready to send, possibly several times: HTTP bodies are encoded
/// (and compressed) once; gRPC messages go through tonic's codec per attempt.
pub enum Prepared {
    Http(Bytes),
    GrpcTraces(ExportTraceServiceRequest),
    GrpcMetrics(ExportMetricsServiceRequest),
}

enum Transport {
    Grpc { channel: Channel, metadata: MetadataMap },
    Http { client: reqwest::Client },
}

pub struct SignalClient {
    transport: Transport,
    url: Url,
    signal: Signal,
    gzip: bool,
    timeout: std::time::Duration,
}

impl SignalClient {
    /// Check the settings and build the client; connects lazily, so the
    /// backend need not be up.
    pub fn new(ep: &Endpoint) -> Result<Self> {
        let what = format!("OTLP {} endpoint {} (from {})", ep.signal.label(), ep.url, ep.source);
        let https = ep.url.scheme() == "https";
        // Built for both transports: it is where bad certificates and keys
        // are caught, with a message naming them.
        let tls = rustls_config(ep, https).with_context(|| format!("TLS settings of the {what}"))?;
        let user_agent = format!("{AGENT_NAME}/{AGENT_VERSION}");
        let transport = match ep.protocol {
            Protocol::Grpc => {
                let origin = ep.url.origin().ascii_serialization();
                let mut endpoint = tonic::transport::Endpoint::from_shared(origin)
                    .with_context(|| format!("the {what} is not a gRPC server address"))?
                    .user_agent(user_agent)?
                    .timeout(ep.timeout)
                    .connect_timeout(ep.timeout.min(std::time::Duration::from_secs(5)));
                if https {
                    let mut t = ClientTlsConfig::new().domain_name(ep.url.host_str().unwrap_or_default());
                    t = match &ep.tls.ca_pem {
                        Some(ca) => t.ca_certificate(Certificate::from_pem(ca)),
                        None => t.with_native_roots(),
                    };
                    if let (Some(c), Some(k)) = (&ep.tls.client_cert_pem, &ep.tls.client_key_pem) {
                        t = t.identity(Identity::from_pem(c, k));
                    }
                    endpoint = endpoint.tls_config(t).with_context(|| format!("TLS settings of the {what}"))?;
                }
                let mut metadata = MetadataMap::new();
                for (k, v) in &ep.headers {
                    let key =
                        MetadataKey::from_str(k).with_context(|| format!("header {k:?} is not a gRPC metadata key"))?;
                    let val = MetadataValue::try_from(v.as_str()).with_context(|| format!("header {k}: bad value"))?;
                    metadata.insert(key, val);
                }
                Transport::Grpc { channel: endpoint.connect_lazy(), metadata }
            }
            Protocol::HttpProtobuf => {
                let mut headers = HeaderMap::new();
                for (k, v) in &ep.headers {
                    headers.insert(HeaderName::from_str(k)?, HeaderValue::from_str(v)?);
                }
                let client = reqwest::Client::builder()
                    .tls_backend_preconfigured(tls)
                    .user_agent(user_agent)
                    .default_headers(headers)
                    .timeout(ep.timeout)
                    .connect_timeout(ep.timeout.min(std::time::Duration::from_secs(5)))
                    .build()
                    .with_context(|| format!("building the HTTP client of the {what}"))?;
                Transport::Http { client }
            }
        };
        Ok(SignalClient {
            transport,
            url: ep.url.clone(),
            signal: ep.signal,
            gzip: ep.compression == Compression::Gzip,
            timeout: ep.timeout,
        })
    }

    pub fn prepare_traces(&self, req: ExportTraceServiceRequest) -> Prepared {
        match self.transport {
            Transport::Grpc { .. } => Prepared::GrpcTraces(req),
            Transport::Http { .. } => Prepared::Http(self.body(&req.encode_to_vec())),
        }
    }

    pub fn prepare_metrics(&self, req: ExportMetricsServiceRequest) -> Prepared {
        match self.transport {
            Transport::Grpc { .. } => Prepared::GrpcMetrics(req),
            Transport::Http { .. } => Prepared::Http(self.body(&req.encode_to_vec())),
        }
    }

    fn body(&self, raw: &[u8]) -> Bytes {
        if !self.gzip {
            return Bytes::copy_from_slice(raw);
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::default());
        gz.write_all(raw).expect("writing to a Vec cannot fail");
        Bytes::from(gz.finish().expect("writing to a Vec cannot fail"))
    }

    /// One attempt.
    pub async fn send(&self, p: &Prepared) -> Outcome {
        match (&self.transport, p) {
            (Transport::Http { client }, Prepared::Http(body)) => self.send_http(client, body.clone()).await,
            (Transport::Grpc { channel, metadata }, Prepared::GrpcTraces(req)) => {
                let mut c = TraceServiceClient::new(channel.clone()).accept_compressed(CompressionEncoding::Gzip);
                if self.gzip {
                    c = c.send_compressed(CompressionEncoding::Gzip);
                }
                match c.export(self.grpc_request(req.clone(), metadata)).await {
                    Ok(r) => {
                        let ps = r.into_inner().partial_success.unwrap_or_default();
                        Outcome::Accepted { rejected: ps.rejected_spans.max(0) as u64, message: ps.error_message }
                    }
                    Err(s) => grpc_failure(&s),
                }
            }
            (Transport::Grpc { channel, metadata }, Prepared::GrpcMetrics(req)) => {
                let mut c = MetricsServiceClient::new(channel.clone()).accept_compressed(CompressionEncoding::Gzip);
                if self.gzip {
                    c = c.send_compressed(CompressionEncoding::Gzip);
                }
                match c.export(self.grpc_request(req.clone(), metadata)).await {
                    Ok(r) => {
                        let ps = r.into_inner().partial_success.unwrap_or_default();
                        Outcome::Accepted { rejected: ps.rejected_data_points.max(0) as u64, message: ps.error_message }
                    }
                    Err(s) => grpc_failure(&s),
                }
            }
            _ => unreachable!("a request is prepared by the client that sends it"),
        }
    }

    fn grpc_request<T>(&self, msg: T, metadata: &MetadataMap) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        *r.metadata_mut() = metadata.clone();
        r.set_timeout(self.timeout);
        r
    }

    async fn send_http(&self, client: &reqwest::Client, body: Bytes) -> Outcome {
        let mut rb = client.post(self.url.clone()).header(CONTENT_TYPE, "application/x-protobuf").body(body);
        if self.gzip {
            rb = rb.header(CONTENT_ENCODING, "gzip");
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            // No answer at all: the specification says to retry.
            Err(e) => {
                let error = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                return Outcome::Retryable { after: None, error, detail: error_chain(&e) };
            }
        };
        let status = resp.status().as_u16();
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let bytes = resp.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            // An empty or undecodable body is a full success.
            let (rejected, message) = match self.signal {
                Signal::Metrics => ExportMetricsServiceResponse::decode(bytes)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map(|ps| (ps.rejected_data_points, ps.error_message)),
                Signal::Traces => ExportTraceServiceResponse::decode(bytes)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map(|ps| (ps.rejected_spans, ps.error_message)),
            }
            .unwrap_or_default();
            return Outcome::Accepted { rejected: rejected.max(0) as u64, message };
        }
        // Error bodies are a google.rpc.Status; fall back to the text.
        let detail = match tonic_types::Status::decode(bytes.clone()) {
            Ok(s) if !s.message.is_empty() => {
                let after = s.get_details_retry_info().and_then(|r| r.retry_delay);
                format!(
                    "HTTP {status}: {}{}",
                    s.message,
                    after.map(|d| format!(" (retry in {d:?})")).unwrap_or_default()
                )
            }
            _ => format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).trim()),
        };
        let error = http_error_label(status);
        if http_retryable(status) {
            Outcome::Retryable { after, error, detail }
        } else {
            Outcome::Permanent { error, detail }
        }
    }
}

fn grpc_failure(s: &tonic::Status) -> Outcome {
    let retry_info = s.get_details_retry_info();
    let after = retry_info.as_ref().and_then(|r| r.retry_delay);
    let error = grpc_error_label(s.code());
    let detail = format!("gRPC {:?}: {}", s.code(), s.message());
    if grpc_retryable(s.code(), retry_info.is_some()) {
        Outcome::Retryable { after, error, detail }
    } else {
        Outcome::Permanent { error, detail }
    }
}

/// rustls client settings: the configured CA (else the system roots, only
/// needed for https), and the client certificate for mTLS.
fn rustls_config(ep: &Endpoint, https: bool) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &ep.tls.ca_pem {
        Some(pem) => {
            for c in CertificateDer::pem_slice_iter(pem) {
                roots.add(c.context("reading the CA certificate")?).context("the CA certificate is not usable")?;
            }
        }
        None if https => {
            let found = rustls_native_certs::load_native_certs();
            let (n, _) = roots.add_parsable_certificates(found.certs);
            if n == 0 {
                bail!(
                    "no system CA certificates were found: set OTEL_EXPORTER_OTLP_CERTIFICATE (or otlp.certificate) to the CA that signs the backend"
                );
            }
        }
        None => {}
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let mut cfg = match (&ep.tls.client_cert_pem, &ep.tls.client_key_pem) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_slice_iter(c)
                .collect::<Result<Vec<_>, _>>()
                .context("reading the client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(k).context("reading the client key")?;
            builder.with_client_auth_cert(chain, key).context(
                "the client certificate and key are not usable together (does the key belong to the certificate?)",
            )?
        }
        _ => builder.with_no_client_auth(),
    };
    // OTLP/HTTP is plain HTTP/1.1 here.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
