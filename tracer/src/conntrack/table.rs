//! Connection table. Pure state machine: events in, connection records out,
//! so every transition is unit tested without a kernel. Bounded: a hard cap
//! on entries (new ones are refused and counted when full) and an idle expiry
//! for entries whose close was never seen.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    time::Duration,
};

use serde::Serialize;
use tracer_common::event::tcp_state;

use super::{
    l7::{L7, L7Change},
    listen::ListenLookup,
};
use crate::capture::event::{Accept, Comm, Data, Direction, Event, SockId, StateChange, TcpStats, Tls, Tuple};
use crate::protocols::{ConnHints, Exchange, ParserCounts, ProtocolConfig};

#[derive(Clone, Debug)]
pub struct TableConfig {
    /// Connections tracked at most.
    pub max_connections: usize,
    /// Entries with no event for this long are dropped (a close was lost).
    pub idle_timeout: Duration,
    /// How long a closed connection waits for reads of bytes that were still
    /// unread in the kernel when it closed (see `Closing`).
    pub close_linger: Duration,
    /// How long any other closed connection waits for the events of calls
    /// that raced with its close (a write returning while a reset closes the
    /// socket). Zero reports closes at once.
    pub close_race: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_connections: 65_536,
            idle_timeout: Duration::from_secs(300),
            close_linger: Duration::from_secs(1),
            close_race: Duration::from_millis(50),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// This end called connect().
    Client,
    /// This end was accepted from a listening socket.
    Server,
    /// Neither handshake nor a listening port tells.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Orderly close.
    Normal,
    /// Connection reset (RST received, or EPIPE).
    Reset,
    /// connect() got a RST: nothing listens on the port.
    Refused,
    /// Retransmissions or SYNs gave up.
    Timeout,
    /// No route / host unreachable.
    Unreachable,
    /// connect() abandoned before completing (socket closed while SYN_SENT).
    Aborted,
    /// Another socket error (see `sk_err`).
    Error,
}

impl CloseReason {
    fn from(old_state: u8, sk_err: i32) -> Self {
        match (old_state, sk_err) {
            (_, libc::ECONNREFUSED) => CloseReason::Refused,
            (_, libc::ETIMEDOUT) => CloseReason::Timeout,
            (_, libc::EHOSTUNREACH | libc::ENETUNREACH) => CloseReason::Unreachable,
            (_, libc::ECONNRESET | libc::EPIPE) => CloseReason::Reset,
            (tcp_state::SYN_SENT, 0) => CloseReason::Aborted,
            (_, 0) => CloseReason::Normal,
            _ => CloseReason::Error,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnEventKind {
    /// Established (client: handshake done; server: accepted), or first seen
    /// mid-stream.
    Open,
    Close,
    /// connect() did not establish.
    ConnectFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenFrom {
    /// From its handshake.
    Handshake,
    /// From a later byte: it was open before the agent started (or its
    /// handshake events were lost).
    MidStream,
}

#[derive(Debug)]
struct Conn {
    tuple: Tuple,
    role: Role,
    pid: Option<u32>,
    comm: Comm,
    start_ns: u64,
    last_ns: u64,
    tx_bytes: u64,
    rx_bytes: u64,
    tx_calls: u64,
    rx_calls: u64,
    seen_from: SeenFrom,
    open_emitted: bool,
    l7: L7,
    /// Set when the kernel closed the socket while the process had not read
    /// all it received (see `Closing`).
    closing: Option<Closing>,
    /// Goroutines of the recent segments, for Go processes only.
    goroutines: Option<Box<super::goroutines::Goroutines>>,
    /// TLS plaintext was seen: `l7` reads only plaintext from then on, and
    /// the byte counts stay those of the TCP stream (ciphertext).
    tls: bool,
    /// Plaintext offsets <-> ciphertext sequence numbers (TLS only).
    tls_seqs: Option<Box<super::tls_seq::TlsSeqs>>,
    /// A UDP flow (a DNS client socket): no connection records, expired
    /// after [`UDP_IDLE`] without datagrams.
    udp: bool,
}

/// How long a UDP flow lives without datagrams: resolvers wait 5 s for an
/// answer (glibc's default `timeout:5`), and a socket is used for one lookup.
pub const UDP_IDLE: Duration = Duration::from_secs(10);

/// A close the kernel reported before the process read everything: a client
/// that half-closed (`shutdown(SHUT_WR)`) goes FIN_WAIT2 -> TIME_WAIT, which
/// closes the socket (state CLOSE) the moment the server's FIN arrives, often
/// before the client has read the response queued in front of it. The
/// connection stays in the table until the process has read what the kernel
/// received (or `close_linger` passes), so those reads pair with their
/// requests instead of opening a phantom connection. The kernel has already
/// released the local port by then (its data events say port 0).
#[derive(Debug)]
struct Closing {
    ts_ns: u64,
    kind: ConnEventKind,
    reason: CloseReason,
    sk_err: i32,
    tcp: TcpStats,
    deadline_ns: u64,
    /// Waiting for unread bytes (reported once they are read), not only for
    /// racing events (reported at the deadline).
    until_read: bool,
}

/// One line of `--output json` for connections.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnRecord {
    pub event: ConnEventKind,
    /// Monotonic ns of the event.
    pub ts_ns: u64,
    pub pid: Option<u32>,
    pub comm: String,
    pub role: Role,
    pub local: String,
    pub remote: String,
    /// Monotonic ns of the first event of the connection.
    pub start_ns: u64,
    pub duration_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub calls_sent: u64,
    pub calls_received: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<CloseReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sk_err: Option<i32>,
    /// Kernel TCP counters at close (whole connection, including bytes moved
    /// by syscalls the probes do not hook, such as sendfile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpStats>,
    pub seen_from: SeenFrom,
    /// Application protocol detected on the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    /// Why protocol parsing stopped (upgrade, CONNECT tunnel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l7_stopped: Option<&'static str>,
    /// Its protocol was read from TLS plaintext (library uprobes).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

/// A request/response exchange with the connection it crossed.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// The request came in (this process is the server of the exchange).
    pub requests_inbound: bool,
    pub pid: Option<u32>,
    pub comm: String,
    pub role: Role,
    pub tuple: Tuple,
    /// The exchange crossed a UDP flow (else a TCP connection).
    pub udp: bool,
    /// Goroutine of the request's and the response's first byte (Go
    /// processes probed for it; 0 otherwise or unknown).
    pub request_goid: u64,
    pub response_goid: u64,
    pub exchange: Exchange,
}

/// Protocol-layer counters since the last `take_l7_counters`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L7Counters {
    /// Connections classified as a known protocol.
    pub detected: u64,
    /// Connections given up on (no known protocol in their first bytes).
    pub unknown: u64,
    /// What each protocol's parsers dropped (a handful of protocols: a
    /// short list beats a map).
    pub parsers: Vec<(&'static str, ParserCounts)>,
}

impl L7Counters {
    fn add(&mut self, l7: &mut L7) {
        let Some((name, counts)) = l7.take_counts() else { return };
        if counts == ParserCounts::default() {
            return;
        }
        match self.parsers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => c.add(counts),
            None => self.parsers.push((name, counts)),
        }
    }
}

impl Serialize for TcpStats {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("tcp", 4)?;
        st.serialize_field("srtt_us", &self.srtt_us)?;
        st.serialize_field("retransmits", &self.total_retrans)?;
        st.serialize_field("bytes_received", &self.bytes_received)?;
        st.serialize_field("bytes_acked", &self.bytes_acked)?;
        st.end()
    }
}

/// What the table could not do, for the caller to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Table full: the connection is not tracked.
    Full,
    /// Data on a socket the kernel already closed (its local port is gone)
    /// and whose connection was already reported closed.
    AfterClose,
}

/// Socket ids are kernel addresses, not keys a peer chooses: multiply and
/// fold instead of SipHash (which was ~5 % of the table's time).
#[derive(Default)]
struct SockHasher(u64);

impl Hasher for SockHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let h = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct Table<L> {
    conns: HashMap<SockId, Conn, BuildHasherDefault<SockHasher>>,
    cfg: TableConfig,
    listen: L,
    protocols: ProtocolConfig,
    calls: Vec<CallRecord>,
    exchanges: Vec<Exchange>,
    l7_counters: L7Counters,
    /// Sockets waiting in `Closing`: [racing events, unread bytes], each in
    /// deadline order (deadlines grow with event time).
    lingering: [VecDeque<(u64, SockId)>; 2],
    /// Sockets given up on, for the kernel's verdict map.
    count_only: Vec<SockId>,
    /// Sockets whose parser asks for wide captures, for the verdict map.
    wide: Vec<SockId>,
}

/// Sockets given up on held between two `take_count_only` at most.
const MAX_VERDICTS: usize = 4096;

impl<L: ListenLookup> Table<L> {
    pub fn new(cfg: TableConfig, listen: L) -> Self {
        Table {
            conns: HashMap::default(),
            cfg,
            listen,
            protocols: ProtocolConfig::default(),
            calls: Vec::new(),
            exchanges: Vec::new(),
            l7_counters: L7Counters::default(),
            lingering: [VecDeque::new(), VecDeque::new()],
            count_only: Vec::new(),
            wide: Vec::new(),
        }
    }

    pub fn with_protocols(mut self, protocols: ProtocolConfig) -> Self {
        self.protocols = protocols;
        self
    }

    /// Exchanges completed since the last call.
    pub fn take_calls(&mut self) -> std::vec::Drain<'_, CallRecord> {
        self.calls.drain(..)
    }

    pub fn take_l7_counters(&mut self) -> L7Counters {
        std::mem::take(&mut self.l7_counters)
    }

    fn push_calls(calls: &mut Vec<CallRecord>, c: &Conn, exchanges: &mut Vec<Exchange>) {
        for mut exchange in exchanges.drain(..) {
            if let Some(seqs) = &c.tls_seqs {
                let request_dir = usize::from(c.l7.request_dir() == Some(Direction::Ingress));
                seqs.restore(&mut exchange, request_dir);
            }
            calls.push(CallRecord {
                requests_inbound: c.l7.request_dir() == Some(Direction::Ingress),
                pid: c.pid,
                comm: c.comm.to_string(),
                role: c.role,
                tuple: c.tuple,
                udp: c.udp,
                request_goid: c.goroutines.as_ref().map_or(0, |g| g.of(&exchange.request)),
                response_goid: c.goroutines.as_ref().zip(exchange.response.as_ref()).map_or(0, |(g, r)| g.of(r)),
                exchange,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Apply one event; records it completes are pushed to `out`.
    pub fn apply(&mut self, ev: &Event, out: &mut Vec<ConnRecord>) -> Result<(), Refused> {
        self.flush_closed(ev.ts_ns(), out);
        match ev {
            Event::State(s) => self.on_state(s, out),
            Event::Accept(a) => self.on_accept(a, out),
            Event::Data(d) => self.on_data(d, out),
        }
    }

    /// Track `c` under `sk`. A closed connection still lingering there is
    /// reported first: the kernel reuses a socket's address only after the
    /// process let go of it.
    fn insert(&mut self, sk: SockId, c: Conn, out: &mut Vec<ConnRecord>) -> Result<&mut Conn, Refused> {
        if self.conns.get(&sk).is_some_and(|old| old.closing.is_some()) {
            self.finish_closed(sk, out);
        }
        if self.conns.len() >= self.cfg.max_connections && !self.conns.contains_key(&sk) {
            return Err(Refused::Full);
        }
        Ok(self.conns.entry(sk).insert_entry(c).into_mut())
    }

    /// Report lingering closes whose deadline passed by `now_ns`.
    pub fn flush_closed(&mut self, now_ns: u64, out: &mut Vec<ConnRecord>) {
        for q in 0..2 {
            while let Some(&(deadline, sk)) = self.lingering[q].front() {
                if deadline > now_ns {
                    break;
                }
                self.lingering[q].pop_front();
                // Already finished (all read, or its address reused) when the
                // entry is gone or lingers for a later close.
                if self.conns.get(&sk).and_then(|c| c.closing.as_ref()).is_some_and(|z| z.deadline_ns == deadline) {
                    self.finish_closed(sk, out);
                }
            }
        }
    }

    /// Remove a lingering connection and report its close.
    fn finish_closed(&mut self, sk: SockId, out: &mut Vec<ConnRecord>) {
        if let Some(mut c) = self.conns.remove(&sk)
            && let Some(z) = c.closing.take()
        {
            self.report_close(&mut c, z, out);
        }
    }

    fn report_close(&mut self, c: &mut Conn, z: Closing, out: &mut Vec<ConnRecord>) {
        c.l7.close(&mut self.exchanges);
        self.l7_counters.add(&mut c.l7);
        Self::push_calls(&mut self.calls, c, &mut self.exchanges);
        let mut r = record(c, z.kind, z.ts_ns, Some(z.reason));
        r.sk_err = (z.sk_err != 0).then_some(z.sk_err);
        r.tcp = Some(z.tcp);
        out.push(r);
    }

    fn new_conn(tuple: Tuple, role: Role, ts: u64, seen_from: SeenFrom) -> Conn {
        Conn {
            tuple,
            role,
            pid: None,
            comm: Comm::default(),
            start_ns: ts,
            last_ns: ts,
            tx_bytes: 0,
            rx_bytes: 0,
            tx_calls: 0,
            rx_calls: 0,
            seen_from,
            open_emitted: false,
            l7: L7::new(),
            closing: None,
            goroutines: None,
            tls: false,
            tls_seqs: None,
            udp: false,
        }
    }

    fn on_state(&mut self, s: &StateChange, out: &mut Vec<ConnRecord>) -> Result<(), Refused> {
        match (s.old_state, s.new_state) {
            (tcp_state::CLOSE, tcp_state::SYN_SENT) => {
                let mut c = Self::new_conn(s.tuple, Role::Client, s.ts_ns, SeenFrom::Handshake);
                if let Some(t) = s.task {
                    c.pid = Some(t.pid);
                    c.comm = t.comm;
                }
                self.insert(s.sk, c, out)?;
            }
            (tcp_state::SYN_SENT, tcp_state::ESTABLISHED) => {
                let c = match self.conns.get_mut(&s.sk) {
                    Some(c) if c.closing.is_none() => c,
                    _ => self.insert(s.sk, Self::new_conn(s.tuple, Role::Client, s.ts_ns, SeenFrom::Handshake), out)?,
                };
                c.tuple = s.tuple; // the local port is bound after SYN_SENT
                c.last_ns = s.ts_ns;
                c.open_emitted = true;
                out.push(record(c, ConnEventKind::Open, s.ts_ns, None));
            }
            (tcp_state::SYN_RECV, tcp_state::ESTABLISHED) => match self.conns.get_mut(&s.sk) {
                // Simultaneous open (a client that went SYN_SENT -> SYN_RECV)
                // or a TCP Fast Open server that read before ESTABLISHED:
                // the same connection, keep what is known.
                // Without a local port, only a connect() this table saw:
                // anything else at this address is a stale socket.
                Some(c)
                    if c.closing.is_none()
                        && (c.tuple == s.tuple
                            || c.tuple.local.port() == 0
                                && c.role == Role::Client
                                && c.seen_from == SeenFrom::Handshake) =>
                {
                    c.tuple = s.tuple;
                    c.last_ns = s.ts_ns;
                    if c.role == Role::Client && !c.open_emitted {
                        c.open_emitted = true;
                        out.push(record(c, ConnEventKind::Open, s.ts_ns, None));
                    }
                }
                _ => {
                    let c = Self::new_conn(s.tuple, Role::Server, s.ts_ns, SeenFrom::Handshake);
                    self.insert(s.sk, c, out)?;
                }
            },
            (old, tcp_state::CLOSE) => {
                let kind = if old == tcp_state::SYN_SENT { ConnEventKind::ConnectFailed } else { ConnEventKind::Close };
                let mut z = Closing {
                    ts_ns: s.ts_ns,
                    kind,
                    reason: CloseReason::from(old, s.sk_err),
                    sk_err: s.sk_err,
                    tcp: s.tcp,
                    deadline_ns: 0,
                    until_read: false,
                };
                if self.conns.get(&s.sk).is_some_and(|c| c.closing.is_some()) {
                    // A second close of one socket: the first is over.
                    self.finish_closed(s.sk, out);
                }
                let Some(mut c) = self.conns.remove(&s.sk) else {
                    // Never seen: nothing can follow it.
                    let mut c = Self::new_conn(s.tuple, Role::Unknown, s.ts_ns, SeenFrom::MidStream);
                    self.report_close(&mut c, z, out);
                    return Ok(());
                };
                if c.tuple.local.port() == 0 {
                    c.tuple = s.tuple;
                }
                c.last_ns = s.ts_ns;
                z.until_read = c.unread(&s.tcp);
                let wait = if z.until_read { self.cfg.close_linger } else { self.cfg.close_race };
                if kind == ConnEventKind::Close && !wait.is_zero() {
                    z.deadline_ns = s.ts_ns.saturating_add(wait.as_nanos() as u64);
                    // Deadlines grow with event time: each queue stays ordered.
                    let q = &mut self.lingering[usize::from(z.until_read)];
                    if let Some(&(last, _)) = q.back() {
                        z.deadline_ns = z.deadline_ns.max(last);
                    }
                    q.push_back((z.deadline_ns, s.sk));
                    c.closing = Some(z);
                    self.conns.insert(s.sk, c);
                } else {
                    self.report_close(&mut c, z, out);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_accept(&mut self, a: &Accept, out: &mut Vec<ConnRecord>) -> Result<(), Refused> {
        let Some(c) = self.conns.get_mut(&a.sk) else {
            // Its ESTABLISHED event was lost or the table was full; the first
            // data event will pick it up with its tuple.
            return Ok(());
        };
        c.pid = Some(a.task.pid);
        c.comm = a.task.comm;
        c.last_ns = a.ts_ns;
        if !c.open_emitted {
            c.open_emitted = true;
            out.push(record(c, ConnEventKind::Open, a.ts_ns, None));
        }
        Ok(())
    }

    fn on_data(&mut self, d: &Data, out: &mut Vec<ConnRecord>) -> Result<(), Refused> {
        let known = self.conns.get(&d.sk).map(|c| match c.closing {
            // The kernel released the local port at close: the rest must match.
            Some(_) => c.tuple == d.tuple || (d.tuple.local.port() == 0 && c.tuple.remote == d.tuple.remote),
            None => c.tuple == d.tuple || c.tuple.local.port() == 0,
        });
        if known == Some(false) {
            // The socket address was reused but this table missed the close.
            if self.conns.get(&d.sk).is_some_and(|c| c.closing.is_some()) {
                self.finish_closed(d.sk, out);
            } else if let Some(mut old) = self.conns.remove(&d.sk)
                && old.udp
            {
                // A UDP socket closed (no event says so) and its address
                // was reused: its unanswered queries end here.
                self.close_flow(&mut old);
            }
        }
        if known != Some(true) {
            if d.tuple.local.port() == 0 {
                // A read of what a closed socket still held, after its
                // connection was reported: never a new (phantom) connection.
                return Err(Refused::AfterClose);
            }
            if self.conns.len() >= self.cfg.max_connections {
                return Err(Refused::Full);
            }
            // A UDP flow is only captured towards port 53: the client's.
            let role = if d.udp || !self.listen.is_listening(d.task.pid, d.tuple.local.port()) {
                Role::Client
            } else {
                Role::Server
            };
            let mut c = Self::new_conn(d.tuple, role, d.ts_ns, SeenFrom::MidStream);
            // A datagram flow is not a connection: no open/close records.
            c.udp = d.udp;
            c.open_emitted = d.udp;
            self.insert(d.sk, c, out)?;
        }
        let c = self.conns.get_mut(&d.sk).expect("inserted above");
        if d.tuple.local.port() != 0 {
            c.tuple = d.tuple;
        }
        if c.pid != Some(d.task.pid) && c.pid.is_none() {
            c.pid = Some(d.task.pid);
            c.comm = d.task.comm;
        }
        c.last_ns = d.ts_ns;
        if d.tls == Tls::Plain && !c.tls {
            // What the parser saw so far was the handshake's ciphertext,
            // unless the protocol negotiated TLS itself and goes on.
            c.tls = true;
            if !c.l7.tls_started() {
                c.l7 = L7::new();
            }
        }
        match d.direction {
            // Plaintext is not TCP bytes: its ciphertext was counted.
            _ if d.tls == Tls::Plain => {}
            Direction::Egress => {
                c.tx_bytes += u64::from(d.bytes);
                c.tx_calls += 1;
            }
            Direction::Ingress => {
                c.rx_bytes += u64::from(d.bytes);
                c.rx_calls += 1;
            }
        }
        if !c.open_emitted {
            c.open_emitted = true;
            out.push(record(c, ConnEventKind::Open, d.ts_ns, None));
        }
        let server_port = match c.role {
            Role::Client => Some(c.tuple.remote.port()),
            Role::Server => Some(c.tuple.local.port()),
            Role::Unknown => None,
        };
        if d.goid != 0 {
            c.goroutines.get_or_insert_default().record(d.ts_ns, d.goid);
        }
        // On TLS the parser reads plaintext only, and is never told it saw
        // the start (the library may have been probed after the handshake).
        let hints =
            ConnHints { from_start: c.seen_from == SeenFrom::Handshake && !c.tls, server_port, tls: c.tls, udp: c.udp };
        let change = match (c.tls, d.tls) {
            (true, Tls::No | Tls::Cipher) => L7Change::None,
            (true, Tls::Plain) => {
                let seqs = c.tls_seqs.get_or_insert_default();
                let dir = usize::from(d.direction == Direction::Ingress);
                let plain = Data { seq: Some(seqs.plaintext(dir, d.bytes, d.seq)), ..d.clone() };
                c.l7.on_data(&plain, &self.protocols, hints, &mut self.exchanges)
            }
            _ => c.l7.on_data(d, &self.protocols, hints, &mut self.exchanges),
        };
        match change {
            L7Change::Detected(_) => {
                self.l7_counters.detected += 1;
                if c.l7.wide_capture() && self.wide.len() < MAX_VERDICTS {
                    self.wide.push(d.sk);
                }
            }
            L7Change::GaveUp => {
                self.l7_counters.unknown += 1;
                // No parser reads it: the kernel need not copy its bytes.
                if self.count_only.len() < MAX_VERDICTS {
                    self.count_only.push(d.sk);
                }
            }
            L7Change::None => {}
        }
        self.l7_counters.add(&mut c.l7);
        Self::push_calls(&mut self.calls, c, &mut self.exchanges);
        // Everything the kernel received has been read: the close is over.
        if let Some(z) = &c.closing
            && z.until_read
            && !c.unread(&z.tcp)
        {
            self.finish_closed(d.sk, out);
        }
        Ok(())
    }

    /// Sockets found not to speak a known protocol since the last call: the
    /// kernel may ship their syscalls without payload.
    pub fn take_count_only(&mut self) -> std::vec::Drain<'_, SockId> {
        self.count_only.drain(..)
    }

    /// Sockets whose parser asked for wide captures since the last call.
    pub fn take_wide(&mut self) -> std::vec::Drain<'_, SockId> {
        self.wide.drain(..)
    }

    /// Drop entries idle longer than the timeout; returns how many
    /// connections (UDP flows idle past [`UDP_IDLE`] end as their sockets
    /// did, unseen: their unanswered queries become calls, not evictions).
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let timeout = self.cfg.idle_timeout.as_nanos() as u64;
        let udp_idle = UDP_IDLE.as_nanos() as u64;
        let before = self.conns.len();
        let mut ended = Vec::new();
        self.conns.retain(|sk, c| {
            let idle = now_ns.saturating_sub(c.last_ns);
            if c.udp && idle >= udp_idle.min(timeout) {
                ended.push(*sk);
                return true;
            }
            idle < timeout
        });
        let evicted = before - self.conns.len();
        for sk in ended {
            if let Some(mut c) = self.conns.remove(&sk) {
                self.close_flow(&mut c);
            }
        }
        evicted
    }

    /// A UDP flow ends: its parser's pending queries become calls.
    fn close_flow(&mut self, c: &mut Conn) {
        c.l7.close(&mut self.exchanges);
        self.l7_counters.add(&mut c.l7);
        Self::push_calls(&mut self.calls, c, &mut self.exchanges);
    }
}

impl Conn {
    /// The kernel received bytes this process has not read yet (seen at
    /// close). The kernel counts a received FIN as one byte; a connection
    /// seen mid-stream has unknown earlier reads, so it never waits.
    fn unread(&self, tcp: &TcpStats) -> bool {
        self.seen_from == SeenFrom::Handshake && tcp.bytes_received > self.rx_bytes + 1
    }
}

fn record(c: &Conn, event: ConnEventKind, ts_ns: u64, reason: Option<CloseReason>) -> ConnRecord {
    ConnRecord {
        event,
        ts_ns,
        pid: c.pid,
        comm: c.comm.to_string(),
        role: c.role,
        local: c.tuple.local.to_string(),
        remote: c.tuple.remote.to_string(),
        start_ns: c.start_ns,
        duration_ns: ts_ns.saturating_sub(c.start_ns),
        bytes_sent: c.tx_bytes,
        bytes_received: c.rx_bytes,
        calls_sent: c.tx_calls,
        calls_received: c.rx_calls,
        close_reason: reason,
        sk_err: None,
        tcp: None,
        seen_from: c.seen_from,
        protocol: c.l7.protocol(),
        l7_stopped: c.l7.stopped(),
        tls: c.tls,
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "table_udp_tests.rs"]
mod udp_tests;
