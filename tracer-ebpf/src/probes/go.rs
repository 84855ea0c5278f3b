//! Go goroutine identity: the goroutine id of a data event, and the client
//! hand-off inside net/http that moves a call's bytes to another goroutine.
//!
//! Goroutine id: for a pid in `GO_PROCS` the running g is read from the
//! thread's TLS (linux/amd64: `*(fs_base - 8)`, fs_base from
//! task_struct.thread.fsbase) and its id at `g + goid_offset` (offsets from
//! the binary's DWARF, written by the agent).
//!
//! Hand-off, by entry uprobes on the Go binary (Go moves stacks, so no
//! uretprobes; the register ABI of Go 1.17+ on amd64 passes the receiver in
//! RAX). A net/http client request is written by its connection's writeLoop
//! goroutine, not by the caller:
//!
//! - `net/http.(*persistConn).writeLoop(pc)`, once per connection, on the
//!   writeLoop goroutine: that goroutine writes for pc (`GO_WRITERS`);
//! - `net/http.(*persistConn).roundTrip(pc, req)`, per call, on the caller's
//!   goroutine: pc carries this caller's request now (`GO_CALLERS`). HTTP/1
//!   sends one request at a time on a connection, and the Transport reuses
//!   one only after its last request was written, so the writeLoop's next
//!   write is this caller's.
//!
//! A data event of a writeLoop carries its connection's caller; anything
//! unknown (a connection opened before the agent attached, an evicted
//! entry) leaves the writer's own id, which links nothing. The server side
//! needs no hook: conn.serve's goroutine reads the request, runs the
//! handler and writes the response.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{HashMap, LruHashMap},
    programs::ProbeContext,
};
use tracer_common::{
    go::{GO_CALLERS_MAX, GO_FILES_MAX, GO_PROCS_MAX, GO_WRITERS_MAX, GoFile, GoKey, GoProc},
    maps::Counter,
};

use crate::{config, maps};

#[map(name = "GO_PROCS")]
static GO_PROCS: HashMap<u32, GoProc> = HashMap::with_max_entries(GO_PROCS_MAX, 0);

#[map(name = "GO_FILES")]
static GO_FILES: HashMap<GoFile, GoProc> = HashMap::with_max_entries(GO_FILES_MAX, 0);

/// A process exec'd `exe`: a known Go executable is probed from now on;
/// any other program leaves `GO_PROCS` (a reused pid is not Go).
#[inline(always)]
pub fn on_exec(pid: u32, exe: Option<GoFile>) {
    if config::go() == 0 {
        return;
    }
    match exe.and_then(|f| unsafe { GO_FILES.get(f) }) {
        Some(p) => {
            let _ = GO_PROCS.insert(pid, *p, 0);
        }
        None => {
            let _ = GO_PROCS.remove(pid);
        }
    }
}

/// A new process: it runs its parent's program until it execs.
#[inline(always)]
pub fn on_fork(parent: u32, child: u32) {
    if config::go() == 0 {
        return;
    }
    match unsafe { GO_PROCS.get(parent) } {
        Some(p) => {
            let p = *p;
            let _ = GO_PROCS.insert(child, p, 0);
        }
        None => {
            let _ = GO_PROCS.remove(child);
        }
    }
}

#[map(name = "GO_WRITERS")]
static GO_WRITERS: LruHashMap<GoKey, u64> = LruHashMap::with_max_entries(GO_WRITERS_MAX, 0);

#[map(name = "GO_CALLERS")]
static GO_CALLERS: LruHashMap<GoKey, u64> = LruHashMap::with_max_entries(GO_CALLERS_MAX, 0);

/// The running goroutine's id, read through the thread's TLS.
#[inline(always)]
fn running_goid(p: &GoProc) -> Option<u64> {
    let off = config::offsets().task_fsbase;
    if off == 0 {
        return None;
    }
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let fsbase: u64 = unsafe { bpf_probe_read_kernel((task + off as u64) as *const u64) }.ok()?;
    if fsbase == 0 {
        return None;
    }
    let g: u64 =
        unsafe { bpf_probe_read_user(fsbase.wrapping_add(p.g_tls_offset as i64 as u64) as *const u64) }.ok()?;
    if g == 0 {
        return None;
    }
    let goid: u64 = unsafe { bpf_probe_read_user((g + p.goid_offset as u64) as *const u64) }.ok()?;
    (goid != 0).then_some(goid)
}

/// The goroutine running now in `pid` (None: not a probed Go process, or
/// unreadable, counted).
#[inline(always)]
pub fn running(pid: u32) -> Option<u64> {
    if config::go() == 0 {
        return None;
    }
    let p = unsafe { GO_PROCS.get(pid) }?;
    let goid = running_goid(p);
    if goid.is_none() {
        maps::count(Counter::GoGoidReadFailed);
    }
    goid
}

/// The goroutine a data event of `pid` belongs to (0: not a probed Go
/// process, or unreadable, counted).
#[inline(always)]
pub fn data_goid(pid: u32) -> u64 {
    match running(pid) {
        Some(goid) => handed_off(pid, goid),
        None => 0,
    }
}

/// The goroutine the running one `goid` works for: the caller of the
/// connection a net/http writeLoop writes for, else itself.
#[inline(always)]
pub fn handed_off(pid: u32, goid: u64) -> u64 {
    let Some(pc) = (unsafe { GO_WRITERS.get(GoKey { pid, _pad: 0, value: goid }) }).copied() else {
        return goid;
    };
    match unsafe { GO_CALLERS.get(GoKey { pid, _pad: 0, value: pc }) } {
        Some(caller) => *caller,
        None => {
            maps::count(Counter::GoHandoffMissed);
            goid
        }
    }
}

/// The probed Go process running this uprobe, its goroutine, and the
/// receiver (RAX).
#[inline(always)]
fn current(ctx: &ProbeContext) -> Option<(u32, u64, u64)> {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let p = *unsafe { GO_PROCS.get(pid) }?;
    let goid = running_goid(&p)?;
    Some((pid, goid, unsafe { (*ctx.regs).rax }))
}

// net/http.(*persistConn).writeLoop(pc *persistConn): RAX = pc.
#[uprobe]
pub fn go_writeloop(ctx: ProbeContext) -> u32 {
    if let Some((pid, goid, pc)) = current(&ctx) {
        let _ = GO_WRITERS.insert(GoKey { pid, _pad: 0, value: goid }, pc, 0);
    }
    0
}

// net/http.(*persistConn).roundTrip(pc *persistConn, req *transportRequest)
//   (resp *Response, err error): RAX = pc.
#[uprobe]
pub fn go_persistconn_roundtrip(ctx: ProbeContext) -> u32 {
    if let Some((pid, goid, pc)) = current(&ctx) {
        let _ = GO_CALLERS.insert(GoKey { pid, _pad: 0, value: pc }, goid, 0);
    }
    0
}
