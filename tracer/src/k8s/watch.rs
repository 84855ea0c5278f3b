//! The watchers: pods of this node (field selector spec.nodeName), Services
//! and EndpointSlices of the cluster, each a kube-runtime watcher restarted
//! with exponential backoff after an error, feeding the Store. A pod's owner
//! chain is looked up on the API server (ReplicaSet -> Deployment, Job ->
//! CronJob) and cached.
//! A failed watch keeps the Store as it is (names stay served) and is
//! reported through Status until the watcher re-lists.

use std::{
    collections::HashMap,
    fmt::Debug,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt as _};
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        batch::v1::Job,
        core::v1::{Pod, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Api, Client, Resource, ResourceExt as _, runtime::watcher};
use serde::de::DeserializeOwned;

use super::store::{Owner, PodInfo, Store, pod_info};

/// What /readyz and /metrics say about the API server.
#[derive(Default)]
pub struct Status {
    /// Per watched resource: listed and watching since its last error.
    pub pods_ok: AtomicBool,
    pub services_ok: AtomicBool,
    pub slices_ok: AtomicBool,
    /// Watch and list failures (each is retried with backoff).
    pub watch_errors: AtomicU64,
    /// Owner lookups that failed (the pod keeps its direct owner's name).
    pub owner_lookup_errors: AtomicU64,
    /// Bumped on every change to the Store, so callers can drop cached names.
    pub generation: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl Status {
    pub fn connected(&self) -> bool {
        self.pods_ok.load(Ordering::Acquire)
            && self.services_ok.load(Ordering::Acquire)
            && self.slices_ok.load(Ordering::Acquire)
    }

    fn error(&self, what: &str, ok: &AtomicBool, e: &dyn std::fmt::Display) {
        let was_ok = ok.swap(false, Ordering::AcqRel);
        self.watch_errors.fetch_add(1, Ordering::Relaxed);
        let msg = format!("watching {what}: {e}");
        // Once per outage, not once per retry.
        if was_ok || self.last_error.lock().expect("status lock").is_none() {
            tracing::warn!("kubernetes API: {msg}; keeping the names already known, retrying with backoff");
        }
        *self.last_error.lock().expect("status lock") = Some(msg);
    }

    fn ok(&self, ok: &AtomicBool) {
        if !ok.swap(true, Ordering::AcqRel) && self.connected() {
            tracing::info!("kubernetes API: watching pods, services and endpointslices");
            *self.last_error.lock().expect("status lock") = None;
        }
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

pub struct Shared {
    pub store: RwLock<Store>,
    pub status: Status,
}

/// Spawn the three watchers; they run until the runtime stops.
pub fn spawn(client: Client, node: String, shared: Arc<Shared>) {
    let owners = Arc::new(Owners { client: client.clone(), cache: Mutex::new(HashMap::new()) });
    let (c, s) = (client.clone(), shared.clone());
    let pods = move || {
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let (owners, s) = (owners.clone(), s.clone());
        // Owners are resolved (async, on the API server) before the store lock.
        watcher(Api::<Pod>::all(c.clone()), cfg).then(move |ev| {
            let (owners, s) = (owners.clone(), s.clone());
            async move {
                Ok(match ev? {
                    watcher::Event::Init => watcher::Event::Init,
                    watcher::Event::InitDone => watcher::Event::InitDone,
                    watcher::Event::InitApply(p) => watcher::Event::InitApply(info(&owners, &s.status, &p).await),
                    watcher::Event::Apply(p) => watcher::Event::Apply(info(&owners, &s.status, &p).await),
                    watcher::Event::Delete(p) => watcher::Event::Delete(pod_info(&p, None)),
                })
            }
        })
    };
    tokio::spawn(run(
        pods,
        "pods",
        shared.clone(),
        |s| &s.status.pods_ok,
        |store, ev, relist| match ev {
            watcher::Event::Init => relist.clear(),
            watcher::Event::InitApply(p) => relist.push(p),
            watcher::Event::InitDone => store.replace_pods(std::mem::take(relist)),
            watcher::Event::Apply(p) => store.upsert_pod(p),
            watcher::Event::Delete(p) => store.remove_pod(&p.uid),
        },
    ));

    let c = client.clone();
    let services = move || watcher(Api::<Service>::all(c.clone()), watcher::Config::default());
    tokio::spawn(run(
        services,
        "services",
        shared.clone(),
        |s| &s.status.services_ok,
        |store, ev, relist| match ev {
            watcher::Event::Init => relist.clear(),
            watcher::Event::InitApply(o) => relist.push(o),
            watcher::Event::InitDone => store.replace_services(&std::mem::take(relist)),
            watcher::Event::Apply(o) => store.upsert_service(&o),
            watcher::Event::Delete(o) => store.remove_service(&o.namespace().unwrap_or_default(), &o.name_any()),
        },
    ));

    let slices = move || watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default());
    tokio::spawn(run(
        slices,
        "endpointslices",
        shared,
        |s| &s.status.slices_ok,
        |store, ev, relist| match ev {
            watcher::Event::Init => relist.clear(),
            watcher::Event::InitApply(o) => relist.push(o),
            watcher::Event::InitDone => store.replace_slices(&std::mem::take(relist)),
            watcher::Event::Apply(o) => store.upsert_slice(&o),
            watcher::Event::Delete(o) => store.remove_slice(&o.namespace().unwrap_or_default(), &o.name_any()),
        },
    ));
}

/// First and longest wait between two attempts after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Drive one watcher: events go to `apply` under the store's lock, errors
/// to Status. After an error the watch starts over with a fresh list (so
/// "watching" always means "listed and watching since"), after an
/// exponential, jittered backoff that resets once a list succeeds. A
/// re-list is buffered and swapped in whole at InitDone: the names already
/// known stay served while the API server is away.
async fn run<T, S, M, F>(make: M, what: &'static str, shared: Arc<Shared>, ok: fn(&Shared) -> &AtomicBool, mut apply: F)
where
    M: Fn() -> S,
    S: Stream<Item = Result<watcher::Event<T>, watcher::Error>> + Send,
    F: FnMut(&mut Store, watcher::Event<T>, &mut Vec<T>),
{
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut stream = std::pin::pin!(make());
        let mut relist = Vec::new();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    let done = matches!(ev, watcher::Event::InitDone);
                    let change = !matches!(ev, watcher::Event::Init | watcher::Event::InitApply(_));
                    apply(&mut shared.store.write().expect("store lock"), ev, &mut relist);
                    if change {
                        shared.status.changed();
                    }
                    if done {
                        shared.status.ok(ok(&shared));
                        backoff = BACKOFF_MIN;
                    }
                }
                Err(e) => {
                    shared.status.error(what, ok(&shared), &e);
                    break;
                }
            }
        }
        let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn info(owners: &Owners, status: &Status, pod: &Pod) -> PodInfo {
    let owner = match controller(pod.owner_references()) {
        Some(r) => Some(owners.resolve(status, &pod.namespace().unwrap_or_default(), r, pod).await),
        None => None,
    };
    pod_info(pod, owner)
}

fn controller(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter().find(|r| r.controller == Some(true)).or_else(|| refs.first())
}

/// Owner lookups, cached by (namespace, kind, name): a Deployment's pods
/// share one ReplicaSet lookup.
struct Owners {
    client: Client,
    cache: Mutex<HashMap<(String, String, String), Owner>>,
}

impl Owners {
    async fn resolve(&self, status: &Status, ns: &str, r: &OwnerReference, pod: &Pod) -> Owner {
        let key = (ns.to_string(), r.kind.clone(), r.name.clone());
        if let Some(o) = self.cache.lock().expect("owners lock").get(&key) {
            return o.clone();
        }
        let direct = Owner { kind: r.kind.clone(), name: r.name.clone(), via: None };
        let parent = match r.kind.as_str() {
            "ReplicaSet" => self.parent::<ReplicaSet>(ns, &r.name).await,
            "Job" => self.parent::<Job>(ns, &r.name).await,
            _ => Ok(None),
        };
        let owner = match parent {
            Ok(Some((kind, name))) => Owner { kind, name, via: Some((r.kind.clone(), r.name.clone())) },
            Ok(None) => direct,
            Err(e) => {
                status.owner_lookup_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("owner of {ns}/{}: {e}", r.name);
                // Not cached: the next pod event retries. Meanwhile a
                // Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`.
                return guess_deployment(direct, pod);
            }
        };
        self.cache.lock().expect("owners lock").insert(key, owner.clone());
        owner
    }

    async fn parent<K>(&self, ns: &str, name: &str) -> kube::Result<Option<(String, String)>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let obj = Api::<K>::namespaced(self.client.clone(), ns).get_opt(name).await?;
        Ok(obj.and_then(|o| controller(o.owner_references()).map(|r| (r.kind.clone(), r.name.clone()))))
    }
}

fn guess_deployment(direct: Owner, pod: &Pod) -> Owner {
    let hash = pod.labels().get("pod-template-hash");
    match (direct.kind.as_str(), hash.and_then(|h| direct.name.strip_suffix(&format!("-{h}")))) {
        ("ReplicaSet", Some(deployment)) => Owner {
            kind: "Deployment".into(),
            name: deployment.to_string(),
            via: Some((direct.kind.clone(), direct.name.clone())),
        },
        _ => direct,
    }
}
