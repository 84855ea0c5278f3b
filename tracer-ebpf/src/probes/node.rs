//! Node.js task identity (tracer_common::node): which request a Node
//! process's socket I/O works for, from its reads, its client sockets and
//! entry uprobes on the event loop's callback boundaries.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id},
    macros::{map, uprobe, uretprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::node::{NODE_CLIENTS_MAX, NODE_THREADS_MAX, NodeSock, NodeThread};

#[map(name = "NODE_THREADS")]
static NODE_THREADS: LruHashMap<u32, NodeThread> = LruHashMap::with_max_entries(NODE_THREADS_MAX, 0);

#[map(name = "NODE_CLIENTS")]
static NODE_CLIENTS: LruHashMap<u64, NodeSock> = LruHashMap::with_max_entries(NODE_CLIENTS_MAX, 0);

/// Task ids handed out on each CPU (the CPU in the top bits keeps them
/// unique without a shared counter).
#[map(name = "NODE_IDS")]
static NODE_IDS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn new_task() -> u64 {
    let Some(n) = NODE_IDS.get_ptr_mut(0) else { return 0 };
    let n = unsafe {
        *n += 1;
        *n
    };
    (u64::from(unsafe { bpf_get_smp_processor_id() }) << 48) | (n & 0xffff_ffff_ffff)
}

#[inline(always)]
fn thread_task(tid: u32) -> (u64, u64) {
    unsafe { NODE_THREADS.get(tid) }.map_or((0, 0), |t| (t.task, t.from_sock))
}

/// The task of a Node process's syscall on `sk`.
#[inline(always)]
pub fn on_data(pid_tgid: u64, sk: u64, send: bool) -> u64 {
    let tid = pid_tgid as u32;
    if send {
        let (current, from_sock) = thread_task(tid);
        let Some(s) = NODE_CLIENTS.get_ptr_mut(sk) else {
            return current; // a response on a server socket
        };
        let s = unsafe { &mut *s };
        if current != 0 && from_sock == sk {
            // Written in the callback of this socket's own answer: a pool
            // handing the freed socket to a queued request (another
            // request's call) looks the same as a next call of this one.
            s.task = 0;
            s.fresh_connect = 0;
            0
        } else if current != 0 {
            s.task = current;
            s.fresh_connect = 0;
            current
        } else if s.fresh_connect != 0 {
            s.fresh_connect = 0;
            s.task
        } else {
            0
        }
    } else {
        // An answer brings its call's task back; a request starts one.
        let (task, from_sock) = match unsafe { NODE_CLIENTS.get(sk) } {
            Some(s) => (s.task, sk),
            None => (new_task(), 0),
        };
        let _ = NODE_THREADS.insert(tid, NodeThread { task, fresh: 1, in_read: 0, from_sock }, 0);
        task
    }
}

/// A Node process connects `sk` (in the caller's context).
#[inline(always)]
pub fn on_connect(pid_tgid: u64, sk: u64) {
    let (task, _) = thread_task(pid_tgid as u32);
    let _ = NODE_CLIENTS.insert(sk, NodeSock { task, fresh_connect: 1, _pad: 0 }, 0);
}

/// A socket address starts or ends a connection: not a client of before.
#[inline(always)]
pub fn forget(sk: u64) {
    let _ = NODE_CLIENTS.remove(sk);
}

// node::LibuvStreamWrap::OnUvRead(ssize_t, const uv_buf_t*): the read
// callback of a stream; libuv calls it right after the read it reports.
// It keeps that read's task (none when no read was reported: EOF).
#[uprobe]
pub fn node_read_enter(_ctx: ProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let t = match NODE_THREADS.get_ptr_mut(tid) {
        Some(t) => unsafe { &mut *t },
        None => {
            let _ = NODE_THREADS.insert(tid, NodeThread { task: 0, fresh: 0, in_read: 1, from_sock: 0 }, 0);
            return 0;
        }
    };
    if t.fresh == 0 {
        t.task = 0;
        t.from_sock = 0;
    }
    t.fresh = 0;
    t.in_read = 1;
    0
}

#[uretprobe]
pub fn node_read_leave(_ctx: RetProbeContext) -> u32 {
    clear(bpf_get_current_pid_tgid() as u32);
    0
}

#[inline(always)]
fn clear(tid: u32) {
    if let Some(t) = NODE_THREADS.get_ptr_mut(tid) {
        let t = unsafe { &mut *t };
        t.task = 0;
        t.fresh = 0;
        t.in_read = 0;
        t.from_sock = 0;
    }
}

// node::AsyncHooks::push_async_context(double, double, Local<Object>): a
// JS callback starts. Inside a read callback it works for the read's
// task; anywhere else (connect, timer, fs callbacks) for none.
#[uprobe]
pub fn node_push_async_context(_ctx: ProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(t) = NODE_THREADS.get_ptr_mut(tid) {
        let t = unsafe { &mut *t };
        if t.in_read == 0 {
            t.task = 0;
            t.fresh = 0;
            t.from_sock = 0;
        }
    }
    0
}

// node::Environment::RunTimers / CheckImmediate: timer and setImmediate
// callbacks belong to no read, even one that led to no callback.
#[uprobe]
pub fn node_loop_phase(_ctx: ProbeContext) -> u32 {
    clear(bpf_get_current_pid_tgid() as u32);
    0
}
