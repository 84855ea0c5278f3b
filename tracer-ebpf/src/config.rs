//! The read-only global the agent fills before load (see
//! `tracer_common::config::ProbeConfig`).

use tracer_common::config::{KernelOffsets, ProbeConfig, SyscallNrs};

#[unsafe(no_mangle)]
static PROBE_CONFIG: ProbeConfig = ProbeConfig {
    offsets: KernelOffsets {
        skc_daddr: 0,
        skc_rcv_saddr: 0,
        skc_dport: 0,
        skc_num: 0,
        skc_family: 0,
        skc_v6_daddr: 0,
        skc_v6_rcv_saddr: 0,
        sk_err: 0,
        tcp_write_seq: 0,
        tcp_copied_seq: 0,
        tcp_srtt_us: 0,
        tcp_total_retrans: 0,
        tcp_bytes_received: 0,
        tcp_bytes_acked: 0,
        task_files: 0,
        files_fdt: 0,
        fdtable_fd: 0,
        file_private_data: 0,
        socket_sk: 0,
        regs_nr: 0,
        regs_arg: [0; 3],
        sk_protocol: 0,
        skc_block: 0,
        regs_block: 0,
        skc_net: 0,
        net_ns_inum: 0,
        skc_state: 0,
        tcp_rcv_nxt: 0,
        task_fsbase: 0,
        _pad: 0,
    },
    syscalls: SyscallNrs {
        read: 0,
        write: 0,
        readv: 0,
        writev: 0,
        recvfrom: 0,
        sendto: 0,
        recvmsg: 0,
        sendmsg: 0,
        sendmmsg: 0,
        _pad: 0,
    },
    self_pid: 0,
    capture_bytes: 0,
    wakeup_bytes: 0,
    netns: 0,
    go: 0,
    tls: 0,
    _pad: 0,
};

// Volatile reads so the compiler does not fold the zero initialiser: the
// loader rewrites .rodata before the program is verified.

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.offsets) }
}

#[inline(always)]
pub fn self_pid() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.self_pid) }
}

#[inline(always)]
pub fn capture_bytes() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.capture_bytes) }
}

#[inline(always)]
pub fn wakeup_bytes() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.wakeup_bytes) }
}

#[inline(always)]
pub fn syscalls() -> SyscallNrs {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.syscalls) }
}

#[inline(always)]
pub fn netns() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.netns) }
}

#[inline(always)]
pub fn go() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.go) }
}

#[inline(always)]
pub fn tls() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.tls) }
}
