//! Node.js task identity, kernel side (tracer-ebpf `probes::node`). A Node
//! process serves every request on one event-loop thread, so a thread says
//! nothing of which request a write belongs to. Instead each read of an
//! inbound request starts a task (a new id), the read callback that read
//! leads to (`node::LibuvStreamWrap::OnUvRead`, entry and return) keeps it
//! for every JS callback and tick it runs, and any other callback (a
//! `node::AsyncHooks::push_async_context` outside a read callback: timers,
//! immediates, connects) runs with none. A client socket takes the task it was
//! connected or written in, and its answer's read brings that task back:
//! so a backend call and the response it leads to carry the request's task.
//! Unknown: no task (0), which links nothing.

/// LRU map tid -> [`NodeThread`].
pub const NODE_THREADS: &str = "NODE_THREADS";
/// LRU map struct sock -> [`NodeSock`], client sockets of Node processes.
pub const NODE_CLIENTS: &str = "NODE_CLIENTS";
pub const NODE_THREADS_MAX: u32 = 16384;
pub const NODE_CLIENTS_MAX: u32 = 65536;

/// The task a Node thread's current callback runs for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeThread {
    pub task: u64,
    /// 1: a read set `task` and the read callback it leads to has not
    /// started.
    pub fresh: u32,
    /// 1: inside `LibuvStreamWrap::OnUvRead`, the read callback: every JS
    /// callback and tick it runs works for the read's task.
    pub in_read: u32,
    /// The client socket whose answer's read set `task` (0: a request's).
    pub from_sock: u64,
}

/// A Node process's client socket and the task of its current call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeSock {
    pub task: u64,
    /// 1: connected in `task` and not written yet (the first write comes
    /// from the connect callback, which runs with no task).
    pub fresh_connect: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<NodeThread>() == 24);
const _: () = assert!(core::mem::size_of::<NodeSock>() == 16);
