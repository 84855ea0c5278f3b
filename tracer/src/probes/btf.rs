//! Kernel struct offsets from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux), so one binary runs on any kernel with BTF.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use btf_rs::{Btf, Type};
use tracer_common::{config::KernelOffsets, process::ProcessConfig};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Resolve every offset the probes read.
pub fn kernel_offsets(path: &Path) -> Result<KernelOffsets> {
    let btf = Btf::from_file(path).with_context(|| {
        format!("reading kernel BTF from {} (the kernel must be built with CONFIG_DEBUG_INFO_BTF)", path.display())
    })?;
    let r = Resolver { btf: &btf };
    // sock_common is the first member of struct sock, so its field offsets
    // apply to a struct sock pointer; checked rather than assumed.
    let common = r.offset("sock", "__sk_common")?;
    let sc = |f: &str| r.offset("sock_common", f).map(|o| o + common);
    let regs = syscall_regs(&r)?;
    let mut o = KernelOffsets {
        skc_daddr: sc("skc_daddr")?,
        skc_rcv_saddr: sc("skc_rcv_saddr")?,
        skc_dport: sc("skc_dport")?,
        skc_num: sc("skc_num")?,
        skc_family: sc("skc_family")?,
        skc_v6_daddr: sc("skc_v6_daddr")?,
        skc_v6_rcv_saddr: sc("skc_v6_rcv_saddr")?,
        sk_err: r.offset("sock", "sk_err")?,
        tcp_write_seq: r.offset("tcp_sock", "write_seq")?,
        tcp_copied_seq: r.offset("tcp_sock", "copied_seq")?,
        tcp_srtt_us: r.offset("tcp_sock", "srtt_us")?,
        tcp_total_retrans: r.offset("tcp_sock", "total_retrans")?,
        tcp_bytes_received: r.offset("tcp_sock", "bytes_received")?,
        tcp_bytes_acked: r.offset("tcp_sock", "bytes_acked")?,
        task_files: r.offset("task_struct", "files")?,
        files_fdt: r.offset("files_struct", "fdt")?,
        fdtable_fd: r.offset("fdtable", "fd")?,
        file_private_data: r.offset("file", "private_data")?,
        socket_sk: r.offset("socket", "sk")?,
        regs_nr: regs.0,
        regs_arg: regs.1,
        sk_protocol: r.offset("sock", "sk_protocol")?,
        skc_block: 0,
        regs_block: 0,
        skc_net: sc("skc_net")?,
        net_ns_inum: r.offset("net", "ns")? + r.offset("ns_common", "inum")?,
        skc_state: sc("skc_state")?,
        tcp_rcv_nxt: r.offset("tcp_sock", "rcv_nxt")?,
        task_fsbase: task_fsbase(&r),
        _pad: 0,
    };
    o.skc_block = window(
        "sock_common",
        &[
            (o.skc_daddr, 4),
            (o.skc_rcv_saddr, 4),
            (o.skc_dport, 2),
            (o.skc_num, 2),
            (o.skc_family, 2),
            (o.skc_state, 1),
        ],
    )?;
    o.regs_block = window("pt_regs", &[(o.regs_nr, 8), (o.regs_arg[0], 8), (o.regs_arg[1], 8), (o.regs_arg[2], 8)])?;
    Ok(o)
}

/// Offsets of the process probes (probes::exec in tracer-ebpf). An error
/// leaves them disabled; the agent then names services from /proc alone.
pub fn process_offsets(path: &Path) -> Result<ProcessConfig> {
    let btf = Btf::from_file(path).with_context(|| format!("reading kernel BTF from {}", path.display()))?;
    let r = Resolver { btf: &btf };
    let t = |f: &str| r.offset("task_struct", f);
    let m = |f: &str| r.offset("mm_struct", f);
    let arg_start = m("arg_start")?;
    // The probe copies arg_start..env_end as four consecutive words.
    for (i, f) in ["arg_end", "env_start", "env_end"].iter().enumerate() {
        if m(f)? != arg_start + 8 * (i as u16 + 1) {
            bail!("mm_struct.{f} does not follow arg_start as the probe reads it: unsupported layout");
        }
    }
    // The executable's identity: optional (an unknown layout only delays
    // probing a new Go process until the watcher sees it).
    let exe = (|| -> Result<[u16; 5]> {
        Ok([
            m("exe_file")?,
            r.offset("file", "f_inode")?,
            r.offset("inode", "i_ino")?,
            r.offset("inode", "i_sb")?,
            r.offset("super_block", "s_dev")?,
        ])
    })()
    .unwrap_or_else(|e| {
        tracing::debug!("executable identity at exec not read: {e:#}");
        [0; 5]
    });
    Ok(ProcessConfig {
        mm_exe_file: exe[0],
        file_inode: exe[1],
        inode_ino: exe[2],
        inode_sb: exe[3],
        sb_dev: exe[4],
        _pad: 0,
        task_mm: t("mm")?,
        task_pid: t("pid")?,
        task_tgid: t("tgid")?,
        task_start_boottime: t("start_boottime")?,
        mm_arg_start: arg_start,
        enabled: 1,
        self_pid: std::process::id(),
    })
}

/// Start of a BLOCK-byte window covering every (offset, size) field. The
/// probes take each field from the 8-byte word holding it, so the window
/// starts on 8 bytes and every field must be naturally aligned (true of every
/// kernel layout; checked, not assumed).
fn window(what: &str, fields: &[(u16, u16)]) -> Result<u16> {
    if let Some((off, size)) = fields.iter().find(|(off, size)| !size.is_power_of_two() || *size > 8 || off % size != 0)
    {
        bail!(
            "a {what} field the probes read ({size} bytes at offset {off}) is not naturally aligned in this kernel: unsupported layout"
        );
    }
    let start = fields.iter().map(|f| f.0).min().unwrap_or(0) & !7;
    let end = fields.iter().map(|f| f.0 + f.1).max().unwrap_or(0);
    if usize::from(end - start) > tracer_common::config::BLOCK {
        bail!(
            "the {what} fields the probes read span {} bytes in this kernel, more than the {}-byte window they read at once: unsupported layout",
            end - start,
            tracer_common::config::BLOCK
        );
    }
    Ok(start)
}

/// task_struct.thread.fsbase, where x86_64 keeps a thread's TLS base (Go's
/// running g sits below it); 0 (goroutine ids off) elsewhere or if absent.
#[cfg(target_arch = "x86_64")]
fn task_fsbase(r: &Resolver<'_>) -> u16 {
    match (r.offset("task_struct", "thread"), r.offset("thread_struct", "fsbase")) {
        (Ok(t), Ok(f)) => t.saturating_add(f),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("Go goroutine ids disabled: {e:#}");
            0
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn task_fsbase(_: &Resolver<'_>) -> u16 {
    0
}

/// Where the saved user registers keep the syscall number and arguments.
#[cfg(target_arch = "x86_64")]
fn syscall_regs(r: &Resolver<'_>) -> Result<(u16, [u16; 3])> {
    Ok((
        r.offset("pt_regs", "orig_ax")?,
        [r.offset("pt_regs", "di")?, r.offset("pt_regs", "si")?, r.offset("pt_regs", "dx")?],
    ))
}

#[cfg(target_arch = "aarch64")]
fn syscall_regs(r: &Resolver<'_>) -> Result<(u16, [u16; 3])> {
    // struct pt_regs { union { struct user_pt_regs user_regs; struct { u64 regs[31]; ... } } ... syscallno }
    let regs = r.offset("pt_regs", "regs")?;
    Ok((r.offset("pt_regs", "syscallno")?, [regs, regs + 8, regs + 16]))
}

/// This architecture's numbers of the hooked syscalls.
pub fn syscall_nrs() -> tracer_common::config::SyscallNrs {
    tracer_common::config::SyscallNrs {
        read: libc::SYS_read as u32,
        write: libc::SYS_write as u32,
        readv: libc::SYS_readv as u32,
        writev: libc::SYS_writev as u32,
        recvfrom: libc::SYS_recvfrom as u32,
        sendto: libc::SYS_sendto as u32,
        recvmsg: libc::SYS_recvmsg as u32,
        sendmsg: libc::SYS_sendmsg as u32,
        sendmmsg: libc::SYS_sendmmsg as u32,
        _pad: 0,
    }
}

struct Resolver<'a> {
    btf: &'a Btf,
}

impl Resolver<'_> {
    /// Byte offset of `member` in `struct name`, looking through anonymous
    /// structs and unions as C does.
    fn offset(&self, name: &str, member: &str) -> Result<u16> {
        let types = self.btf.resolve_types_by_name(name).with_context(|| format!("struct {name} not in BTF"))?;
        let st = types
            .iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| anyhow!("struct {name} not in BTF"))?;
        let bits = self
            .find(st, member, 0)?
            .ok_or_else(|| anyhow!("struct {name} has no member {member} in this kernel's BTF"))?;
        if bits % 8 != 0 {
            bail!("{name}.{member} is a bitfield");
        }
        u16::try_from(bits / 8).map_err(|_| anyhow!("{name}.{member} offset {} does not fit u16", bits / 8))
    }

    fn find(&self, st: &btf_rs::Struct, member: &str, base: u32) -> Result<Option<u32>> {
        for m in &st.members {
            let mname = self.btf.resolve_name(m).unwrap_or_default();
            if mname == member {
                return Ok(Some(base + m.bit_offset()));
            }
            if mname.is_empty() {
                let mut t = self.btf.resolve_chained_type(m)?;
                // Skip qualifiers/typedefs down to the aggregate.
                for _ in 0..8 {
                    match t {
                        Type::Typedef(ref td) => t = self.btf.resolve_chained_type(td)?,
                        Type::Const(ref c) => t = self.btf.resolve_chained_type(c)?,
                        Type::Volatile(ref v) => t = self.btf.resolve_chained_type(v)?,
                        _ => break,
                    }
                }
                if let Type::Struct(inner) | Type::Union(inner) = t
                    && let Some(off) = self.find(&inner, member, base + m.bit_offset())?
                {
                    return Ok(Some(off));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel: every offset resolves and the
    /// sock_common ones land inside sock_common.
    #[test]
    fn resolves_running_kernel_offsets() {
        let o = kernel_offsets(Path::new(VMLINUX_BTF)).expect("offsets");
        assert!(o.skc_family < 64 && o.skc_num < 64 && o.skc_dport < 64);
        assert_ne!(o.tcp_write_seq, 0);
        assert_ne!(o.tcp_copied_seq, o.tcp_write_seq);
        assert_ne!(o.task_files, 0);
        assert_ne!(o.regs_arg[0], o.regs_arg[1]);
        assert_eq!(o.skc_block % 8, 0);
        assert_eq!(o.regs_block % 8, 0);
        #[cfg(target_arch = "x86_64")]
        assert!(o.task_fsbase > o.task_files, "thread is task_struct's last member: {}", o.task_fsbase);
        let p = process_offsets(Path::new(VMLINUX_BTF)).expect("process offsets");
        assert_eq!(p.enabled, 1);
        assert_ne!(p.task_pid, p.task_tgid);
    }

    #[test]
    fn windows_start_on_words_and_refuse_misaligned_fields() {
        assert_eq!(window("t", &[(12, 2), (14, 2), (4, 4)]).unwrap(), 0);
        assert_eq!(window("t", &[(100, 4), (104, 8)]).unwrap(), 96);
        assert!(window("t", &[(13, 2)]).is_err());
        assert!(window("t", &[(0, 4), (40, 4)]).is_err());
    }
}
