//! Pairing of the two spans of one request when both ends were traced on
//! this node (the linker set `peer_service` on both): the CLIENT and the
//! SERVER span wait here for each other, keyed by the request's
//! (server address, client address, TCP sequence number), which both ends
//! see. In: halves. Out: complete pairs, and halves alone whose partner did
//! not come within the timeout (or were pushed out by the cap).
//!
//! Both spans are released by the chain linker `hold_ms` after they end,
//! within a few ms of each other, so a timeout of a few seconds loses
//! nothing but spans that were dropped upstream.

use foldhash::{HashMap, HashMapExt};
use std::{collections::VecDeque, sync::Arc};

use crate::{chain::link::PeerKey, identity::Service, span::SpanKind};

/// One side of a request.
#[derive(Clone, Debug)]
pub struct Half {
    /// The service of the span's process.
    pub service: Arc<Service>,
    /// The service at the other end (the span's `peer_service`).
    pub peer: Arc<Service>,
    pub duration_ns: u64,
    pub error: bool,
}

/// What the store hands back.
#[derive(Debug)]
pub enum Done {
    Pair {
        client: Half,
        server: Half,
    },
    /// A half alone, with its kind.
    Alone(SpanKind, Half),
}

struct Pending {
    client: Option<Half>,
    server: Option<Half>,
    deadline_ns: u64,
}

pub struct Pairs {
    timeout_ns: u64,
    max: usize,
    map: HashMap<PeerKey, Pending>,
    /// (deadline, key) in insertion order; entries whose key was completed
    /// (or re-inserted with another deadline) are skipped when popped.
    order: VecDeque<(u64, PeerKey)>,
}

impl Pairs {
    pub fn new(timeout_ns: u64, max: usize) -> Pairs {
        Pairs { timeout_ns, max: max.max(1), map: HashMap::new(), order: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Offer one half; a completed pair, or halves pushed out by the cap,
    /// go to `out`.
    pub fn offer(&mut self, now_ns: u64, key: PeerKey, kind: SpanKind, half: Half, out: &mut Vec<Done>) {
        if let Some(p) = self.map.get_mut(&key) {
            let slot = match kind {
                SpanKind::Client | SpanKind::Producer => &mut p.client,
                SpanKind::Server | SpanKind::Consumer => &mut p.server,
            };
            if slot.is_some() {
                // The same side twice (a retransmitted request seen again):
                // count the old one alone, wait with the new one.
                if let Some(old) = slot.replace(half) {
                    out.push(Done::Alone(kind, old));
                }
                return;
            }
            *slot = Some(half);
            if p.client.is_some() && p.server.is_some() {
                let p = self.map.remove(&key).expect("present");
                out.push(Done::Pair { client: p.client.expect("set"), server: p.server.expect("set") });
            }
            return;
        }
        while self.map.len() >= self.max {
            // Full: the oldest half is the least likely to be paired.
            let Some((deadline, k)) = self.order.pop_front() else { break };
            self.take_if(k, deadline, out);
        }
        let deadline_ns = now_ns.saturating_add(self.timeout_ns);
        let (client, server) = match kind {
            SpanKind::Client | SpanKind::Producer => (Some(half), None),
            SpanKind::Server | SpanKind::Consumer => (None, Some(half)),
        };
        self.map.insert(key, Pending { client, server, deadline_ns });
        self.order.push_back((deadline_ns, key));
        // Completed pairs leave stale entries until their deadline; at high
        // rates compact instead of letting them pile up.
        if self.order.len() > 4 * self.max {
            let map = &self.map;
            self.order.retain(|(d, k)| map.get(k).is_some_and(|p| p.deadline_ns == *d));
        }
    }

    /// Hand out the halves whose partner did not come in time (all of them
    /// with `u64::MAX`).
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Done>) {
        while let Some(&(deadline, k)) = self.order.front() {
            if deadline > now_ns {
                break;
            }
            self.order.pop_front();
            self.take_if(k, deadline, out);
        }
    }

    fn take_if(&mut self, k: PeerKey, deadline: u64, out: &mut Vec<Done>) {
        if self.map.get(&k).is_some_and(|p| p.deadline_ns == deadline) {
            let p = self.map.remove(&k).expect("present");
            if let Some(h) = p.client {
                out.push(Done::Alone(SpanKind::Client, h));
            }
            if let Some(h) = p.server {
                out.push(Done::Alone(SpanKind::Server, h));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u32) -> PeerKey {
        PeerKey { server: "127.0.0.1:80".parse().unwrap(), client: "127.0.0.1:5000".parse().unwrap(), seq }
    }

    fn half(svc: &str, peer: &str, error: bool) -> Half {
        let s = |n: &str| Arc::new(Service { name: n.into(), ..Default::default() });
        Half { service: s(svc), peer: s(peer), duration_ns: 1_000, error }
    }

    #[test]
    fn two_halves_make_one_pair_in_either_order() {
        let mut p = Pairs::new(5_000, 10);
        let mut out = Vec::new();
        p.offer(0, key(1), SpanKind::Server, half("b", "a", true), &mut out);
        assert!(out.is_empty());
        p.offer(1, key(1), SpanKind::Client, half("a", "b", false), &mut out);
        let [Done::Pair { client, server }] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(client.service.name, "a");
        assert!(server.error);
        assert!(p.is_empty());
        out.clear();
        p.offer(0, key(2), SpanKind::Client, half("a", "b", false), &mut out);
        p.offer(0, key(2), SpanKind::Server, half("b", "a", false), &mut out);
        assert!(matches!(out.as_slice(), [Done::Pair { .. }]));
    }

    #[test]
    fn a_half_alone_expires() {
        let mut p = Pairs::new(5_000, 10);
        let mut out = Vec::new();
        p.offer(100, key(1), SpanKind::Client, half("a", "b", false), &mut out);
        p.expire(5_099, &mut out);
        assert!(out.is_empty());
        p.expire(5_100, &mut out);
        assert!(matches!(out.as_slice(), [Done::Alone(SpanKind::Client, _)]));
        assert!(p.is_empty());
    }

    #[test]
    fn the_cap_pushes_out_the_oldest() {
        let mut p = Pairs::new(5_000, 2);
        let mut out = Vec::new();
        for seq in 0..3 {
            p.offer(seq as u64, key(seq), SpanKind::Server, half("b", "a", false), &mut out);
        }
        assert_eq!(p.len(), 2);
        assert!(matches!(out.as_slice(), [Done::Alone(SpanKind::Server, _)]));
        // The pushed-out key's partner now waits alone; the others still pair.
        out.clear();
        p.offer(3, key(1), SpanKind::Client, half("a", "b", false), &mut out);
        assert!(matches!(out.as_slice(), [Done::Pair { .. }]));
    }
}
