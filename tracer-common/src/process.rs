//! Process records, kernel -> user: a program started (exec) with its
//! command line and environment as they were at that moment, and a process
//! forked (not a thread), so a forked worker inherits what its parent was
//! started as. The agent names services from them (tracer/src/identity).

/// Bytes of the executed path kept (`filename` of sched_process_exec).
pub const EXEC_FILENAME_MAX: usize = 256;
/// Bytes of the argument area (NUL-separated argv) kept.
pub const EXEC_ARGV_MAX: usize = 4096;
/// Bytes of the environment area kept. Only OTEL_SERVICE_NAME and
/// OTEL_RESOURCE_ATTRIBUTES are taken from it in userspace; the rest is
/// dropped with the record.
pub const EXEC_ENV_MAX: usize = 16384;

/// [`ExecEvent::flags`]: the argument area could not be read.
pub const EXEC_ARGV_FAILED: u16 = 1;
/// [`ExecEvent::flags`]: the environment area could not be read.
pub const EXEC_ENV_FAILED: u16 = 2;
/// [`ExecEvent::flags`]: the executed path could not be read.
pub const EXEC_FILENAME_FAILED: u16 = 4;

/// sched:sched_process_exec: a program replaced the process's image. Followed
/// in the record by `EXEC_FILENAME_MAX` bytes of executed path (NUL-padded),
/// `argv_len` bytes of argument area, then `env_len` bytes of environment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecEvent {
    pub header: crate::event::EventHeader,
    /// Thread group id (the pid).
    pub pid: u32,
    pub flags: u16,
    pub _pad: u16,
    /// task_struct.start_boottime in ns: with the pid, names the process
    /// (/proc/<pid>/stat field 22 is this in clock ticks).
    pub start_boottime_ns: u64,
    /// The process's comm after exec (the leader thread's).
    pub comm: [u8; 16],
    /// Bytes of argument area copied (<= EXEC_ARGV_MAX).
    pub argv_len: u32,
    /// Bytes the argument area has (arg_end - arg_start): more than
    /// `argv_len` means it was cut.
    pub argv_total: u32,
    pub env_len: u32,
    pub env_total: u32,
}

/// sched_process_fork for a new process (threads are not reported).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub header: crate::event::EventHeader,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub child_start_boottime_ns: u64,
}

/// Offsets the process probes read, from BTF. `enabled` is 0 when the
/// running kernel's BTF lacks one of them: the probes then do nothing and
/// the agent names services from /proc alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessConfig {
    /// task_struct.mm
    pub task_mm: u16,
    /// task_struct.pid
    pub task_pid: u16,
    /// task_struct.tgid
    pub task_tgid: u16,
    /// task_struct.start_boottime
    pub task_start_boottime: u16,
    /// mm_struct.arg_start; arg_end, env_start and env_end follow it as
    /// consecutive unsigned longs (checked by the agent), read in one copy.
    pub mm_arg_start: u16,
    pub enabled: u16,
    /// The agent's own tgid.
    pub self_pid: u32,
    /// mm_struct.exe_file, file.f_inode, inode.i_ino, inode.i_sb,
    /// super_block.s_dev: the executable's file identity at exec, so a
    /// process of a known Go binary is probed from its first instruction
    /// (`crate::go::GO_FILES`). 0 in `mm_exe_file`: not read.
    pub mm_exe_file: u16,
    pub file_inode: u16,
    pub inode_ino: u16,
    pub inode_sb: u16,
    pub sb_dev: u16,
    pub _pad: u16,
}

/// Global holding [`ProcessConfig`].
pub const PROCESS_CONFIG: &str = "PROCESS_CONFIG";

const _: () = assert!(core::mem::size_of::<ExecEvent>() == 64);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 32);
const _: () = assert!(core::mem::size_of::<ProcessConfig>() == 28);

#[cfg(feature = "user")]
unsafe impl aya::Pod for ProcessConfig {}
