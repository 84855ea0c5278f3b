//! Resolution of `[otlp]` and the OTEL_* variables: a table of cases.

use std::collections::HashMap;

use super::*;

fn resolve(file: &OtlpConfig, vars: &[(&str, &str)]) -> Result<Option<ResolvedOtlp>> {
    let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    OtlpConfig::resolve(file, &move |k| m.get(k).cloned())
}

fn traces(file: &OtlpConfig, vars: &[(&str, &str)]) -> Endpoint {
    resolve(file, vars).unwrap().unwrap().traces.unwrap()
}

#[test]
fn endpoint_table() {
    let none = OtlpConfig::default();
    let file_base = OtlpConfig { endpoint: Some("http://file:4318".into()), ..Default::default() };
    let file_traces = OtlpConfig { traces_endpoint: Some("http://file:9/custom".into()), ..Default::default() };
    // (file, env, expected traces URL, expected protocol)
    type Case<'a> = (&'a OtlpConfig, Vec<(&'a str, &'a str)>, &'a str, Protocol);
    let cases: Vec<Case> = vec![
        // Base endpoint + HTTP: the signal path is appended (trailing slash or not, path kept).
        (
            &none,
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")],
            "http://c:4318/v1/traces",
            Protocol::HttpProtobuf,
        ),
        (
            &none,
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")],
            "http://c:4318/v1/traces",
            Protocol::HttpProtobuf,
        ),
        (
            &none,
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c/otlp")],
            "https://c/otlp/v1/traces",
            Protocol::HttpProtobuf,
        ),
        // Signal endpoint: used as is, and wins over the base one.
        (
            &none,
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x"),
            ],
            "http://t:1/x",
            Protocol::HttpProtobuf,
        ),
        // gRPC: nothing appended.
        (
            &none,
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            "http://c:4317/",
            Protocol::Grpc,
        ),
        // The signal-specific protocol wins over the generic one.
        (
            &none,
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ],
            "http://c:4317/",
            Protocol::Grpc,
        ),
        // The file wins over the environment, both its base and its signal URL.
        (
            &file_base,
            vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env:1")],
            "http://file:4318/v1/traces",
            Protocol::HttpProtobuf,
        ),
        (
            &file_traces,
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:1")],
            "http://file:9/custom",
            Protocol::HttpProtobuf,
        ),
        // Empty variables are unset.
        (
            &none,
            vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")],
            "http://c:4318/v1/traces",
            Protocol::HttpProtobuf,
        ),
    ];
    for (file, env, url, protocol) in cases {
        let t = traces(file, &env);
        assert_eq!((t.url.as_str(), t.protocol), (url, protocol), "file {file:?}, env {env:?}");
    }
}

#[test]
fn nothing_set_means_no_export() {
    assert!(resolve(&OtlpConfig::default(), &[]).unwrap().is_none());
    assert!(resolve(&OtlpConfig::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap().is_none());
    // Only metrics: traces off, metrics on.
    let r = resolve(&OtlpConfig::default(), &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4318/v1/metrics")])
        .unwrap()
        .unwrap();
    assert!(r.traces.is_none());
    assert_eq!(r.metrics.unwrap().url.as_str(), "http://m:4318/v1/metrics");
}

#[test]
fn malformed_values_are_named() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")], "must start with http:// or https://"),
        (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://c:4317")], "must start with http:// or https://"),
        (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")], "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://:80")], "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
            "not supported",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")],
            "not a protocol",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")],
            "gzip or none",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_BSP_MAX_QUEUE_SIZE", "0")], "greater than 0"),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
            ],
            "/nonexistent/ca.pem",
        ),
    ];
    for (env, needle) in cases {
        let e = format!("{:#}", resolve(&OtlpConfig::default(), env).unwrap_err());
        assert!(e.contains(needle), "{env:?}: error {e:?} does not name {needle:?}");
    }
}

#[test]
fn headers_timeout_compression_and_batch_settings() {
    let file = OtlpConfig {
        headers: [("X-From-File".to_string(), "f".to_string()), ("api-key".to_string(), "file".to_string())].into(),
        ..Default::default()
    };
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=env,tenant=a%20b"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "9"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5000"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "1000"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,k8s.cluster.name=c%2C1"),
    ];
    let r = resolve(&file, &env).unwrap().unwrap();
    let t = r.traces.as_ref().unwrap();
    let h: Vec<(&str, &str)> = t.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(h, [("api-key", "file"), ("tenant", "a b"), ("x-from-file", "f")]);
    assert_eq!(t.timeout, Duration::from_millis(2500));
    assert_eq!(t.compression, Compression::Gzip);
    assert_eq!(r.schedule_delay, Duration::from_millis(200));
    assert_eq!((r.max_export_batch_size, r.max_queue_size), (1000, 1000), "batch clamped to the queue");
    assert_eq!(
        r.resource_attributes,
        [
            ("deployment.environment".to_string(), "prod".to_string()),
            ("k8s.cluster.name".to_string(), "c,1".to_string())
        ]
    );
    // Metrics: generic timeout, not the traces one.
    assert_eq!(r.metrics.unwrap().timeout, Duration::from_millis(9));
}

#[test]
fn defaults() {
    let r = resolve(&OtlpConfig::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap().unwrap();
    let t = r.traces.unwrap();
    assert_eq!(
        (t.protocol, t.compression, t.timeout),
        (Protocol::HttpProtobuf, Compression::None, Duration::from_secs(10))
    );
    assert_eq!((r.max_export_batch_size, r.max_queue_size), (512, 8192));
    assert!(r.max_request_bytes < 4 << 20);
    assert_eq!(r.export_timeout, Duration::from_secs(30));
}

#[test]
fn malformed_resource_attributes_are_ignored_not_fatal() {
    let r = resolve(
        &OtlpConfig::default(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_RESOURCE_ATTRIBUTES", "a=1,broken")],
    )
    .unwrap()
    .unwrap();
    assert!(r.resource_attributes.is_empty());
}

#[test]
fn tls_files_are_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("tracer-otlp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = format!(
        "{:#}",
        resolve(
            &OtlpConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", junk.to_str().unwrap())
            ]
        )
        .unwrap_err()
    );
    assert!(e.contains("junk.pem") && e.contains("CERTIFICATE"), "{e}");
    let e = format!(
        "{:#}",
        resolve(
            &OtlpConfig { client_key: Some(junk.clone()), ..Default::default() },
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]
        )
        .unwrap_err()
    );
    assert!(e.contains("otlp.client_key") && e.contains("private key"), "{e}");
}

#[test]
fn key_values() {
    assert_eq!(parse_key_values("a=1, b = x%3Dy ,,").unwrap(), [("a".into(), "1".into()), ("b".into(), "x=y".into())]);
    assert!(parse_key_values("=1").is_err());
    assert!(parse_key_values("a=%zz").is_err());
}
