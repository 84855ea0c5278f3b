//! Checks before loading anything: privileges, tracefs, and that the
//! tracepoint record layouts the probes read match this kernel's format files.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};

/// Capabilities the agent needs (include/uapi/linux/capability.h numbers).
const CAPS: &[(u32, &str)] = &[(39, "CAP_BPF"), (38, "CAP_PERFMON")];
const CAP_SYS_ADMIN: u32 = 21;

/// Fails with one line naming what is missing.
pub fn check_privileges() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    let missing: Vec<&str> = CAPS.iter().filter(|(c, _)| !has(*c)).map(|(_, n)| *n).collect();
    if !missing.is_empty() {
        bail!(
            "missing capabilities {}: run the tracer as root (sudo) or grant them (setcap cap_bpf,cap_perfmon+ep)",
            missing.join(", ")
        );
    }
    Ok(())
}

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mount tracefs when it is not (tracepoints are found through it).
pub fn ensure_tracefs() -> Result<()> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let src = c"tracefs";
    let dst = c"/sys/kernel/tracing";
    let r = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        bail!(
            "tracefs is not mounted at {TRACEFS} and mounting it failed: {} (mount -t tracefs tracefs {TRACEFS})",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Offset of `field` in a tracepoint's tracefs format file.
pub fn field_offset(category: &str, name: &str, field: &str) -> Result<usize> {
    let path = Path::new(TRACEFS).join("events").join(category).join(name).join("format");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_field_offset(&text, field).with_context(|| format!("field {field} not in {}", path.display()))
}

fn parse_field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let fname = decl.trim().rsplit([' ', '*']).next()?;
        let fname = fname.split('[').next()?;
        if fname != field {
            return None;
        }
        rest.trim().strip_prefix("offset:")?.split(';').next()?.trim().parse().ok()
    })
}

/// The record offsets compiled into the probes, checked against this kernel.
pub fn check_tracepoint_layouts() -> Result<()> {
    /// (category, tracepoint, [(field, offset the probes use)])
    type Layout = (&'static str, &'static str, &'static [(&'static str, usize)]);
    let expect: &[Layout] = &[
        (
            "sock",
            "inet_sock_set_state",
            &[
                ("skaddr", 8),
                ("oldstate", 16),
                ("newstate", 20),
                ("sport", 24),
                ("dport", 26),
                ("family", 28),
                ("protocol", 30),
                ("saddr", 32),
                ("daddr", 36),
                ("saddr_v6", 40),
                ("daddr_v6", 56),
            ],
        ),
        ("syscalls", "sys_enter_read", &[("fd", 16), ("buf", 24), ("count", 32)]),
        ("syscalls", "sys_exit_read", &[("ret", 16)]),
    ];
    for (cat, name, fields) in expect {
        for (field, off) in *fields {
            let got = field_offset(cat, name, field)?;
            if got != *off {
                bail!(
                    "tracepoint {cat}:{name} field {field} is at offset {got}, the probes expect {off}: unsupported kernel layout"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_format_lines() {
        let f = "\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n";
        assert_eq!(parse_field_offset(f, "skaddr"), Some(8));
        assert_eq!(parse_field_offset(f, "saddr_v6"), Some(40));
        assert_eq!(parse_field_offset(f, "saddr"), None);
    }
}
