//! Configuration the agent hands to the probes before load, as a read-only
//! global: kernel struct offsets read from the running kernel's BTF (Rust eBPF
//! has no CO-RE relocations) and capture settings.

/// Largest payload prefix a data event can carry.
pub const MAX_CAPTURE: usize = 4096;
/// iovec entries copied at most per readv/writev/sendmsg/recvmsg.
pub const MAX_IOV: usize = 8;

/// Byte offsets inside kernel structs, resolved from /sys/kernel/btf/vmlinux.
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
    pub _pad: u16,
}

/// Everything the probes read from [`crate::maps::PROBE_CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    pub offsets: KernelOffsets,
    /// The agent's own tgid: its syscalls are never traced.
    pub self_pid: u32,
    /// Payload bytes copied per data event (<= MAX_CAPTURE).
    pub capture_bytes: u32,
    /// Ring buffer fill level (bytes) above which a record wakes the reader;
    /// below it records are submitted without a wakeup and the reader's
    /// timer drains them.
    pub wakeup_bytes: u64,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 40);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 56);

#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeConfig {}
