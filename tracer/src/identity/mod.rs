//! Who a process is: its service name and version, as OpenTelemetry SDKs
//! would name it. OTEL_SERVICE_NAME, then service.name in
//! OTEL_RESOURCE_ATTRIBUTES, read from /proc/<pid>/environ; else the
//! executable name. Cached per pid, refreshed when the pid is reused (its
//! start time changes). Bounded: the cache is cleared when full.

use foldhash::{HashMap, HashMapExt};
use std::{
    fs,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::k8s::K8sMetadata;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub version: Option<String>,
    /// Other OTEL_RESOURCE_ATTRIBUTES of the process (key, value).
    pub attributes: Vec<(String, String)>,
}

/// A cached identity: process start time, the service, the comm it was
/// seen with, and when the start time was last checked.
struct Cached {
    start: u64,
    service: Arc<Service>,
    comm: String,
    checked: Instant,
}

/// How long a cached pid is trusted without re-reading /proc/<pid>/stat
/// (a /proc read per span would cost more than the span).
const RECHECK: Duration = Duration::from_secs(1);

pub struct Identity {
    cache: HashMap<u32, Cached>,
    /// Pod metadata in a cluster: names services after their workloads and
    /// adds k8s.* resource attributes.
    k8s: Option<K8sMetadata>,
    k8s_generation: u64,
}

const MAX_PIDS: usize = 8192;

impl Identity {
    pub fn new() -> Self {
        Identity { cache: HashMap::new(), k8s: None, k8s_generation: 0 }
    }

    pub fn with_k8s(mut self, k8s: Option<K8sMetadata>) -> Self {
        self.k8s = k8s;
        self
    }

    /// The service of `pid`; `comm` names it when /proc has nothing better.
    pub fn service(&mut self, pid: u32, comm: &str) -> Arc<Service> {
        // Pod changes (new pods, deleted ones) invalidate what was cached.
        if let Some(k) = &self.k8s {
            let g = k.generation();
            if g != self.k8s_generation {
                self.cache.clear();
                self.k8s_generation = g;
            }
        }
        let now = Instant::now();
        if let Some(c) = self.cache.get(&pid)
            && c.comm == comm
            && now.duration_since(c.checked) < RECHECK
        {
            return c.service.clone();
        }
        let start = start_time(pid);
        if let Some(c) = self.cache.get_mut(&pid)
            && (start.is_none() || start == Some(c.start))
        {
            c.checked = now;
            return c.service.clone();
        }
        let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let exe = fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let mut svc = from_environ(&env, exe.as_deref().unwrap_or(comm));
        if let Some(id) = self.k8s.as_ref().and_then(|k| k.service_for_pid(pid)) {
            // The process's own OTEL_SERVICE_NAME / service.name keeps precedence.
            if !named_by_env(&env) {
                svc.name = id.service_name;
            }
            if svc.version.is_none() {
                svc.version = id.service_version;
            }
            svc.attributes.extend(id.attributes);
        }
        let svc = Arc::new(svc);
        if let Some(start) = start {
            if self.cache.len() >= MAX_PIDS {
                self.cache.clear();
            }
            self.cache.insert(pid, Cached { start, service: svc.clone(), comm: comm.to_string(), checked: now });
        }
        svc
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

/// The environment names the service itself (OTel SDK variables).
fn named_by_env(env: &[u8]) -> bool {
    env.split(|b| *b == 0).any(|v| {
        v.starts_with(b"OTEL_SERVICE_NAME=") && v.len() > 18
            || v.starts_with(b"OTEL_RESOURCE_ATTRIBUTES=") && v.windows(13).any(|w| w == b"service.name=")
    })
}

/// Process start time in clock ticks (field 22 of /proc/<pid>/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Service identity from a NUL-separated environment block.
pub fn from_environ(env: &[u8], fallback: &str) -> Service {
    let mut name = None;
    let mut attrs = Vec::new();
    for var in env.split(|b| *b == 0) {
        let var = String::from_utf8_lossy(var);
        if let Some(v) = var.strip_prefix("OTEL_SERVICE_NAME=") {
            if !v.is_empty() {
                name = Some(v.to_string());
            }
        } else if let Some(v) = var.strip_prefix("OTEL_RESOURCE_ATTRIBUTES=") {
            attrs = parse_resource_attributes(v);
        }
    }
    let mut svc = Service { name: fallback.to_string(), version: None, attributes: Vec::new() };
    for (k, v) in attrs {
        match k.as_str() {
            "service.name" => {
                // OTEL_SERVICE_NAME wins over the attribute (OTel SDK rule).
                if name.is_none() {
                    name = Some(v);
                }
            }
            "service.version" => svc.version = Some(v),
            _ => svc.attributes.push((k, v)),
        }
    }
    if let Some(n) = name {
        svc.name = n;
    }
    svc
}

/// `key1=value1,key2=value2` with percent-encoded values (OTel spec).
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .take(64)
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_from_environment() {
        let env = b"PATH=/bin\0OTEL_RESOURCE_ATTRIBUTES=service.name=ignored,service.version=1.2,deployment.environment=prod%20eu\0OTEL_SERVICE_NAME=checkout\0";
        let s = from_environ(env, "python3");
        assert_eq!(s.name, "checkout");
        assert_eq!(s.version.as_deref(), Some("1.2"));
        assert_eq!(s.attributes, vec![("deployment.environment".into(), "prod eu".into())]);
        let s = from_environ(b"OTEL_RESOURCE_ATTRIBUTES=service.name=cart\0", "x");
        assert_eq!(s.name, "cart");
        assert_eq!(from_environ(b"HOME=/\0", "nginx").name, "nginx");
    }

    #[test]
    fn own_process() {
        let mut id = Identity::new();
        let s = id.service(std::process::id(), "fallback");
        assert!(!s.name.is_empty());
        assert!(start_time(std::process::id()).is_some());
    }
}
