//! Go processes, probed for goroutine identity. A watcher thread finds Go
//! executables among running processes (a /proc scan at start) and new ones
//! (exec records from the ring buffer), writes each Go pid with its offsets
//! into the kernel's `GO_PROCS` map (so its data events carry goroutine
//! ids), and attaches the net/http hand-off uprobes once per executable
//! (`binary::HOOKS`). Exited processes leave the map; an executable no
//! process runs any more has its uprobes detached.
//!
//! In: exec pids (bounded channel, full: counted, the /proc rescan finds
//! them later). Out: the kernel maps and the `tracer_runtime_go_*` metrics.

pub mod binary;
pub mod pclntab;

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::{maps::HashMap as BpfHashMap, maps::MapData, programs::uprobe::UProbeLinkId};
use tracer_common::go::{GoFile, GoProc, RUNTIME_GO, RUNTIME_NODE};

use self::binary::{GoBinary, HOOKS};
use crate::{identity::start_time, probes::Probes, runtimes::is_go_executable, telemetry::Telemetry};

/// Exec pids waiting for the watcher at most.
pub const EXEC_QUEUE: usize = 4096;
/// Executables remembered (Go or not) at most; past it the non-Go ones are
/// forgotten (and looked at again when run).
const MAX_BINARIES: usize = 4096;
/// How often exited processes are looked for, and /proc rescanned for
/// processes whose exec record was dropped.
const REAP_EVERY: Duration = Duration::from_secs(2);
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// An executable by (device, inode): one set of uprobes per file, whatever
/// path or mount namespace runs it.
type FileId = (u64, u64);

enum Binary {
    NotGo,
    /// Go, but not probed (no goid offset known: the reason, logged once).
    Unusable,
    /// Probed: Go, or Node.js (`info.runtime`), whose callback tasks share
    /// the goroutine machinery (GO_PROCS, GO_FILES, the exec probe).
    Probed {
        info: Box<GoBinary>,
        links: Vec<(&'static str, UProbeLinkId)>,
        pids: HashSet<u32>,
    },
}

struct Tracked {
    start: Option<u64>,
    file: FileId,
}

pub struct Watcher {
    stop: mpsc::SyncSender<u32>,
    thread: Option<JoinHandle<()>>,
}

/// pid 0 on the exec channel: stop.
const STOP: u32 = 0;

impl Watcher {
    /// Start watching; `probes` are shared with the pipeline, which drops
    /// them (detaching everything) after [`Watcher::stop`].
    /// `node`: Node.js processes get task ids too (`[runtimes] node`).
    pub fn spawn(
        probes: Arc<Mutex<Probes>>,
        node: bool,
        execs_tx: mpsc::SyncSender<u32>,
        execs: mpsc::Receiver<u32>,
        telemetry: Arc<Telemetry>,
    ) -> anyhow::Result<Watcher> {
        let (procs, files) = {
            let mut p = probes.lock().expect("probes lock");
            (p.take_go_procs()?, p.take_go_files()?)
        };
        let mut w = State { probes, procs, files, binaries: HashMap::new(), pids: HashMap::new(), telemetry, node };
        // Running Go processes are probed before the agent says it is ready.
        w.scan();
        let thread = std::thread::Builder::new().name("go-runtime".into()).spawn(move || w.run(&execs))?;
        Ok(Watcher { stop: execs_tx, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        let _ = self.stop.send(STOP);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    probes: Arc<Mutex<Probes>>,
    procs: BpfHashMap<MapData, u32, GoProc>,
    /// Go executables by the kernel's file identity, for the exec probe.
    files: BpfHashMap<MapData, GoFile, GoProc>,
    binaries: HashMap<FileId, Binary>,
    pids: HashMap<u32, Tracked>,
    telemetry: Arc<Telemetry>,
    /// Probe Node.js executables too.
    node: bool,
}

impl State {
    fn run(&mut self, execs: &mpsc::Receiver<u32>) {
        let (mut reaped, mut scanned) = (Instant::now(), Instant::now());
        loop {
            match execs.recv_timeout(Duration::from_millis(500)) {
                Ok(STOP) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(pid) => self.examine(pid),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if reaped.elapsed() >= REAP_EVERY {
                self.reap();
                reaped = Instant::now();
            }
            if scanned.elapsed() >= RESCAN_EVERY {
                self.scan();
                scanned = Instant::now();
            }
        }
    }

    fn scan(&mut self) {
        for pid in crate::identity::other_pids() {
            self.examine(pid);
        }
    }

    /// A process started or was found: probe it if it runs Go.
    fn examine(&mut self, pid: u32) {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let Ok(meta) = std::fs::metadata(&exe) else { return };
        let file = (meta.dev(), meta.ino());
        let start = start_time(pid);
        if let Some(t) = self.pids.get(&pid) {
            if t.start == start && t.file == file {
                return;
            }
            // exec'd another program, or a reused pid.
            self.forget(pid);
        }
        if !self.binaries.contains_key(&file) {
            if self.binaries.len() >= MAX_BINARIES {
                self.binaries.retain(|_, b| matches!(b, Binary::Probed { .. }));
            }
            let b = if !is_go_executable(&exe.to_string_lossy()) {
                match self.node.then(|| super::node::read(&exe)).flatten() {
                    Some(info) => {
                        tracing::info!(pid, "Node.js executable");
                        Binary::Probed { info: Box::new(info), links: Vec::new(), pids: HashSet::new() }
                    }
                    None => Binary::NotGo,
                }
            } else {
                let began = Instant::now();
                match binary::read(&exe) {
                    Ok(info) => {
                        let ms = began.elapsed().as_millis();
                        tracing::info!(pid, version = ?info.version, goid_offset = info.goid_offset, from = info.goid_from, hooks_from = info.hooks_from, read_ms = ms, "Go executable");
                        Binary::Probed { info: Box::new(info), links: Vec::new(), pids: HashSet::new() }
                    }
                    Err(e) => {
                        tracing::warn!(pid, "Go process not probed: {e:#}");
                        count(&self.telemetry, "skipped");
                        Binary::Unusable
                    }
                }
            };
            self.binaries.insert(file, b);
        }
        let Some(Binary::Probed { info, links, .. }) = self.binaries.get_mut(&file) else { return };
        if links.is_empty() {
            let mut probes = self.probes.lock().expect("probes lock");
            for &(program, offset) in &info.points {
                match probes.attach_uprobe(program, &exe, offset) {
                    Ok(l) => links.push((program, l)),
                    Err(e) => {
                        tracing::warn!(pid, "{e:#}");
                        count(&self.telemetry, "uprobe_failed");
                    }
                }
            }
            let hooks = if info.runtime == RUNTIME_GO { info.hooks } else { [None; HOOKS.len()] };
            for (hook, offset) in HOOKS.iter().zip(hooks) {
                if info.runtime != RUNTIME_GO {
                    break;
                }
                let Some(offset) = offset else {
                    tracing::info!(
                        pid,
                        symbol = hook.symbol,
                        "not found (neither symbols nor pclntab): its hand-offs are not followed"
                    );
                    count(&self.telemetry, "uprobe_skipped");
                    continue;
                };
                match probes.attach_uprobe(hook.program, &exe, offset) {
                    Ok(l) => links.push((hook.program, l)),
                    Err(e) => {
                        tracing::warn!(pid, "{e:#}");
                        count(&self.telemetry, "uprobe_failed");
                    }
                }
            }
            // crypto/tls's returns: only with its entry probe attached.
            let entered: Vec<&str> =
                HOOKS.iter().filter(|h| links.iter().any(|(l, _)| *l == h.program)).filter_map(|h| h.ret).collect();
            for &(program, offset) in &info.returns {
                if !entered.contains(&program) {
                    continue;
                }
                match probes.attach_uprobe(program, &exe, offset) {
                    Ok(l) => links.push((program, l)),
                    Err(e) => {
                        tracing::warn!(pid, "{e:#}");
                        count(&self.telemetry, "uprobe_failed");
                    }
                }
            }
            self.telemetry.runtime_go_uprobes.inc_by(links.len() as i64);
            // Node: all or none (a read callback's entry without its return,
            // or reads without the callback boundaries, would leave a task
            // on callbacks that are not its own). Not probed: not in the map.
            if info.runtime == RUNTIME_NODE && links.len() != info.points.len() {
                for (program, link) in links.drain(..) {
                    let _ = probes.detach_uprobe(program, link);
                    self.telemetry.runtime_go_uprobes.dec();
                }
                drop(probes);
                tracing::warn!(pid, "Node.js process not probed: not every task uprobe attached");
                count(&self.telemetry, "skipped");
                self.binaries.insert(file, Binary::Unusable);
                return;
            }
        }
        let Some(Binary::Probed { info, pids, .. }) = self.binaries.get_mut(&file) else { return };
        let p = GoProc { goid_offset: info.goid_offset, g_tls_offset: -8, runtime: info.runtime, _pad: 0 };
        if pids.is_empty() && self.files.insert(kernel_file(file), p, 0).is_err() {
            count(&self.telemetry, "files_full");
        }
        if self.procs.insert(pid, p, 0).is_err() {
            // Full (GO_PROCS_MAX) or refused: its calls stay unlinked.
            count(&self.telemetry, "procs_full");
            return;
        }
        pids.insert(pid);
        self.pids.insert(pid, Tracked { start, file });
        count(&self.telemetry, "probed");
    }

    /// Processes that exited (or exec'd without a record) leave the map.
    fn reap(&mut self) {
        let gone: Vec<u32> =
            self.pids.iter().filter(|(pid, t)| start_time(**pid) != t.start).map(|(pid, _)| *pid).collect();
        for pid in gone {
            self.forget(pid);
        }
    }

    fn forget(&mut self, pid: u32) {
        let Some(t) = self.pids.remove(&pid) else { return };
        let _ = self.procs.remove(&pid);
        let Some(Binary::Probed { pids, links, .. }) = self.binaries.get_mut(&t.file) else { return };
        pids.remove(&pid);
        if pids.is_empty() {
            // Nobody runs it: detach, and read it again if it is run again
            // (the path may hold a rebuilt file by then).
            let mut probes = self.probes.lock().expect("probes lock");
            for (program, link) in links.drain(..) {
                if let Err(e) = probes.detach_uprobe(program, link) {
                    tracing::debug!("detaching {program}: {e:#}");
                }
                self.telemetry.runtime_go_uprobes.dec();
            }
            drop(probes);
            let _ = self.files.remove(&kernel_file(t.file));
            self.binaries.remove(&t.file);
        }
    }
}

/// A file's (st_dev, st_ino) as the kernel names it: `s_dev` is
/// MAJOR << 20 | MINOR (glibc's st_dev encodes them otherwise).
fn kernel_file((dev, ino): FileId) -> GoFile {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    GoFile { dev: (u64::from(major) << 20) | u64::from(minor), ino }
}

/// `tracer_runtime_go_total{what}`: probed (processes), skipped (Go but no
/// goid offset known), procs_full (GO_PROCS full), uprobe_skipped (a hook's
/// function not in the symbol table), uprobe_failed.
fn count(t: &Telemetry, what: &'static str) {
    t.runtime_go.get_or_create(&vec![("what", what)]).inc();
}
