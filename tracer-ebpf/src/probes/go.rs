//! Go goroutine identity: the goroutine id of a data event, and the hand-offs
//! inside net/http that move a request's bytes to another goroutine.
//!
//! Goroutine id: for a pid in `GO_PROCS` the running g is read from the
//! thread's TLS (linux/amd64: `*(fs_base - 8)`, fs_base from
//! task_struct.thread.fsbase) and its id at `g + goid_offset` (offsets from
//! the binary's DWARF, written by the agent).
//!
//! Hand-offs, by entry uprobes on the Go binary (Go moves stacks, so no
//! uretprobes; the register ABI of Go 1.17+ on amd64 passes arguments in
//! RAX, RBX, RCX...):
//!
//! - `net/http.(*persistConn).roundTrip(pc, treq)`, run by the caller:
//!   treq.Request -> the caller's goroutine (`GO_OWNERS`);
//! - `net/http.(*Request).write(r, ...)`, run by the connection's writeLoop
//!   goroutine: the writeLoop now works for r's owner (`GO_ACTING`) until its
//!   next request; r unknown: for nobody (its own id);
//! - `net/http.(*connReader).startBackgroundRead(cr)`, run by the conn.serve
//!   goroutine, and `backgroundRead(cr)`, run by the goroutine it starts:
//!   that goroutine's 1-byte read (the first byte of the next request on a
//!   keep-alive connection) belongs to conn.serve's goroutine.
//!
//! A data event carries the goroutine a helper works for, else its own.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{HashMap, LruHashMap},
    programs::ProbeContext,
};
use tracer_common::{
    go::{GO_ACTING_MAX, GO_OWNERS_MAX, GO_PROCS_MAX, GoKey, GoProc},
    maps::Counter,
};

use crate::{config, maps};

#[map(name = "GO_PROCS")]
static GO_PROCS: HashMap<u32, GoProc> = HashMap::with_max_entries(GO_PROCS_MAX, 0);

#[map(name = "GO_OWNERS")]
static GO_OWNERS: LruHashMap<GoKey, u64> = LruHashMap::with_max_entries(GO_OWNERS_MAX, 0);

#[map(name = "GO_ACTING")]
static GO_ACTING: LruHashMap<GoKey, u64> = LruHashMap::with_max_entries(GO_ACTING_MAX, 0);

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

/// The goroutine a data event of `pid` belongs to (0: not a probed Go
/// process, or unreadable, counted).
#[inline(always)]
pub fn data_goid(pid: u32) -> u64 {
    if config::go() == 0 {
        return 0;
    }
    let Some(p) = (unsafe { GO_PROCS.get(pid) }) else {
        return 0;
    };
    let Some(goid) = running_goid(p) else {
        maps::count(Counter::GoGoidReadFailed);
        return 0;
    };
    match unsafe { GO_ACTING.get(GoKey { pid, _pad: 0, value: goid }) } {
        Some(owner) => *owner,
        None => goid,
    }
}

/// The probed Go process running this uprobe and its goroutine.
#[inline(always)]
fn current() -> Option<(u32, GoProc, u64)> {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let p = *unsafe { GO_PROCS.get(pid) }?;
    let goid = running_goid(&p)?;
    Some((pid, p, goid))
}

/// The object `ptr` of `pid` was handed off by goroutine `goid`.
#[inline(always)]
fn own(pid: u32, ptr: u64, goid: u64) {
    if ptr != 0 {
        let _ = GO_OWNERS.insert(GoKey { pid, _pad: 0, value: ptr }, goid, 0);
    }
}

/// The running goroutine `goid` now works for whoever handed off `ptr`
/// (taken: one hand-off, one taker), or for nobody if that is unknown.
#[inline(always)]
fn act_for(pid: u32, ptr: u64, goid: u64) {
    let key = GoKey { pid, _pad: 0, value: ptr };
    let me = GoKey { pid, _pad: 0, value: goid };
    match unsafe { GO_OWNERS.get(key) }.copied() {
        Some(owner) => {
            let _ = GO_OWNERS.remove(key);
            let _ = GO_ACTING.insert(me, owner, 0);
        }
        None => {
            maps::count(Counter::GoHandoffMissed);
            let _ = GO_ACTING.remove(me);
        }
    }
}

// net/http.(*persistConn).roundTrip(pc *persistConn, req *transportRequest)
//   RAX = pc, RBX = req; req.Request (*Request) at treq_request_offset.
#[uprobe]
pub fn go_persistconn_roundtrip(ctx: ProbeContext) -> u32 {
    let Some((pid, p, goid)) = current() else { return 0 };
    let treq = unsafe { (*ctx.regs).rbx };
    if let Ok(req) = unsafe { bpf_probe_read_user((treq + p.treq_request_offset as u64) as *const u64) } {
        own(pid, req, goid);
    }
    0
}

// net/http.(*Request).write(r *Request, w io.Writer, usingProxy bool,
//   extraHeaders Header, waitForContinue func() bool) error
//   RAX = r.
#[uprobe]
pub fn go_request_write(ctx: ProbeContext) -> u32 {
    let Some((pid, _, goid)) = current() else { return 0 };
    act_for(pid, unsafe { (*ctx.regs).rax }, goid);
    0
}

// net/http.(*connReader).startBackgroundRead(cr *connReader): RAX = cr.
#[uprobe]
pub fn go_start_background_read(ctx: ProbeContext) -> u32 {
    let Some((pid, _, goid)) = current() else { return 0 };
    own(pid, unsafe { (*ctx.regs).rax }, goid);
    0
}

// net/http.(*connReader).backgroundRead(cr *connReader): RAX = cr.
#[uprobe]
pub fn go_background_read(ctx: ProbeContext) -> u32 {
    let Some((pid, _, goid)) = current() else { return 0 };
    act_for(pid, unsafe { (*ctx.regs).rax }, goid);
    0
}
