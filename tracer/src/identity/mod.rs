//! Who a process is: its service name and version, as OpenTelemetry SDKs
//! would name it, and the process's own comm (not a thread's).
//!
//! In: a pid (and the comm of the thread seen). Out: [`Service`]. Sources,
//! best first: what the process was started as (`starts`, from the exec and
//! fork records: environment and command line as they were at exec, kept
//! after the process exits or rewrites them), then /proc/<pid>/environ and
//! cmdline for processes that started before the agent. Naming rules:
//! `environ::derive` and `rules` (the README's "Service names" table).
//! Cached per pid, refreshed when the pid is reused (its start time
//! changes) or its start record changes. Bounded: the cache is cleared when
//! full.

pub mod build;
pub mod environ;
pub mod rules;
pub mod starts;

use foldhash::{HashMap, HashMapExt};
use std::{
    fs,
    sync::Arc,
    time::{Duration, Instant},
};

use self::{
    environ::{Inputs, derive, otel_vars},
    rules::basename,
};
pub use self::{
    environ::{from_environ, parse_resource_attributes},
    starts::ProcessStarts,
};
use crate::k8s::K8sMetadata;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub version: Option<String>,
    /// Other OTEL_RESOURCE_ATTRIBUTES of the process (key, value).
    pub attributes: Vec<(String, String)>,
}

/// A cached identity: process start time, the service, the process's comm,
/// the start record it came from, and when the start time was last checked.
struct Cached {
    start: u64,
    service: Arc<Service>,
    comm: Arc<str>,
    start_seq: Option<u64>,
    checked: Instant,
}

/// How long a cached pid is trusted without re-reading /proc/<pid>/stat
/// (a /proc read per span would cost more than the span).
const RECHECK: Duration = Duration::from_secs(1);

/// Every running process but the agent, from /proc (empty if unreadable):
/// what the runtime and TLS watchers look at when they start and rescan.
pub fn other_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|p| *p != me).collect()
}

pub struct Identity {
    cache: HashMap<u32, Cached>,
    /// Pod metadata in a cluster: names services after their workloads and
    /// adds k8s.* resource attributes.
    k8s: Option<K8sMetadata>,
    k8s_generation: u64,
    starts: ProcessStarts,
    /// The fallback service.version: the executable's build.
    builds: build::Builds,
}

const MAX_PIDS: usize = 8192;

impl Identity {
    pub fn new() -> Self {
        Identity {
            cache: HashMap::new(),
            k8s: None,
            k8s_generation: 0,
            starts: ProcessStarts::new(),
            builds: build::Builds::default(),
        }
    }

    pub fn with_k8s(mut self, k8s: Option<K8sMetadata>) -> Self {
        self.k8s = k8s;
        self
    }

    /// Read process starts from this store (filled by the capture reader).
    pub fn with_starts(mut self, starts: ProcessStarts) -> Self {
        self.starts = starts;
        self
    }

    /// The comm of `pid`'s process (its leader thread), once `service` saw it.
    pub fn process_comm(&self, pid: u32) -> Option<Arc<str>> {
        self.cache.get(&pid).map(|c| c.comm.clone())
    }

    /// The service of `pid`; `comm` names it when nothing better does.
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
        let started = self.starts.get(pid);
        let seq = started.as_ref().map(|e| e.seq);
        if let Some(c) = self.cache.get(&pid)
            && c.start_seq == seq
            && now.duration_since(c.checked) < RECHECK
        {
            return c.service.clone();
        }
        let start = start_time(pid);
        if let Some(c) = self.cache.get_mut(&pid)
            && c.start_seq == seq
            && (start.is_none() || start == Some(c.start))
        {
            c.checked = now;
            return c.service.clone();
        }
        // A start record counts if it is this process's: same start time,
        // or the process is gone (the record is the pid's latest).
        let started = started.filter(|e| start.is_none_or(|s| s == e.start_ticks));
        let (mut svc, named, proc_comm, start) = match &started {
            Some(e) => (e.started.service.clone(), e.started.named, e.started.comm.clone(), Some(e.start_ticks)),
            None => {
                let (svc, named, c) = from_proc(pid, comm);
                (svc, named, c, start)
            }
        };
        if let Some(id) = self.k8s.as_ref().and_then(|k| k.service_for_pid(pid)) {
            // The process's own OTEL_SERVICE_NAME / service.name keeps precedence.
            if !named {
                svc.name = id.service_name;
            }
            if svc.version.is_none() {
                svc.version = id.service_version;
            }
            svc.attributes.extend(id.attributes);
        }
        if svc.version.is_none() {
            // Two builds of one service are always told apart.
            svc.version = self.builds.of(pid).map(|v| v.to_string());
        }
        let svc = Arc::new(svc);
        if let Some(start) = start {
            if self.cache.len() >= MAX_PIDS {
                self.cache.clear();
            }
            let cached = Cached {
                start,
                service: svc.clone(),
                comm: proc_comm.into(),
                start_seq: started.map(|e| e.seq),
                checked: now,
            };
            self.cache.insert(pid, cached);
        }
        svc
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

/// A process that started before the agent: /proc as it is now (an
/// environment or command line the process rewrote is lost). Returns the
/// service, whether it named itself, and its comm.
fn from_proc(pid: u32, comm: &str) -> (Service, bool, String) {
    let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let (name, attrs) = otel_vars(&env);
    drop(env);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .take(64)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let proc_comm = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| comm.to_string());
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let invoked = invoked_name(argv.first().map(String::as_str), &proc_comm).or(exe);
    let (svc, named) = derive(&Inputs {
        argv: &argv,
        invoked: invoked.as_deref(),
        otel_service_name: name.as_deref(),
        otel_resource_attributes: attrs.as_deref(),
        fallback: &proc_comm,
    });
    (svc, named, proc_comm)
}

/// argv[0]'s file name, when the comm confirms it is the name the program
/// was executed by (exec sets the comm from it, cut to 15 bytes): a
/// multi-call binary reached through a symlink keeps the link's name, while
/// a command line rewritten into a process title is read up to its first
/// space (redis: "/usr/bin/redis-server 127.0.0.1:6379"), and a title that
/// is no path ("nginx: worker process") is not taken for one.
fn invoked_name(argv0: Option<&str>, comm: &str) -> Option<String> {
    let first = argv0?.split(' ').next()?;
    let b = basename(first);
    (!comm.is_empty() && b.starts_with(comm) && !b.contains(':')).then(|| b.to_string())
}

/// Process start time in clock ticks (field 22 of /proc/<pid>/stat).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process() {
        let mut id = Identity::new();
        let s = id.service(std::process::id(), "fallback");
        assert!(!s.name.is_empty());
        assert!(start_time(std::process::id()).is_some());
        assert!(id.process_comm(std::process::id()).is_some());
    }

    #[test]
    fn invoked_by_symlink_name_not_by_title() {
        assert_eq!(invoked_name(Some("/usr/bin/redis-server"), "redis-server").as_deref(), Some("redis-server"));
        assert_eq!(invoked_name(Some("nginx: worker process"), "nginx"), None);
        assert_eq!(
            invoked_name(Some("/usr/bin/redis-server 127.0.0.1:6379"), "redis-server").as_deref(),
            Some("redis-server")
        );
        assert_eq!(invoked_name(Some("/usr/bin/redis-server"), "redis-check-rdb"), None);
        assert_eq!(
            invoked_name(Some("/opt/a-very-long-program-name"), "a-very-long-pro").as_deref(),
            Some("a-very-long-program-name")
        );
    }

    /// A start record of this very process wins over /proc.
    #[test]
    fn start_record_wins_over_proc() {
        use crate::capture::process::{Exec, ProcessEvent};
        let pid = std::process::id();
        let starts = ProcessStarts::new();
        let ticks = start_time(pid).unwrap();
        let ns = ticks * (1_000_000_000 / starts::clock_ticks());
        starts.apply(&ProcessEvent::Exec(Exec {
            pid,
            start_ns: ns,
            comm: "leader".into(),
            filename: "/usr/bin/java".into(),
            argv: vec!["java".into(), "-Dotel.service.name=fromexec".into(), "Main".into()],
            ..Default::default()
        }));
        let mut id = Identity::new().with_starts(starts);
        assert_eq!(id.service(pid, "thread-7").name, "fromexec");
        assert_eq!(id.process_comm(pid).as_deref(), Some("leader"));
    }
}
