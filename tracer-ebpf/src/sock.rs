//! Reading a struct sock / tcp_sock through the BTF offsets in the config.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{
    config::{BLOCK, KernelOffsets},
    event::{AF_INET6, SockTuple},
};

use crate::config;

#[inline(always)]
pub fn read<T>(sk: u64, off: u16) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel((sk + off as u64) as *const T).map_err(|e| e as i64) }
}

/// A BLOCK-byte window of a kernel struct, read with one copy; fields are
/// then taken from the 8-byte word that holds them (masked so the verifier
/// sees every index in bounds). The agent checked that the window starts on
/// 8 bytes and that every field is naturally aligned, so no field straddles
/// two words: a field costs one load and one shift, not a load per byte.
pub struct Block {
    base: u16,
    w: [u64; BLOCK / 8],
}

impl Block {
    #[inline(always)]
    pub fn read(ptr: u64, base: u16) -> Result<Block, i64> {
        Ok(Block { base, w: read(ptr, base)? })
    }

    /// The word holding the field at `off`, shifted so the field is its low bits.
    #[inline(always)]
    fn word(&self, off: u16) -> u64 {
        let rel = off.wrapping_sub(self.base) as usize;
        self.w[(rel >> 3) & (BLOCK / 8 - 1)] >> ((rel & 7) * 8)
    }

    #[inline(always)]
    pub fn u16(&self, off: u16) -> u16 {
        self.word(off) as u16
    }

    #[inline(always)]
    pub fn u32(&self, off: u16) -> u32 {
        self.word(off) as u32
    }

    #[inline(always)]
    pub fn u64(&self, off: u16) -> u64 {
        self.word(off)
    }
}

/// The sock_common window of a socket (addresses, ports, family).
#[inline(always)]
pub fn common(sk: u64, o: &KernelOffsets) -> Result<Block, i64> {
    Block::read(sk, o.skc_block)
}

/// Local/remote addresses and ports of a socket from its sock_common window;
/// IPv6 addresses take one more copy. Writes every byte of `t` (no memset).
#[inline(always)]
pub fn tuple(sk: u64, o: &KernelOffsets, c: &Block, t: &mut SockTuple) -> Result<(), i64> {
    let family = c.u16(o.skc_family);
    t.family = family;
    t._pad = 0;
    t.local_port = c.u16(o.skc_num);
    t.remote_port = u16::from_be(c.u16(o.skc_dport));
    if family == AF_INET6 {
        t.local_addr = read(sk, o.skc_v6_rcv_saddr)?;
        t.remote_addr = read(sk, o.skc_v6_daddr)?;
    } else {
        t.local_addr = v4(c.u32(o.skc_rcv_saddr));
        t.remote_addr = v4(c.u32(o.skc_daddr));
    }
    Ok(())
}

/// An IPv4 address (network order, as the kernel keeps it) in the first 4
/// of 16 bytes, built in a register rather than a zeroed array.
#[inline(always)]
fn v4(a: u32) -> [u8; 16] {
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>([a as u64, 0]) }
}

/// Is the socket in the network namespace the agent watches (`--netns`)?
#[inline(always)]
pub fn in_watched_netns(sk: u64, o: &KernelOffsets) -> bool {
    let want = config::netns();
    if want == 0 {
        return true;
    }
    let Ok(net) = read::<u64>(sk, o.skc_net) else { return false };
    read::<u32>(net, o.net_ns_inum) == Ok(want)
}
