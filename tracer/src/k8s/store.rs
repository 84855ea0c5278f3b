//! What the watchers know, indexed for the two questions the agent asks:
//! which pod and container a container id (or pod uid) belongs to, and what
//! an IP address is called (a pod of this node, a Service ClusterIP, an
//! endpoint of a Service on any node). Pure data: the watchers (watch.rs)
//! fill it, k8s/mod.rs reads it; naming rules live here so they are tested
//! without an API server.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};

/// The workload that owns a pod, resolved up the chain
/// (ReplicaSet -> Deployment, Job -> CronJob) when the API allowed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// `ReplicaSet`, `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, ...
    pub kind: String,
    pub name: String,
    /// The intermediate owner when the chain was followed (the ReplicaSet
    /// of a Deployment, the Job of a CronJob).
    pub via: Option<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct ContainerInfo {
    pub name: String,
    /// Without the `containerd://` / `cri-o://` / `docker://` prefix.
    pub id: Option<String>,
    pub image: Option<String>,
    /// A literal OTEL_SERVICE_NAME in the container's env spec.
    pub otel_service_name: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Pod IPs, empty for hostNetwork pods (their IP is the node's).
    pub ips: Vec<IpAddr>,
    pub owner: Option<Owner>,
    pub containers: Vec<ContainerInfo>,
}

/// What `service_for_pid` returns: the OpenTelemetry service and resource
/// attributes of one container of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct K8sIdentity {
    pub service_name: String,
    pub service_version: Option<String>,
    /// OpenTelemetry k8s resource attributes (k8s.namespace.name, ...).
    pub attributes: Vec<(String, String)>,
}

#[derive(Default)]
pub struct Store {
    pods: HashMap<String, Arc<PodInfo>>,
    by_container: HashMap<String, (String, usize)>,
    by_pod_ip: HashMap<IpAddr, String>,
    /// ClusterIP -> Service name, keyed by the service's namespace/name.
    services: HashMap<(String, String), Vec<IpAddr>>,
    by_cluster_ip: HashMap<IpAddr, String>,
    /// EndpointSlice namespace/name -> (Service name, endpoint addresses).
    slices: HashMap<(String, String), (String, Vec<IpAddr>)>,
    by_endpoint_ip: HashMap<IpAddr, String>,
}

impl Store {
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn upsert_pod(&mut self, pod: PodInfo) {
        self.remove_pod(&pod.uid);
        for (i, c) in pod.containers.iter().enumerate() {
            if let Some(id) = &c.id {
                self.by_container.insert(id.clone(), (pod.uid.clone(), i));
            }
        }
        for ip in &pod.ips {
            self.by_pod_ip.insert(*ip, pod.uid.clone());
        }
        self.pods.insert(pod.uid.clone(), Arc::new(pod));
    }

    pub fn remove_pod(&mut self, uid: &str) {
        let Some(old) = self.pods.remove(uid) else { return };
        for c in &old.containers {
            if let Some(id) = &c.id
                && self.by_container.get(id).is_some_and(|(u, _)| u == uid)
            {
                self.by_container.remove(id);
            }
        }
        for ip in &old.ips {
            if self.by_pod_ip.get(ip).is_some_and(|u| u == uid) {
                self.by_pod_ip.remove(ip);
            }
        }
    }

    /// Replace the pods (after a re-list): pods that vanished while the
    /// watch was down are dropped.
    pub fn replace_pods(&mut self, pods: Vec<PodInfo>) {
        self.pods.clear();
        self.by_container.clear();
        self.by_pod_ip.clear();
        for p in pods {
            self.upsert_pod(p);
        }
    }

    pub fn upsert_service(&mut self, svc: &Service) {
        let (ns, name) = key(&svc.metadata.namespace, &svc.metadata.name);
        self.remove_service(&ns, &name);
        let ips = cluster_ips(svc);
        for ip in &ips {
            self.by_cluster_ip.insert(*ip, name.clone());
        }
        self.services.insert((ns, name), ips);
    }

    pub fn remove_service(&mut self, ns: &str, name: &str) {
        if let Some(ips) = self.services.remove(&(ns.to_string(), name.to_string())) {
            for ip in ips {
                self.by_cluster_ip.remove(&ip);
            }
        }
    }

    pub fn replace_services(&mut self, svcs: &[Service]) {
        self.services.clear();
        self.by_cluster_ip.clear();
        for s in svcs {
            self.upsert_service(s);
        }
    }

    pub fn upsert_slice(&mut self, slice: &EndpointSlice) {
        let (ns, name) = key(&slice.metadata.namespace, &slice.metadata.name);
        self.remove_slice(&ns, &name);
        // The Service a slice belongs to is its kubernetes.io/service-name label.
        let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")).cloned()
        else {
            return;
        };
        let ips: Vec<IpAddr> =
            slice.endpoints.iter().flat_map(|e| e.addresses.iter()).filter_map(|a| a.parse().ok()).collect();
        for ip in &ips {
            self.by_endpoint_ip.insert(*ip, service.clone());
        }
        self.slices.insert((ns, name), (service, ips));
    }

    pub fn remove_slice(&mut self, ns: &str, name: &str) {
        if let Some((service, ips)) = self.slices.remove(&(ns.to_string(), name.to_string())) {
            for ip in ips {
                if self.by_endpoint_ip.get(&ip) == Some(&service) {
                    self.by_endpoint_ip.remove(&ip);
                }
            }
        }
    }

    pub fn replace_slices(&mut self, slices: &[EndpointSlice]) {
        self.slices.clear();
        self.by_endpoint_ip.clear();
        for s in slices {
            self.upsert_slice(s);
        }
    }

    /// The pod and container of a container id; else, with only the pod's
    /// uid (the container started before its status listed its id), the pod
    /// and its only container if it has one.
    pub fn lookup(&self, container_id: Option<&str>, pod_uid: Option<&str>) -> Option<(Arc<PodInfo>, Option<usize>)> {
        if let Some((uid, i)) = container_id.and_then(|id| self.by_container.get(id)) {
            return self.pods.get(uid).map(|p| (p.clone(), Some(*i)));
        }
        let pod = self.pods.get(pod_uid?)?;
        let only = (pod.containers.len() == 1).then_some(0);
        Some((pod.clone(), only))
    }

    /// A local pod's service name, else the Service of a ClusterIP or of an
    /// endpoint address (pods on other nodes).
    pub fn name_for_ip(&self, ip: IpAddr) -> Option<String> {
        if let Some(pod) = self.by_pod_ip.get(&ip).and_then(|uid| self.pods.get(uid)) {
            // Named as its spans are: by its only container, else by the
            // first one that sets OTEL_SERVICE_NAME (the app, not a sidecar).
            let container = if pod.containers.len() == 1 {
                Some(0)
            } else {
                pod.containers.iter().position(|c| c.otel_service_name.is_some())
            };
            return Some(identity(pod, container, "").service_name);
        }
        self.by_cluster_ip.get(&ip).or_else(|| self.by_endpoint_ip.get(&ip)).cloned()
    }
}

fn key(ns: &Option<String>, name: &Option<String>) -> (String, String) {
    (ns.clone().unwrap_or_default(), name.clone().unwrap_or_default())
}

fn cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else { return Vec::new() };
    let mut ips: Vec<&String> = spec.cluster_ips.iter().flatten().collect();
    ips.extend(spec.cluster_ip.iter());
    let mut out: Vec<IpAddr> = ips.into_iter().filter_map(|s| s.parse().ok()).collect(); // "None" (headless) does not parse
    out.sort();
    out.dedup();
    out
}

/// Strip the runtime scheme of a status's containerID.
pub fn strip_runtime(id: &str) -> String {
    id.rsplit("://").next().unwrap_or(id).to_ascii_lowercase()
}

/// The tag of an image reference: after the last ':' of the last path
/// segment, without a digest. `registry:5000/app` has none.
pub fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next()?;
    let last = image.rsplit('/').next()?;
    last.split_once(':').map(|(_, t)| t).filter(|t| !t.is_empty())
}

/// The pod's and container's OpenTelemetry identity. Service name:
/// OTEL_SERVICE_NAME in the container's env spec, else the
/// `app.kubernetes.io/name` label, else the owner workload's name, else the
/// pod's. Version: the `app.kubernetes.io/version` label, else the image tag.
pub fn identity(pod: &PodInfo, container: Option<usize>, node: &str) -> K8sIdentity {
    let c = container.and_then(|i| pod.containers.get(i));
    let service_name = c
        .and_then(|c| c.otel_service_name.clone())
        .or_else(|| pod.labels.get("app.kubernetes.io/name").cloned())
        .or_else(|| pod.owner.as_ref().map(|o| o.name.clone()))
        .unwrap_or_else(|| pod.name.clone());
    let service_version = pod
        .labels
        .get("app.kubernetes.io/version")
        .cloned()
        .or_else(|| c.and_then(|c| c.image.as_deref()).and_then(image_tag).map(String::from));
    let mut attributes = vec![
        ("k8s.namespace.name".to_string(), pod.namespace.clone()),
        ("k8s.pod.name".to_string(), pod.name.clone()),
        ("k8s.pod.uid".to_string(), pod.uid.clone()),
    ];
    let node = pod.node.as_deref().unwrap_or(node);
    if !node.is_empty() {
        attributes.push(("k8s.node.name".into(), node.to_string()));
    }
    if let Some(c) = c {
        attributes.push(("k8s.container.name".into(), c.name.clone()));
        if let Some(id) = &c.id {
            attributes.push(("container.id".into(), id.clone()));
        }
        if let Some(image) = &c.image {
            let name = image.split('@').next().unwrap_or(image);
            let name = match image_tag(name) {
                Some(t) => &name[..name.len() - t.len() - 1],
                None => name,
            };
            attributes.push(("container.image.name".into(), name.to_string()));
        }
    }
    if let Some(o) = &pod.owner {
        for (kind, name) in
            o.via.iter().map(|(k, n)| (k.as_str(), n.as_str())).chain([(o.kind.as_str(), o.name.as_str())])
        {
            if let Some(attr) = owner_attribute(kind) {
                attributes.push((attr.into(), name.to_string()));
            }
        }
    }
    K8sIdentity { service_name, service_version, attributes }
}

fn owner_attribute(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ReplicaSet" => "k8s.replicaset.name",
        "Deployment" => "k8s.deployment.name",
        "StatefulSet" => "k8s.statefulset.name",
        "DaemonSet" => "k8s.daemonset.name",
        "Job" => "k8s.job.name",
        "CronJob" => "k8s.cronjob.name",
        _ => return None,
    })
}

/// The parts of a Pod the agent keeps; `owner` is resolved by the caller.
pub fn pod_info(pod: &Pod, owner: Option<Owner>) -> PodInfo {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let ips = if host_network {
        Vec::new()
    } else {
        let mut ips: Vec<IpAddr> =
            status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().filter_map(|p| p.ip.parse().ok()).collect();
        if let Some(ip) = status.and_then(|s| s.pod_ip.as_ref()).and_then(|ip| ip.parse().ok())
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
        ips
    };
    let statuses: Vec<_> = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .collect();
    let specs = spec.into_iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
    let containers = specs
        .map(|c| {
            let st = statuses.iter().find(|s| s.name == c.name);
            ContainerInfo {
                name: c.name.clone(),
                id: st.and_then(|s| s.container_id.as_deref()).map(strip_runtime),
                image: c.image.clone(),
                otel_service_name: c
                    .env
                    .iter()
                    .flatten()
                    .find(|e| e.name == "OTEL_SERVICE_NAME")
                    .and_then(|e| e.value.clone())
                    .filter(|v| !v.is_empty()),
            }
        })
        .collect();
    PodInfo {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ips,
        owner,
        containers,
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
