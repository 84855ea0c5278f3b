//! Reading a struct sock / tcp_sock through the BTF offsets in the config.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{
    config::BLOCK,
    event::{AF_INET, AF_INET6, SockTuple},
};

use crate::config;

#[inline(always)]
pub fn read<T>(sk: u64, off: u16) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel((sk + off as u64) as *const T).map_err(|e| e as i64) }
}

/// A BLOCK-byte window of a kernel struct, read with one copy; fields are
/// then taken at their offset relative to the window (masked so the
/// verifier sees every index in bounds; the agent checked they fit).
pub struct Block {
    base: u16,
    b: [u8; BLOCK],
}

impl Block {
    #[inline(always)]
    pub fn read(ptr: u64, base: u16) -> Result<Block, i64> {
        Ok(Block { base, b: read(ptr, base)? })
    }

    #[inline(always)]
    fn at(&self, off: u16, i: usize) -> u8 {
        self.b[(off.wrapping_sub(self.base) as usize + i) & (BLOCK - 1)]
    }

    #[inline(always)]
    pub fn u16(&self, off: u16) -> u16 {
        u16::from_ne_bytes([self.at(off, 0), self.at(off, 1)])
    }

    #[inline(always)]
    pub fn bytes4(&self, off: u16) -> [u8; 4] {
        [self.at(off, 0), self.at(off, 1), self.at(off, 2), self.at(off, 3)]
    }

    #[inline(always)]
    pub fn u64(&self, off: u16) -> u64 {
        let mut v = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            v[i] = self.at(off, i);
            i += 1;
        }
        u64::from_ne_bytes(v)
    }
}

/// The sock_common window of a socket (addresses, ports, family).
#[inline(always)]
pub fn common(sk: u64) -> Result<Block, i64> {
    Block::read(sk, config::offsets().skc_block)
}

/// Local/remote addresses and ports of a socket from its sock_common window;
/// IPv6 addresses take one more copy.
#[inline(always)]
pub fn tuple(sk: u64, c: &Block, t: &mut SockTuple) -> Result<(), i64> {
    let o = config::offsets();
    let family = c.u16(o.skc_family);
    t.family = family;
    t.local_port = c.u16(o.skc_num);
    t.remote_port = u16::from_be(c.u16(o.skc_dport));
    if family == AF_INET {
        t.local_addr[..4].copy_from_slice(&c.bytes4(o.skc_rcv_saddr));
        t.remote_addr[..4].copy_from_slice(&c.bytes4(o.skc_daddr));
    } else if family == AF_INET6 {
        t.local_addr = read(sk, o.skc_v6_rcv_saddr)?;
        t.remote_addr = read(sk, o.skc_v6_daddr)?;
    }
    Ok(())
}

/// Is the socket in the network namespace the agent watches (`--netns`)?
#[inline(always)]
pub fn in_watched_netns(sk: u64) -> bool {
    let want = config::netns();
    if want == 0 {
        return true;
    }
    let o = config::offsets();
    let Ok(net) = read::<u64>(sk, o.skc_net) else { return false };
    read::<u32>(net, o.net_ns_inum) == Ok(want)
}
