//! Ring-buffer records, kernel -> user. Every record starts with
//! [`EventHeader`]; `kind` says which struct follows, `len` is the record's
//! full length (a data event's payload follows its fixed part).

/// Bumped whenever a record's layout changes.
pub const EVENT_VERSION: u16 = 2;

#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A TCP state change ([`ConnEvent`]).
    Conn = 1,
    /// Bytes moved by a read/write-family syscall on a TCP socket ([`DataEvent`]).
    Data = 2,
    /// accept()/accept4() returned a TCP socket ([`AcceptEvent`]).
    Accept = 3,
    /// A program started ([`crate::process::ExecEvent`]).
    Exec = 4,
    /// A process forked ([`crate::process::ForkEvent`]).
    Fork = 5,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    pub kind: u16,
    pub version: u16,
    /// Bytes of the whole record, header included.
    pub len: u32,
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub ts_ns: u64,
}

/// The thread the kernel was running for when the event fired.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Task {
    /// Thread group id (what userspace calls the pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub comm: [u8; 16],
}

/// Local and remote endpoint of a socket. IPv4 addresses use the first 4
/// bytes of the address arrays; ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockTuple {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    pub _pad: u16,
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
}

/// sock:inet_sock_set_state on a TCP socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnEvent {
    pub header: EventHeader,
    /// Kernel address of the struct sock: the connection's identity while it lives.
    pub sk: u64,
    pub tuple: SockTuple,
    /// Meaningful only when `in_task` is 1 (state changes in softirq run on
    /// behalf of whatever thread was interrupted).
    pub task: Task,
    pub old_state: u8,
    pub new_state: u8,
    /// 1 when the event fired in process context (not softirq/hardirq).
    pub in_task: u8,
    pub _pad: u8,
    /// sock.sk_err: why a socket closed (ECONNREFUSED, ECONNRESET, ETIMEDOUT...).
    pub sk_err: i32,
    pub srtt_us: u32,
    pub total_retrans: u32,
    pub bytes_received: u64,
    pub bytes_acked: u64,
}

/// Which syscall moved the bytes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Read = 0,
    Write = 1,
    Readv = 2,
    Writev = 3,
    Recvfrom = 4,
    Sendto = 5,
    Recvmsg = 6,
    Sendmsg = 7,
    /// A socket transfer not made by a hooked syscall (sendfile, splice,
    /// io_uring, or a read/write that began before the agent attached): bytes
    /// and sequence number only, no payload.
    Other = 8,
    /// Plaintext a TLS library (OpenSSL's SSL_read / SSL_read_ex) returned.
    SslRead = 9,
    /// Plaintext a TLS library (SSL_write / SSL_write_ex) accepted.
    SslWrite = 10,
    /// One message of a sendmmsg vector (the socket layer fires once per message).
    Sendmmsg = 11,
}

impl Syscall {
    pub const fn is_send(self) -> bool {
        matches!(
            self,
            Syscall::Write
                | Syscall::Writev
                | Syscall::Sendto
                | Syscall::Sendmsg
                | Syscall::SslWrite
                | Syscall::Sendmmsg
        )
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Syscall::Read,
            1 => Syscall::Write,
            2 => Syscall::Readv,
            3 => Syscall::Writev,
            4 => Syscall::Recvfrom,
            5 => Syscall::Sendto,
            6 => Syscall::Recvmsg,
            7 => Syscall::Sendmsg,
            8 => Syscall::Other,
            9 => Syscall::SslRead,
            10 => Syscall::SslWrite,
            11 => Syscall::Sendmmsg,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Syscall::Read => "read",
            Syscall::Write => "write",
            Syscall::Readv => "readv",
            Syscall::Writev => "writev",
            Syscall::Recvfrom => "recvfrom",
            Syscall::Sendto => "sendto",
            Syscall::Recvmsg => "recvmsg",
            Syscall::Sendmsg => "sendmsg",
            Syscall::Other => "other",
            Syscall::SslRead => "ssl_read",
            Syscall::SslWrite => "ssl_write",
            Syscall::Sendmmsg => "sendmmsg",
        }
    }
}

/// [`DataEvent::flags`]: the sequence number was read from the tcp_sock.
pub const DATA_SEQ_VALID: u8 = 1;
/// [`DataEvent::flags`]: part of the payload could not be copied.
pub const DATA_PAYLOAD_PARTIAL: u8 = 2;
/// [`DataEvent::flags`]: the process sent the bytes (else it received them).
pub const DATA_EGRESS: u8 = 4;
/// [`DataEvent::flags`]: TLS plaintext from a library uprobe (syscall
/// `SslRead`/`SslWrite`); `seq` (when valid) is the TCP sequence number of
/// the first ciphertext byte the call moved, a key for linking the two ends,
/// not a position in the plaintext.
pub const DATA_TLS_PLAIN: u8 = 8;
/// [`DataEvent::flags`]: ciphertext moved inside a TLS library call: bytes
/// and sequence number only, no payload (the plaintext event carries it).
pub const DATA_TLS_CIPHER: u8 = 16;
/// [`DataEvent::flags`]: a UDP datagram (DNS: remote port 53) rather than
/// TCP stream bytes; `seq` is not valid.
pub const DATA_UDP: u8 = 32;

/// A read/write-family syscall that moved bytes on a TCP socket (or a UDP
/// datagram to or from port 53, [`DATA_UDP`]). The first
/// `payload_len` bytes of the data follow this struct in the record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DataEvent {
    pub header: EventHeader,
    pub sk: u64,
    pub tuple: SockTuple,
    pub task: Task,
    pub fd: i32,
    /// Bytes the syscall moved (its return value).
    pub bytes: u32,
    /// TCP sequence number of the first byte moved (see DATA_SEQ_VALID).
    pub seq: u32,
    /// Smoothed RTT of the connection, microseconds << 3 as the kernel keeps it.
    pub srtt_us: u32,
    /// A [`Syscall`] value.
    pub syscall: u8,
    pub flags: u8,
    pub _pad: u16,
    /// Payload bytes following this struct (<= capture size, <= bytes).
    pub payload_len: u32,
    /// In a Go process (`crate::go`): the goroutine the bytes belong to, the
    /// running one or the one that handed it the work (net/http's writeLoop
    /// writes for the caller of RoundTrip). 0: not Go, or not read.
    pub goid: u64,
}

/// accept()/accept4() returned a TCP socket: who accepted it, on which fd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptEvent {
    pub header: EventHeader,
    pub sk: u64,
    pub task: Task,
    pub fd: i32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<AcceptEvent>() == 56);
const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);
const _: () = assert!(core::mem::size_of::<Task>() == 24);
const _: () = assert!(core::mem::size_of::<SockTuple>() == 40);
const _: () = assert!(core::mem::size_of::<ConnEvent>() == 120);
const _: () = assert!(core::mem::size_of::<DataEvent>() == 120);
