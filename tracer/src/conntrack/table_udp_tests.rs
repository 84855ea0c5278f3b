//! UDP flows in the connection table (DNS client sockets): datagrams pair
//! into calls, no connection records, and a flow's unanswered queries end
//! with it (address reuse, idle expiry).

use bytes::Bytes;
use tracer_common::event::Syscall;

use super::*;
use crate::{
    capture::event::Task,
    protocols::{Info, dns::wire::build},
};

struct NoListen;

impl ListenLookup for NoListen {
    fn is_listening(&mut self, _: u32, _: u16) -> bool {
        false
    }
}

const SEC: u64 = 1_000_000_000;

fn flow(local_port: u16) -> Tuple {
    Tuple { local: format!("10.0.0.1:{local_port}").parse().unwrap(), remote: "10.0.0.53:53".parse().unwrap() }
}

fn datagram(ts_ns: u64, sk: SockId, tuple: Tuple, direction: Direction, payload: Vec<u8>) -> Event {
    Event::Data(Data {
        ts_ns,
        sk,
        tuple,
        task: Task { pid: 31, tid: 31, comm: Comm(*b"getent\0\0\0\0\0\0\0\0\0\0") },
        fd: 3,
        syscall: if direction == Direction::Egress { Syscall::Sendto } else { Syscall::Recvfrom },
        direction,
        bytes: payload.len() as u32,
        seq: None,
        srtt_us: 0,
        payload: Bytes::from(payload),
        partial: false,
        goid: 0,
        tls: Default::default(),
        udp: true,
    })
}

fn names(t: &mut Table<NoListen>) -> Vec<(String, bool, bool)> {
    t.take_calls()
        .map(|c| match c.exchange.info {
            Info::Dns(d) => (d.name, c.udp, c.exchange.response.is_some()),
            other => panic!("not DNS: {other:?}"),
        })
        .collect()
}

#[test]
fn datagrams_pair_into_udp_calls_without_connection_records() {
    let mut t = Table::new(TableConfig::default(), NoListen);
    let mut out = Vec::new();
    let f = flow(40000);
    t.apply(&datagram(1, 7, f, Direction::Egress, build::query(3, "a.test", 1)), &mut out).unwrap();
    let r = build::response(3, "a.test", 1, 0, &["10.1.1.1".parse().unwrap()]);
    t.apply(&datagram(2, 7, f, Direction::Ingress, r), &mut out).unwrap();
    assert!(out.is_empty(), "a datagram flow is not a connection: {out:?}");
    assert_eq!(names(&mut t), vec![("a.test".to_string(), true, true)]);
    assert_eq!(t.take_l7_counters().detected, 1);
}

#[test]
fn a_flow_ends_with_its_socket_address_reused_or_idle() {
    let mut t = Table::new(TableConfig::default(), NoListen);
    let mut out = Vec::new();
    t.apply(&datagram(1, 7, flow(40000), Direction::Egress, build::query(3, "lost.test", 1)), &mut out).unwrap();
    // The socket closed unseen; a new one got its address (another port).
    t.apply(&datagram(2, 7, flow(40001), Direction::Egress, build::query(4, "late.test", 1)), &mut out).unwrap();
    assert_eq!(names(&mut t), vec![("lost.test".to_string(), true, false)]);
    // Idle past UDP_IDLE: its query is a call without response, not an eviction.
    let idle = UDP_IDLE.as_nanos() as u64;
    assert_eq!(t.expire(2 + idle - 1), 0);
    assert_eq!(t.len(), 1);
    assert_eq!(t.expire(2 + idle + SEC), 0);
    assert!(t.is_empty());
    assert_eq!(names(&mut t), vec![("late.test".to_string(), true, false)]);
}
