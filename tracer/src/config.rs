//! Agent configuration: one serde struct per section, every field defaulted.
//! Sources, later wins: defaults, the config file (`--config`, TOML), CLI flags.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use tracer_common::config::MAX_CAPTURE;

use crate::{
    business::BusinessConfig,
    chain::link::LinkConfig,
    export::{lines::OutputFormat, otlp::OtlpConfig},
    k8s::K8sConfig,
    protocols::{
        ProtocolConfig,
        http1::{
            HttpConfig,
            route::{RouteConfig, Router},
            span::HttpSpanConfig,
        },
        registry::DescribeConfig,
    },
    store::StoreConfig,
    topology::TopologyConfig,
    versions::VersionsConfig,
};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: CaptureConfig,
    pub conntrack: ConntrackConfig,
    pub api: ApiConfig,
    pub http: HttpSection,
    /// Database and cache calls (PostgreSQL, MySQL/MariaDB, Redis).
    pub database: DatabaseSection,
    pub chain: LinkConfig,
    /// OTLP export; OTEL_EXPORTER_OTLP_* environment variables apply first.
    pub otlp: OtlpConfig,
    /// Service graph (RED and TCP health per edge).
    pub topology: TopologyConfig,
    /// Embedded store of recent traces (API and web page).
    pub store: StoreConfig,
    /// Business transactions, their KPIs, targets and SLOs.
    pub business: BusinessConfig,
    /// Versions of a service compared; rollouts detected and compared.
    pub versions: VersionsConfig,
    /// Pod and workload names from the API server, when in a cluster.
    pub kubernetes: K8sConfig,
    /// How the agent's threads ask to be scheduled (a long slice: the traced
    /// applications preempt the agent, not the reverse).
    pub scheduler: crate::sched::SchedConfig,
    /// Runtime hooks (uprobes) that give call chains task identity.
    pub runtimes: RuntimesConfig,
    /// TLS plaintext by uprobes on TLS libraries.
    pub tls: TlsConfig,
    /// What `tracer run` prints on stdout: json, text or none.
    pub output: OutputFormat,
    /// Also print one line per data event (debugging capture).
    pub data_events: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capture: CaptureConfig::default(),
            conntrack: ConntrackConfig::default(),
            api: ApiConfig::default(),
            http: HttpSection::default(),
            database: DatabaseSection::default(),
            chain: LinkConfig::default(),
            otlp: OtlpConfig::default(),
            topology: TopologyConfig::default(),
            store: StoreConfig::default(),
            business: BusinessConfig::default(),
            versions: VersionsConfig::default(),
            kubernetes: K8sConfig::default(),
            scheduler: crate::sched::SchedConfig::default(),
            runtimes: RuntimesConfig::default(),
            tls: TlsConfig::default(),
            output: OutputFormat::Text,
            data_events: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Payload bytes copied per read/write syscall (max 4096). Enough for a
    /// request line and the usual headers.
    pub capture_bytes: u32,
    /// Ring-buffer fill level that wakes the reader early.
    pub wakeup_bytes: u64,
    /// The reader drains the ring buffer at least this often.
    pub drain_interval_ms: u64,
    /// Batches (of up to 256 events) queued between capture and the table.
    pub queue_batches: usize,
    /// Hook accept()/accept4() exits to name the accepting process at once.
    /// Off by default: a syscall tracepoint slows every syscall of every
    /// process a little; without it a server connection gets its process
    /// from its first data event.
    pub accept_hook: bool,
    /// Watch only the sockets of one network namespace: a path such as
    /// /var/run/netns/<name> or /proc/<pid>/ns/net, or its inode number.
    /// Default: every namespace.
    pub netns: Option<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            capture_bytes: 512,
            wakeup_bytes: 1 << 20,
            drain_interval_ms: 20,
            queue_batches: 256,
            accept_hook: false,
            netns: None,
        }
    }
}

impl CaptureConfig {
    /// The inode number of the watched network namespace (0: all).
    pub fn netns_inode(&self) -> Result<u32> {
        use std::os::unix::fs::MetadataExt as _;
        let Some(ns) = self.netns.as_deref() else { return Ok(0) };
        if let Ok(n) = ns.parse::<u32>() {
            return Ok(n);
        }
        let meta = std::fs::metadata(ns).with_context(|| {
            format!(
                "--netns {ns}: not a network namespace path (/var/run/netns/<name>, /proc/<pid>/ns/net) or inode number"
            )
        })?;
        u32::try_from(meta.ino()).with_context(|| format!("--netns {ns}: inode {} out of range", meta.ino()))
    }

    pub fn drain_interval(&self) -> Duration {
        Duration::from_millis(self.drain_interval_ms.max(1))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConntrackConfig {
    /// Connections tracked at most; more are counted and not tracked.
    pub max_connections: usize,
    /// Entries idle this long are dropped (their close was lost).
    pub idle_timeout_secs: u64,
    /// Records queued to the span stage (and to the line output). The span
    /// stage's queue holds them in batches of one ring-buffer drain (up to
    /// 256 events each): output_queue / 256 batches.
    pub output_queue: usize,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig { max_connections: 65_536, idle_timeout_secs: 300, output_queue: 8192 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// /healthz, /readyz, /metrics. Loopback only by default.
    pub addr: SocketAddr,
    /// After a stage fails, /readyz answers 503 naming it for this long
    /// before the agent stops and exits non-zero, so a readiness probe or an
    /// operator sees which stage it was. Default 2000.
    pub failure_linger_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { addr: SocketAddr::from(([127, 0, 0, 1], 9400)), failure_linger_ms: 2000 }
    }
}

/// `[runtimes]`: hook families on language runtimes, each switchable.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimesConfig {
    /// Go: goroutine ids on data events and entry uprobes on net/http's
    /// hand-offs, so calls of Go services link to their requests by
    /// goroutine (`crate::runtimes::go`). Default true.
    pub go: bool,
    /// Node.js: callback tasks on data events (uprobes on the event loop's
    /// callback boundaries), so calls of Node services link to their
    /// requests (`crate::runtimes::node`; needs `go`, whose watcher and
    /// kernel map it shares). Default false: experimental (the race that
    /// left a first Node process unlinked is fixed, README "Node.js callback
    /// tasks"; on by default once more runs confirm it).
    pub node: bool,
}

/// `[tls]`: plaintext of TLS connections read where the library hands it
/// over (`crate::tls`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Uprobes on OpenSSL's libssl (SSL_read/SSL_write and their `_ex`
    /// forms) in every library file processes map. Default true.
    pub openssl: bool,
    /// Library files probed at most (each costs 8 uprobes); past it a file
    /// is skipped and counted.
    pub max_libraries: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { openssl: true, max_libraries: 64 }
    }
}

impl Default for RuntimesConfig {
    fn default() -> Self {
        RuntimesConfig { go: true, node: false }
    }
}

/// `[http]`: what HTTP spans record, and how routes are templated.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Request headers recorded on spans as http.request.header.<name>. Default: none.
    pub request_headers: Vec<String>,
    /// Response headers recorded on spans as http.response.header.<name>. Default: none.
    pub response_headers: Vec<String>,
    /// Headers whose values never leave the node even when listed above, on
    /// top of authorization, proxy-authorization, cookie, set-cookie, x-api-key.
    pub sensitive_headers: Vec<String>,
    /// Replace query-string values by REDACTED in url.query (keys kept). Default: true.
    pub redact_query_values: bool,
    /// Requests waiting for a response per connection (pipelining depth). Default: 64.
    pub max_pending: usize,
    /// Route templating (`[http.routes]`).
    pub routes: RouteConfig,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            request_headers: vec![],
            response_headers: vec![],
            sensitive_headers: vec![],
            redact_query_values: true,
            max_pending: 64,
            routes: RouteConfig::default(),
        }
    }
}

impl HttpSection {
    pub fn protocol_config(&self) -> ProtocolConfig {
        ProtocolConfig {
            http: Arc::new(HttpConfig {
                request_headers: self.request_headers.clone(),
                response_headers: self.response_headers.clone(),
                sensitive_headers: self.sensitive_headers.clone(),
                max_pending: self.max_pending.max(1),
            }),
            ..ProtocolConfig::default()
        }
    }

    pub fn span_config(&self) -> HttpSpanConfig {
        HttpSpanConfig { redact_query_values: self.redact_query_values, routes: self.routes.clone() }
    }
}

/// `[database]`: how database and cache calls are described.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// Record db.query.text: the statement with every literal, number,
    /// IN-list and VALUES row replaced by `?` (never the values, never Redis
    /// arguments). Default: false (the operation and table are on every span).
    pub query_text: bool,
}

impl Config {
    /// What every connection's parser is told: HTTP's settings, and
    /// whether statements are read whole for db.query.text.
    pub fn protocol_config(&self) -> ProtocolConfig {
        ProtocolConfig { db_query_text: self.database.query_text, ..self.http.protocol_config() }
    }

    /// How each protocol describes its spans.
    pub fn describe_config(&self) -> DescribeConfig {
        DescribeConfig { http: self.http.span_config(), db_query_text: self.database.query_text }
    }

    /// Parse and validate: a bad value stops the agent here, naming its
    /// key, instead of failing a stage after start.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let cfg: Config = toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        cfg.validate().with_context(|| format!("config {}", path.display()))?;
        Ok(cfg)
    }

    /// What serde's types cannot say (unknown keys and wrong types are
    /// serde's errors, which name the key too). Each error starts with the
    /// offending key, as written in the file.
    pub fn validate(&self) -> Result<()> {
        for (i, rule) in self.http.routes.rules.iter().enumerate() {
            let one = RouteConfig { rules: vec![rule.clone()], ..self.http.routes.clone() };
            if let Err(e) = Router::new(&one) {
                bail!("http.routes.rules[{i}]: {e}");
            }
        }
        if self.capture.capture_bytes as usize > MAX_CAPTURE {
            bail!("capture.capture_bytes (--capture-bytes): {} is more than {MAX_CAPTURE}", self.capture.capture_bytes);
        }
        self.capture.netns_inode().context("capture.netns (--netns)")?;
        self.business.validate(&self.http.request_headers, self.http.redact_query_values)?;
        self.versions.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tracer.toml");
        let c = Config::from_file(&path).expect("deploy/tracer.toml parses");
        assert_eq!(c.capture.capture_bytes, CaptureConfig::default().capture_bytes);
        assert_eq!(c.scheduler.slice_ms, crate::sched::SchedConfig::default().slice_ms);
    }

    fn load(toml_text: &str) -> Result<Config> {
        let dir = std::env::temp_dir().join(format!("tracer-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Tests run in parallel: one file each.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = dir.join(format!("{}.toml", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::write(&path, toml_text).unwrap();
        Config::from_file(&path)
    }

    #[test]
    fn bad_route_rule_is_refused_at_load_with_its_key() {
        let e = load("[http.routes]\nrules = [\"/ok/{id}\", \"/a/*/b\"]\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("http.routes.rules[1]") && msg.contains("/a/*/b"), "{msg}");
    }

    #[test]
    fn unknown_key_and_out_of_range_values_are_named() {
        let msg = format!("{:#}", load("[capture]\ncapture_byte = 1\n").unwrap_err());
        assert!(msg.contains("capture_byte"), "{msg}");
        let msg = format!("{:#}", load("[capture]\ncapture_bytes = 5000\n").unwrap_err());
        assert!(msg.contains("capture.capture_bytes"), "{msg}");
        let msg = format!("{:#}", load("[capture]\nnetns = \"/nonexistent/ns\"\n").unwrap_err());
        assert!(msg.contains("capture.netns"), "{msg}");
        let msg = format!("{:#}", load("[[business.transactions]]\nname = \"a\"\nroute = \"a\"\n").unwrap_err());
        assert!(msg.contains("business.transactions[0].route"), "{msg}");
    }
}
