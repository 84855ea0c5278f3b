//! Kubernetes metadata end to end (root): the agent's kube client, through
//! KUBECONFIG, against a local HTTP server that plays the API server with
//! recorded list responses (tracer/tests/fixtures/k8s/) and watch streams the
//! test drives; real processes placed in real cgroup v2 directories named as
//! the kubelet and containerd / CRI-O name them. Asserts the identity of those
//! pids and the names of pod and Service IPs, across a watch event that
//! deletes a pod, one that adds a pod, and an API server outage. Then the
//! whole agent: a real HTTP server inside a pod's cgroup, on the pod's IP,
//! called by curl, and the OTLP spans a receiver built from the official
//! protos gets carry the pod's resource attributes and the peer's name.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{Path as UrlPath, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracer::{
    k8s::{K8sConfig, K8sIdentity, K8sMetadata},
    telemetry::Telemetry,
};

const NODE: &str = "node-a";
const ID_CHECKOUT: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const ID_REPORT: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const ID_CART: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s").join(name);
    serde_json::from_str(&fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A tiny API server: per resource, the current objects and a log of watch
/// events by resourceVersion; a watch replays the log after the version it
/// asks for, then follows it. `down` answers 503 and ends the watches.
#[derive(Default)]
struct ApiState {
    rv: u64,
    objects: HashMap<&'static str, BTreeMap<String, Value>>,
    log: Vec<(u64, &'static str, &'static str, Value)>,
    down: bool,
    field_selectors: Vec<String>,
}

#[derive(Clone)]
struct Api {
    state: Arc<Mutex<ApiState>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Api {
    fn load(&self, resource: &'static str, list: &str) {
        let mut st = self.state.lock().unwrap();
        st.rv = 100;
        let items = fixture(list)["items"].as_array().unwrap().clone();
        let map = st.objects.entry(resource).or_default();
        for o in items {
            map.insert(name(&o), o);
        }
    }

    fn event(&self, resource: &'static str, kind: &'static str, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let map = st.objects.entry(resource).or_default();
        if kind == "DELETED" {
            map.remove(&name(&obj));
        } else {
            map.insert(name(&obj), obj.clone());
        }
        st.log.push((rv, resource, kind, obj));
        drop(st);
        self.changed.send_replace(rv);
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
        self.changed.send_modify(|v| *v += 0);
    }
}

fn name(o: &Value) -> String {
    format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap())
}

fn unavailable() -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcdserver: leader changed", "reason": "ServiceUnavailable", "code": 503});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(status)).into_response()
}

async fn collection(api: Api, resource: &'static str, list_kind: &str, q: HashMap<String, String>) -> Response {
    let (down, rv) = {
        let mut st = api.state.lock().unwrap();
        if let Some(f) = q.get("fieldSelector") {
            st.field_selectors.push(format!("{resource}:{f}"));
        }
        (st.down, st.rv)
    };
    if down {
        return unavailable();
    }
    if q.get("watch").map(String::as_str) != Some("true") {
        let st = api.state.lock().unwrap();
        let items: Vec<Value> = st.objects.get(resource).map(|m| m.values().cloned().collect()).unwrap_or_default();
        let body = json!({"kind": list_kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}, "items": items});
        return axum::Json(body).into_response();
    }
    let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(rv);
    let rx = api.changed.subscribe();
    let stream = futures::stream::unfold((api, rx, from), move |(api, mut rx, mut last)| async move {
        loop {
            rx.borrow_and_update();
            let next = {
                let st = api.state.lock().unwrap();
                if st.down {
                    return None;
                }
                st.log.iter().find(|(rv, r, _, _)| *rv > last && *r == resource).cloned()
            };
            if let Some((rv, _, kind, obj)) = next {
                last = rv;
                let line = format!("{}\n", json!({"type": kind, "object": obj}));
                return Some((Ok::<_, std::io::Error>(line), (api, rx, last)));
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    Response::builder().header("content-type", "application/json").body(Body::from_stream(stream)).unwrap()
}

async fn object(api: Api, resource: &'static str, ns: String, name: String) -> Response {
    let st = api.state.lock().unwrap();
    if st.down {
        return unavailable();
    }
    match st.objects.get(resource).and_then(|m| m.get(&format!("{ns}/{name}"))) {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            ),
        )
            .into_response(),
    }
}

async fn serve(api: Api) -> SocketAddr {
    type Q = Query<HashMap<String, String>>;
    let app = Router::new()
        .route("/api/v1/pods", get(|State(a): State<Api>, Query(q): Q| collection(a, "pods", "PodList", q)))
        .route("/api/v1/services", get(|State(a): State<Api>, Query(q): Q| collection(a, "services", "ServiceList", q)))
        .route(
            "/apis/discovery.k8s.io/v1/endpointslices",
            get(|State(a): State<Api>, Query(q): Q| collection(a, "endpointslices", "EndpointSliceList", q)),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
            get(|State(a): State<Api>, UrlPath((ns, n)): UrlPath<(String, String)>| object(a, "replicasets", ns, n)),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(|State(a): State<Api>, UrlPath((ns, n)): UrlPath<(String, String)>| object(a, "deployments", ns, n)),
        )
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
            get(|State(a): State<Api>, UrlPath((ns, n)): UrlPath<(String, String)>| object(a, "jobs", ns, n)),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A `sleep` placed in a cgroup v2 directory named like the kubelet's.
struct Contained {
    child: Child,
    dirs: Vec<PathBuf>,
}

impl Contained {
    fn start(root: &Path, rel: &str) -> Contained {
        let mut sleep = Command::new("sleep");
        sleep.arg("120");
        Contained::run(root, rel, sleep)
    }

    /// `cmd` started, then moved into the cgroup `rel` (before it serves
    /// anything the agent could see).
    fn run(root: &Path, rel: &str, mut cmd: Command) -> Contained {
        let mut dirs = Vec::new();
        let mut dir = root.to_path_buf();
        for seg in rel.split('/') {
            dir.push(seg);
            if !dir.exists() {
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {} (needs root): {e}", dir.display()));
                dirs.push(dir.clone());
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        fs::write(dir.join("cgroup.procs"), child.id().to_string())
            .unwrap_or_else(|e| panic!("moving {} into {}: {e}", child.id(), dir.display()));
        let seen = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(seen.contains(rel), "/proc/{}/cgroup shows the kubelet-like path: {seen}", child.id());
        Contained { child, dirs }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        for d in self.dirs.iter().rev() {
            fs::remove_dir(d).ok();
        }
    }
}

/// The cgroup v2 mount: /sys/fs/cgroup/unified on hybrid hosts, else /sys/fs/cgroup.
fn cgroup2_root() -> PathBuf {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(p).join("cgroup.controllers").exists() {
            return p.into();
        }
    }
    panic!("no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup");
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn attrs(id: &K8sIdentity) -> BTreeMap<&str, &str> {
    id.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The fake API server loaded with every fixture list.
fn loaded_api() -> Api {
    let api = Api { state: Default::default(), changed: Arc::new(watch::channel(0).0) };
    for (resource, list) in [
        ("pods", "pods.json"),
        ("services", "services.json"),
        ("endpointslices", "endpointslices.json"),
        ("replicasets", "replicasets.json"),
        ("deployments", "deployments.json"),
        ("jobs", "jobs.json"),
    ] {
        api.load(resource, list);
    }
    api
}

/// A kubeconfig for the fake API server at `addr`, in a fresh directory.
fn kubeconfig(addr: SocketAddr, tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("e2e-k8s-{tag}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    (dir, kubeconfig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_services_and_watch_events_name_processes_and_peers() {
    let api = loaded_api();
    let addr = serve(api.clone()).await;
    let (dir, kubeconfig) = kubeconfig(addr, "lib");
    // SAFETY: set before the client (and any thread reading them) starts; this
    // file holds one test.
    unsafe {
        std::env::set_var("KUBECONFIG", &kubeconfig);
        std::env::set_var("NODE_NAME", NODE);
        std::env::remove_var("KUBERNETES_SERVICE_HOST");
    }

    // Processes in cgroups as containerd (systemd driver) and the cgroupfs
    // driver name them; the third (CRI-O) before its pod exists.
    let root = cgroup2_root();
    let checkout = Contained::start(
        &root,
        &format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1d0c5a7e_6b1f_4c2e_9a4d_0f3b2e1c4d5a.slice/cri-containerd-{ID_CHECKOUT}.scope"
        ),
    );
    let report =
        Contained::start(&root, &format!("kubepods/besteffort/pod2e1d6b8f-7c2a-4d3f-8b5e-1a4c3f2d5e6b/{ID_REPORT}"));
    let cart = Contained::start(
        &root,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod3f2e7c9a_8d3b_4e4a_9c6f_2b5d4a3e6f7c.slice/crio-{ID_CART}.scope"
        ),
    );

    let telemetry = Telemetry::new();
    let meta = K8sMetadata::start(&K8sConfig::default(), &telemetry)
        .await
        .expect("start")
        .expect("in a cluster (KUBECONFIG, NODE_NAME)");
    eventually("first lists", || meta.synced().then_some(())).await;
    assert_eq!(meta.readiness_detail(), None);
    let selectors = api.state.lock().unwrap().field_selectors.clone();
    assert!(selectors.iter().any(|s| s == "pods:spec.nodeName=node-a"), "pods of this node only: {selectors:?}");

    // checkout: ReplicaSet -> Deployment, version from the image tag.
    let id = meta.service_for_pid(checkout.pid()).expect("checkout's pid is in its pod");
    assert_eq!(id.service_name, "checkout");
    assert_eq!(id.service_version.as_deref(), Some("1.4.2"));
    let a = attrs(&id);
    for (k, v) in [
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "checkout-7d4b9c6f5-x2k8p"),
        ("k8s.pod.uid", "1d0c5a7e-6b1f-4c2e-9a4d-0f3b2e1c4d5a"),
        ("k8s.container.name", "app"),
        ("k8s.replicaset.name", "checkout-7d4b9c6f5"),
        ("k8s.deployment.name", "checkout"),
        ("k8s.node.name", NODE),
        ("container.id", ID_CHECKOUT),
    ] {
        assert_eq!(a.get(k).copied(), Some(v), "{k} in {a:?}");
    }
    // report: Job -> CronJob.
    let id = meta.service_for_pid(report.pid()).expect("report's pid");
    assert_eq!(id.service_name, "report");
    assert_eq!((attrs(&id)["k8s.job.name"], attrs(&id)["k8s.cronjob.name"]), ("report-29001", "report"));
    // Not yet a pod; not in any pod.
    assert_eq!(meta.service_for_pid(cart.pid()), None);
    assert_eq!(meta.service_for_pid(std::process::id()), None);

    // Peers: a pod of this node, a ClusterIP, endpoints on other nodes.
    assert_eq!(meta.name_for_ip(ip("10.1.0.7")).as_deref(), Some("checkout"));
    assert_eq!(meta.name_for_ip(ip("10.96.0.20")).as_deref(), Some("payments"));
    assert_eq!(meta.name_for_ip(ip("10.2.0.10")).as_deref(), Some("payments"));
    assert_eq!(meta.name_for_ip(ip("::ffff:10.2.0.9")).as_deref(), Some("payments"), "v4-mapped");
    assert_eq!(meta.name_for_ip(ip("10.9.9.9")), None);

    // Watch: checkout's pod is deleted, cart's is added.
    let mut gone = fixture("pods.json")["items"][0].clone();
    gone["metadata"]["deletionTimestamp"] = json!("2026-11-26T12:00:00Z");
    let generation = meta.generation();
    api.event("pods", "DELETED", gone);
    api.event("pods", "ADDED", fixture("pod_cart_added.json"));
    let id = eventually("the added pod", || meta.service_for_pid(cart.pid())).await;
    assert!(meta.generation() > generation, "a change bumps the generation");
    assert_eq!(meta.service_for_pid(checkout.pid()), None, "the deleted pod no longer names its processes");
    assert_eq!(meta.name_for_ip(ip("10.1.0.7")), None);
    assert_eq!(id.service_name, "cart", "OTEL_SERVICE_NAME in the container spec wins");
    assert_eq!(id.service_version.as_deref(), Some("0.9.0"), "app.kubernetes.io/version wins over the tag");
    assert_eq!(attrs(&id)["k8s.deployment.name"], "cart");
    assert_eq!(meta.name_for_ip(ip("10.1.0.9")).as_deref(), Some("cart"));

    // The API server goes away: names stay, the outage is reported, and the
    // watchers come back by themselves.
    api.set_down(true);
    let detail = eventually("the outage to be reported", || meta.readiness_detail()).await;
    assert!(detail.contains("retrying"), "{detail}");
    assert!(telemetry.render().contains("tracer_k8s_api_connected 0"), "{}", telemetry.render());
    assert_eq!(meta.service_for_pid(cart.pid()).map(|i| i.service_name).as_deref(), Some("cart"));
    assert_eq!(meta.name_for_ip(ip("10.96.0.20")).as_deref(), Some("payments"));
    api.set_down(false);
    eventually("the watchers to recover", || meta.synced().then_some(())).await;
    assert!(telemetry.render().contains("tracer_k8s_api_connected 1"));
    assert_eq!(meta.service_for_pid(report.pid()).map(|i| i.service_name).as_deref(), Some("report"));
    fs::remove_dir_all(&dir).ok();
}

/// An address added to the loopback device for the test (a pod IP), removed
/// when dropped.
struct LoopbackIp(&'static str);

impl LoopbackIp {
    fn add(ip: &'static str) -> LoopbackIp {
        // Left over by a run that was killed: take it back first.
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
            .stderr(std::process::Stdio::null())
            .status();
        let st =
            Command::new("ip").args(["addr", "add", &format!("{ip}/32"), "dev", "lo"]).status().expect("ip addr add");
        assert!(st.success(), "ip addr add {ip}/32 dev lo (needs root)");
        LoopbackIp(ip)
    }
}

impl Drop for LoopbackIp {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"]).status();
    }
}

/// (resource attributes, span) of every span the receiver accepted.
fn received_spans(rx: &common::OtlpReceiver) -> Vec<(BTreeMap<String, Value>, Value)> {
    let kv = |v: &Value| -> BTreeMap<String, Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"]["stringValue"].clone()))
            .collect()
    };
    let mut out = Vec::new();
    for r in rx.requests().iter().filter(|r| r["signal"] == "traces" && r["answer"] == "ok") {
        for rs in r["request"]["resourceSpans"].as_array().into_iter().flatten() {
            let resource = kv(&rs["resource"]["attributes"]);
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for sp in ss["spans"].as_array().into_iter().flatten() {
                    let mut sp = sp.clone();
                    sp["attrs"] = json!(kv(&sp["attributes"]));
                    out.push((resource.clone(), sp));
                }
            }
        }
    }
    out
}

/// The agent end to end in a (played) cluster: a python http.server in the
/// checkout pod's cgroup, listening on the pod's IP, called by curl (not in
/// any pod). The SERVER span goes out with the pod's identity as its
/// resource; curl's CLIENT span names its peer `checkout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_spans_carry_pod_metadata() {
    let api = loaded_api();
    let addr = serve(api).await;
    let (dir, kubeconfig) = kubeconfig(addr, "agent");
    let pod_ip = LoopbackIp::add("10.1.0.7");
    let port = common::free_port();
    let site = common::site(100);
    let mut server = Command::new("python3");
    server
        .args(["-m", "http.server", "--bind", pod_ip.0, &port.to_string(), "--directory"])
        .arg(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _checkout = Contained::run(
        &cgroup2_root(),
        &format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1d0c5a7e_6b1f_4c2e_9a4d_0f3b2e1c4d5a.slice/cri-containerd-{ID_CHECKOUT}.scope"
        ),
        server,
    );
    common::wait_listening(&format!("{}:{port}", pod_ip.0), None);

    let rx = common::OtlpReceiver::start();
    let endpoint = format!("http://127.0.0.1:{}", rx.grpc);
    let agent = common::Agent::start_env(
        &[],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("NODE_NAME", NODE),
            ("KUBERNETES_SERVICE_HOST", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.metrics().contains("tracer_k8s_api_connected 1") {
        assert!(Instant::now() < deadline, "the agent never synced with the API server:\n{}", agent.metrics());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        let c = common::curl(&format!("http://{}:{port}/index.html", pod_ip.0), None, &[]);
        assert_eq!(c.http_code, 200, "{c:?}");
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let (server, client) = loop {
        let spans = received_spans(&rx);
        let of = |service: &str, kind: &str| {
            spans.iter().filter(|(r, s)| r["service.name"] == service && s["kind"] == kind).cloned().collect::<Vec<_>>()
        };
        let (server, client) = (of("checkout", "SPAN_KIND_SERVER"), of("curl", "SPAN_KIND_CLIENT"));
        if server.len() >= 3 && client.len() >= 3 {
            break (server, client);
        }
        assert!(
            Instant::now() < deadline,
            "3 checkout SERVER and 3 curl CLIENT spans at the receiver; got {} and {}: {:?}",
            server.len(),
            client.len(),
            spans.iter().map(|(r, s)| (r["service.name"].clone(), s["name"].clone())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (resource, span) = &server[0];
    for (k, v) in [
        ("service.version", "1.4.2"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "checkout-7d4b9c6f5-x2k8p"),
        ("k8s.pod.uid", "1d0c5a7e-6b1f-4c2e-9a4d-0f3b2e1c4d5a"),
        ("k8s.container.name", "app"),
        ("k8s.deployment.name", "checkout"),
        ("k8s.node.name", NODE),
        ("container.id", ID_CHECKOUT),
    ] {
        assert_eq!(resource.get(k).and_then(Value::as_str), Some(v), "{k} in the SERVER span's resource {resource:?}");
    }
    assert_eq!(span["attrs"]["http.route"], "/index.html", "{span}");
    let (resource, span) = &client[0];
    assert!(!resource.contains_key("k8s.pod.name"), "curl is in no pod: {resource:?}");
    assert_eq!(span["attrs"]["peer.service"], "checkout", "curl's peer is named by the pod IP: {span}");
    // The two ends of one request are one trace, server under client.
    let ids = |s: &Value| (s["traceId"].clone(), s["spanId"].clone(), s["parentSpanId"].clone());
    assert!(
        server.iter().any(|(_, s)| client.iter().any(|(_, c)| ids(s).0 == ids(c).0 && ids(s).2 == ids(c).1)),
        "a checkout SERVER span is the child of a curl CLIENT span"
    );
    agent.stop();
    fs::remove_dir_all(&dir).ok();
}
