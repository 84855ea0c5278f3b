//! Ring-buffer record -> [`Event`]. Pure: bytes in, event or error out, so it
//! is tested without a kernel. Records are checked for kind, version and
//! length before any field is read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use tracer_common::event::{
    AF_INET, AF_INET6, AcceptEvent, ConnEvent, DATA_EGRESS, DATA_PAYLOAD_PARTIAL, DATA_SEQ_VALID, DATA_TLS_CIPHER,
    DATA_TLS_PLAIN, DATA_UDP, DataEvent, EVENT_VERSION, EventHeader, EventKind, SockTuple, Syscall, Task as RawTask,
};

use super::event::{Accept, Comm, Data, Direction, Event, StateChange, Task, TcpStats, Tls, Tuple};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header or struct")]
    Short(usize),
    #[error("record version {0}, this agent reads {EVENT_VERSION}")]
    Version(u16),
    #[error("unknown record kind {0}")]
    Kind(u16),
    #[error("record length field {0} disagrees with the record")]
    Length(u32),
    #[error("unknown syscall {0}")]
    Syscall(u8),
}

fn read<T: Copy>(buf: &[u8]) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Short(buf.len()));
    }
    // SAFETY: length checked; T is a plain #[repr(C)] struct of integers.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let h: EventHeader = read(buf)?;
    if h.version != EVENT_VERSION {
        return Err(DecodeError::Version(h.version));
    }
    if h.len as usize > buf.len() {
        return Err(DecodeError::Length(h.len));
    }
    match h.kind {
        k if k == EventKind::Conn as u16 => {
            let e: ConnEvent = read(buf)?;
            Ok(Event::State(StateChange {
                ts_ns: h.ts_ns,
                sk: e.sk,
                tuple: tuple(&e.tuple),
                old_state: e.old_state,
                new_state: e.new_state,
                task: (e.in_task != 0).then(|| task(&e.task)),
                sk_err: e.sk_err,
                tcp: TcpStats {
                    srtt_us: e.srtt_us >> 3,
                    total_retrans: e.total_retrans,
                    bytes_received: e.bytes_received,
                    bytes_acked: e.bytes_acked,
                },
            }))
        }
        k if k == EventKind::Accept as u16 => {
            let e: AcceptEvent = read(buf)?;
            Ok(Event::Accept(Accept { ts_ns: h.ts_ns, sk: e.sk, task: task(&e.task), fd: e.fd }))
        }
        k if k == EventKind::Data as u16 => {
            let e: DataEvent = read(buf)?;
            let start = size_of::<DataEvent>();
            let end = start + e.payload_len as usize;
            if end > buf.len() || e.payload_len > e.bytes || end != h.len as usize {
                return Err(DecodeError::Length(h.len));
            }
            let syscall = Syscall::from_u8(e.syscall).ok_or(DecodeError::Syscall(e.syscall))?;
            Ok(Event::Data(Data {
                ts_ns: h.ts_ns,
                sk: e.sk,
                tuple: tuple(&e.tuple),
                task: task(&e.task),
                fd: e.fd,
                syscall,
                direction: if e.flags & DATA_EGRESS != 0 { Direction::Egress } else { Direction::Ingress },
                bytes: e.bytes,
                seq: (e.flags & DATA_SEQ_VALID != 0).then_some(e.seq),
                srtt_us: e.srtt_us >> 3,
                payload: Bytes::copy_from_slice(&buf[start..end]),
                partial: e.flags & DATA_PAYLOAD_PARTIAL != 0,
                goid: e.goid,
                tls: if e.flags & DATA_TLS_PLAIN != 0 {
                    Tls::Plain
                } else if e.flags & DATA_TLS_CIPHER != 0 {
                    Tls::Cipher
                } else {
                    Tls::No
                },
                udp: e.flags & DATA_UDP != 0,
            }))
        }
        k => Err(DecodeError::Kind(k)),
    }
}

fn task(t: &RawTask) -> Task {
    Task { pid: t.pid, tid: t.tid, comm: Comm(t.comm) }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) are shown as IPv4.
fn addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        AF_INET6 => Ipv6Addr::from(*raw).to_canonical(),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn tuple(t: &SockTuple) -> Tuple {
    Tuple {
        local: SocketAddr::new(addr(t.family, &t.local_addr), t.local_port),
        remote: SocketAddr::new(addr(t.family, &t.remote_addr), t.remote_port),
    }
}

#[cfg(test)]
#[expect(clippy::field_reassign_with_default, reason = "records built field by field like the probes do")]
mod tests {
    use tracer_common::event::tcp_state;

    use super::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn data_record(payload: &[u8], bytes: u32) -> Vec<u8> {
        let mut e = DataEvent::default();
        e.header = EventHeader {
            kind: EventKind::Data as u16,
            version: EVENT_VERSION,
            len: (size_of::<DataEvent>() + payload.len()) as u32,
            ts_ns: 42,
        };
        e.sk = 0xffff_0000_1234;
        e.tuple.family = AF_INET6;
        e.tuple.local_addr = Ipv6Addr::LOCALHOST.octets();
        e.tuple.remote_addr = Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets();
        e.tuple.local_port = 8080;
        e.tuple.remote_port = 40000;
        e.task.pid = 7;
        e.task.tid = 8;
        e.task.comm[..4].copy_from_slice(b"curl");
        e.syscall = Syscall::Sendto as u8;
        e.bytes = bytes;
        e.seq = 1000;
        e.srtt_us = 80;
        e.flags = DATA_SEQ_VALID | DATA_EGRESS;
        e.payload_len = payload.len() as u32;
        e.goid = 0x1_0000_0042;
        let mut v = bytes_of(&e);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_data_with_payload_and_mapped_address() {
        let Event::Data(d) = decode(&data_record(b"GET / HTTP/1.1\r\n", 100)).unwrap() else { panic!() };
        assert_eq!(d.payload.as_ref(), b"GET / HTTP/1.1\r\n");
        assert_eq!(d.bytes, 100);
        assert_eq!(d.seq, Some(1000));
        assert_eq!(d.srtt_us, 10);
        assert_eq!(d.direction, Direction::Egress);
        assert_eq!(d.task.comm.to_string(), "curl");
        assert_eq!(d.tuple.local.to_string(), "[::1]:8080");
        assert_eq!(d.tuple.remote.to_string(), "10.0.0.2:40000");
        assert_eq!(d.goid, 0x1_0000_0042, "the goroutine id, all 64 bits");
    }

    #[test]
    fn rejects_bad_records() {
        assert!(matches!(decode(&[1, 2, 3]), Err(DecodeError::Short(3))));
        let mut r = data_record(b"abc", 3);
        r.truncate(r.len() - 1);
        assert!(matches!(decode(&r), Err(DecodeError::Length(_))));
        let mut r = data_record(b"abc", 2); // payload longer than the syscall moved
        assert!(matches!(decode(&r), Err(DecodeError::Length(_))));
        r = data_record(b"abc", 3);
        r[2] = 99; // version
        assert!(matches!(decode(&r), Err(DecodeError::Version(99))));
        r = data_record(b"abc", 3);
        r[0] = 77; // kind
        assert!(matches!(decode(&r), Err(DecodeError::Kind(77))));
    }

    #[test]
    fn decodes_state_change() {
        let mut e = ConnEvent::default();
        e.header = EventHeader { kind: EventKind::Conn as u16, version: EVENT_VERSION, len: 120, ts_ns: 5 };
        e.tuple.family = AF_INET;
        e.tuple.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.tuple.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.tuple.local_port = 5555;
        e.tuple.remote_port = 80;
        e.old_state = tcp_state::SYN_SENT;
        e.new_state = tcp_state::CLOSE;
        e.sk_err = 111;
        let Event::State(s) = decode(&bytes_of(&e)).unwrap() else { panic!() };
        assert_eq!(s.tuple.remote.to_string(), "127.0.0.1:80");
        assert_eq!(s.sk_err, 111);
        assert!(s.task.is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_bytes(buf in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = decode(&buf);
        }
    }
}
