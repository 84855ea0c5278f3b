//! Self-metrics: a typed counter for every point where data is received or
//! dropped, queue depths, live connections, and the kernel-side counters
//! (read from the probes' per-CPU map at scrape time). Served on /metrics.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use prometheus_client::{
    encoding::text::{encode_eof, encode_registry},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

type Labels = Vec<(&'static str, &'static str)>;

/// Called before each scrape to copy values kept elsewhere (kernel map,
/// channel lengths) into the registry.
type Refresher = Box<dyn Fn(&Telemetry) + Send + Sync>;
type Detail = Box<dyn Fn() -> Option<String> + Send + Sync>;

pub struct Telemetry {
    registry: Mutex<Registry>,
    /// Records decoded from the ring buffer, by kind.
    pub events_received: Family<Labels, Counter>,
    /// Events dropped in userspace, by stage and reason.
    pub events_dropped: Family<Labels, Counter>,
    /// Kernel-side counters, by name (tracer_common::maps::Counter).
    pub kernel: Family<Labels, Counter>,
    /// Items waiting in each bounded queue.
    pub queue_depth: Family<Labels, Gauge>,
    pub connections_live: Gauge,
    /// Connections the table stopped tracking, by reason.
    pub connections_evicted: Family<Labels, Counter>,
    pub probes_attached: Gauge,
    /// Connections whose protocol was recognised, or given up on.
    pub l7_connections: Family<Labels, Counter>,
    /// What protocol parsers dropped, by protocol and reason.
    pub protocol_dropped: Family<Labels, Counter>,
    /// HTTP routes turned into the overflow route by the per-service cap.
    pub http_route_overflow: Counter,
    /// Spans held by the chain linker, waiting for their parents.
    pub chain_held: Gauge,
    /// Addresses named by DNS answers (`crate::chain::names`), and those
    /// evicted by its cap.
    pub dns_names: Gauge,
    pub dns_names_evicted: Counter,
    /// Parent links made, by rule (header, thread, peer, remote), and spans
    /// left unlinked as ambiguous or released early from a full buffer.
    pub chain_links: Family<Labels, Counter>,
    /// Process start records: what=argv_cut|env_cut (longer than the probe's
    /// caps or unreadable), evicted (store full).
    pub identity_starts: Family<Labels, Counter>,
    /// Go processes probed for goroutine identity and hook outcomes, by
    /// `what` (`crate::runtimes::go`).
    pub runtime_go: Family<Labels, Counter>,
    /// net/http hand-off uprobes attached now.
    pub runtime_go_uprobes: Gauge,
    /// Verdicts written into the kernel's per-socket map, by verdict.
    pub sock_verdicts: Family<Labels, Counter>,
    /// TLS library files looked at, by outcome (`crate::tls`).
    pub tls_libraries: Family<Labels, Counter>,
    /// TLS library uprobes and uretprobes attached.
    pub tls_uprobes: Gauge,
    /// OTLP exporter: items exported, dropped by reason, retries, queue fill.
    pub otlp: OtlpMetrics,
    ready: AtomicBool,
    refreshers: Mutex<Vec<Refresher>>,
    /// Lines /readyz adds to its body (degraded but ready: e.g. the
    /// Kubernetes API server unreachable, names served from what is known).
    details: Mutex<Vec<Detail>>,
    /// Collectors that name their metrics in full (the topology uses the
    /// servicegraph connector's names): a registry without the `tracer`
    /// prefix, rendered into the same output.
    collectors: Mutex<Registry>,
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("tracer");
        let t = Telemetry {
            events_received: Family::default(),
            events_dropped: Family::default(),
            kernel: Family::default(),
            queue_depth: Family::default(),
            connections_live: Gauge::default(),
            connections_evicted: Family::default(),
            probes_attached: Gauge::default(),
            l7_connections: Family::default(),
            protocol_dropped: Family::default(),
            http_route_overflow: Counter::default(),
            chain_held: Gauge::default(),
            dns_names: Gauge::default(),
            dns_names_evicted: Counter::default(),
            chain_links: Family::default(),
            identity_starts: Family::default(),
            runtime_go: Family::default(),
            runtime_go_uprobes: Gauge::default(),
            sock_verdicts: Family::default(),
            tls_libraries: Family::default(),
            tls_uprobes: Gauge::default(),
            otlp: OtlpMetrics::default(),
            ready: AtomicBool::new(false),
            refreshers: Mutex::new(Vec::new()),
            details: Mutex::new(Vec::new()),
            registry: Mutex::new(Registry::default()),
            collectors: Mutex::new(Registry::default()),
        };
        registry.register("events_received", "Records decoded from the kernel ring buffer", t.events_received.clone());
        registry.register(
            "events_dropped",
            "Events dropped in userspace, by stage and reason",
            t.events_dropped.clone(),
        );
        registry.register(
            "kernel",
            "Kernel-side counters: events_submitted, socket_io, and drops (ringbuf_full, active_io_full, sock_read_failed, payload_read_failed)",
            t.kernel.clone(),
        );
        registry.register("queue_depth", "Items waiting in each bounded queue", t.queue_depth.clone());
        registry.register("connections_live", "Connections in the connection table", t.connections_live.clone());
        registry.register(
            "connections_evicted",
            "Connections dropped from the table before their close was seen (idle past conntrack.idle_timeout_secs)",
            t.connections_evicted.clone(),
        );
        registry.register("probes_attached", "eBPF programs attached", t.probes_attached.clone());
        registry.register(
            "l7_connections",
            "Connections by protocol detection result (detected, unknown)",
            t.l7_connections.clone(),
        );
        registry.register(
            "protocol_dropped",
            "Messages protocol parsers could not use, by protocol and reason: unpaired (a response no request waited for), overflow (past the per-connection pending cap), malformed (not the protocol: framing lost), evicted (a bounded per-connection cache was full), pushed (messages that answer no request: pub/sub deliveries, RESP3 pushes)",
            t.protocol_dropped.clone(),
        );
        registry.register(
            "http_route_overflow",
            "HTTP routes reported as /{overflow} because their service hit its route cap",
            t.http_route_overflow.clone(),
        );
        registry.register(
            "chain_held",
            "Spans held by the chain linker waiting for their parents",
            t.chain_held.clone(),
        );
        registry.register("dns_names", "Addresses named by DNS answers (address -> name map)", t.dns_names.clone());
        registry.register(
            "dns_names_evicted",
            "Addresses dropped from the DNS address -> name map by its cap (oldest written first)",
            t.dns_names_evicted.clone(),
        );
        registry.register(
            "chain_links",
            "Chain linking outcomes: rule=thread|content|peer|remote links made; ambiguous, multiplexed (calls left unlinked); released_early (buffer full)",
            t.chain_links.clone(),
        );
        registry.register(
            "identity_starts",
            "Process start (exec) records: what=argv_cut|env_cut (past the probe's caps or unreadable: names may come from /proc instead), evicted (store full)",
            t.identity_starts.clone(),
        );
        registry.register(
            "runtime_go",
            "Go runtime probing ([runtimes] go): what=probed (Go processes whose data events carry goroutine ids), skipped (Go, no goid offset known), procs_full (more Go processes than the kernel map holds), files_full (more Go executables than the exec probe's map holds), uprobe_skipped (a net/http function not in the symbol table), uprobe_failed",
            t.runtime_go.clone(),
        );
        registry.register(
            "runtime_go_uprobes",
            "net/http hand-off uprobes attached to Go executables",
            t.runtime_go_uprobes.clone(),
        );
        registry.register(
            "sock_verdicts",
            "Per-socket verdicts the agent gave the kernel: verdict=count_only (no known protocol: bytes only from then on, tracer_kernel_total{counter=\"payload_skipped\"} counts the events), wide (HTTP/2: up to 4096 bytes per syscall whatever the capture size), failed (the map refused)",
            t.sock_verdicts.clone(),
        );
        registry.register(
            "tls_libraries",
            "TLS library files ([tls] openssl): what=probed (uprobes attached), no_symbols (no SSL_read/SSL_write defined), over_cap (past [tls] max_libraries), attach_failed",
            t.tls_libraries.clone(),
        );
        registry.register(
            "tls_uprobes",
            "Uprobes and uretprobes attached to TLS library functions (SSL_read, SSL_write and their _ex forms)",
            t.tls_uprobes.clone(),
        );
        t.otlp.register(&mut registry);
        Arc::new(Telemetry { registry: Mutex::new(registry), ..t })
    }

    pub fn drop_event(&self, stage: &'static str, reason: &'static str, n: u64) {
        self.events_dropped.get_or_create(&vec![("stage", stage), ("reason", reason)]).inc_by(n);
    }

    pub fn dropped(&self, stage: &'static str, reason: &'static str) -> u64 {
        self.events_dropped.get_or_create(&vec![("stage", stage), ("reason", reason)]).get()
    }

    /// Metrics whose label sets change at run time (topology edges) come as a
    /// collector that encodes its current state at each scrape.
    pub fn register_collector(&self, c: Box<dyn prometheus_client::collector::Collector>) {
        self.registry.lock().expect("registry lock").register_collector(c);
    }

    /// A collector whose metric names are used as given, without the
    /// `tracer_` prefix (the topology's servicegraph connector names).
    pub fn register_unprefixed_collector(&self, c: Box<dyn prometheus_client::collector::Collector>) {
        self.collectors.lock().expect("collectors lock").register_collector(c);
    }

    pub fn add_refresher(&self, f: impl Fn(&Telemetry) + Send + Sync + 'static) {
        self.refreshers.lock().expect("refreshers lock").push(Box::new(f));
    }

    pub fn add_readiness_detail(&self, f: impl Fn() -> Option<String> + Send + Sync + 'static) {
        self.details.lock().expect("details lock").push(Box::new(f));
    }

    /// Current readiness details, one per line.
    pub fn readiness_details(&self) -> Vec<String> {
        self.details.lock().expect("details lock").iter().filter_map(|f| f()).collect()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// OpenMetrics text of every metric, refreshed first.
    pub fn render(&self) -> String {
        for f in self.refreshers.lock().expect("refreshers lock").iter() {
            f(self);
        }
        let mut out = String::new();
        let written = encode_registry(&mut out, &self.registry.lock().expect("registry lock"))
            .and_then(|()| encode_registry(&mut out, &self.collectors.lock().expect("collectors lock")))
            .and_then(|()| encode_eof(&mut out));
        written.expect("writing to a String cannot fail");
        out
    }
}

/// Set a counter to an absolute value kept elsewhere (monotonic by source).
pub fn set_counter(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

/// Self-metrics of the OTLP exporter (export/otlp). `signal` is traces or
/// metrics; items are spans (traces) or data points (metrics).
#[derive(Default)]
pub struct OtlpMetrics {
    /// Spans handed to the exporter. Once the queue is empty and nothing is
    /// in flight: enqueued == exported + dropped (every reason).
    pub enqueued: Family<Labels, Counter>,
    /// Items the backend accepted (partial-success rejections excluded).
    pub exported: Family<Labels, Counter>,
    /// Items that will never be delivered, by signal and reason: queue_full,
    /// queue_bytes, too_large, rejected (non-retryable answer),
    /// partial_success (the backend refused part of a request),
    /// retries_exhausted, shutdown.
    pub dropped: Family<Labels, Counter>,
    /// Requests sent again after a retryable answer.
    pub retries: Family<Labels, Counter>,
    /// Failed requests, by signal and error (unavailable, http_503, connect, ...).
    pub send_errors: Family<Labels, Counter>,
    /// Spans waiting in the export queue, and their estimated bytes.
    pub queue_items: Gauge,
    pub queue_bytes: Gauge,
}

impl OtlpMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register("otlp_enqueued", "Spans handed to the OTLP exporter, by signal", self.enqueued.clone());
        registry.register("otlp_exported", "Items accepted by the OTLP backend, by signal", self.exported.clone());
        registry.register(
            "otlp_dropped",
            "Items the OTLP exporter gave up on, by signal and reason (queue_full, queue_bytes, too_large, rejected, partial_success, retries_exhausted, shutdown)",
            self.dropped.clone(),
        );
        registry.register("otlp_retries", "OTLP requests retried after a retryable answer", self.retries.clone());
        registry.register(
            "otlp_send_errors",
            "OTLP requests that failed, by signal and error",
            self.send_errors.clone(),
        );
        registry.register("otlp_queue_items", "Spans waiting in the OTLP export queue", self.queue_items.clone());
        registry.register(
            "otlp_queue_bytes",
            "Estimated bytes of the spans waiting in the OTLP export queue",
            self.queue_bytes.clone(),
        );
    }

    pub fn drop_items(&self, signal: &'static str, reason: &'static str, n: u64) {
        if n > 0 {
            self.dropped.get_or_create(&vec![("signal", signal), ("reason", reason)]).inc_by(n);
        }
    }

    pub fn dropped_items(&self, signal: &'static str, reason: &'static str) -> u64 {
        self.dropped.get_or_create(&vec![("signal", signal), ("reason", reason)]).get()
    }

    pub fn exported_items(&self, signal: &'static str) -> u64 {
        self.exported.get_or_create(&vec![("signal", signal)]).get()
    }
}
