//! Kernel programs of the tracer. Only hooks that load on kernels without
//! kprobes or fentry: syscall tracepoints, the sock/tcp tracepoints, and
//! entry uprobes on Go binaries (`[runtimes] go`).
//!
//! - `probes::lifecycle`: sock:inet_sock_set_state -> [`ConnEvent`]
//! - `probes::data`: read/write-family syscalls + sock:sock_{send,recv}_length
//!   -> [`DataEvent`] with the first bytes of the payload
//! - `probes::exec`: sched:sched_process_exec, sched_process_fork -> exec and
//!   fork records for service identity (tracer_common::process)
//! - `probes::go`: goroutine ids of Go processes' data events, and entry
//!   uprobes on net/http's hand-offs between goroutines
//! - `probes::tls`: uprobes and uretprobes on OpenSSL's SSL_read/SSL_write
//!   family -> TLS plaintext as data events of the call's socket
//!
//! [`ConnEvent`]: tracer_common::event::ConnEvent
//! [`DataEvent`]: tracer_common::event::DataEvent
#![no_std]
#![no_main]

mod config;
mod maps;
mod probes;
mod sock;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path; this is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
