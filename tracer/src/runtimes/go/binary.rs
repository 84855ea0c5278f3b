//! What the Go probes need from one Go executable: its Go version (from
//! `.go.buildinfo`), the offset of `runtime.g.goid` (from DWARF, else a
//! table per Go version), and the file offsets of the net/http functions the
//! hand-off uprobes attach to (from the symbol table, else the pclntab).
//! Pure reading; no probes.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};
use gimli::{EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection, ObjectSymbol};

/// A function a uprobe attaches to at its entry (and, with `ret`, another
/// at each of its RET instructions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// The function's symbol.
    pub symbol: &'static str,
    /// Program for its returns (Go moves stacks: no uretprobes).
    pub ret: Option<&'static str>,
}

/// Every hook, in attach order: net/http's hand-offs (`tracer-ebpf`
/// `probes::go`) and crypto/tls's plaintext (`probes::tls`).
pub const HOOKS: [Hook; 5] = [
    Hook { program: "go_writeloop", symbol: "net/http.(*persistConn).writeLoop", ret: None },
    Hook { program: "go_persistconn_roundtrip", symbol: "net/http.(*persistConn).roundTrip", ret: None },
    Hook { program: "go_tls_read", symbol: "crypto/tls.(*Conn).Read", ret: Some("go_tls_read_ret") },
    Hook { program: "go_tls_write", symbol: "crypto/tls.(*Conn).Write", ret: Some("go_tls_write_ret") },
    Hook {
        program: "go_tls_handshake",
        symbol: "crypto/tls.(*Conn).handshakeContext",
        ret: Some("go_tls_handshake_ret"),
    },
];

/// Bytes of one function decoded at most when looking for its returns.
const MAX_FUNCTION: u64 = 64 * 1024;

/// What was read from one Go executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoBinary {
    /// `go1.19.8`, when `.go.buildinfo` says.
    pub version: Option<String>,
    pub goid_offset: u32,
    /// Where the goid offset came from: "dwarf" or "version table".
    pub goid_from: &'static str,
    /// File offset of each hook's probe point, in [`HOOKS`] order (None:
    /// net/http's client not linked in).
    pub hooks: [Option<u64>; HOOKS.len()],
    /// Where the functions were found: "symbols", "pclntab", or why not.
    pub hooks_from: &'static str,
    /// (program, file offset) of every return probe: each RET of the hooks
    /// that have a `ret` program.
    pub returns: Vec<(&'static str, u64)>,
}

/// Read what the probes need from the Go executable at `path`. An error says
/// why it cannot be probed (no goid offset known).
pub fn read(path: &Path) -> Result<GoBinary> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let elf = object::File::parse(&*data).context("parsing the ELF file")?;
    if elf.architecture() != object::Architecture::X86_64 {
        bail!("goroutine ids are read on linux/amd64 only");
    }
    let version = elf.section_by_name(".go.buildinfo").and_then(|s| s.data().ok()).and_then(buildinfo_version);
    let dwarf = dwarf_goid(&elf).unwrap_or_else(|e| {
        tracing::warn!("{}: DWARF unreadable, offsets from the version table: {e}", path.display());
        None
    });
    let (goid_offset, goid_from) = match (dwarf, version.as_deref().and_then(goid_offset_for)) {
        (Some(o), _) => (o, "dwarf"),
        (None, Some(o)) => (o, "version table"),
        (None, None) => bail!(
            "no DWARF runtime.g and no known goid offset for Go version {}",
            version.as_deref().unwrap_or("unknown")
        ),
    };
    // The hooks read their argument from the register ABI (Go 1.17+): on an
    // older or unknown release RAX is no argument, and a wrong pointer
    // could pair a writeLoop with another connection's caller.
    let register_abi = version.as_deref().and_then(go_minor).is_some_and(|m| m >= 17);
    let (addresses, hooks_from) = if register_abi {
        hook_addresses(&elf)
    } else {
        ([None; HOOKS.len()], "none (Go release unknown or before 1.17)")
    };
    let text = elf.section_by_name(".text");
    let file_offset = |a: u64| -> Option<u64> {
        let text = text.as_ref()?;
        Some(a.checked_sub(text.address())? + text.file_range()?.0)
    };
    let hooks = addresses.map(|a| {
        let (a, text) = (a?, text.as_ref()?);
        let code = text.data_range(a, 24).ok().flatten()?;
        Some(file_offset(a)? + stack_check_jump(code))
    });
    let mut returns = Vec::new();
    for (hook, a) in HOOKS.iter().zip(addresses) {
        let (Some(program), Some(a), Some(text)) = (hook.ret, a, text.as_ref()) else { continue };
        let len = (text.address() + text.size()).saturating_sub(a).min(MAX_FUNCTION);
        let Some(code) = text.data_range(a, len).ok().flatten() else { continue };
        returns.extend(crate::tls::code::returns(code, a).into_iter().filter_map(|r| Some((program, file_offset(r)?))));
    }
    Ok(GoBinary { version, goid_offset, goid_from, hooks, hooks_from, returns })
}

/// Entry address of each hook's function: from the symbol table, else (a
/// stripped binary) from the pclntab.
fn hook_addresses(elf: &object::File<'_>) -> ([Option<u64>; HOOKS.len()], &'static str) {
    let mut found = [None; HOOKS.len()];
    for sym in elf.symbols() {
        let Ok(name) = sym.name() else { continue };
        if let Some(i) = HOOKS.iter().position(|h| h.symbol == name) {
            found[i] = Some(sym.address());
        }
    }
    if found.iter().any(Option::is_some) {
        return (found, "symbols");
    }
    let text_start = elf.section_by_name(".text").map_or(0, |s| s.address());
    let Some(tab) = elf.section_by_name(".gopclntab").and_then(|s| s.data().ok()) else { return (found, "none") };
    (super::pclntab::entries(tab, text_start, &HOOKS.map(|h| h.symbol)), "pclntab")
}

/// Where in a function its entry probe goes: on the stack check's
/// conditional jump (`jbe` to morestack, after a `cmp ..., [r14+16]`
/// against g.stackguard0) when the prologue has one in `code`, its first
/// bytes; else at the first byte (0). The kernel emulates a conditional
/// branch under a uprobe; any other instruction is single-stepped out of
/// line, a second trap per hit. The arguments are still in their registers
/// there (the prologue only compared the stack pointer), and after a stack
/// growth the function restarts from its first byte, so the probe fires
/// once per call, or twice (harmless: it only records).
pub fn stack_check_jump(code: &[u8]) -> u64 {
    // cmp rsp, [r14+0x10] (49 3b 66 10) or cmp r12, [r14+0x10] (4d 3b 66 10).
    let Some(cmp) = code.windows(4).position(|w| matches!(w, [0x49 | 0x4d, 0x3b, 0x66, 0x10])) else { return 0 };
    let at = cmp + 4;
    match code.get(at..at + 2) {
        Some([0x0f, 0x86]) | Some([0x76, _]) => at as u64,
        _ => 0,
    }
}

/// The Go version recorded in `.go.buildinfo` (Go 1.18+ layout: a 32-byte
/// header with flag 2, then the version as a varint-prefixed string).
pub fn buildinfo_version(b: &[u8]) -> Option<String> {
    if b.len() < 32 || &b[..14] != b"\xff Go buildinf:" || b[15] & 2 == 0 {
        return None;
    }
    let (len, n) = uvarint(&b[32..])?;
    let s = b.get(32 + n..32 + n + usize::try_from(len).ok()?)?;
    std::str::from_utf8(s).ok().filter(|v| v.starts_with("go")).map(str::to_owned)
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// 19 of `go1.19.8`.
fn go_minor(version: &str) -> Option<u32> {
    version.strip_prefix("go1.")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `runtime.g.goid` by Go release, for binaries without DWARF: 152 from Go
/// 1.17 (the register ABI) to 1.22; Go 1.23 added `syscallbp` before it.
pub fn goid_offset_for(version: &str) -> Option<u32> {
    match go_minor(version)? {
        17..=22 => Some(152),
        23..=25 => Some(160),
        _ => None,
    }
}

/// `runtime.g.goid` from the binary's DWARF (Go writes it unless linked
/// with `-w`; compressed sections are read as well). Go puts the runtime's
/// types in a unit of their own, so every unit is walked until it is found.
fn dwarf_goid(elf: &object::File<'_>) -> Result<Option<u32>> {
    // Only what names types and members: decompressing line tables and
    // location lists would be most of the time.
    let load = |id: gimli::SectionId| -> Result<std::borrow::Cow<'_, [u8]>, gimli::Error> {
        let wanted =
            matches!(id, gimli::SectionId::DebugInfo | gimli::SectionId::DebugAbbrev | gimli::SectionId::DebugStr);
        Ok(match elf.section_by_name(id.name()).filter(|_| wanted) {
            Some(s) => s.uncompressed_data().unwrap_or_default(),
            None => std::borrow::Cow::Borrowed(&[]),
        })
    };
    let sections = gimli::DwarfSections::load(load)?;
    let endian = if elf.is_little_endian() { RunTimeEndian::Little } else { RunTimeEndian::Big };
    let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
    // Entries are walked straight from the unit headers: building a gimli
    // Unit would also parse line programs and ranges.
    let name = |e: &gimli::DebuggingInformationEntry<'_, '_, EndianSlice<'_, RunTimeEndian>>| -> Option<String> {
        let s = match e.attr_value(gimli::DW_AT_name).ok()?? {
            gimli::AttributeValue::String(s) => s,
            gimli::AttributeValue::DebugStrRef(o) => dwarf.debug_str.get_str(o).ok()?,
            _ => return None,
        };
        Some(s.to_string_lossy().into_owned())
    };
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let abbrevs = dwarf.abbreviations(&header)?;
        let mut entries = header.entries(&abbrevs);
        let mut in_g: Option<isize> = None;
        let mut depth = 0isize;
        while let Some((delta, e)) = entries.next_dfs()? {
            depth += delta;
            if in_g.is_some_and(|d| depth <= d) {
                return Ok(None);
            }
            match e.tag() {
                gimli::DW_TAG_structure_type if name(e).as_deref() == Some("runtime.g") => in_g = Some(depth),
                gimli::DW_TAG_member if in_g.is_some() && name(e).as_deref() == Some("goid") => {
                    return Ok(match e.attr_value(gimli::DW_AT_data_member_location)? {
                        Some(gimli::AttributeValue::Udata(off)) => u32::try_from(off).ok(),
                        _ => None,
                    });
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_goid_offsets() {
        assert_eq!(goid_offset_for("go1.19.8"), Some(152));
        assert_eq!(goid_offset_for("go1.22"), Some(152));
        assert_eq!(goid_offset_for("go1.23.4"), Some(160));
        assert_eq!(goid_offset_for("go1.16"), None);
        assert_eq!(goid_offset_for("go2.0"), None);
        assert_eq!(goid_offset_for("devel +abc"), None);
    }

    #[test]
    fn probes_go_on_the_stack_check_jump() {
        // lea r12,[rsp-0x230]; cmp r12,[r14+0x10]; jbe ...; sub rsp,...
        let big = [0x4c, 0x8d, 0xa4, 0x24, 0xd0, 0xfd, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xc3, 0x0e];
        assert_eq!(stack_check_jump(&big), 12);
        // cmp rsp,[r14+0x10]; jbe rel8; push rbp
        assert_eq!(stack_check_jump(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55]), 4);
        // No stack check (NOSPLIT), or something else after the compare.
        assert_eq!(stack_check_jump(&[0x55, 0x48, 0x89, 0xe5]), 0);
        assert_eq!(stack_check_jump(&[0x49, 0x3b, 0x66, 0x10, 0x90]), 0);
    }

    #[test]
    fn buildinfo_header_and_version() {
        let mut b = b"\xff Go buildinf:\x08\x02".to_vec();
        b.resize(32, 0);
        b.push(8);
        b.extend_from_slice(b"go1.19.8");
        b.extend_from_slice(&[0; 8]);
        assert_eq!(buildinfo_version(&b).as_deref(), Some("go1.19.8"));
        b[15] = 0;
        assert_eq!(buildinfo_version(&b), None, "pre-1.18 layout (pointers) is not read");
        assert_eq!(buildinfo_version(b"short"), None);
    }

    /// Against a Go binary built by the tests (skipped without `go`).
    #[test]
    fn reads_a_real_go_binary() {
        let out = std::env::temp_dir().join(format!("tracer-go-binary-test-{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/middles/middle.go");
        let built = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(&src)
            .env("CGO_ENABLED", "0")
            .env("GO111MODULE", "off")
            .env("GOCACHE", std::env::temp_dir().join("tracer-go-cache"))
            .status();
        let Ok(st) = built else {
            eprintln!("no go toolchain: skipped");
            return;
        };
        assert!(st.success());
        let t = std::time::Instant::now();
        let b = read(&out).expect("a Go binary");
        eprintln!("read in {:?}", t.elapsed());
        assert_eq!(read(&out).expect("again"), b, "the same every time");
        assert_eq!((b.goid_from, b.hooks_from), ("dwarf", "symbols"));
        assert_eq!(Some(b.goid_offset), b.version.as_deref().and_then(goid_offset_for), "{b:?}");
        assert!(b.hooks.iter().all(Option::is_some), "{b:?}");
        // Stripped (no symbols, no DWARF): the version table and the pclntab
        // give the same offsets.
        let st = std::process::Command::new("go")
            .args(["build", "-ldflags=-s -w", "-o"])
            .arg(&out)
            .arg(&src)
            .env("CGO_ENABLED", "0")
            .env("GO111MODULE", "off")
            .env("GOCACHE", std::env::temp_dir().join("tracer-go-cache"))
            .status()
            .unwrap();
        assert!(st.success());
        let s = read(&out).expect("a stripped Go binary");
        let _ = fs::remove_file(&out);
        assert_eq!((s.goid_from, s.hooks_from), ("version table", "pclntab"));
        assert_eq!(s.goid_offset, b.goid_offset);
        assert_eq!(s.hooks, b.hooks, "the pclntab names the same functions as the symbol table");
    }
}
