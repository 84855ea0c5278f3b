//! Every probe the agent attaches, in attach order: program name in the
//! object, the tracepoint it attaches to, and whether the agent can run
//! without it. Lifecycle first so connections are known before their data.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A tracepoint with its trace record (`category:name`).
    TracePoint,
    /// The same tracepoint as a raw tracepoint (the C arguments, no record):
    /// cheaper, used on the hot path.
    RawTracePoint,
}

pub struct ProbeSpec {
    pub program: &'static str,
    pub kind: Kind,
    /// Attached only when `capture.accept_hook` is on: any syscall
    /// tracepoint puts every thread's syscalls on the kernel's tracing slow
    /// path, a cost all processes pay for the accepting pid of connections
    /// that never move a byte (the first data event names it otherwise).
    pub accept_hook: bool,
    pub category: &'static str,
    pub name: &'static str,
    pub required: bool,
}

const fn tp(program: &'static str, category: &'static str, required: bool) -> ProbeSpec {
    ProbeSpec { program, kind: Kind::TracePoint, accept_hook: false, category, name: program, required }
}

pub const PROBES: &[ProbeSpec] = &[
    tp("inet_sock_set_state", "sock", true),
    ProbeSpec { accept_hook: true, ..tp("sys_exit_accept", "syscalls", false) },
    ProbeSpec { accept_hook: true, ..tp("sys_exit_accept4", "syscalls", true) },
    raw("sock_send_length", "sock", true),
    raw("sock_recv_length", "sock", true),
    // Service identity at process start; without them names come from /proc.
    tp("sched_process_exec", "sched", false),
    raw("sched_process_fork", "sched", false),
];

const fn raw(program: &'static str, category: &'static str, required: bool) -> ProbeSpec {
    ProbeSpec { kind: Kind::RawTracePoint, ..tp(program, category, required) }
}
