//! TCP connection lifecycle from sock:inet_sock_set_state.
//!
//! Kept transitions: CLOSE->SYN_SENT (connect() started, in the caller's
//! context so pid/comm are the client's), SYN_SENT->ESTABLISHED (client
//! connected), SYN_RECV->ESTABLISHED (server side accepted by the stack),
//! any->CLOSE (end; sk_err says refused/reset/timeout). The rest (FIN_WAIT,
//! LISTEN, NEW_SYN_RECV...) carry nothing the agent uses.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    event::{AF_INET, AF_INET6, AcceptEvent, ConnEvent, EVENT_VERSION, EventKind, tcp_state},
    maps::Counter,
};

use super::field;
use crate::{config, maps, sock};

const IPPROTO_TCP: u16 = 6;

// sock:inet_sock_set_state (include/trace/events/sock.h)
//   const void *skaddr;     offset:8
//   int oldstate;           offset:16
//   int newstate;           offset:20
//   __u16 sport;            offset:24   (host order)
//   __u16 dport;            offset:26
//   __u16 family;           offset:28
//   __u16 protocol;         offset:30
//   __u8 saddr[4];          offset:32
//   __u8 daddr[4];          offset:36
//   __u8 saddr_v6[16];      offset:40
//   __u8 daddr_v6[16];      offset:56
pub mod fmt {
    pub const SKADDR: usize = 8;
    pub const OLDSTATE: usize = 16;
    pub const NEWSTATE: usize = 20;
    pub const SPORT: usize = 24;
    pub const DPORT: usize = 26;
    pub const FAMILY: usize = 28;
    pub const PROTOCOL: usize = 30;
    pub const SADDR: usize = 32;
    pub const DADDR: usize = 36;
    pub const SADDR_V6: usize = 40;
    pub const DADDR_V6: usize = 56;
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_inet_sock_set_state(&ctx);
    0
}

fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    if field::<u16>(ctx, fmt::PROTOCOL) != IPPROTO_TCP {
        return Ok(());
    }
    let old = field::<i32>(ctx, fmt::OLDSTATE) as u8;
    let new = field::<i32>(ctx, fmt::NEWSTATE) as u8;
    let keep = matches!(
        (old, new),
        (tcp_state::CLOSE, tcp_state::SYN_SENT)
            | (tcp_state::SYN_SENT, tcp_state::ESTABLISHED)
            | (tcp_state::SYN_RECV, tcp_state::ESTABLISHED)
    ) || (new == tcp_state::CLOSE && old != tcp_state::LISTEN);
    if !keep {
        return Ok(());
    }
    let in_task = new == tcp_state::SYN_SENT;
    let pid_tgid = bpf_get_current_pid_tgid();
    if in_task && (pid_tgid >> 32) as u32 == config::self_pid() {
        return Ok(());
    }

    let sk: u64 = field(ctx, fmt::SKADDR);
    if new != tcp_state::ESTABLISHED || old == tcp_state::SYN_RECV {
        // connect, accept, close: a new connection at this address, or none.
        maps::forget_verdict(sk);
        super::node::forget(sk);
    }
    // Every connect, not only those of processes already marked Node: a
    // Node process's first connections (its pool's, made by the first
    // requests) often come before the agent has read its executable and
    // marked it; unnoted, their answers would start new tasks forever.
    if in_task && config::node() {
        super::node::on_connect(pid_tgid, sk);
    }
    if !sock::in_watched_netns(sk, &config::offsets()) {
        return Ok(());
    }
    let mut ev = ConnEvent::default();
    ev.header.kind = EventKind::Conn as u16;
    ev.header.version = EVENT_VERSION;
    ev.header.len = core::mem::size_of::<ConnEvent>() as u32;
    ev.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.sk = sk;
    ev.old_state = old;
    ev.new_state = new;
    let family: u16 = field(ctx, fmt::FAMILY);
    ev.tuple.family = family;
    ev.tuple.local_port = field(ctx, fmt::SPORT);
    ev.tuple.remote_port = field(ctx, fmt::DPORT);
    // Loads from the context must use constant offsets: read the address
    // arrays as whole words, never byte by byte through a moving pointer.
    if family == AF_INET {
        ev.tuple.local_addr[..4].copy_from_slice(&field::<u32>(ctx, fmt::SADDR).to_ne_bytes());
        ev.tuple.remote_addr[..4].copy_from_slice(&field::<u32>(ctx, fmt::DADDR).to_ne_bytes());
    } else if family == AF_INET6 {
        ev.tuple.local_addr = addr16(ctx, fmt::SADDR_V6);
        ev.tuple.remote_addr = addr16(ctx, fmt::DADDR_V6);
    }
    if in_task {
        ev.in_task = 1;
        ev.task.pid = (pid_tgid >> 32) as u32;
        ev.task.tid = pid_tgid as u32;
        ev.task.comm = bpf_get_current_comm().unwrap_or_default();
    }
    if new == tcp_state::CLOSE || new == tcp_state::ESTABLISHED {
        let o = config::offsets();
        match close_stats(sk, &o, &mut ev) {
            Ok(()) => {}
            Err(_) => maps::count(Counter::SockReadFailed),
        }
    }
    maps::output(&raw const ev as *const u8, core::mem::size_of::<ConnEvent>());
    Ok(())
}

#[inline(always)]
fn addr16(ctx: &TracePointContext, off: usize) -> [u8; 16] {
    let hi = field::<u64>(ctx, off).to_ne_bytes();
    let lo = field::<u64>(ctx, off + 8).to_ne_bytes();
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&hi);
    a[8..].copy_from_slice(&lo);
    a
}

fn close_stats(sk: u64, o: &tracer_common::config::KernelOffsets, ev: &mut ConnEvent) -> Result<(), i64> {
    ev.sk_err = sock::read(sk, o.sk_err)?;
    ev.srtt_us = sock::read(sk, o.tcp_srtt_us)?;
    ev.total_retrans = sock::read(sk, o.tcp_total_retrans)?;
    ev.bytes_received = sock::read(sk, o.tcp_bytes_received)?;
    ev.bytes_acked = sock::read(sk, o.tcp_bytes_acked)?;
    Ok(())
}

// syscalls:sys_exit_accept / sys_exit_accept4: long ret (the new fd) at 16.
// The accepted socket is found through current->files->fdt->fd[ret]
// ->private_data (struct socket)->sk, so the server-side connection gets the
// accepting process even though its ESTABLISHED transition ran in softirq.
#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    let _ = try_accept_exit(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    let _ = try_accept_exit(&ctx);
    0
}

fn try_accept_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let fd: i64 = field(ctx, super::SYSCALL_RET);
    if fd < 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == config::self_pid() {
        return Ok(());
    }
    let o = config::offsets();
    let task = unsafe { aya_ebpf::helpers::bpf_get_current_task() };
    let sk = (|| -> Result<u64, i64> {
        let files: u64 = sock::read(task, o.task_files)?;
        let fdt: u64 = sock::read(files, o.files_fdt)?;
        let fds: u64 = sock::read(fdt, o.fdtable_fd)?;
        let file: u64 = unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((fds + (fd as u64) * 8) as *const u64) }
            .map_err(|e| e as i64)?;
        let socket: u64 = sock::read(file, o.file_private_data)?;
        sock::read(socket, o.socket_sk)
    })();
    let Ok(sk) = sk else {
        maps::count(Counter::SockReadFailed);
        return Ok(());
    };
    if !sock::in_watched_netns(sk, &config::offsets()) {
        return Ok(());
    }
    let mut ev = AcceptEvent::default();
    ev.header.kind = EventKind::Accept as u16;
    ev.header.version = EVENT_VERSION;
    ev.header.len = core::mem::size_of::<AcceptEvent>() as u32;
    ev.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.sk = sk;
    ev.fd = fd as i32;
    ev.task.pid = (pid_tgid >> 32) as u32;
    ev.task.tid = pid_tgid as u32;
    ev.task.comm = bpf_get_current_comm().unwrap_or_default();
    maps::output(&raw const ev as *const u8, core::mem::size_of::<AcceptEvent>());
    Ok(())
}
