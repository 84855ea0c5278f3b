//! Go goroutine identity, user -> kernel: which processes are Go and where
//! their goroutine id lives, and the maps the net/http uprobes keep of the
//! client's hand-off to its connection's writeLoop (tracer-ebpf
//! `probes::go`).

/// Hash map pid -> [`GoProc`], written by the agent for every Go process it
/// probes; the data probe reads goroutine ids only for these pids.
pub const GO_PROCS: &str = "GO_PROCS";
/// LRU map [`GoKey`] (pid, goroutine id) -> *persistConn: the goroutines
/// that are a net/http client connection's writeLoop (set once per
/// connection, when its writeLoop starts).
pub const GO_WRITERS: &str = "GO_WRITERS";
/// LRU map [`GoKey`] (pid, *persistConn) -> goroutine id: the goroutine whose
/// request the connection carries now (set by each RoundTrip on it).
pub const GO_CALLERS: &str = "GO_CALLERS";

/// Hash map [`GoFile`] -> [`GoProc`], written by the agent for every Go
/// executable it has read: the exec probe puts a new process of one of
/// them into `GO_PROCS` at once (a short-lived Go client would finish
/// before the agent's watcher saw its exec record), and takes any other
/// exec'd pid out.
pub const GO_FILES: &str = "GO_FILES";

pub const GO_PROCS_MAX: u32 = 4096;
pub const GO_FILES_MAX: u32 = 1024;

/// An executable by the kernel's identity of its file: `s_dev` of its
/// filesystem (MAJOR << 20 | MINOR) and its inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoFile {
    pub dev: u64,
    pub ino: u64,
}
pub const GO_WRITERS_MAX: u32 = 65536;
pub const GO_CALLERS_MAX: u32 = 65536;

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
    pub _pad: [u32; 2],
}

/// A key of [`GO_WRITERS`] and [`GO_CALLERS`]: pointers and goroutine ids
/// are per process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoKey {
    pub pid: u32,
    pub _pad: u32,
    pub value: u64,
}

const _: () = assert!(core::mem::size_of::<GoProc>() == 16);
const _: () = assert!(core::mem::size_of::<GoKey>() == 16);
const _: () = assert!(core::mem::size_of::<GoFile>() == 16);

#[cfg(feature = "user")]
unsafe impl aya::Pod for GoProc {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for GoKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for GoFile {}
