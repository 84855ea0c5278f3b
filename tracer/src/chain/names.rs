//! Address -> name, from DNS answers: every A/AAAA address a paired answer
//! gave (and, for an alias chain, the name that was asked) names that
//! address, so a later connection to it is `api.example.com:443` rather
//! than `10.3.7.12:443` (span `tracer.peer.name`, `server.address` when the
//! request named no server; topology's virtual nodes; the page).
//!
//! One map for the node, not per process: a server is one node on the
//! graph whoever called it, and a process often connects to what another
//! resolved (a local caching resolver, a shell's `getent` then `curl`).
//! The cost: a process that can get answers to its own queries can rename
//! an address for the page (it names, never routes; only answers that
//! matched a query of the same socket count, and names are escaped).
//! Bounded: [`MAX_NAMES`] addresses; a new one past it evicts the oldest
//! written (counted); a newer answer for an address replaces its name.
//! TTLs are not kept: an address keeps its last name until evicted.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Arc,
};

use crate::{
    protocols::dns::{DnsExchange, wire::Answer},
    span::{Key, Span, Value},
};

pub const MAX_NAMES: usize = 16_384;

pub struct Names {
    map: HashMap<IpAddr, (Arc<str>, u64)>,
    /// Writes in order (address, generation); stale entries are skipped.
    order: VecDeque<(IpAddr, u64)>,
    cap: usize,
    generation: u64,
    /// Addresses evicted since the last `take_evicted`.
    evicted: u64,
}

impl Names {
    pub fn new(cap: usize) -> Names {
        Names { map: HashMap::new(), order: VecDeque::new(), cap: cap.max(1), generation: 0, evicted: 0 }
    }

    /// The answers of one exchange: its addresses are named after the
    /// question (what the program asked for, not a CNAME target).
    pub fn learn(&mut self, d: &DnsExchange) {
        if d.rcode != Some(0) || d.name == "." {
            return;
        }
        let name: Arc<str> = d.name.as_str().into();
        for a in &d.answers {
            if let Answer::Addr(ip) = a {
                self.insert(ip.to_canonical(), name.clone());
            }
        }
    }

    fn insert(&mut self, ip: IpAddr, name: Arc<str>) {
        self.generation += 1;
        let g = self.generation;
        if self.map.insert(ip, (name, g)).is_none() && self.map.len() > self.cap {
            self.evict_oldest();
        }
        self.order.push_back((ip, g));
        // Rewrites leave stale entries behind: compact when they dominate.
        if self.order.len() > 2 * self.cap {
            let map = &self.map;
            self.order.retain(|(ip, g)| map.get(ip).is_some_and(|(_, cur)| cur == g));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((ip, g)) = self.order.pop_front() {
            if self.map.get(&ip).is_some_and(|(_, cur)| *cur == g) {
                self.map.remove(&ip);
                self.evicted += 1;
                return;
            }
        }
    }

    pub fn get(&self, ip: IpAddr) -> Option<&Arc<str>> {
        self.map.get(&ip.to_canonical()).map(|(n, _)| n)
    }

    /// A CLIENT span to a named address: `tracer.peer.name`, and the name
    /// in `server.address` when the request named no server (no Host).
    pub fn name_span(&self, span: &mut Span) {
        if span.kind.is_inbound() {
            return;
        }
        let Some(name) = self.get(span.remote.ip()) else { return };
        for (k, v) in span.attributes.iter_mut() {
            if *k == Key::ServerAddress && matches!(v, Value::Ip(_)) {
                *v = Value::Shared(name.clone());
            }
        }
        span.attributes.push((Key::TracerPeerName, Value::Shared(name.clone())));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, ips: &[&str]) -> DnsExchange {
        DnsExchange {
            id: 1,
            name: name.into(),
            qtype: 1,
            rcode: Some(0),
            answers: ips.iter().map(|i| Answer::Addr(i.parse().unwrap())).collect(),
            more_answers: 0,
            truncated: false,
            tcp: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn answers_name_their_addresses_and_newer_ones_win() {
        let mut n = Names::new(8);
        n.learn(&answer("api.example.com", &["10.3.7.12", "fd00::1"]));
        assert_eq!(n.get(ip("10.3.7.12")).map(|s| &**s), Some("api.example.com"));
        // A v4-mapped address is the same address.
        assert_eq!(n.get(ip("::ffff:10.3.7.12")).map(|s| &**s), Some("api.example.com"));
        assert_eq!(n.get(ip("fd00::1")).map(|s| &**s), Some("api.example.com"));
        n.learn(&answer("other.example.com", &["10.3.7.12"]));
        assert_eq!(n.get(ip("10.3.7.12")).map(|s| &**s), Some("other.example.com"));
        let mut nx = answer("gone.example.com", &["10.9.9.9"]);
        nx.rcode = Some(3);
        n.learn(&nx);
        assert!(n.get(ip("10.9.9.9")).is_none(), "an error answer names nothing");
    }

    #[test]
    fn bounded_oldest_written_goes_first() {
        let mut n = Names::new(3);
        for i in 0..3 {
            n.learn(&answer(&format!("h{i}.test"), &[&format!("10.0.0.{i}")]));
        }
        // Rewriting 10.0.0.0 makes it the newest.
        n.learn(&answer("h0.test", &["10.0.0.0"]));
        n.learn(&answer("h3.test", &["10.0.0.3"]));
        assert_eq!(n.len(), 3);
        assert_eq!(n.take_evicted(), 1);
        assert!(n.get(ip("10.0.0.1")).is_none());
        assert!(n.get(ip("10.0.0.0")).is_some() && n.get(ip("10.0.0.3")).is_some());
        for i in 0..10_000u32 {
            n.learn(&answer("x.test", &[&std::net::Ipv4Addr::from(i).to_string()]));
        }
        assert_eq!(n.len(), 3);
        assert!(n.order.len() <= 2 * 3 + 1);
    }

    /// A CLIENT span from `local` to `remote`, with a Host header or not.
    fn client_span(remote: &str, host: Option<&str>) -> Span {
        use crate::{
            capture::event::Tuple,
            conntrack::{CallRecord, Role},
            protocols::{Exchange, Info, Timing},
            span::{Described, SpanKind},
        };
        let call = CallRecord {
            requests_inbound: false,
            pid: Some(1),
            comm: "curl".into(),
            role: Role::Client,
            tuple: Tuple { local: "10.0.0.1:40000".parse().unwrap(), remote: remote.parse().unwrap() },
            udp: false,
            request_goid: 0,
            response_goid: 0,
            exchange: Exchange { request: Timing::default(), response: None, info: Info::Dns(answer("x", &[])) },
        };
        let d = Described { server: host.map(|h| (h.to_string(), None)), ..Default::default() };
        crate::chain::build::span(&call, d, SpanKind::Client, Default::default())
    }

    #[test]
    fn calls_to_named_addresses_carry_the_name() {
        let mut n = Names::new(8);
        n.learn(&answer("api.example.com", &["10.3.7.12"]));
        let text = |s: &Span, k: &Key| s.attr_text(k).map(|v| v.into_owned());
        // No Host: server.address is the name.
        let mut s = client_span("10.3.7.12:443", None);
        n.name_span(&mut s);
        assert_eq!(text(&s, &Key::ServerAddress).as_deref(), Some("api.example.com"));
        assert_eq!(text(&s, &Key::TracerPeerName).as_deref(), Some("api.example.com"));
        // A Host header stays what the request said.
        let mut s = client_span("10.3.7.12:443", Some("other.example"));
        n.name_span(&mut s);
        assert_eq!(text(&s, &Key::ServerAddress).as_deref(), Some("other.example"));
        assert_eq!(text(&s, &Key::TracerPeerName).as_deref(), Some("api.example.com"));
        // An address no answer named is left alone.
        let mut s = client_span("10.9.9.9:443", None);
        n.name_span(&mut s);
        assert_eq!(text(&s, &Key::ServerAddress).as_deref(), Some("10.9.9.9"));
        assert!(s.attr(&Key::TracerPeerName).is_none());
    }
}
