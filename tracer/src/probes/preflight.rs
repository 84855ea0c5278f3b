//! Checks before loading anything: privileges, tracefs, what the running
//! kernel offers (each feature and the release that brought it, the table
//! the README's "Kernel requirements" states), and that the tracepoint
//! record layouts the probes read match this kernel's format files.

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

/// A kernel feature the agent uses, how to tell it is there, and the
/// release that brought it (for the message when it is not).
struct Feature {
    what: &'static str,
    since: &'static str,
    /// Without it the agent cannot trace: an error at start.
    required: bool,
    present: fn(&Kernel) -> bool,
}

/// What the feature checks read.
struct Kernel {
    /// `(major, minor)` from /proc/sys/kernel/osrelease.
    release: (u32, u32),
}

const FEATURES: &[Feature] = &[
    Feature {
        what: "kernel BTF (/sys/kernel/btf/vmlinux): struct offsets",
        since: "CONFIG_DEBUG_INFO_BTF",
        required: true,
        present: |_| Path::new("/sys/kernel/btf/vmlinux").is_file(),
    },
    Feature {
        what: "tracepoint sock:inet_sock_set_state: connections",
        since: "4.16",
        required: true,
        present: |_| tracepoint_exists("sock", "inet_sock_set_state"),
    },
    Feature {
        what: "tracepoints sock:sock_send_length, sock:sock_recv_length: request bytes",
        since: "6.4",
        required: true,
        present: |_| tracepoint_exists("sock", "sock_send_length") && tracepoint_exists("sock", "sock_recv_length"),
    },
    Feature {
        what: "tracepoints sched:sched_process_exec/fork: service names at process start (else from /proc)",
        since: "3.4",
        required: false,
        present: |_| {
            tracepoint_exists("sched", "sched_process_exec") && tracepoint_exists("sched", "sched_process_fork")
        },
    },
    Feature {
        // Older kernels accept sched_setattr but ignore the slice of fair tasks.
        what: "scheduler slices for fair tasks (EEVDF sched_runtime): [scheduler] slice_ms",
        since: "6.12",
        required: false,
        present: |k| k.release >= (6, 12),
    },
];

fn tracepoint_exists(category: &str, name: &str) -> bool {
    Path::new(TRACEFS).join("events").join(category).join(name).is_dir()
}

fn parse_release(osrelease: &str) -> Option<(u32, u32)> {
    let mut parts = osrelease.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Every feature of the table on the running kernel (tracefs mounted first):
/// an error naming each missing required one, else one line per missing
/// optional one (the degraded features, logged and shown on /readyz).
pub fn check_kernel_features() -> Result<Vec<String>> {
    let osrelease = fs::read_to_string("/proc/sys/kernel/osrelease").context("reading the kernel release")?;
    let kernel = Kernel { release: parse_release(&osrelease).unwrap_or((0, 0)) };
    let (missing, degraded) = absent_features(&kernel, osrelease.trim());
    if !missing.is_empty() {
        bail!("this kernel lacks what the agent needs: {}", missing.join("; "));
    }
    Ok(degraded)
}

fn absent_features(kernel: &Kernel, osrelease: &str) -> (Vec<String>, Vec<String>) {
    let (mut missing, mut degraded) = (Vec::new(), Vec::new());
    for f in FEATURES.iter().filter(|f| !(f.present)(kernel)) {
        let line = format!("{} (needs Linux {}; running {osrelease})", f.what, f.since);
        if f.required { missing.push(line) } else { degraded.push(line) }
    }
    (missing, degraded)
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

    #[test]
    fn release_and_slices_by_version() {
        assert_eq!(parse_release("6.18.0-1-amd64\n"), Some((6, 18)));
        assert_eq!(parse_release("6.4-rc1"), Some((6, 4)));
        assert_eq!(parse_release("garbage"), None);
        let slices = FEATURES.iter().find(|f| f.since == "6.12").expect("slices row");
        assert!(!(slices.present)(&Kernel { release: (6, 11) }));
        assert!((slices.present)(&Kernel { release: (6, 12) }));
    }

    /// On an old release the slices row is a degraded feature, not an error,
    /// and its line names the release it needs.
    #[test]
    fn an_old_kernel_degrades_slices() {
        let (_, degraded) = absent_features(&Kernel { release: (6, 6) }, "6.6.0");
        let line = degraded.iter().find(|l| l.contains("slice_ms")).expect("slices degraded");
        assert!(line.contains("needs Linux 6.12; running 6.6.0"), "{line}");
    }
}
