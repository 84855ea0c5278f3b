//! TLS plaintext from OpenSSL 3's libssl, by uprobes on its read/write
//! calls, attached per library file (every process mapping it).
//!
//! Entry (`SSL_read(ssl, buf, num)`, `SSL_read_ex(ssl, buf, num, &n)`, and
//! the write twins): the thread's call goes into `TLS_CALLS`. Inside the
//! call the library moves ciphertext with ordinary syscalls: the data probe
//! finds the thread's entry, takes the socket and the first byte's TCP
//! sequence number from that syscall, and reports the ciphertext without
//! payload (`note_ciphertext`). Return (uretprobe: libssl is C, its stacks
//! stay put): the call's plaintext is reported as one data event of that
//! socket, up to the capture size; a call served from the library's buffer
//! (no syscall inside) uses the socket its SSL object was last seen on
//! (`TLS_SOCKS`), with no sequence number.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated::bpf_get_current_comm},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    config::MAX_CAPTURE,
    event::{
        DATA_EGRESS, DATA_PAYLOAD_PARTIAL, DATA_SEQ_VALID, DATA_TLS_PLAIN, DataEvent, EVENT_VERSION, EventKind, Syscall,
    },
    go::GoKey,
    maps::Counter,
    tls::{
        TLS_CALL_EMIT_AT_SEND, TLS_CALL_EMITTED, TLS_CALL_SEQ, TLS_CALLS_MAX, TLS_OP_HANDSHAKE, TLS_OP_READ,
        TLS_OP_WRITE, TLS_SOCKS_MAX, TlsCall, TlsKey,
    },
};

use crate::{
    config,
    maps::{self, DATA_SCRATCH, DataScratch},
    probes::data::copy_flat,
    sock,
};

#[map(name = "TLS_CALLS")]
static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(TLS_CALLS_MAX, 0);

/// Go's crypto/tls calls in flight, by goroutine (pid, goid): a goroutine
/// that blocks inside Read resumes on any thread.
#[map(name = "GO_TLS_CALLS")]
static GO_TLS_CALLS: LruHashMap<GoKey, TlsCall> = LruHashMap::with_max_entries(TLS_CALLS_MAX, 0);

#[map(name = "TLS_SOCKS")]
static TLS_SOCKS: LruHashMap<TlsKey, u64> = LruHashMap::with_max_entries(TLS_SOCKS_MAX, 0);

/// Called by the data probe for every socket syscall of a probed process:
/// true when the thread is inside a TLS call (the bytes are ciphertext; the
/// first one in the call's direction gives it its socket and sequence).
#[inline(always)]
/// `seq` is meaningful only with `seq_valid` (an Option's unset payload
/// would be an uninitialised register the verifier refuses to spill).
pub fn note_ciphertext(pid_tgid: u64, goroutine: u64, sk: u64, seq: u32, seq_valid: bool, fd: i32, send: bool) -> bool {
    let call = if goroutine != 0 {
        GO_TLS_CALLS.get_ptr_mut(GoKey { pid: (pid_tgid >> 32) as u32, _pad: 0, value: goroutine })
    } else if config::tls() != 0 {
        TLS_CALLS.get_ptr_mut(pid_tgid)
    } else {
        None
    };
    let Some(call) = call else {
        return false;
    };
    let call = unsafe { &mut *call };
    let op = if send { TLS_OP_WRITE } else { TLS_OP_READ };
    if (call.op == op || call.op == TLS_OP_HANDSHAKE) && call.sk == 0 {
        call.sk = sk;
        call.fd = fd;
        if seq_valid {
            call.seq = seq;
            call.flags |= TLS_CALL_SEQ;
        }
        if call.flags & TLS_CALL_EMIT_AT_SEND != 0 && call.num > 0 && call.num <= u32::MAX as u64 {
            call.flags |= TLS_CALL_EMITTED;
            let c = *call;
            let _ = TLS_SOCKS.insert(TlsKey { pid: (pid_tgid >> 32) as u32, _pad: 0, ssl: c.ssl }, sk, 0);
            let _ = emit(pid_tgid, sk, &c, c.num);
        }
    }
    true
}

#[inline(always)]
fn enter(ctx: &ProbeContext, op: u32, ex: bool) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == config::self_pid() {
        return 0;
    }
    let ssl: u64 = ctx.arg(0).unwrap_or(0);
    let buf: u64 = ctx.arg(1).unwrap_or(0);
    let len_ptr: u64 = if ex { ctx.arg(3).unwrap_or(0) } else { 0 };
    let call = TlsCall { ssl, buf, len_ptr, num: 0, sk: 0, seq: 0, flags: 0, fd: -1, op };
    let _ = TLS_CALLS.insert(pid_tgid, call, 0);
    0
}

#[inline(always)]
fn leave(ctx: &RetProbeContext, ex: bool) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(call) = (unsafe { TLS_CALLS.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = TLS_CALLS.remove(pid_tgid);
    let ret: i64 = ctx.ret::<u64>() as i64;
    let ret = ret as i32;
    let _ = finish(pid_tgid, &call, ret, ex);
    0
}

/// A call returned `ret`: report its plaintext.
#[inline(always)]
fn finish(pid_tgid: u64, call: &TlsCall, ret: i32, ex: bool) -> Result<(), i64> {
    let moved: u64 = if ex {
        // SSL_*_ex return 1, OpenSSL's internal functions > 0, on success.
        if ret <= 0 {
            return Ok(());
        }
        match unsafe { bpf_probe_read_user(call.len_ptr as *const u64) } {
            Ok(n) => n,
            Err(_) => {
                maps::count(Counter::TlsReadFailed);
                return Ok(());
            }
        }
    } else {
        if ret <= 0 {
            return Ok(());
        }
        ret as u64
    };
    if moved == 0 || moved > u32::MAX as u64 {
        return Ok(());
    }
    let pid = (pid_tgid >> 32) as u32;
    let key = TlsKey { pid, _pad: 0, ssl: call.ssl };
    let sk = if call.sk != 0 {
        let _ = TLS_SOCKS.insert(key, call.sk, 0);
        call.sk
    } else {
        match unsafe { TLS_SOCKS.get(key) } {
            Some(sk) => *sk,
            None => {
                maps::count(Counter::TlsNoSocket);
                return Ok(());
            }
        }
    };
    emit(pid_tgid, sk, call, moved)
}

// A subprogram, not inlined: inlined into the data probe's already long
// program, LLVM spilled a register it left unset on one path, which the
// verifier refuses (`!read_ok`).
#[inline(never)]
fn emit(pid_tgid: u64, sk: u64, call: &TlsCall, moved: u64) -> Result<(), i64> {
    let o = config::offsets();
    let common = sock::common(sk, &o)?;
    if !sock::in_watched_netns(sk, &o) {
        return Ok(());
    }
    let s = DATA_SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    let s = unsafe { &mut *s };
    let send = call.op == TLS_OP_WRITE;
    let ev = &mut s.event;
    ev.header.kind = EventKind::Data as u16;
    ev.header.version = EVENT_VERSION;
    ev.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.sk = sk;
    if sock::tuple(sk, &o, &common, &mut ev.tuple).is_err() {
        maps::count(Counter::SockReadFailed);
    }
    ev.task.pid = (pid_tgid >> 32) as u32;
    ev.task.tid = pid_tgid as u32;
    unsafe { bpf_get_current_comm(ev.task.comm.as_mut_ptr().cast(), 16) };
    ev.fd = call.fd;
    ev.bytes = moved as u32;
    ev.seq = call.seq;
    ev.srtt_us = 0;
    ev.syscall = if send { Syscall::SslWrite } else { Syscall::SslRead } as u8;
    ev.flags = DATA_TLS_PLAIN
        | if call.flags & TLS_CALL_SEQ != 0 { DATA_SEQ_VALID } else { 0 }
        | if send { DATA_EGRESS } else { 0 };
    ev._pad = 0;
    ev.goid = super::go::data_goid(ev.task.pid);
    let mut want = config::capture_bytes() as u64;
    if want > moved {
        want = moved;
    }
    let (copied, partial) = copy_flat(s, call.buf, want);
    if partial {
        s.event.flags |= DATA_PAYLOAD_PARTIAL;
        maps::count(Counter::TlsReadFailed);
    }
    let plen = if copied > MAX_CAPTURE { MAX_CAPTURE } else { copied };
    s.event.payload_len = plen as u32;
    let len = core::mem::size_of::<DataEvent>() + plen;
    s.event.header.len = len as u32;
    maps::output(s as *const DataScratch as *const u8, len);
    Ok(())
}

// int SSL_read(SSL *ssl, void *buf, int num)
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_READ, false)
}

#[uretprobe]
pub fn ssl_read_ret(ctx: RetProbeContext) -> u32 {
    leave(&ctx, false)
}

// int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_READ, true)
}

#[uretprobe]
pub fn ssl_read_ex_ret(ctx: RetProbeContext) -> u32 {
    leave(&ctx, true)
}

// int SSL_write(SSL *ssl, const void *buf, int num)
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_WRITE, false)
}

#[uretprobe]
pub fn ssl_write_ret(ctx: RetProbeContext) -> u32 {
    leave(&ctx, false)
}

// int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_WRITE, true)
}

#[uretprobe]
pub fn ssl_write_ex_ret(ctx: RetProbeContext) -> u32 {
    leave(&ctx, true)
}

// Go's crypto/tls, register ABI (Go 1.17+):
//   func (c *Conn) Read(b []byte) (int, error)  /  Write(b []byte) (int, error)
//   entry: RAX = c, RBX = b's data, RCX = len(b); at each RET: RAX = n.
// Entry probes sit on the stack-check branch (emulated), return probes on
// every RET of the function (Go moves stacks: no uretprobes). Calls are
// keyed by goroutine.

#[inline(always)]
fn go_enter(ctx: &ProbeContext, op: u32) -> u32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(goid) = super::go::running(pid) else {
        return 0;
    };
    let regs = unsafe { &*ctx.regs };
    let flags = if op == TLS_OP_WRITE { TLS_CALL_EMIT_AT_SEND } else { 0 };
    let call = TlsCall { ssl: regs.rax, buf: regs.rbx, len_ptr: 0, num: regs.rcx, sk: 0, seq: 0, flags, fd: -1, op };
    // A handshake inside a Read or Write (no explicit Handshake) leaves the
    // outer call's entry alone: BPF_NOEXIST.
    let exists = if op == TLS_OP_HANDSHAKE { 1 } else { 0 };
    let _ = GO_TLS_CALLS.insert(GoKey { pid, _pad: 0, value: goid }, call, exists);
    0
}

#[inline(always)]
fn go_leave(ctx: &ProbeContext, op: u32) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let Some(goid) = super::go::running(pid) else {
        return 0;
    };
    let key = GoKey { pid, _pad: 0, value: goid };
    let Some(call) = (unsafe { GO_TLS_CALLS.get(key) }).copied() else {
        return 0;
    };
    if call.op != op {
        return 0; // the return of a handshake nested in a Read or Write
    }
    let _ = GO_TLS_CALLS.remove(key);
    if op == TLS_OP_HANDSHAKE {
        if call.sk != 0 {
            let _ = TLS_SOCKS.insert(TlsKey { pid, _pad: 0, ssl: call.ssl }, call.sk, 0);
        }
        return 0;
    }
    let n = unsafe { (*ctx.regs).rax } as i64;
    if call.flags & TLS_CALL_EMITTED == 0 && n > 0 && n <= i32::MAX as i64 {
        let _ = finish(pid_tgid, &call, n as i32, false);
    }
    0
}

#[uprobe]
pub fn go_tls_read(ctx: ProbeContext) -> u32 {
    go_enter(&ctx, TLS_OP_READ)
}

#[uprobe]
pub fn go_tls_read_ret(ctx: ProbeContext) -> u32 {
    go_leave(&ctx, TLS_OP_READ)
}

// func (c *Conn) handshakeContext(ctx context.Context) (ret error): RAX = c.
#[uprobe]
pub fn go_tls_handshake(ctx: ProbeContext) -> u32 {
    go_enter(&ctx, TLS_OP_HANDSHAKE)
}

#[uprobe]
pub fn go_tls_handshake_ret(ctx: ProbeContext) -> u32 {
    go_leave(&ctx, TLS_OP_HANDSHAKE)
}

#[uprobe]
pub fn go_tls_write(ctx: ProbeContext) -> u32 {
    go_enter(&ctx, TLS_OP_WRITE)
}

#[uprobe]
pub fn go_tls_write_ret(ctx: ProbeContext) -> u32 {
    go_leave(&ctx, TLS_OP_WRITE)
}
