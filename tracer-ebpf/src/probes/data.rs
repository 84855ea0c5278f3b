//! Socket data: one event per read/write-family syscall on a TCP socket,
//! and one per datagram on a UDP socket whose remote port is 53 (DNS; a
//! connected socket, as glibc's resolver, dig and most stub resolvers use:
//! an unconnected one has no remote port in its struct sock and is not seen).
//!
//! A single hook does it: the sock_{send,recv}_length tracepoints, attached
//! as raw tracepoints (no trace record is built: the cheapest hook there
//! is), fire inside the
//! socket layer, only for sockets, in the calling thread, after the bytes
//! were copied (to the send queue, or into the receiver's buffer). It gives
//! the struct sock and the byte count; which syscall is running, and its
//! buffer, come from the task's saved user registers (bpf_task_pt_regs).
//! No syscall tracepoint is needed, so the many syscalls that are not
//! socket I/O (files, pipes, epoll...) pay nothing, and a syscall that was
//! already blocked when the agent attached is still seen whole.
//!
//! A transfer that is not one of the hooked syscalls (sendfile, splice,
//! io_uring, compat syscalls) yields bytes and sequence number, no payload.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_user as read_user,
        bpf_task_pt_regs,
        generated::{bpf_get_current_comm, bpf_probe_read_user},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::{
    config::{KernelOffsets, MAX_CAPTURE, MAX_IOV},
    event::{
        AF_INET, AF_INET6, DATA_EGRESS, DATA_PAYLOAD_PARTIAL, DATA_SEQ_VALID, DATA_TLS_CIPHER, DATA_UDP, DataEvent,
        EVENT_VERSION, EventKind, Syscall, tcp_state,
    },
    go::RUNTIME_NODE,
    maps::Counter,
};

use crate::{
    config,
    maps::{self, DATA_SCRATCH, DataScratch},
    sock,
};

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const DNS_PORT: u16 = 53;
/// sendmmsg vector entries looked at for the one being sent (glibc sends 2).
const MAX_MMSG: u64 = 4;
const MSG_PEEK: i32 = 2;

// sock_send_length / sock_recv_length (include/trace/events/sock.h):
//   TP_PROTO(struct sock *sk, int ret, int flags)
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    sock_length(&ctx, true)
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    sock_length(&ctx, false)
}

/// The running syscall and its first three arguments.
struct Call {
    syscall: Syscall,
    fd: i32,
    /// Buffer (read/write/recvfrom/sendto), iovec array (readv/writev) or
    /// user_msghdr (recvmsg/sendmsg).
    ptr: u64,
    /// Buffer length or iovec count.
    len: u64,
}

#[inline(always)]
fn sock_length(ctx: &RawTracePointContext, send: bool) -> i32 {
    let sk: u64 = ctx.arg(0);
    let ret = ctx.arg::<u64>(1) as i32;
    let flags = ctx.arg::<u64>(2) as i32;
    if ret <= 0 || (!send && flags & MSG_PEEK != 0) {
        return 0;
    }
    // One copy of the offsets per event (a volatile read of the whole struct).
    let o = config::offsets();
    let Ok(common) = sock::common(sk, &o) else {
        return 0;
    };
    let family = common.u16(o.skc_family);
    if family != AF_INET && family != AF_INET6 {
        return 0;
    }
    // UDP only to a DNS server: a port compare on the window already read,
    // so other UDP traffic (QUIC, RTP, syslog) pays nothing more than before.
    let udp = match sock::read::<u16>(sk, o.sk_protocol) {
        Ok(IPPROTO_TCP) => false,
        Ok(IPPROTO_UDP) if u16::from_be(common.u16(o.skc_dport)) == DNS_PORT => true,
        _ => return 0,
    };
    if !sock::in_watched_netns(sk, &o) {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == config::self_pid() {
        return 0;
    }
    let call = current_call(&o, send);
    // A datagram has no sequence number, no TLS and no goroutine hand-off.
    let (seq, cipher, goid) =
        if udp { (None, false, 0) } else { tcp_facts(sk, &o, &common, &call, pid_tgid, ret, send) };
    let h = Head { o: &o, pid_tgid, sk, common: &common, seq, call: &call, ret: ret as u64, send, cipher, goid, udp };
    let _ = emit(&h);
    0
}

/// What a TCP segment's event says beyond the datagram's: the sequence
/// number of its first byte, whether it is TLS ciphertext, and its goroutine.
#[inline(always)]
fn tcp_facts(
    sk: u64,
    o: &KernelOffsets,
    common: &sock::Block,
    call: &Call,
    pid_tgid: u64,
    ret: i32,
    send: bool,
) -> (Option<u32>, bool, u64) {
    // The sequence counters already moved past the bytes of this call.
    let seq_off = if send { o.tcp_write_seq } else { o.tcp_copied_seq };
    let mut seq = sock::read::<u32>(sk, seq_off).map(|s| s.wrapping_sub(ret as u32));
    if !send && let Ok(s) = seq.as_mut() {
        *s = s.wrapping_sub(fin_consumed(sk, o, common, s.wrapping_add(ret as u32)));
    }
    let seq = seq.ok();
    let pid = (pid_tgid >> 32) as u32;
    let runtime = super::go::proc(pid);
    let goroutine = runtime.as_ref().and_then(super::go::running_in);
    let (seq_n, seq_ok) = match seq {
        Some(s) => (s, true),
        None => (0, false),
    };
    let cipher = super::tls::note_ciphertext(pid_tgid, goroutine.unwrap_or(0), sk, seq_n, seq_ok, call.fd, send);
    let goid = match (runtime, goroutine) {
        (_, Some(g)) => super::go::handed_off(pid, g),
        (Some(p), None) if p.runtime == RUNTIME_NODE => super::node::on_data(pid_tgid, sk, send),
        _ => 0,
    };
    (seq, cipher, goid)
}

/// 1 when this read also consumed the peer's FIN, which moves copied_seq one
/// past the data (tcp_recvmsg: "++*seq" at found_fin_ok), else 0: the first
/// byte's sequence number must not be off by one for a read of a request
/// followed by its client's shutdown(SHUT_WR). The FIN was consumed by this
/// read (it returned data, and nothing follows a FIN) when everything up to
/// rcv_nxt was copied and the state says a FIN came in: CLOSE_WAIT,
/// LAST_ACK, CLOSING, TIME_WAIT, or CLOSE without an error (a reset also
/// leaves CLOSE, without a FIN, with sk_err set).
#[inline(always)]
fn fin_consumed(sk: u64, o: &KernelOffsets, common: &sock::Block, copied: u32) -> u32 {
    // The state comes with the sock_common window already read: reads on
    // established sockets (nearly all) pay nothing more.
    let fin_state = match common.u16(o.skc_state) as u8 {
        tcp_state::CLOSE_WAIT | tcp_state::LAST_ACK | tcp_state::CLOSING | tcp_state::TIME_WAIT => true,
        tcp_state::CLOSE => sock::read::<i32>(sk, o.sk_err) == Ok(0),
        _ => false,
    };
    u32::from(fin_state && sock::read::<u32>(sk, o.tcp_rcv_nxt) == Ok(copied))
}

/// Which hooked syscall the thread is in, from its saved user registers.
#[inline(always)]
fn current_call(o: &KernelOffsets, send: bool) -> Call {
    let other = Call { syscall: Syscall::Other, fd: -1, ptr: 0, len: 0 };
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    if regs == 0 {
        maps::count(Counter::RegsReadFailed);
        return other;
    }
    let Ok(r) = sock::Block::read(regs, o.regs_block) else {
        maps::count(Counter::RegsReadFailed);
        return other;
    };
    let (nr, a0, a1, a2) = (r.u64(o.regs_nr), r.u64(o.regs_arg[0]), r.u64(o.regs_arg[1]), r.u64(o.regs_arg[2]));
    let n = config::syscalls();
    let nr = nr as u32;
    let syscall = if nr == n.read {
        Syscall::Read
    } else if nr == n.write {
        Syscall::Write
    } else if nr == n.readv {
        Syscall::Readv
    } else if nr == n.writev {
        Syscall::Writev
    } else if nr == n.recvfrom {
        Syscall::Recvfrom
    } else if nr == n.sendto {
        Syscall::Sendto
    } else if nr == n.recvmsg {
        Syscall::Recvmsg
    } else if nr == n.sendmsg {
        Syscall::Sendmsg
    } else if nr == n.sendmmsg {
        Syscall::Sendmmsg
    } else {
        return other;
    };
    if syscall.is_send() != send {
        return other;
    }
    Call { syscall, fd: a0 as i32, ptr: a1, len: a2 }
}

/// Everything a data event says but its payload.
struct Head<'a> {
    o: &'a KernelOffsets,
    pid_tgid: u64,
    sk: u64,
    common: &'a sock::Block,
    seq: Option<u32>,
    call: &'a Call,
    ret: u64,
    send: bool,
    /// Inside a TLS library call: ciphertext, no payload (the call's
    /// plaintext is reported at its return).
    cipher: bool,
    goid: u64,
    udp: bool,
}

#[inline(always)]
fn emit(h: &Head) -> Result<(), i64> {
    let Head { o, pid_tgid, sk, common, seq, call, ret, send, cipher, goid, udp } = *h;
    let Some(s) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Err(0);
    };
    let s = unsafe { &mut *s };
    let ev = &mut s.event;
    ev.header.kind = EventKind::Data as u16;
    ev.header.version = EVENT_VERSION;
    ev.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.sk = sk;
    if sock::tuple(sk, o, common, &mut ev.tuple).is_err() {
        maps::count(Counter::SockReadFailed);
    }
    ev.task.pid = (pid_tgid >> 32) as u32;
    ev.task.tid = pid_tgid as u32;
    // Straight into the event: the safe wrapper zeroes a copy first.
    unsafe { bpf_get_current_comm(ev.task.comm.as_mut_ptr().cast(), 16) };
    ev.fd = call.fd;
    ev.bytes = ret as u32;
    ev.seq = seq.unwrap_or(0);
    // RTT travels with state changes (ESTABLISHED, CLOSE), not per syscall.
    ev.srtt_us = 0;
    ev.syscall = call.syscall as u8;
    ev.flags = if seq.is_some() { DATA_SEQ_VALID } else { 0 }
        | if send { DATA_EGRESS } else { 0 }
        | if cipher { DATA_TLS_CIPHER } else { 0 }
        | if udp { DATA_UDP } else { 0 };
    ev._pad = 0;
    ev.goid = goid;

    let (count_only, wide) = maps::verdict(sk);
    let skipped = !cipher && count_only;
    if skipped {
        maps::count(Counter::PayloadSkipped);
    }
    let mut want = if cipher || skipped {
        0
    } else if wide {
        MAX_CAPTURE as u64
    } else {
        config::capture_bytes() as u64
    };
    if want > ret {
        want = ret;
    }
    let (copied, partial) = match call.syscall {
        _ if want == 0 => (0, false),
        Syscall::Readv | Syscall::Writev => copy_iov(s, call.ptr, call.len, want),
        Syscall::Recvmsg | Syscall::Sendmsg | Syscall::Sendmmsg => {
            let hdr = if call.syscall == Syscall::Sendmmsg { mmsg_entry(call.ptr, call.len) } else { call.ptr };
            // struct user_msghdr (UAPI): msg_iov at 16, msg_iovlen at 24.
            let iov: u64 = unsafe { read_user((hdr + 16) as *const u64) }.unwrap_or(0);
            let cnt: u64 = unsafe { read_user((hdr + 24) as *const u64) }.unwrap_or(0);
            copy_iov(s, iov, cnt, want)
        }
        Syscall::Other => (0, false),
        _ => copy_flat(s, call.ptr, want),
    };
    if partial {
        s.event.flags |= DATA_PAYLOAD_PARTIAL;
        maps::count(Counter::PayloadReadFailed);
    }
    let plen = if copied > MAX_CAPTURE { MAX_CAPTURE } else { copied };
    s.event.payload_len = plen as u32;
    let len = core::mem::size_of::<DataEvent>() + plen;
    s.event.header.len = len as u32;
    maps::output(s as *const DataScratch as *const u8, len);
    Ok(())
}

/// The entry of a sendmmsg vector the socket layer is sending now: the
/// kernel writes each entry's msg_len after sending it (__sys_sendmmsg), so
/// it is the first whose msg_len is still 0 (glibc zeroes them; a caller
/// that does not may be shown an earlier entry's bytes). 0 (no entry: the
/// copy fails and is counted) when none of the first MAX_MMSG is.
/// struct mmsghdr { struct user_msghdr msg_hdr; unsigned int msg_len; }: 64 bytes.
#[inline(always)]
fn mmsg_entry(vec: u64, vlen: u64) -> u64 {
    for i in 0..MAX_MMSG {
        if i >= vlen {
            break;
        }
        let entry = vec + i * 64;
        if unsafe { read_user((entry + 56) as *const u32) } == Ok(0) {
            return entry;
        }
    }
    0
}

/// Copy `want` bytes from one user buffer. Returns (copied, partial).
#[inline(always)]
pub fn copy_flat(s: &mut DataScratch, src: u64, want: u64) -> (usize, bool) {
    let mut n = want as usize;
    if n > MAX_CAPTURE {
        n = MAX_CAPTURE;
    }
    let r = unsafe { bpf_probe_read_user(s.payload.as_mut_ptr().cast(), n as u32, src as *const _) };
    if r < 0 { (0, true) } else { (n, false) }
}

/// Copy up to `want` bytes from the first MAX_IOV entries of a user iovec array.
#[inline(always)]
fn copy_iov(s: &mut DataScratch, iov: u64, cnt: u64, want: u64) -> (usize, bool) {
    let mut off: usize = 0;
    let want = if want > MAX_CAPTURE as u64 { MAX_CAPTURE } else { want as usize };
    for i in 0..MAX_IOV {
        if i as u64 >= cnt || off >= want || off >= MAX_CAPTURE {
            break;
        }
        // struct iovec { void *iov_base; size_t iov_len; }
        let Ok(entry) = (unsafe { read_user((iov + (i as u64) * 16) as *const [u64; 2]) }) else {
            return (off, true);
        };
        let mut n = want - off;
        if entry[1] < n as u64 {
            n = entry[1] as usize;
        }
        if n > MAX_CAPTURE {
            n = MAX_CAPTURE;
        }
        let dst = unsafe { s.payload.as_mut_ptr().add(off) };
        if unsafe { bpf_probe_read_user(dst.cast(), n as u32, entry[0] as *const _) } < 0 {
            return (off, true);
        }
        off += n;
    }
    (off, false)
}
