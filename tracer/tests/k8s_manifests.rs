//! The Kubernetes manifests, rendered by kustomize (`kubectl kustomize`) and
//! read into k8s-openapi types: the DaemonSet's security settings are asserted
//! here, on typed objects, so a change to a privilege is a test change that a
//! reviewer sees. `cargo xtask deploy-check` runs this after the schema
//! validation and checkov.

use std::{collections::BTreeSet, path::Path, process::Command};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{ConfigMap, Container, Namespace, Probe},
        rbac::v1::ClusterRole,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Every object of a kustomization, rendered as `kubectl apply -k` would.
fn render(dir: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("kubectl")
        .current_dir(&root)
        .args(["kustomize", dir])
        .output()
        .unwrap_or_else(|e| panic!("running `kubectl kustomize {dir}` ({e}): install kubectl (.ci/run does)"));
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8(out.stdout).expect("kustomize writes UTF-8");
    serde_saphyr::from_multiple::<Value>(&yaml).unwrap_or_else(|e| panic!("rendered {dir} is not YAML: {e}"))
}

fn one<T: DeserializeOwned>(objects: &[Value], kind: &str) -> T {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} expected");
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind} does not fit k8s-openapi's type: {e}"))
}

fn container(ds: &DaemonSet) -> &Container {
    let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert_eq!(spec.containers.len(), 1, "one container");
    &spec.containers[0]
}

fn http_get(p: &Option<Probe>) -> (String, IntOrString) {
    let g = p.as_ref().and_then(|p| p.http_get.as_ref()).expect("an httpGet probe");
    (g.path.clone().unwrap_or_default(), g.port.clone())
}

#[test]
fn base_daemonset_least_privilege() {
    let objects = render("deploy/kubernetes/base");
    let ds: DaemonSet = one(&objects, "DaemonSet");
    let pod = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert_eq!(pod.host_pid, Some(true), "hostPID: the agent names processes from /proc");
    assert_ne!(pod.host_network, Some(true), "no host network: probes are kernel-wide");
    let seccomp = pod.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref()).expect("seccomp profile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    let tolerations = pod.tolerations.as_ref().expect("tolerations");
    assert!(
        tolerations.iter().any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
        "tolerates every taint, so it runs on every node"
    );

    let c = container(&ds);
    let sc = c.security_context.as_ref().expect("container securityContext");
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    // The container's own seccomp setting must not undo the pod's.
    assert!(sc.seccomp_profile.is_none());
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(added, BTreeSet::from(["BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"]), "capabilities, exactly");

    // Probes on the API port, which the config binds on the pod IP.
    let port = c.ports.iter().flatten().find(|p| p.name.as_deref() == Some("api")).expect("api port");
    assert_eq!(port.container_port, 9400);
    assert_eq!(http_get(&c.liveness_probe), ("/healthz".into(), IntOrString::String("api".into())));
    assert_eq!(http_get(&c.readiness_probe), ("/readyz".into(), IntOrString::String("api".into())));

    let res = c.resources.as_ref().expect("resources");
    for (what, list) in [("requests", &res.requests), ("limits", &res.limits)] {
        let list = list.as_ref().unwrap_or_else(|| panic!("resources.{what}"));
        assert!(list.contains_key("cpu") && list.contains_key("memory"), "{what}: cpu and memory");
    }

    // Every host path is mounted read-only; the one writable mount is the
    // business history's emptyDir (no host path), with a size limit.
    let host_volumes: BTreeSet<&str> =
        pod.volumes.iter().flatten().filter(|v| v.host_path.is_some()).map(|v| v.name.as_str()).collect();
    assert_eq!(host_volumes, BTreeSet::from(["btf", "cgroup", "tracefs"]));
    for m in c.volume_mounts.iter().flatten().filter(|m| m.name != "history") {
        assert_eq!(m.read_only, Some(true), "{} is mounted read-only", m.name);
    }
    let history = pod.volumes.iter().flatten().find(|v| v.name == "history").expect("the history volume");
    let empty_dir = history.empty_dir.as_ref().expect("history is an emptyDir, not a host path");
    assert!(empty_dir.size_limit.is_some(), "the history's emptyDir has a size limit");
    let mount = c.volume_mounts.iter().flatten().find(|m| m.name == "history").expect("history mounted");
    assert_eq!(mount.mount_path, "/var/lib/tracer", "the default [business.history] path's directory");

    // NODE_NAME from the downward API; the OTLP endpoint from a ConfigMap
    // that the render contains.
    let env = |name: &str| c.env.iter().flatten().find(|e| e.name == name).unwrap_or_else(|| panic!("env {name}"));
    let node = env("NODE_NAME").value_from.as_ref().and_then(|v| v.field_ref.as_ref()).expect("fieldRef");
    assert_eq!(node.field_path, "spec.nodeName");
    let otlp = env("OTEL_EXPORTER_OTLP_ENDPOINT")
        .value_from
        .as_ref()
        .and_then(|v| v.config_map_key_ref.as_ref())
        .expect("configMapKeyRef");
    let maps: Vec<ConfigMap> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| serde_json::from_value(o.clone()).expect("ConfigMap"))
        .collect();
    let otlp_map =
        maps.iter().find(|m| m.metadata.name.as_deref() == Some(otlp.name.as_str())).expect("OTLP ConfigMap rendered");
    assert!(otlp_map.data.as_ref().is_some_and(|d| d.contains_key(&otlp.key)));

    // The mounted config parses, and listens where the kubelet probes.
    let config_map = maps
        .iter()
        .find(|m| m.data.as_ref().is_some_and(|d| d.contains_key("tracer.toml")))
        .expect("tracer.toml ConfigMap");
    let dir = std::env::temp_dir().join(format!("k8s-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tracer.toml");
    std::fs::write(&file, &config_map.data.as_ref().unwrap()["tracer.toml"]).unwrap();
    let config = tracer::config::Config::from_file(&file).expect("the ConfigMap's tracer.toml parses");
    assert_eq!(config.api.addr.to_string(), "0.0.0.0:9400");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn base_rbac_and_namespace() {
    let objects = render("deploy/kubernetes/base");
    let role: ClusterRole = one(&objects, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        let verbs: BTreeSet<&str> = rule.verbs.iter().map(String::as_str).collect();
        assert_eq!(verbs, BTreeSet::from(["get", "list", "watch"]), "read-only: {rule:?}");
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for g in rule.api_groups.iter().flatten() {
            for r in rule.resources.iter().flatten() {
                granted.insert(format!("{g}/{r}"));
            }
        }
    }
    let expected: BTreeSet<String> = [
        "/pods",
        "/services",
        "discovery.k8s.io/endpointslices",
        "apps/replicasets",
        "apps/deployments",
        "apps/statefulsets",
        "apps/daemonsets",
        "batch/jobs",
        "batch/cronjobs",
    ]
    .map(String::from)
    .into();
    assert_eq!(granted, expected, "exactly what the metadata watcher reads");

    let ns: Namespace = one(&objects, "Namespace");
    let labels = ns.metadata.labels.expect("labels");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
}

#[test]
fn privileged_overlay_only_flips_privilege() {
    let objects = render("deploy/kubernetes/overlays/privileged");
    let ds: DaemonSet = one(&objects, "DaemonSet");
    let sc = container(&ds).security_context.as_ref().expect("securityContext");
    assert_eq!(sc.privileged, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let pod = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).unwrap();
    assert_eq!(pod.host_pid, Some(true));
    let base: DaemonSet = one(&render("deploy/kubernetes/base"), "DaemonSet");
    assert_eq!(container(&ds).volume_mounts, container(&base).volume_mounts, "same host paths as the base");
}
