//! Reading a struct sock / tcp_sock through the BTF offsets in the config.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::event::{AF_INET, AF_INET6, SockTuple};

use crate::config;

#[inline(always)]
pub fn read<T>(sk: u64, off: u16) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel((sk + off as u64) as *const T).map_err(|e| e as i64) }
}

/// Local/remote addresses and ports of a socket (sock_common fields).
#[inline(always)]
pub fn tuple(sk: u64, t: &mut SockTuple) -> Result<(), i64> {
    let o = config::offsets();
    let family: u16 = read(sk, o.skc_family)?;
    t.family = family;
    t.local_port = read(sk, o.skc_num)?;
    t.remote_port = u16::from_be(read(sk, o.skc_dport)?);
    if family == AF_INET {
        let l: [u8; 4] = read(sk, o.skc_rcv_saddr)?;
        let r: [u8; 4] = read(sk, o.skc_daddr)?;
        t.local_addr[..4].copy_from_slice(&l);
        t.remote_addr[..4].copy_from_slice(&r);
    } else if family == AF_INET6 {
        t.local_addr = read(sk, o.skc_v6_rcv_saddr)?;
        t.remote_addr = read(sk, o.skc_v6_daddr)?;
    }
    Ok(())
}
