//! TLS plaintext by uprobes on TLS libraries: which library files get them.
//!
//! A uprobe is set on a file (inode), not on a process, so each OpenSSL
//! libssl file is probed once (`libssl::HOOKS`: entry and return of
//! SSL_read, SSL_write and their `_ex` forms) and every process that maps
//! it, now or later, is covered; the kernel side (tracer-ebpf
//! `probes::tls`) ties each call's plaintext to its socket. Files are found
//! three ways, on a watcher thread:
//!
//! - the usual library directories of each root filesystem a process runs
//!   in (the host's, each container's), so a library loaded late by
//!   `dlopen` (python's `ssl` module) is probed before it is loaded;
//! - the libraries in each process's `/proc/<pid>/maps` (other paths), at
//!   start, on exec records, and on a periodic rescan;
//! - executables that define the functions themselves (OpenSSL linked
//!   statically, with its symbols).
//!
//! Files stay probed until the agent stops (a file no process maps costs
//! nothing); at most `[tls] max_libraries` of them, past it counted.
//! Not covered: stripped static builds, BoringSSL/rustls/Java (other
//! functions), Go's crypto/tls.

pub mod code;
pub mod libssl;

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::programs::uprobe::UProbeLinkId;

use crate::{probes::Probes, telemetry::Telemetry};

/// Exec pids waiting for the watcher at most.
pub const EXEC_QUEUE: usize = 4096;
/// How often every process's maps are read again (a library mapped from a
/// path outside the usual directories, an exec record dropped).
const RESCAN_EVERY: Duration = Duration::from_secs(10);
/// Files remembered as not TLS libraries at most (then forgotten, and
/// looked at again when seen).
const MAX_OTHER_FILES: usize = 16384;

/// A file by (device, inode).
type FileId = (u64, u64);

enum File {
    /// Looked at: not a TLS library (or skipped: counted once).
    Other,
    Probed {
        links: Vec<(&'static str, UProbeLinkId)>,
    },
}

pub struct Watcher {
    stop: mpsc::SyncSender<u32>,
    thread: Option<JoinHandle<()>>,
}

/// pid 0 on the exec channel: stop.
const STOP: u32 = 0;

impl Watcher {
    pub fn spawn(
        probes: Arc<Mutex<Probes>>,
        max_libraries: usize,
        execs_tx: mpsc::SyncSender<u32>,
        execs: mpsc::Receiver<u32>,
        telemetry: Arc<Telemetry>,
    ) -> anyhow::Result<Watcher> {
        let mut w = State { probes, max_libraries, files: HashMap::new(), roots: HashSet::new(), probed: 0, telemetry };
        // The host's libraries before anything else: every process started
        // from now on finds them probed.
        w.scan();
        let thread = std::thread::Builder::new().name("tls-libs".into()).spawn(move || w.run(&execs))?;
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
    max_libraries: usize,
    files: HashMap<FileId, File>,
    /// Root filesystems whose library directories were looked at.
    roots: HashSet<FileId>,
    probed: usize,
    telemetry: Arc<Telemetry>,
}

impl State {
    fn run(&mut self, execs: &mpsc::Receiver<u32>) {
        let mut scanned = Instant::now();
        loop {
            match execs.recv_timeout(Duration::from_millis(500)) {
                Ok(STOP) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(pid) => self.examine(pid),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
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

    /// A process started or was found: probe the TLS libraries it can use.
    fn examine(&mut self, pid: u32) {
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        if let Ok(m) = std::fs::metadata(&root)
            && self.roots.insert((m.dev(), m.ino()))
        {
            for lib in libssl::usual_paths(&root) {
                self.consider(&lib, true);
            }
        }
        self.consider(Path::new(&format!("/proc/{pid}/exe")), false);
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { return };
        for path in libssl::mapped_libraries(&maps) {
            self.consider(&root.join(path.trim_start_matches('/')), true);
        }
    }

    /// Probe `path` if it is a TLS library not probed yet. `library`: it is
    /// named like one (an executable is only probed if it defines the
    /// functions itself).
    fn consider(&mut self, path: &Path, library: bool) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        let id = (meta.dev(), meta.ino());
        if self.files.contains_key(&id) {
            return;
        }
        let found = libssl::sites(path);
        let file = match found {
            Ok(f) if f.is_empty() => {
                if library {
                    tracing::debug!(path = %path.display(), "no SSL_read/SSL_write defined: not probed");
                    count(&self.telemetry, "no_symbols");
                }
                File::Other
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), "not read: {e:#}");
                File::Other
            }
            Ok(_) if self.probed >= self.max_libraries => {
                tracing::warn!(path = %path.display(), max = self.max_libraries, "TLS library not probed: [tls] max_libraries reached");
                count(&self.telemetry, "over_cap");
                File::Other
            }
            Ok(f) => self.attach(path, &f),
        };
        if matches!(file, File::Other) && self.files.len() >= MAX_OTHER_FILES {
            self.files.retain(|_, f| matches!(f, File::Probed { .. }));
        }
        self.files.insert(id, file);
    }

    fn attach(&mut self, path: &Path, sites: &[libssl::Site]) -> File {
        let mut links = Vec::new();
        let mut probes = self.probes.lock().expect("probes lock");
        for site in sites {
            // A pair or nothing: an entry without its return would leave
            // the thread marked inside a call, its cleartext taken for
            // ciphertext.
            let entry = match probes.attach_uprobe(site.entry, path, site.offset) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("{e:#}");
                    continue;
                }
            };
            match probes.attach_uprobe(site.ret, path, site.offset) {
                Ok(r) => links.extend([(site.entry, entry), (site.ret, r)]),
                Err(e) => {
                    tracing::warn!("{e:#}");
                    let _ = probes.detach_uprobe(site.entry, entry);
                }
            }
        }
        drop(probes);
        if links.is_empty() {
            count(&self.telemetry, "attach_failed");
            return File::Other;
        }
        self.probed += 1;
        self.telemetry.tls_uprobes.inc_by(links.len() as i64);
        count(&self.telemetry, "probed");
        let functions: Vec<&str> = sites.iter().map(|s| s.function.as_str()).collect();
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        tracing::info!(path = %file.display(), ?functions, uprobes = links.len(), "TLS library probed");
        File::Probed { links }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let Ok(mut probes) = self.probes.lock() else { return };
        for f in self.files.values_mut() {
            if let File::Probed { links } = f {
                for (program, link) in links.drain(..) {
                    if let Err(e) = probes.detach_uprobe(program, link) {
                        tracing::debug!("detaching {program}: {e:#}");
                    }
                    self.telemetry.tls_uprobes.dec();
                }
            }
        }
    }
}

/// `tracer_tls_libraries_total{what}`.
fn count(t: &Telemetry, what: &'static str) {
    t.tls_libraries.get_or_create(&vec![("what", what)]).inc();
}
