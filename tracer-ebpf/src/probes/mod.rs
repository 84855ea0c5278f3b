//! One module per hook family.

pub mod data;
pub mod exec;
pub mod go;
pub mod lifecycle;
pub mod tls;

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};

/// Read a tracepoint record field. Tracepoint records can be loaded directly
/// (no helper call); the agent checks the offsets used here against the
/// tracefs format files before loading.
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(off) as *const T) }
}

/// Offset of the return value in a syscalls:sys_exit_* record.
pub const SYSCALL_RET: usize = 16;
