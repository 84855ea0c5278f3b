//! Go goroutine identity, user -> kernel: which processes are Go and where
//! their goroutine id lives, and the maps the net/http uprobes keep of
//! hand-offs between goroutines (tracer-ebpf `probes::go`).

/// Hash map pid -> [`GoProc`], written by the agent for every Go process it
/// probes; the data probe reads goroutine ids only for these pids.
pub const GO_PROCS: &str = "GO_PROCS";
/// LRU map [`GoKey`] (pid, object pointer) -> goroutine id: who handed an
/// object (a *http.Request to the writeLoop, a *connReader to the
/// background read goroutine) to another goroutine.
pub const GO_OWNERS: &str = "GO_OWNERS";
/// LRU map [`GoKey`] (pid, goroutine id) -> goroutine id: the goroutine a
/// helper goroutine is working for (the last hand-off it took).
pub const GO_ACTING: &str = "GO_ACTING";

pub const GO_PROCS_MAX: u32 = 4096;
pub const GO_OWNERS_MAX: u32 = 65536;
pub const GO_ACTING_MAX: u32 = 65536;

/// Where a Go process keeps what the probes read (offsets from the binary's
/// DWARF, or the table of its Go version).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoProc {
    /// runtime.g.goid.
    pub goid_offset: u32,
    /// The running g's pointer relative to the thread's TLS base
    /// (linux/amd64: -8).
    pub g_tls_offset: i32,
    /// net/http.transportRequest.Request (the embedded *Request).
    pub treq_request_offset: u32,
    pub _pad: u32,
}

/// A key of [`GO_OWNERS`] and [`GO_ACTING`]: pointers and goroutine ids are
/// per process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoKey {
    pub pid: u32,
    pub _pad: u32,
    pub value: u64,
}

const _: () = assert!(core::mem::size_of::<GoProc>() == 16);
const _: () = assert!(core::mem::size_of::<GoKey>() == 16);

#[cfg(feature = "user")]
unsafe impl aya::Pod for GoProc {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for GoKey {}
