//! Connection events -> TCP figures on the same edges as the spans. In:
//! connection records (open, close, connect_failed) with the service of
//! their process. Out: `TcpEvent`s on graph edges.
//!
//! Which edge: a client-end record goes to (its service -> the server end),
//! the server end named as the spans named it: the name the client's own
//! CLIENT spans gave that remote address (its peer service, or its virtual
//! `server.address:server.port`), else the service seen listening on that
//! address on this node, else the virtual node `address:port` of the socket
//! (a refused connect, with no span at all, lands there). A server-end
//! record counts only when its client end is not traced on this node (no
//! client record of the mirrored connection), on (client address -> its
//! service), so a connection between two traced processes is counted once,
//! from the client's end. Records of unknown role or unknown process are
//! skipped, and so are records that cannot be a client end (see `role_of`).
//!
//! Records wait `conn_delay` before they are placed: spans are held by the
//! chain linker for `hold_ms` after they end, so without the delay the first
//! connection to a server would be placed before any span named it.

use foldhash::{HashMap, HashMapExt};
use std::{collections::VecDeque, hash::Hash, net::SocketAddr, sync::Arc};

use super::graph::{End, Graph, NodeKind, TcpEvent};
use crate::{
    conntrack::{ConnRecord, Role, table::ConnEventKind},
    identity::Service,
};

/// What the topology keeps of a connection record.
#[derive(Clone, Debug)]
pub struct ConnFacts {
    pub event: ConnEventKind,
    pub role: Role,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub service: Arc<Service>,
    pub event_detail: TcpEvent,
}

impl ConnFacts {
    /// None for records the topology cannot place (unknown role or process).
    pub fn of(c: &ConnRecord, service: Option<&Arc<Service>>) -> Option<ConnFacts> {
        if c.role == Role::Unknown {
            return None;
        }
        let tcp = c.tcp.unwrap_or_default();
        let event_detail = match c.event {
            ConnEventKind::Open => TcpEvent::Opened,
            ConnEventKind::ConnectFailed => {
                TcpEvent::ConnectFailed { reason: c.close_reason, retransmits: tcp.total_retrans }
            }
            ConnEventKind::Close => {
                TcpEvent::Closed { reason: c.close_reason, retransmits: tcp.total_retrans, srtt_us: tcp.srtt_us }
            }
        };
        Some(ConnFacts {
            event: c.event,
            role: c.role,
            local: c.local.parse().ok()?,
            remote: c.remote.parse().ok()?,
            service: service?.clone(),
            event_detail,
        })
    }
}

/// How long a closed client connection is remembered, so the server end's
/// records of it (which may come a little later) are recognised.
const LINGER_NS: u64 = 30 * 1_000_000_000;
/// (client service, the server end its CLIENT spans named) for one address.
type Named = (Arc<str>, Arc<str>, NodeKind);

/// Client services remembered per server address.
const NAMES_PER_ADDR: usize = 16;

pub struct Conns {
    delay_ns: u64,
    max_queued: usize,
    queue: VecDeque<(u64, ConnFacts)>,
    /// Server address -> (client service, the server end its spans named).
    servers: BoundedMap<SocketAddr, Vec<Named>>,
    /// Address a traced service was seen serving on -> that service.
    listeners: BoundedMap<SocketAddr, Arc<str>>,
    /// Client-end connections seen, (local, remote) -> forget after (ns).
    clients: HashMap<(SocketAddr, SocketAddr), u64>,
    max_clients: usize,
}

impl Conns {
    pub fn new(delay_ns: u64, max_queued: usize, max_addrs: usize, max_clients: usize) -> Conns {
        Conns {
            delay_ns,
            max_queued: max_queued.max(1),
            queue: VecDeque::new(),
            servers: BoundedMap::new(max_addrs),
            listeners: BoundedMap::new(max_addrs),
            clients: HashMap::new(),
            max_clients: max_clients.max(1),
        }
    }

    /// A CLIENT span of `client` to `remote` named the server end `server`.
    pub fn learn_server(&mut self, client: &str, remote: SocketAddr, server: End) {
        let v = self.servers.get_or_insert_with(remote, Vec::new);
        if let Some(e) = v.iter_mut().find(|e| &*e.0 == client) {
            if &*e.1 != server.name || e.2 != server.kind {
                (e.1, e.2) = (Arc::from(server.name), server.kind);
            }
            return;
        }
        if v.len() >= NAMES_PER_ADDR {
            v.remove(0);
        }
        v.push((Arc::from(client), Arc::from(server.name), server.kind));
    }

    /// `service` serves on `local` (a SERVER span or a server-end record).
    pub fn learn_listener(&mut self, local: SocketAddr, service: &str) {
        let v = self.listeners.get_or_insert_with(local, || Arc::from(service));
        if &**v != service {
            *v = Arc::from(service);
        }
    }

    /// Queue a record; past the queue cap the oldest is placed at once.
    pub fn push(&mut self, now_ns: u64, c: ConnFacts, graph: &mut Graph) {
        self.queue.push_back((now_ns.saturating_add(self.delay_ns), c));
        while self.queue.len() > self.max_queued {
            let (_, c) = self.queue.pop_front().expect("non-empty");
            self.place(now_ns, c, graph);
        }
    }

    /// Place the records whose delay is over, and forget client
    /// connections closed long enough ago.
    pub fn release_due(&mut self, now_ns: u64, graph: &mut Graph) {
        self.release(now_ns, now_ns, graph);
        self.clients.retain(|_, forget| *forget > now_ns);
    }

    /// Place every queued record now (shutdown).
    pub fn flush(&mut self, now_ns: u64, graph: &mut Graph) {
        self.release(u64::MAX, now_ns, graph);
    }

    fn release(&mut self, until_ns: u64, now_ns: u64, graph: &mut Graph) {
        while self.queue.front().is_some_and(|(due, _)| *due <= until_ns) {
            let (_, c) = self.queue.pop_front().expect("non-empty");
            self.place(now_ns, c, graph);
        }
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn place(&mut self, now_ns: u64, c: ConnFacts, graph: &mut Graph) {
        let svc = c.service.name.as_str();
        match self.role_of(&c) {
            Role::Client => {
                let tuple = (c.local, c.remote);
                match c.event {
                    ConnEventKind::Open => {
                        if self.clients.len() < self.max_clients {
                            self.clients.insert(tuple, u64::MAX);
                        }
                    }
                    ConnEventKind::Close | ConnEventKind::ConnectFailed => {
                        if let Some(forget) = self.clients.get_mut(&tuple) {
                            *forget = now_ns.saturating_add(LINGER_NS);
                        }
                    }
                }
                let (name, kind) = self.server_of(svc, c.remote);
                graph.tcp(now_ns, End::service(svc), End { name: &name, kind }, c.event_detail);
            }
            Role::Server => {
                self.learn_listener(c.local, svc);
                if self.clients.contains_key(&(c.remote, c.local)) {
                    return; // counted from the client's end
                }
                let client = c.remote.ip().to_string();
                graph.tcp(now_ns, End::virtual_node(&client), End::service(svc), c.event_detail);
            }
            Role::Unknown => {}
        }
    }

    /// The role a record is placed by. Conntrack can hand over a server end
    /// marked client: a send that returns after the socket closed (the
    /// peer's RST won the race) arrives with local port 0 and makes a new
    /// mid-stream entry of role client, and a socket the kernel reuses at
    /// that address for the next accepted connection takes that entry over
    /// (its port-0 rule is meant for a connect in progress). Placed as they
    /// are, both make a virtual node of the client's ephemeral port. So: an
    /// open or close at local port 0 is not placed (that socket is gone; a
    /// refused connect, which has port 0 too, still is), a client end whose
    /// local address this service is known to serve on is the server end,
    /// and one whose local address another service serves on is not placed.
    fn role_of(&self, c: &ConnFacts) -> Role {
        if c.role != Role::Client {
            return c.role;
        }
        if c.local.port() == 0 && c.event != ConnEventKind::ConnectFailed {
            return Role::Unknown;
        }
        match self.listeners.get(&c.local) {
            Some(s) if **s == *c.service.name => Role::Server,
            // Another service serves there: the entry was taken over from
            // another process's socket, its facts are not this connection's.
            Some(_) => Role::Unknown,
            None => Role::Client,
        }
    }

    /// The server end a client-end connection of `client` to `remote` is on.
    fn server_of(&self, client: &str, remote: SocketAddr) -> (Arc<str>, NodeKind) {
        if let Some(e) = self.servers.get(&remote).and_then(|v| v.iter().find(|e| &*e.0 == client)) {
            return (e.1.clone(), e.2);
        }
        if let Some(s) = self.listeners.get(&remote) {
            return (s.clone(), NodeKind::Service);
        }
        (Arc::from(remote.to_string()), NodeKind::Virtual)
    }
}

/// A map that forgets its oldest key past `max` entries.
struct BoundedMap<K, V> {
    max: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Copy, V> BoundedMap<K, V> {
    fn new(max: usize) -> Self {
        BoundedMap { max: max.max(1), map: HashMap::new(), order: VecDeque::new() }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn get_or_insert_with(&mut self, k: K, f: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&k) {
            while self.map.len() >= self.max {
                let Some(old) = self.order.pop_front() else { break };
                self.map.remove(&old);
            }
            self.order.push_back(k);
        }
        self.map.entry(k).or_insert_with(f)
    }
}
