//! Naming rules of the Store: service name and version precedence, resource
//! attributes, and IP names, on objects as the API server returns them.

use super::*;

fn pod(json: serde_json::Value) -> Pod {
    serde_json::from_value(json).expect("a Pod")
}

fn checkout(labels: serde_json::Value, env: serde_json::Value) -> Pod {
    pod(serde_json::json!({
        "metadata": {"name": "checkout-7d4b9c-x2k8p", "namespace": "shop", "uid": "11111111-2222-3333-4444-555555555555", "labels": labels},
        "spec": {"nodeName": "node-a", "containers": [
            {"name": "app", "image": "registry.local:5000/shop/checkout:2.3.1", "env": env},
            {"name": "sidecar", "image": "envoy@sha256:abcd"}
        ]},
        "status": {"podIP": "10.1.0.7", "podIPs": [{"ip": "10.1.0.7"}], "containerStatuses": [
            {"name": "app", "containerID": "containerd://AAAA", "image": "", "imageID": "", "ready": true, "restartCount": 0},
            {"name": "sidecar", "containerID": "containerd://bbbb", "image": "", "imageID": "", "ready": true, "restartCount": 0}
        ]}
    }))
}

fn deployment_owner() -> Option<Owner> {
    Some(Owner {
        kind: "Deployment".into(),
        name: "checkout".into(),
        via: Some(("ReplicaSet".into(), "checkout-7d4b9c".into())),
    })
}

#[test]
fn service_name_precedence() {
    let env = serde_json::json!([{"name": "OTEL_SERVICE_NAME", "value": "checkout-api"}]);
    let labels = serde_json::json!({"app.kubernetes.io/name": "checkout-web", "app.kubernetes.io/version": "2.4.0"});
    let p = pod_info(&checkout(labels.clone(), env.clone()), deployment_owner());
    let id = identity(&p, Some(0), "node-a");
    assert_eq!(id.service_name, "checkout-api", "container env first");
    assert_eq!(id.service_version.as_deref(), Some("2.4.0"), "version label before the image tag");
    // The sidecar has no OTEL_SERVICE_NAME: the label names it.
    assert_eq!(identity(&p, Some(1), "node-a").service_name, "checkout-web");
    let p = pod_info(&checkout(serde_json::json!({}), serde_json::json!([])), deployment_owner());
    let id = identity(&p, Some(0), "node-a");
    assert_eq!(id.service_name, "checkout", "the owner workload");
    assert_eq!(id.service_version.as_deref(), Some("2.3.1"), "the image tag");
    assert_eq!(identity(&p, Some(1), "node-a").service_version, None, "a digest is not a version");
    let bare = pod_info(&checkout(serde_json::json!({}), serde_json::json!([])), None);
    assert_eq!(identity(&bare, None, "").service_name, "checkout-7d4b9c-x2k8p", "the pod, without owner");
}

#[test]
fn resource_attributes() {
    let p = pod_info(&checkout(serde_json::json!({}), serde_json::json!([])), deployment_owner());
    let id = identity(&p, Some(0), "ignored");
    let a: std::collections::BTreeMap<_, _> = id.attributes.into_iter().collect();
    let expect = [
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "checkout-7d4b9c-x2k8p"),
        ("k8s.pod.uid", "11111111-2222-3333-4444-555555555555"),
        ("k8s.node.name", "node-a"),
        ("k8s.container.name", "app"),
        ("container.id", "aaaa"),
        ("container.image.name", "registry.local:5000/shop/checkout"),
        ("k8s.replicaset.name", "checkout-7d4b9c"),
        ("k8s.deployment.name", "checkout"),
    ];
    assert_eq!(a.len(), expect.len(), "{a:?}");
    for (k, v) in expect {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k}");
    }
}

#[test]
fn lookup_by_container_and_pod_uid() {
    let mut s = Store::default();
    s.upsert_pod(pod_info(&checkout(serde_json::json!({}), serde_json::json!([])), deployment_owner()));
    let (p, c) = s.lookup(Some("bbbb"), None).expect("by container id");
    assert_eq!((p.name.as_str(), c), ("checkout-7d4b9c-x2k8p", Some(1)));
    // Two containers: the pod uid alone does not tell which.
    let (_, c) = s.lookup(Some("cccc"), Some("11111111-2222-3333-4444-555555555555")).expect("by pod uid");
    assert_eq!(c, None);
    s.remove_pod("11111111-2222-3333-4444-555555555555");
    assert!(s.lookup(Some("bbbb"), None).is_none());
}

#[test]
fn ip_names() {
    let mut s = Store::default();
    s.upsert_pod(pod_info(
        &checkout(serde_json::json!({"app.kubernetes.io/name": "checkout"}), serde_json::json!([])),
        None,
    ));
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "payments", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"]}
    }))
    .unwrap();
    let headless: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None"}
    }))
    .unwrap();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "payments-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "payments"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.2.0.9"]}, {"addresses": ["10.2.0.10"]}]
    }))
    .unwrap();
    s.upsert_service(&svc);
    s.upsert_service(&headless);
    s.upsert_slice(&slice);
    let name = |s: &Store, ip: &str| s.name_for_ip(ip.parse().unwrap());
    assert_eq!(name(&s, "10.1.0.7").as_deref(), Some("checkout"), "a pod of this node");
    assert_eq!(name(&s, "10.96.0.20").as_deref(), Some("payments"), "a ClusterIP");
    assert_eq!(name(&s, "fd00::20").as_deref(), Some("payments"), "a second-family ClusterIP");
    assert_eq!(name(&s, "10.2.0.10").as_deref(), Some("payments"), "a pod elsewhere, by its Service");
    assert_eq!(name(&s, "10.9.9.9"), None);
    s.remove_slice("shop", "payments-abc");
    s.remove_service("shop", "payments");
    assert_eq!(name(&s, "10.2.0.10"), None);
    assert_eq!(name(&s, "10.96.0.20"), None);
}

#[test]
fn host_network_pods_do_not_claim_the_node_ip() {
    let p = pod(serde_json::json!({
        "metadata": {"name": "node-exporter-abc", "namespace": "mon", "uid": "u"},
        "spec": {"hostNetwork": true, "containers": [{"name": "c"}]},
        "status": {"podIP": "192.0.2.1"}
    }));
    assert!(pod_info(&p, None).ips.is_empty());
}

#[test]
fn image_tags() {
    assert_eq!(image_tag("nginx:1.27"), Some("1.27"));
    assert_eq!(image_tag("registry:5000/team/app"), None);
    assert_eq!(image_tag("registry:5000/team/app:v2@sha256:ff"), Some("v2"));
    assert_eq!(image_tag("app@sha256:ff"), None);
    assert_eq!(strip_runtime("cri-o://ABC"), "abc");
}
