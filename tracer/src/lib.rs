//! The tracer agent: eBPF capture of TCP connections and their bytes, turned
//! into connection records, self-metrics and an HTTP API. `run` is the whole
//! agent, so tests can drive it in-process.

pub mod api;
pub mod business;
pub mod capture;
pub mod chain;
pub mod clock;
pub mod config;
pub mod conntrack;
pub mod export;
pub mod identity;
pub mod k8s;
pub mod pipeline;
pub mod printable;
pub mod probes;
pub mod protocols;
pub mod runtimes;
pub mod sched;
pub mod span;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod topology;
pub mod ui;
pub mod versions;

pub use pipeline::run;
