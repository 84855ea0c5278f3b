//! What each thread of a process served, for the thread rule (rule 2 of
//! `link`): the SERVER spans it read, still held or already released, so the
//! rule can tell whether a request was alone on its thread when a call was
//! written, and whether a process's threads are evidence at all.
//!
//! A thread is no evidence in a process that multiplexes tasks over threads:
//! Go (told from the executable, `crate::runtimes`), a process where a
//! request was read on one thread and answered on another (or a call written
//! on one and its response read on another), or one where two threads each
//! served overlapping requests (several event loops: tokio, Netty). From the
//! first such span on, the process is never linked by thread.
//!
//! In a Go process probed for goroutine ids (`crate::runtimes::go`) the
//! rule keys on the goroutine instead: the one that answered the request
//! (net/http's conn.serve goroutine, which runs the handler) and the
//! goroutines that work for it (the client's writeLoop after a hand-off,
//! credited in the kernel). Goroutines are not multiplexed, so a Go process
//! marked multiplexed is still linked by goroutine, never by thread; the
//! same guards apply (alone on the goroutine from the request's first byte
//! to the call).
//!
//! Bounded: a thread keeps its last `PER_THREAD` requests; a thread idle for
//! `IDLE_NS` is forgotten. What was forgotten moves a horizon: a request
//! that started before it is never a parent (something that overlapped it
//! may have been forgotten), so forgetting costs links, never precision.

use foldhash::{HashMap, HashMapExt};
use std::collections::{BTreeMap, VecDeque};

use crate::span::{Span, SpanKind};

pub type Id = u64;

/// What rule 2 keys on within a process: an OS thread id, or a goroutine id
/// tagged with [`GOROUTINE`] (so the two never meet).
pub type Task = u64;
const GOROUTINE: Task = 1 << 63;

/// What a span is keyed on: its request's thread; in Go, the goroutine
/// that wrote a call (credited to its caller after the writeLoop
/// hand-off), and for a request served, the goroutine that answered it
/// (conn.serve's, which ran the handler; its first byte may have been read
/// by net/http's background-read goroutine).
pub fn task(span: &Span) -> Task {
    let goid = match span.kind {
        SpanKind::Server if span.response_goid != 0 => span.response_goid,
        _ => span.request_goid,
    };
    match goid {
        0 => Task::from(span.request_tid),
        g => GOROUTINE | g,
    }
}

fn is_goroutine(t: Task) -> bool {
    t & GOROUTINE != 0
}

/// Requests remembered per thread.
const PER_THREAD: usize = 256;
/// A thread with nothing held and no request ended for this long is forgotten.
const IDLE_NS: u64 = 10_000_000_000;
/// Processes remembered as multiplexed at most (oldest forgotten first).
const MAX_MULTIPLEXED: usize = 16_384;

#[derive(Default)]
struct Served {
    end: u64,
    held: bool,
}

#[derive(Default)]
struct ThreadLog {
    /// By (start, id).
    requests: BTreeMap<(u64, Id), Served>,
    held: usize,
    latest_end: u64,
    /// Longest request seen: how far back a scan must look for overlaps.
    longest: u64,
    /// Latest end of a request forgotten from this log.
    horizon: u64,
}

/// What the thread rule concludes for one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Parent(Id),
    /// Nothing in flight on the thread.
    None,
    /// Several requests overlapped between the candidate's start and the
    /// call, or what overlapped may have been forgotten.
    Ambiguous,
    /// The process's threads are no evidence.
    Multiplexed,
}

#[derive(Default)]
pub struct Threads {
    logs: HashMap<(u32, Task), ThreadLog>,
    /// Latest end of a request in a forgotten log.
    horizon: u64,
    last_sweep: u64,
    multiplexed: HashMap<u32, ()>,
    multiplexed_order: VecDeque<u32>,
    /// Per process, the first thread seen serving overlapping requests.
    loop_thread: HashMap<u32, u32>,
}

impl Threads {
    pub fn new() -> Self {
        Threads {
            logs: HashMap::new(),
            horizon: 0,
            last_sweep: 0,
            multiplexed: HashMap::new(),
            multiplexed_order: VecDeque::new(),
            loop_thread: HashMap::new(),
        }
    }

    pub fn mark_multiplexed(&mut self, pid: u32) {
        if self.multiplexed.insert(pid, ()).is_none() {
            self.multiplexed_order.push_back(pid);
            self.loop_thread.remove(&pid);
            while self.multiplexed_order.len() > MAX_MULTIPLEXED {
                if let Some(old) = self.multiplexed_order.pop_front() {
                    self.multiplexed.remove(&old);
                }
            }
        }
    }

    pub fn is_multiplexed(&self, pid: u32) -> bool {
        self.multiplexed.contains_key(&pid)
    }

    /// A span arrived: learn what it shows of its process's threads, and log
    /// it if it is a SERVER span.
    pub fn insert(&mut self, span: &Span, id: Id) {
        let Some(pid) = span.pid else { return };
        self.learn(pid, span);
        if span.kind != SpanKind::Server {
            return;
        }
        let log = self.logs.entry((pid, task(span))).or_default();
        log.requests.insert((span.start_ns, id), Served { end: span.end_ns, held: true });
        log.held += 1;
        log.latest_end = log.latest_end.max(span.end_ns);
        log.longest = log.longest.max(span.end_ns.saturating_sub(span.start_ns));
        // Forget the oldest released requests past the cap. Held ones stay
        // (the linker bounds them); only the front is looked at, so an event
        // loop with thousands held pays nothing per insert.
        while log.requests.len() > PER_THREAD {
            let Some(entry) = log.requests.first_entry() else { break };
            if entry.get().held {
                break;
            }
            let s = entry.remove();
            log.horizon = log.horizon.max(s.end);
        }
    }

    fn learn(&mut self, pid: u32, span: &Span) {
        // Goroutines are what a Go process's spans are keyed on: a response
        // read by another goroutine (the client's readLoop) is how net/http
        // works, not a sign of anything.
        if self.is_multiplexed(pid) || span.request_goid != 0 || span.response_goid != 0 {
            return;
        }
        // Work moved between threads within one exchange.
        if span.response_tid.is_some_and(|t| t != span.request_tid) {
            self.mark_multiplexed(pid);
            return;
        }
        if span.kind != SpanKind::Server {
            return;
        }
        // Known already as this process's event loop: nothing more to learn.
        if self.loop_thread.get(&pid) == Some(&span.request_tid) {
            return;
        }
        let Some(log) = self.logs.get(&(pid, Task::from(span.request_tid))) else { return };
        // Another request of this thread overlaps this one: an event loop.
        let from = span.start_ns.saturating_sub(log.longest);
        let overlaps = log
            .requests
            .range((from, 0)..=(span.end_ns, Id::MAX))
            .any(|((start, _), s)| *start <= span.end_ns && s.end >= span.start_ns);
        if !overlaps {
            return;
        }
        match self.loop_thread.get(&pid) {
            None => {
                if self.loop_thread.len() >= MAX_MULTIPLEXED {
                    self.loop_thread.clear();
                }
                self.loop_thread.insert(pid, span.request_tid);
            }
            Some(t) if *t == span.request_tid => {}
            // Two event-loop threads: requests and calls may be handed
            // between loops.
            Some(_) => self.mark_multiplexed(pid),
        }
    }

    /// A SERVER span left the linker; its interval is still remembered.
    pub fn release(&mut self, span: &Span, id: Id) {
        let Some(pid) = span.pid else { return };
        if let Some(log) = self.logs.get_mut(&(pid, task(span)))
            && let Some(s) = log.requests.get_mut(&(span.start_ns, id))
            && s.held
        {
            s.held = false;
            log.held -= 1;
        }
    }

    /// Forget threads idle since `now_ns - IDLE_NS` (at most once a second).
    pub fn sweep(&mut self, now_ns: u64) {
        if now_ns < self.last_sweep.saturating_add(1_000_000_000) {
            return;
        }
        self.last_sweep = now_ns;
        let cutoff = now_ns.saturating_sub(IDLE_NS);
        let mut horizon = self.horizon;
        self.logs.retain(|_, log| {
            let keep = log.held > 0 || log.latest_end >= cutoff;
            if !keep {
                horizon = horizon.max(log.latest_end);
            }
            keep
        });
        self.horizon = horizon;
    }

    /// Rule 2 for a call written at `call_ns` by `task` (thread or
    /// goroutine) of `pid`: the held SERVER span in flight there, if it was
    /// alone on it from its first byte to the call. `served_until` gives a
    /// held span's response start (None when released).
    pub fn parent(&self, pid: u32, task: Task, call_ns: u64, served_until: impl Fn(Id) -> Option<u64>) -> Verdict {
        let Some(log) = self.logs.get(&(pid, task)) else { return Verdict::None };
        if self.is_multiplexed(pid) && !is_goroutine(task) {
            return Verdict::Multiplexed;
        }
        let mut inside = None;
        // Past PER_THREAD requests back, an older one still open could be
        // missed: no answer rather than a guess (and a bounded scan).
        for (n, ((start, id), s)) in log.requests.range(..=(call_ns, Id::MAX)).rev().enumerate() {
            if n >= PER_THREAD {
                return Verdict::Ambiguous;
            }
            // Issued between reading the request and starting the response.
            // Only the start counts: a proxy streams the response while its
            // upstream call is still being read.
            if s.held && call_ns <= s.end && served_until(*id).is_some_and(|u| call_ns <= u) {
                if inside.is_some() {
                    return Verdict::Ambiguous;
                }
                inside = Some((*start, *id));
            }
        }
        let Some((parent_start, parent)) = inside else { return Verdict::None };
        if parent_start < log.horizon.max(self.horizon) {
            return Verdict::Ambiguous;
        }
        // Any other request between the parent's first byte and the call
        // (still open, or answered in between: a task deferred past its own
        // response) makes the thread ambiguous.
        let from = parent_start.saturating_sub(log.longest);
        let mut around = log.requests.range((from, 0)..=(call_ns, Id::MAX));
        let crowded = around
            .by_ref()
            .take(PER_THREAD)
            .any(|((start, id), s)| *id != parent && s.end >= parent_start && *start <= call_ns)
            || around.next().is_some();
        if crowded { Verdict::Ambiguous } else { Verdict::Parent(parent) }
    }
}
