//! Kubernetes metadata: who a process is (pod, container, workload, service
//! name and version, OpenTelemetry k8s resource attributes) and what a peer IP
//! is called (a pod of this node, a Service ClusterIP, a Service's endpoint
//! on another node). In: the API server (pods of this node, Services and
//! EndpointSlices of the cluster, owner lookups) and /proc/<pid>/cgroup. Out:
//! `service_for_pid` and `name_for_ip`, read by identity/ and the topology.
//! Off outside a cluster. The API server going away keeps the names known
//! and retries with backoff (`tracer_k8s_api_connected`, `readiness_detail`).

pub mod cgroup;
pub mod store;
mod watch;

use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
};

use anyhow::{Context as _, Result};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};
use serde::Deserialize;

pub use store::K8sIdentity;
use watch::{Shared, Status};

use crate::telemetry::Telemetry;

/// `[kubernetes]` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct K8sConfig {
    /// Watch the API server when running in a cluster (in-cluster service
    /// account, or KUBECONFIG) with a node name. false: never.
    pub enabled: bool,
    /// This node's name; unset: the NODE_NAME environment variable (the
    /// DaemonSet sets it from the downward API).
    pub node_name: Option<String>,
}

impl Default for K8sConfig {
    fn default() -> Self {
        // On by default: outside a cluster `start` finds nothing and returns None.
        K8sConfig { enabled: true, node_name: None }
    }
}

/// The metadata of this node's pods and of the cluster's Services, kept
/// current by watchers on the API server.
#[derive(Clone)]
pub struct K8sMetadata {
    shared: Arc<Shared>,
    node: String,
}

impl K8sMetadata {
    /// Start watching when in a cluster; `Ok(None)` when not (no in-cluster
    /// environment and no KUBECONFIG, or no node name), or when disabled.
    /// Returns at once: names appear as the first lists arrive, and an
    /// unreachable API server is retried in the background, not an error.
    /// Errors: a KUBECONFIG or service account that cannot be read.
    pub async fn start(cfg: &K8sConfig, telemetry: &Telemetry) -> Result<Option<K8sMetadata>> {
        if !cfg.enabled {
            return Ok(None);
        }
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let kubeconfig = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
        if !in_cluster && !kubeconfig {
            return Ok(None);
        }
        let Some(node) = cfg.node_name.clone().or_else(|| std::env::var("NODE_NAME").ok()).filter(|n| !n.is_empty())
        else {
            tracing::warn!(
                "kubernetes: running in a cluster but no node name (set NODE_NAME from the downward API, or [kubernetes] node_name): pod metadata is off"
            );
            return Ok(None);
        };
        let mut config =
            kube::Config::infer().await.context("kubernetes: reading the in-cluster service account or KUBECONFIG")?;
        // kube's own retry of 429/503/504 (up to 15 times, minutes apart)
        // would hide an outage inside one request; the watchers retry with
        // their own backoff and report each failure (watch.rs).
        config.default_retry = false;
        let client = kube::Client::try_from(config).context("kubernetes: building the API client")?;
        let shared = Arc::new(Shared { store: Default::default(), status: Status::default() });
        watch::spawn(client, node.clone(), shared.clone());
        telemetry.register_collector(Box::new(K8sMetrics(shared.clone())));
        tracing::info!("kubernetes: watching the pods of node {node}, and the cluster's services and endpointslices");
        Ok(Some(K8sMetadata { shared, node }))
    }

    /// The Kubernetes identity of a process: its container's pod, named by
    /// OTEL_SERVICE_NAME in the container spec, else app.kubernetes.io/name,
    /// else the owner workload. None: not in a known pod of this node.
    pub fn service_for_pid(&self, pid: u32) -> Option<K8sIdentity> {
        let ids = cgroup::for_pid(pid)?;
        self.service_for_cgroup(&ids)
    }

    /// As `service_for_pid`, from already parsed cgroup ids.
    pub fn service_for_cgroup(&self, ids: &cgroup::CgroupIds) -> Option<K8sIdentity> {
        let store = self.shared.store.read().expect("store lock");
        let (pod, container) = store.lookup(ids.container_id.as_deref(), ids.pod_uid.as_deref())?;
        Some(store::identity(&pod, container, &self.node))
    }

    /// The name of a peer address: the service of a pod on this node, else a
    /// Service (by ClusterIP, or by an endpoint address of a pod elsewhere).
    pub fn name_for_ip(&self, ip: IpAddr) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.shared.store.read().expect("store lock").name_for_ip(ip)
    }

    /// Changes whenever the known pods, services or endpoints change: a
    /// caller that caches names per pid or IP drops its cache on a change.
    pub fn generation(&self) -> u64 {
        self.shared.status.generation.load(Ordering::Acquire)
    }

    /// Every watcher has listed and is watching.
    pub fn synced(&self) -> bool {
        self.shared.status.connected()
    }

    /// For /readyz: None while the API server is watched; else why not, and
    /// that the agent goes on with the names it has. Readiness itself does
    /// not depend on it (tracing works without names).
    pub fn readiness_detail(&self) -> Option<String> {
        let st = &self.shared.status;
        if st.connected() {
            return None;
        }
        let pods = self.shared.store.read().expect("store lock").pod_count();
        let why =
            st.last_error.lock().expect("status lock").clone().unwrap_or_else(|| "first list not done yet".into());
        Some(format!("kubernetes API not watched ({why}); naming with {pods} known pods, retrying with backoff"))
    }
}

/// tracer_k8s_* on /metrics, read from the shared state at scrape time.
#[derive(Debug)]
struct K8sMetrics(Arc<Shared>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("k8s::Shared")
    }
}

impl Collector for K8sMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = &self.0.status;
        let (pods, services) = {
            let s = self.0.store.read().expect("store lock");
            (s.pod_count(), s.service_count())
        };
        for (name, help, v) in [
            (
                "k8s_api_connected",
                "1 while pods, services and endpointslices are watched on the Kubernetes API server",
                st.connected() as i64,
            ),
            ("k8s_pods", "Pods of this node known to the agent", pods as i64),
            ("k8s_services", "Services of the cluster known to the agent", services as i64),
        ] {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        for (name, help, v) in [
            (
                "k8s_watch_errors",
                "Kubernetes list/watch failures (each retried with backoff)",
                st.watch_errors.load(Ordering::Relaxed),
            ),
            (
                "k8s_owner_lookup_errors",
                "Owner lookups (ReplicaSet, Job) that failed; the pod keeps its direct owner's name",
                st.owner_lookup_errors.load(Ordering::Relaxed),
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
