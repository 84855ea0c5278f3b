//! What a process's runtime says about its threads: whether the OS thread
//! that reads a request is evidence of which request a later write belongs
//! to. Read from the executable (ELF sections), cached per process.
//!
//! Go multiplexes goroutines over OS threads: one thread reads request A,
//! parks A's goroutine and runs B's, which writes B's backend call. The
//! same-thread rule of the linker would put B's call under A, so it is never
//! applied to Go processes by thread (by goroutine instead, see `go`). Go binaries are recognised by the section every
//! Go linker since 1.13 writes, stripped or not (`.go.buildinfo`, read by
//! `go version`), or the Go build-id note.
//!
//! Go processes are also probed for goroutine identity (`go`), which makes
//! goroutines the evidence instead of threads.
//!
//! Runtimes that cannot be told from the executable (tokio, Netty, other
//! multi-threaded event loops) are caught from what their spans show
//! (`chain::link`'s per-process evidence).

pub mod go;
pub mod node;

use foldhash::{HashMap, HashMapExt};
use std::{
    fs::File,
    time::{Duration, Instant},
};

use object::{Object, ReadCache};

use crate::identity::start_time;

/// ELF sections that only the Go toolchain writes.
const GO_SECTIONS: [&str; 2] = [".go.buildinfo", ".note.go.buildid"];

/// The executable at `path` was built by the Go toolchain. Reads only the
/// ELF header and section table (a few KiB), not the whole binary.
pub fn is_go_executable(path: &str) -> bool {
    let Ok(file) = File::open(path) else { return false };
    let cache = ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else { return false };
    GO_SECTIONS.iter().any(|s| elf.section_by_name(s).is_some())
}

/// A process whose threads are not evidence of its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadModel {
    /// Nothing in the executable says otherwise.
    Threads,
    /// Tasks multiplexed over threads (Go).
    Multiplexed,
}

struct Cached {
    start: Option<u64>,
    model: ThreadModel,
    checked: Instant,
}

/// How long a cached answer is trusted before the pid's start time is read
/// again (a reused pid is another program).
const RECHECK: Duration = Duration::from_secs(2);
const MAX_PIDS: usize = 8192;

/// Thread model per pid, from `/proc/<pid>/exe`.
#[derive(Default)]
pub struct ThreadModels {
    cache: HashMap<u32, Cached>,
}

impl ThreadModels {
    pub fn new() -> Self {
        ThreadModels { cache: HashMap::new() }
    }

    pub fn of(&mut self, pid: u32) -> ThreadModel {
        let now = Instant::now();
        if let Some(c) = self.cache.get(&pid)
            && now.duration_since(c.checked) < RECHECK
        {
            return c.model;
        }
        let start = start_time(pid);
        if let Some(c) = self.cache.get_mut(&pid)
            && c.start == start
        {
            c.checked = now;
            return c.model;
        }
        let model =
            if is_go_executable(&format!("/proc/{pid}/exe")) { ThreadModel::Multiplexed } else { ThreadModel::Threads };
        if self.cache.len() >= MAX_PIDS {
            self.cache.clear();
        }
        self.cache.insert(pid, Cached { start, model, checked: now });
        model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_itself_is_not_go() {
        assert!(!is_go_executable("/proc/self/exe"));
        assert_eq!(ThreadModels::new().of(std::process::id()), ThreadModel::Threads);
    }

    #[test]
    fn unreadable_or_non_elf_files_are_not_go() {
        assert!(!is_go_executable("/nonexistent"));
        assert!(!is_go_executable("/proc/self/status"));
    }
}
