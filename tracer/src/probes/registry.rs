//! Every probe the agent attaches, in attach order: program name in the
//! object, the tracepoint it attaches to, and whether the agent can run
//! without it. Lifecycle first so connections are known before their data.

pub struct ProbeSpec {
    pub program: &'static str,
    pub category: &'static str,
    pub name: &'static str,
    pub required: bool,
}

const fn tp(program: &'static str, category: &'static str, required: bool) -> ProbeSpec {
    ProbeSpec {
        program,
        category,
        name: program,
        required,
    }
}

pub const PROBES: &[ProbeSpec] = &[
    tp("inet_sock_set_state", "sock", true),
    tp("sys_exit_accept", "syscalls", false),
    tp("sys_exit_accept4", "syscalls", true),
    // sock_*_length before the syscall hooks: an entry saved at enter is only
    // useful once the socket layer can mark it.
    tp("sock_send_length", "sock", true),
    tp("sock_recv_length", "sock", true),
    tp("sys_exit_read", "syscalls", true),
    tp("sys_exit_write", "syscalls", true),
    tp("sys_exit_readv", "syscalls", true),
    tp("sys_exit_writev", "syscalls", true),
    tp("sys_exit_recvfrom", "syscalls", true),
    tp("sys_exit_sendto", "syscalls", true),
    tp("sys_exit_recvmsg", "syscalls", true),
    tp("sys_exit_sendmsg", "syscalls", true),
    tp("sys_enter_read", "syscalls", true),
    tp("sys_enter_write", "syscalls", true),
    tp("sys_enter_readv", "syscalls", true),
    tp("sys_enter_writev", "syscalls", true),
    tp("sys_enter_recvfrom", "syscalls", true),
    tp("sys_enter_sendto", "syscalls", true),
    tp("sys_enter_recvmsg", "syscalls", true),
    tp("sys_enter_sendmsg", "syscalls", true),
];
