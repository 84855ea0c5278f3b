//! Process starts and forks, for service identity.
//!
//! - sched:sched_process_exec -> [`ExecEvent`]: the executed path, the
//!   argument area and the environment area of the new image, copied while
//!   they still hold what the program was started with (a process may later
//!   exit before its spans are built, or overwrite the areas with its
//!   process title, as nginx does). Each part is cut at its cap
//!   (tracer_common::process) and the record says how long it really was.
//! - sched_process_fork (raw tracepoint) -> [`ForkEvent`] for new processes
//!   only (a clone whose pid is not its tgid is a thread and is skipped), so
//!   forked workers (nginx, gunicorn) inherit their parent's identity.
//!
//! Both do nothing while the agent left `PROCESS_CONFIG.enabled` at 0.
//!
//! [`ExecEvent`]: tracer_common::process::ExecEvent
//! [`ForkEvent`]: tracer_common::process::ForkEvent

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::PerCpuArray,
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{
    event::{EVENT_VERSION, EventHeader, EventKind},
    process::{
        EXEC_ARGV_FAILED, EXEC_ARGV_MAX, EXEC_ENV_FAILED, EXEC_ENV_MAX, EXEC_FILENAME_FAILED, EXEC_FILENAME_MAX,
        ExecEvent, ForkEvent, ProcessConfig,
    },
};

use super::field;
use crate::{maps, sock::read};
use tracer_common::go::GoFile;

#[unsafe(no_mangle)]
static PROCESS_CONFIG: ProcessConfig = ProcessConfig {
    task_mm: 0,
    task_pid: 0,
    task_tgid: 0,
    task_start_boottime: 0,
    mm_arg_start: 0,
    enabled: 0,
    self_pid: 0,
    mm_exe_file: 0,
    file_inode: 0,
    inode_ino: 0,
    inode_sb: 0,
    sb_dev: 0,
    _pad: 0,
};

#[inline(always)]
fn process_config() -> ProcessConfig {
    // Volatile: the loader rewrites .rodata before verification.
    unsafe { core::ptr::read_volatile(&raw const PROCESS_CONFIG) }
}

/// Per-CPU buffer an exec record is assembled in: the fixed part, the path,
/// then argv and env back to back (env starts where argv ended, so the
/// record carries no padding between them).
#[repr(C)]
pub struct ExecScratch {
    pub event: ExecEvent,
    pub filename: [u8; EXEC_FILENAME_MAX],
    pub data: [u8; EXEC_ARGV_MAX + EXEC_ENV_MAX],
}

#[map(name = "EXEC_SCRATCH")]
static EXEC_SCRATCH: PerCpuArray<ExecScratch> = PerCpuArray::with_max_entries(1, 0);

// sched:sched_process_exec (include/trace/events/sched.h)
//   __data_loc char[] filename;  offset:8   (u32: offset | length << 16)
//   pid_t pid;                   offset:12
//   pid_t old_pid;               offset:16
const FILENAME_LOC: usize = 8;

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exec(&ctx);
    0
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let c = process_config();
    if c.enabled == 0 {
        return Ok(());
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if pid == c.self_pid {
        return Ok(());
    }
    let s = EXEC_SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    let s = unsafe { &mut *s };
    let task = unsafe { bpf_get_current_task() };
    let mm: u64 = read(task, c.task_mm)?;
    if mm == 0 {
        return Ok(());
    }
    super::go::on_exec(pid, exe_file(mm, &c));
    // arg_start, arg_end, env_start, env_end
    let area: [u64; 4] = read(mm, c.mm_arg_start)?;
    let start: u64 = read(task, c.task_start_boottime)?;

    let mut flags = 0u16;
    let loc: u32 = field(ctx, FILENAME_LOC);
    let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    s.filename[0] = 0;
    let r = unsafe { bpf_probe_read_kernel_str(s.filename.as_mut_ptr().cast(), EXEC_FILENAME_MAX as u32, src.cast()) };
    if r < 0 {
        s.filename[0] = 0;
        flags |= EXEC_FILENAME_FAILED;
    }

    let argv_total = area[1].wrapping_sub(area[0]);
    let mut argv_n = argv_total as usize;
    if argv_total > EXEC_ARGV_MAX as u64 {
        argv_n = EXEC_ARGV_MAX;
    }
    if unsafe { bpf_probe_read_user(s.data.as_mut_ptr().cast(), argv_n as u32, area[0] as *const _) } < 0 {
        argv_n = 0;
        flags |= EXEC_ARGV_FAILED;
    }
    let env_total = area[3].wrapping_sub(area[2]);
    let mut env_n = env_total as usize;
    if env_total > EXEC_ENV_MAX as u64 {
        env_n = EXEC_ENV_MAX;
    }
    if argv_n > EXEC_ARGV_MAX {
        return Ok(());
    }
    let dst = unsafe { s.data.as_mut_ptr().add(argv_n) };
    if unsafe { bpf_probe_read_user(dst.cast(), env_n as u32, area[2] as *const _) } < 0 {
        env_n = 0;
        flags |= EXEC_ENV_FAILED;
    }

    let len = core::mem::size_of::<ExecEvent>() + EXEC_FILENAME_MAX + argv_n + env_n;
    s.event = ExecEvent {
        header: EventHeader {
            kind: EventKind::Exec as u16,
            version: EVENT_VERSION,
            len: len as u32,
            ts_ns: unsafe { bpf_ktime_get_ns() },
        },
        pid,
        flags,
        _pad: 0,
        start_boottime_ns: start,
        comm: bpf_get_current_comm().unwrap_or_default(),
        argv_len: argv_n as u32,
        argv_total: argv_total.min(u32::MAX as u64) as u32,
        env_len: env_n as u32,
        env_total: env_total.min(u32::MAX as u64) as u32,
    };
    maps::output(s as *const ExecScratch as *const u8, len);
    Ok(())
}

/// The executable's (s_dev, inode number), when the agent knows where.
#[inline(always)]
fn exe_file(mm: u64, c: &ProcessConfig) -> Option<GoFile> {
    if c.mm_exe_file == 0 {
        return None;
    }
    let file: u64 = read(mm, c.mm_exe_file).ok()?;
    let inode: u64 = read(file, c.file_inode).ok()?;
    let ino: u64 = read(inode, c.inode_ino).ok()?;
    let sb: u64 = read(inode, c.inode_sb).ok()?;
    let dev: u32 = read(sb, c.sb_dev).ok()?;
    Some(GoFile { dev: u64::from(dev), ino })
}

// sched_process_fork: TP_PROTO(struct task_struct *parent, struct task_struct *child)
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_sched_process_fork(&ctx);
    0
}

fn try_sched_process_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let c = process_config();
    if c.enabled == 0 {
        return Ok(());
    }
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let child_pid: i32 = read(child, c.task_pid)?;
    let child_tgid: i32 = read(child, c.task_tgid)?;
    if child_pid != child_tgid {
        return Ok(());
    }
    let parent_tgid: i32 = read(parent, c.task_tgid)?;
    super::go::on_fork(parent_tgid as u32, child_pid as u32);
    let e = ForkEvent {
        header: EventHeader {
            kind: EventKind::Fork as u16,
            version: EVENT_VERSION,
            len: core::mem::size_of::<ForkEvent>() as u32,
            ts_ns: unsafe { bpf_ktime_get_ns() },
        },
        parent_pid: parent_tgid as u32,
        child_pid: child_pid as u32,
        child_start_boottime_ns: read(child, c.task_start_boottime)?,
    };
    maps::output(&e as *const ForkEvent as *const u8, core::mem::size_of::<ForkEvent>());
    Ok(())
}
