//! What each process was started as, from the exec and fork records: the
//! capture reader writes here (in ring-buffer order, so a process's exec is
//! stored before any of its socket events reach the span stage), the span
//! stage reads. Keyed by pid and checked against the process start time, so
//! a reused pid is not given its predecessor's name; kept after the process
//! exits (its spans are built later). A fork gives the child its parent's
//! entry: forked workers (nginx, gunicorn) never exec.
//!
//! Bounded: at MAX_ENTRIES the oldest entry goes, unless its process still
//! runs (it is kept once more, moved to the back).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use foldhash::{HashMap, HashMapExt};

use super::{
    Service,
    environ::{Inputs, derive},
};
use crate::capture::process::{Exec, Fork, ProcessEvent};

const MAX_ENTRIES: usize = 32768;

/// A started program's identity, shared by its forked children.
#[derive(Debug)]
pub struct Started {
    pub service: Service,
    /// The process's comm at exec (the leader's, not a thread's).
    pub comm: String,
    /// Named by OpenTelemetry variables or Java properties.
    pub named: bool,
}

#[derive(Clone)]
pub struct Entry {
    /// Changes whenever the pid's entry is replaced.
    pub seq: u64,
    /// Start time in clock ticks, as /proc/<pid>/stat gives it.
    pub start_ticks: u64,
    pub started: Arc<Started>,
}

/// Counts a caller exports: records seen cut or unreadable, entries evicted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartCounts {
    pub argv_cut: u64,
    pub env_cut: u64,
    pub evicted: u64,
}

#[derive(Default)]
struct Inner {
    by_pid: HashMap<u32, Entry>,
    order: VecDeque<(u32, u64)>,
    seq: u64,
    counts: StartCounts,
}

#[derive(Clone, Default)]
pub struct ProcessStarts(Arc<Mutex<Inner>>);

impl ProcessStarts {
    pub fn new() -> Self {
        ProcessStarts(Arc::new(Mutex::new(Inner { by_pid: HashMap::with_capacity(1024), ..Default::default() })))
    }

    pub fn apply(&self, ev: &ProcessEvent) {
        match ev {
            ProcessEvent::Exec(e) => self.exec(e),
            ProcessEvent::Fork(f) => self.fork(f),
        }
    }

    fn exec(&self, e: &Exec) {
        let (service, named) = derive(&Inputs {
            argv: &e.argv,
            invoked: (!e.filename.is_empty()).then_some(e.filename.as_str()),
            otel_service_name: e.otel_service_name.as_deref(),
            otel_resource_attributes: e.otel_resource_attributes.as_deref(),
            fallback: &e.comm,
        });
        let started = Arc::new(Started { service, comm: e.comm.clone(), named });
        let mut g = self.0.lock().expect("process starts lock");
        g.counts.argv_cut += u64::from(e.argv_cut);
        g.counts.env_cut += u64::from(e.env_cut);
        g.insert(e.pid, ns_to_ticks(e.start_ns), started);
    }

    fn fork(&self, f: &Fork) {
        let mut g = self.0.lock().expect("process starts lock");
        match g.by_pid.get(&f.parent).map(|p| p.started.clone()) {
            Some(s) => g.insert(f.child, ns_to_ticks(f.child_start_ns), s),
            // A child of a process started before the agent: whatever an
            // earlier process of this pid was is not this one.
            None => {
                g.by_pid.remove(&f.child);
            }
        }
    }

    pub fn get(&self, pid: u32) -> Option<Entry> {
        self.0.lock().expect("process starts lock").by_pid.get(&pid).cloned()
    }

    pub fn counts(&self) -> StartCounts {
        self.0.lock().expect("process starts lock").counts
    }
}

impl Inner {
    fn insert(&mut self, pid: u32, start_ticks: u64, started: Arc<Started>) {
        self.seq += 1;
        let seq = self.seq;
        self.by_pid.insert(pid, Entry { seq, start_ticks, started });
        self.order.push_back((pid, seq));
        // Each insert retires at most a few old entries: bounded work.
        let mut budget = 4;
        while self.by_pid.len() > MAX_ENTRIES && budget > 0 {
            budget -= 1;
            let Some((old, old_seq)) = self.order.pop_front() else { break };
            if self.by_pid.get(&old).is_none_or(|e| e.seq != old_seq) {
                budget += 1; // a stale queue slot costs nothing
                continue;
            }
            if budget > 1 && alive(old) {
                self.order.push_back((old, old_seq));
                continue;
            }
            self.by_pid.remove(&old);
            self.counts.evicted += 1;
        }
        // Stale slots (replaced entries) are dropped once they dominate.
        if self.order.len() > 2 * MAX_ENTRIES {
            let by_pid = &self.by_pid;
            self.order.retain(|(p, s)| by_pid.get(p).is_some_and(|e| e.seq == *s));
        }
    }
}

/// Export the store's counts on /metrics (tracer_identity_starts_total).
pub fn identity_metrics(telemetry: &crate::telemetry::Telemetry, starts: &ProcessStarts) {
    let starts = starts.clone();
    telemetry.add_refresher(move |t| {
        let c = starts.counts();
        for (what, v) in [("argv_cut", c.argv_cut), ("env_cut", c.env_cut), ("evicted", c.evicted)] {
            crate::telemetry::set_counter(&t.identity_starts.get_or_create(&vec![("what", what)]), v);
        }
    });
}

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence only; a pid that is not positive as an i32
    // would address a process group.
    i32::try_from(pid).is_ok_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0)
}

/// Ticks per second of /proc/<pid>/stat start times.
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as u64,
        _ => 100,
    })
}

/// task start_boottime (ns) in /proc's clock ticks (the kernel divides the
/// same way: nsec_to_clock_t).
pub fn ns_to_ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / clock_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(pid: u32, argv: &[&str], name: Option<&str>) -> ProcessEvent {
        ProcessEvent::Exec(Exec {
            pid,
            start_ns: 7_000_000_000,
            comm: "c".into(),
            filename: argv[0].into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            otel_service_name: name.map(str::to_string),
            ..Default::default()
        })
    }

    #[test]
    fn forks_inherit_and_unknown_parents_clear() {
        let s = ProcessStarts::new();
        s.apply(&exec(10, &["/usr/sbin/nginx", "-c", "x"], Some("gateway")));
        s.apply(&ProcessEvent::Fork(Fork { parent: 10, child: 11, child_start_ns: 8_000_000_000 }));
        let e = s.get(11).unwrap();
        assert_eq!((e.started.service.name.as_str(), e.start_ticks), ("gateway", ns_to_ticks(8_000_000_000)));
        assert!(e.started.named);
        s.apply(&ProcessEvent::Fork(Fork { parent: 999, child: 11, child_start_ns: 9 }));
        assert!(s.get(11).is_none(), "pid 11 reused by a child of an unknown process");
        // A second exec of the same process replaces its entry.
        s.apply(&exec(10, &["python3", "app.py"], None));
        assert_eq!(s.get(10).unwrap().started.service.name, "app");
    }

    #[test]
    fn bounded() {
        let s = ProcessStarts::new();
        // Pids far above pid_max: never alive, so evicted in order.
        for pid in 0..(MAX_ENTRIES as u32 + 100) {
            s.apply(&exec(u32::MAX - pid, &["x"], None));
        }
        let g = s.0.lock().unwrap();
        assert_eq!(g.by_pid.len(), MAX_ENTRIES);
        assert_eq!(g.counts.evicted, 100);
    }
}
