//! TLS plaintext, kernel side state: the library call a thread is in and
//! the socket each SSL object was seen on (tracer-ebpf `probes::tls`).

/// LRU map pid_tgid -> [`TlsCall`]: the TLS read/write call a thread is
/// inside (set at the function's entry, taken at its return). LRU: a thread
/// that dies inside a call leaves its entry behind.
pub const TLS_CALLS: &str = "TLS_CALLS";
/// LRU map [`TlsKey`] (pid, SSL*) -> struct sock: the socket an SSL object
/// moved ciphertext on, for calls served from OpenSSL's buffer (no syscall).
pub const TLS_SOCKS: &str = "TLS_SOCKS";

pub const TLS_CALLS_MAX: u32 = 16384;
pub const TLS_SOCKS_MAX: u32 = 65536;

/// [`TlsCall::op`] values.
pub const TLS_OP_READ: u32 = 0;
pub const TLS_OP_WRITE: u32 = 1;
/// A handshake (Go's `handshakeContext`): no plaintext, but the socket its
/// syscalls use is the connection's, for a first Read served from what the
/// handshake's last read already took in.
pub const TLS_OP_HANDSHAKE: u32 = 2;

/// [`TlsCall::flags`]: `seq` was set by a syscall inside the call.
pub const TLS_CALL_SEQ: u32 = 1;
/// [`TlsCall::flags`]: report the plaintext at the call's first ciphertext
/// send, not at its return (Go: a net/http client's writeLoop returns from
/// Write after its readLoop may have read the answer).
pub const TLS_CALL_EMIT_AT_SEND: u32 = 2;
/// [`TlsCall::flags`]: the plaintext was reported.
pub const TLS_CALL_EMITTED: u32 = 4;

/// One TLS library call in flight on a thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsCall {
    /// The SSL object (first argument).
    pub ssl: u64,
    /// The plaintext buffer.
    pub buf: u64,
    /// `size_t *` out-parameter of SSL_read_ex / SSL_write_ex (bytes moved);
    /// 0 for SSL_read / SSL_write, which return the count.
    pub len_ptr: u64,
    /// Bytes asked to write (Go's Write writes all of them or fails).
    pub num: u64,
    /// The socket the call moved ciphertext on (0: none yet).
    pub sk: u64,
    /// TCP sequence number of the first ciphertext byte moved in the call.
    pub seq: u32,
    /// TLS_CALL_* bits.
    pub flags: u32,
    pub fd: i32,
    /// TLS_OP_READ or TLS_OP_WRITE.
    pub op: u32,
}

/// A key of [`TLS_SOCKS`]: SSL pointers are per process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsKey {
    pub pid: u32,
    pub _pad: u32,
    pub ssl: u64,
}

const _: () = assert!(core::mem::size_of::<TlsCall>() == 56);
const _: () = assert!(core::mem::size_of::<TlsKey>() == 16);

#[cfg(feature = "user")]
unsafe impl aya::Pod for TlsCall {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for TlsKey {}
