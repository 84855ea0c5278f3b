//! Configuration the agent hands to the probes before load, as a read-only
//! global: kernel struct offsets read from the running kernel's BTF (Rust eBPF
//! has no CO-RE relocations) and capture settings.

/// Largest payload prefix a data event can carry.
pub const MAX_CAPTURE: usize = 4096;
/// Bytes read at once through a window of KernelOffsets.
pub const BLOCK: usize = 32;
/// iovec entries copied at most per readv/writev/sendmsg/recvmsg. gRPC's
/// C core writes one slice per iovec: its first sendmsg on a connection
/// (preface, SETTINGS, the first HEADERS with every literal) had 24 of them
/// for 276 bytes, and 8 lost that HEADERS' tail and with it the HPACK table.
pub const MAX_IOV: usize = 32;

/// Byte offsets inside kernel structs, resolved from /sys/kernel/btf/vmlinux.
/// The window fields (`*_block`) are checked by the agent: every field read
/// through a window lies wholly inside its 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// sock_common.skc_daddr (remote IPv4)
    pub skc_daddr: u16,
    /// sock_common.skc_rcv_saddr (local IPv4)
    pub skc_rcv_saddr: u16,
    /// sock_common.skc_dport (remote port, network order)
    pub skc_dport: u16,
    /// sock_common.skc_num (local port, host order)
    pub skc_num: u16,
    /// sock_common.skc_family
    pub skc_family: u16,
    /// sock_common.skc_v6_daddr
    pub skc_v6_daddr: u16,
    /// sock_common.skc_v6_rcv_saddr
    pub skc_v6_rcv_saddr: u16,
    /// sock.sk_err
    pub sk_err: u16,
    /// tcp_sock.write_seq
    pub tcp_write_seq: u16,
    /// tcp_sock.copied_seq
    pub tcp_copied_seq: u16,
    /// tcp_sock.srtt_us
    pub tcp_srtt_us: u16,
    /// tcp_sock.total_retrans
    pub tcp_total_retrans: u16,
    /// tcp_sock.bytes_received (u64)
    pub tcp_bytes_received: u16,
    /// tcp_sock.bytes_acked (u64)
    pub tcp_bytes_acked: u16,
    /// task_struct.files
    pub task_files: u16,
    /// files_struct.fdt
    pub files_fdt: u16,
    /// fdtable.fd
    pub fdtable_fd: u16,
    /// file.private_data (the struct socket of a socket file)
    pub file_private_data: u16,
    /// socket.sk
    pub socket_sk: u16,
    /// pt_regs: the syscall number (x86_64 orig_ax, arm64 syscallno)
    pub regs_nr: u16,
    /// pt_regs: syscall arguments 0..=2 (x86_64 di/si/dx, arm64 regs[0..=2])
    pub regs_arg: [u16; 3],
    /// sock.sk_protocol
    pub sk_protocol: u16,
    /// Start of a 32-byte window of sock_common holding skc_daddr,
    /// skc_rcv_saddr, skc_dport, skc_num and skc_family: the hot path reads
    /// them with one copy instead of five.
    pub skc_block: u16,
    /// Start of a 32-byte window of pt_regs holding the syscall number and
    /// arguments 0..=2 (one copy instead of four).
    pub regs_block: u16,
    /// sock_common.skc_net (possible_net_t: a struct net pointer)
    pub skc_net: u16,
    /// net.ns.inum: the network namespace's inode number
    pub net_ns_inum: u16,
    /// sock_common.skc_state (u8, inside the skc_block window)
    pub skc_state: u16,
    /// tcp_sock.rcv_nxt
    pub tcp_rcv_nxt: u16,
    /// task_struct.thread.fsbase (x86_64: the thread's TLS base, where Go
    /// keeps the running goroutine's g at -8); 0 where unknown.
    pub task_fsbase: u16,
    /// Keeps the size a multiple of 8 (no implicit padding in ProbeConfig).
    pub _pad: u16,
}

/// Syscall numbers of this architecture, so a probe firing inside the socket
/// layer can tell from the task's saved registers which syscall it is in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallNrs {
    pub read: u32,
    pub write: u32,
    pub readv: u32,
    pub writev: u32,
    pub recvfrom: u32,
    pub sendto: u32,
    pub recvmsg: u32,
    pub sendmsg: u32,
    /// glibc's resolver sends its A and AAAA queries in one sendmmsg.
    pub sendmmsg: u32,
    /// Keeps the size a multiple of 8.
    pub _pad: u32,
}

/// Everything the probes read from [`crate::maps::PROBE_CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    pub offsets: KernelOffsets,
    pub syscalls: SyscallNrs,
    /// The agent's own tgid: its syscalls are never traced.
    pub self_pid: u32,
    /// Payload bytes copied per data event (<= MAX_CAPTURE).
    pub capture_bytes: u32,
    /// Ring buffer fill level (bytes) above which a record wakes the reader;
    /// below it records are submitted without a wakeup and the reader's
    /// timer drains them.
    pub wakeup_bytes: u64,
    /// Only sockets of this network namespace (inode number); 0: all.
    pub netns: u32,
    /// 1: data events of processes in `GO_PROCS` carry their goroutine id.
    pub go: u32,
    /// 1: TLS library uprobes are attached; the data probe looks up whether
    /// the thread is inside a TLS call (`crate::tls`).
    pub tls: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 64);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 136);

#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeConfig {}
