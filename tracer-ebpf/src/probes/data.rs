//! Socket data: read/write-family syscalls on TCP sockets.
//!
//! Three hooks per syscall, all tracepoints:
//! 1. sys_enter_<syscall>: save the user buffer (or iovec / msghdr) per thread
//!    in ACTIVE_IO;
//! 2. sock:sock_{send,recv}_length: fires inside the socket layer only for
//!    sockets, with the struct sock: mark the saved entry as TCP, record the
//!    socket and the TCP sequence number of the first byte moved;
//! 3. sys_exit_<syscall>: if the entry was marked, copy the first bytes of the
//!    payload and submit a DataEvent; always drop the entry.
//! Pairing 2 with 1/3 yields the socket without walking the fd table, and
//! sockets opened before the agent started are seen on their first byte.
//! A socket transfer with no saved entry (sendfile, splice, io_uring, or a
//! syscall that was already blocked when the agent attached) still yields an
//! event from 2 alone: bytes and sequence number, no payload.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        bpf_probe_read_user as read_user, generated::bpf_probe_read_user,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    config::{MAX_CAPTURE, MAX_IOV},
    event::{
        AF_INET, AF_INET6, DATA_EGRESS, DATA_PAYLOAD_PARTIAL, DATA_SEQ_VALID, DataEvent,
        EVENT_VERSION, EventKind, Syscall,
    },
    maps::Counter,
};

use super::{SYSCALL_ARG0, SYSCALL_RET, field};
use crate::{
    config,
    maps::{self, ACTIVE_IO, DATA_SCRATCH, DataScratch, IoArgs},
    sock,
};

const IPPROTO_TCP: u16 = 6;
const MSG_PEEK: i32 = 2;

// ---- 1. syscall enter -------------------------------------------------------

// syscalls:sys_enter_* (struct syscall_trace_enter): args[] at offset 16, u64 each.
//   read/write(fd, buf, count)       recvfrom/sendto(fd, buf, len, flags, ...)
//   readv/writev(fd, iov, iovcnt)    recvmsg/sendmsg(fd, msghdr, flags)
#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: Syscall) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == config::self_pid() {
        return 0;
    }
    let args = IoArgs {
        fd: field::<u64>(ctx, SYSCALL_ARG0) as i32,
        ptr: field(ctx, SYSCALL_ARG0 + 8),
        len: field(ctx, SYSCALL_ARG0 + 16),
        sk: 0,
        seq: 0,
        syscall: syscall as u8,
        seq_valid: 0,
        _pad: [0; 6],
    };
    if ACTIVE_IO.insert(pid_tgid, args, 0).is_err() {
        maps::count(Counter::ActiveIoFull);
    }
    0
}

macro_rules! enter_probe {
    ($name:ident, $syscall:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            enter(&ctx, $syscall)
        }
    };
}

enter_probe!(sys_enter_read, Syscall::Read);
enter_probe!(sys_enter_write, Syscall::Write);
enter_probe!(sys_enter_readv, Syscall::Readv);
enter_probe!(sys_enter_writev, Syscall::Writev);
enter_probe!(sys_enter_recvfrom, Syscall::Recvfrom);
enter_probe!(sys_enter_sendto, Syscall::Sendto);
enter_probe!(sys_enter_recvmsg, Syscall::Recvmsg);
enter_probe!(sys_enter_sendmsg, Syscall::Sendmsg);

// ---- 2. socket layer --------------------------------------------------------

// sock:sock_send_length / sock:sock_recv_length (include/trace/events/sock.h)
//   void *sk;        offset:8
//   __u16 family;    offset:16
//   __u16 protocol;  offset:18
//   int ret;         offset:20
//   int flags;       offset:24
pub mod fmt {
    pub const SK: usize = 8;
    pub const FAMILY: usize = 16;
    pub const PROTOCOL: usize = 18;
    pub const RET: usize = 20;
    pub const FLAGS: usize = 24;
}

#[inline(always)]
fn sock_length(ctx: &TracePointContext, send: bool) -> u32 {
    let family: u16 = field(ctx, fmt::FAMILY);
    if field::<u16>(ctx, fmt::PROTOCOL) != IPPROTO_TCP || (family != AF_INET && family != AF_INET6)
    {
        return 0;
    }
    let ret: i32 = field(ctx, fmt::RET);
    if ret <= 0 || (!send && field::<i32>(ctx, fmt::FLAGS) & MSG_PEEK != 0) {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == config::self_pid() {
        return 0;
    }
    let sk: u64 = field(ctx, fmt::SK);
    maps::count(Counter::SocketIo);
    // The sequence counters already moved past the bytes of this call.
    let o = config::offsets();
    let seq_off = if send {
        o.tcp_write_seq
    } else {
        o.tcp_copied_seq
    };
    let seq = sock::read::<u32>(sk, seq_off).map(|s| s.wrapping_sub(ret as u32));

    let args = match ACTIVE_IO.get_ptr_mut(pid_tgid) {
        Some(a) => unsafe { &mut *a },
        None => {
            let args = IoArgs {
                ptr: 0,
                len: 0,
                sk,
                fd: -1,
                seq: seq.unwrap_or(0),
                syscall: Syscall::Other as u8,
                seq_valid: seq.is_ok() as u8,
                _pad: [0; 6],
            };
            let _ = emit(pid_tgid, &args, ret as u64, send);
            return 0;
        }
    };
    if Syscall::from_u8(args.syscall).is_none_or(|s| s.is_send() != send) {
        return 0;
    }
    args.sk = sk;
    if let Ok(seq) = seq {
        args.seq = seq;
        args.seq_valid = 1;
    }
    0
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    sock_length(&ctx, true)
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    sock_length(&ctx, false)
}

// ---- 3. syscall exit --------------------------------------------------------

// syscalls:sys_exit_* (struct syscall_trace_exit): long ret at offset 16.
#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(args) = ACTIVE_IO.get_ptr(pid_tgid) else {
        return 0;
    };
    let args = unsafe { *args };
    let _ = ACTIVE_IO.remove(pid_tgid);
    let ret: i64 = field(ctx, SYSCALL_RET);
    if args.sk == 0 || ret <= 0 {
        return 0;
    }
    let send = Syscall::from_u8(args.syscall).is_some_and(|s| s.is_send());
    let _ = emit(pid_tgid, &args, ret as u64, send);
    0
}

macro_rules! exit_probe {
    ($name:ident) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            exit(&ctx)
        }
    };
}

exit_probe!(sys_exit_read);
exit_probe!(sys_exit_write);
exit_probe!(sys_exit_readv);
exit_probe!(sys_exit_writev);
exit_probe!(sys_exit_recvfrom);
exit_probe!(sys_exit_sendto);
exit_probe!(sys_exit_recvmsg);
exit_probe!(sys_exit_sendmsg);

#[inline(always)]
fn emit(pid_tgid: u64, args: &IoArgs, ret: u64, send: bool) -> Result<(), i64> {
    let Some(s) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Err(0);
    };
    let s = unsafe { &mut *s };
    let ev = &mut s.event;
    ev.header.kind = EventKind::Data as u16;
    ev.header.version = EVENT_VERSION;
    ev.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.sk = args.sk;
    ev.tuple = Default::default();
    if sock::tuple(args.sk, &mut ev.tuple).is_err() {
        maps::count(Counter::SockReadFailed);
    }
    ev.task.pid = (pid_tgid >> 32) as u32;
    ev.task.tid = pid_tgid as u32;
    ev.task.comm = bpf_get_current_comm().unwrap_or_default();
    ev.fd = args.fd;
    ev.bytes = ret as u32;
    ev.seq = args.seq;
    ev.srtt_us = sock::read(args.sk, config::offsets().tcp_srtt_us).unwrap_or(0);
    ev.syscall = args.syscall;
    ev.flags = if args.seq_valid != 0 {
        DATA_SEQ_VALID
    } else {
        0
    } | if send { DATA_EGRESS } else { 0 };
    ev._pad = 0;

    let mut want = config::capture_bytes() as u64;
    if want > ret {
        want = ret;
    }
    let (copied, partial) = match Syscall::from_u8(args.syscall) {
        Some(Syscall::Readv | Syscall::Writev) => copy_iov(s, args.ptr, args.len, want),
        Some(Syscall::Recvmsg | Syscall::Sendmsg) => {
            // struct user_msghdr (UAPI): msg_iov at 16, msg_iovlen at 24.
            let iov: u64 = unsafe { read_user((args.ptr + 16) as *const u64) }.unwrap_or(0);
            let cnt: u64 = unsafe { read_user((args.ptr + 24) as *const u64) }.unwrap_or(0);
            copy_iov(s, iov, cnt, want)
        }
        Some(Syscall::Other) | None => (0, false),
        _ => copy_flat(s, args.ptr, want),
    };
    if partial {
        s.event.flags |= DATA_PAYLOAD_PARTIAL;
        maps::count(Counter::PayloadReadFailed);
    }
    let plen = if copied > MAX_CAPTURE {
        MAX_CAPTURE
    } else {
        copied
    };
    s.event.payload_len = plen as u32;
    let len = core::mem::size_of::<DataEvent>() + plen;
    s.event.header.len = len as u32;
    maps::output(s as *const DataScratch as *const u8, len);
    Ok(())
}

/// Copy `want` bytes from one user buffer. Returns (copied, partial).
#[inline(always)]
fn copy_flat(s: &mut DataScratch, src: u64, want: u64) -> (usize, bool) {
    let mut n = want as usize;
    if n > MAX_CAPTURE {
        n = MAX_CAPTURE;
    }
    let r =
        unsafe { bpf_probe_read_user(s.payload.as_mut_ptr().cast(), n as u32, src as *const _) };
    if r < 0 { (0, true) } else { (n, false) }
}

/// Copy up to `want` bytes from the first MAX_IOV entries of a user iovec array.
#[inline(always)]
fn copy_iov(s: &mut DataScratch, iov: u64, cnt: u64, want: u64) -> (usize, bool) {
    let mut off: usize = 0;
    let want = if want > MAX_CAPTURE as u64 {
        MAX_CAPTURE
    } else {
        want as usize
    };
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
