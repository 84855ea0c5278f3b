//! OpenSSL's libssl: the functions probed, where the library files are, and
//! which of the functions a file defines.

use std::{fs, path::Path};

use object::{Object, ObjectSymbol, ReadCache};

use super::code;

/// One probed function: its symbol and the two programs (entry, return)
/// of tracer-ebpf `probes::tls`.
pub struct Hook {
    pub symbol: &'static str,
    pub entry: &'static str,
    pub ret: &'static str,
}

/// What the libraries Debian ships call: nginx, curl, libpq and the MariaDB
/// client use SSL_read / SSL_write; CPython's `ssl` uses the `_ex` forms.
/// They do not call each other inside OpenSSL 3, so a call is seen once.
pub const HOOKS: [Hook; 4] = [
    Hook { symbol: "SSL_read", entry: "ssl_read", ret: "ssl_read_ret" },
    Hook { symbol: "SSL_read_ex", entry: "ssl_read_ex", ret: "ssl_read_ex_ret" },
    Hook { symbol: "SSL_write", entry: "ssl_write", ret: "ssl_write_ret" },
    Hook { symbol: "SSL_write_ex", entry: "ssl_write_ex", ret: "ssl_write_ex_ret" },
];

/// Where distributions keep shared libraries, relative to a root.
const LIBRARY_DIRS: [&str; 6] =
    ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64", "usr/lib", "usr/local/lib"];

/// A shared library of OpenSSL's libssl by its file name (`libssl.so`,
/// `libssl.so.3`, `libssl.so.1.1`).
pub fn is_libssl_name(name: &str) -> bool {
    name == "libssl.so" || name.starts_with("libssl.so.")
}

/// The libssl files in the usual library directories under `root`.
pub fn usual_paths(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in LIBRARY_DIRS {
        let Ok(entries) = fs::read_dir(root.join(dir)) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(is_libssl_name) {
                out.push(e.path());
            }
        }
    }
    out
}

/// The libssl files a process maps, from its `/proc/<pid>/maps` text (paths
/// as the process sees them; deleted files left out).
pub fn mapped_libraries(maps: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let Some(path) = line.split_whitespace().nth(5) else { continue };
        let name = path.rsplit('/').next().unwrap_or(path);
        if path.starts_with('/') && is_libssl_name(name) && !line.ends_with("(deleted)") && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Where one pair of programs (entry uprobe, return uretprobe) is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// File offset of the probed instruction.
    pub offset: u64,
    pub entry: &'static str,
    pub ret: &'static str,
    /// The function probed, for the log.
    pub function: String,
}

/// Where to probe the TLS file at `path`: empty when it defines none of the
/// functions (it may import them).
///
/// A uprobe whose instruction the kernel cannot emulate is single-stepped
/// (a debug trap per call, ~10 µs in a VM); the public functions begin with
/// `sub $n,%rsp`, which is not emulated. OpenSSL 3 implements SSL_read and
/// SSL_read_ex as calls of one internal function with the `_ex` signature
/// (`ssl_read_internal(s, buf, num, &readbytes)`, and `ssl_write_internal`
/// likewise), which starts with register pushes, which are emulated. So
/// when both public functions call the same function first, and it starts
/// with an emulated instruction, that function is probed, with the `_ex`
/// programs: one entry trap and one return per call, and nothing called
/// twice. Otherwise each public function is probed itself.
pub fn sites(path: &Path) -> anyhow::Result<Vec<Site>> {
    let file = fs::File::open(path)?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache)?;
    let address = |name: &str| {
        let is = |s: &object::Symbol<'_, '_, &ReadCache<fs::File>>| {
            s.is_definition() && s.name().is_ok_and(|n| n == name || n.split('@').next() == Some(name))
        };
        elf.dynamic_symbols().find(is).or_else(|| elf.symbols().find(is)).map(|s| s.address())
    };
    let found: Vec<(&Hook, u64)> = HOOKS.iter().filter_map(|h| Some((h, address(h.symbol)?))).collect();
    let code = |addr: u64| code_at(&elf, addr);
    let internal = |public: &str, ex: &str| -> Option<u64> {
        let first = code(address(public)?).and_then(|(c, a)| code::first_call(c, a))?;
        let again = code(address(ex)?).and_then(|(c, a)| code::first_call(c, a))?;
        (first == again && code(first).is_some_and(|(c, a)| code::emulated_first(c, a))).then_some(first)
    };
    if let (Some(r), Some(w)) = (internal("SSL_read", "SSL_read_ex"), internal("SSL_write", "SSL_write_ex"))
        && let (Some(ro), Some(wo)) = (file_offset(&elf, r), file_offset(&elf, w))
    {
        return Ok(vec![
            Site {
                offset: ro,
                entry: "ssl_read_ex",
                ret: "ssl_read_ex_ret",
                function: format!("SSL_read's callee {r:#x}"),
            },
            Site {
                offset: wo,
                entry: "ssl_write_ex",
                ret: "ssl_write_ex_ret",
                function: format!("SSL_write's callee {w:#x}"),
            },
        ]);
    }
    Ok(found
        .into_iter()
        .filter_map(|(h, a)| {
            Some(Site { offset: file_offset(&elf, a)?, entry: h.entry, ret: h.ret, function: h.symbol.to_string() })
        })
        .collect())
}

/// Up to 64 bytes of code at `addr`, and that address.
fn code_at<'d>(elf: &object::File<'d, &'d ReadCache<fs::File>>, addr: u64) -> Option<(&'d [u8], u64)> {
    use object::ObjectSection;
    let s = elf.sections().find(|s| s.address() <= addr && addr < s.address() + s.size())?;
    let len = (s.address() + s.size() - addr).min(64);
    Some((s.data_range(addr, len).ok()??, addr))
}

/// The file offset of a virtual address (its section's mapping).
fn file_offset<'d>(elf: &object::File<'d, &'d ReadCache<fs::File>>, addr: u64) -> Option<u64> {
    use object::ObjectSection;
    let s = elf.sections().find(|s| s.address() <= addr && addr < s.address() + s.size())?;
    let (off, _) = s.file_range()?;
    Some(addr - s.address() + off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libssl_in_maps_once() {
        let maps = "\
7f00-7f10 r--p 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f10-7f20 r-xp 00010000 08:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f20-7f30 r--p 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f30-7f40 r--p 00000000 08:01 98 /opt/app/lib/libssl.so.1.1 (deleted)
7f40-7f50 rw-p 00000000 00:00 0 [heap]
7f50-7f60 r--p 00000000 08:01 97 /usr/lib/x86_64-linux-gnu/libssl3.so";
        assert_eq!(mapped_libraries(maps), vec!["/usr/lib/x86_64-linux-gnu/libssl.so.3"]);
    }

    #[test]
    fn debian_libssl_is_probed_at_its_internal_read_and_write() {
        let lib = usual_paths(Path::new("/")).into_iter().find(|p| p.to_string_lossy().ends_with("libssl.so.3"));
        let lib = lib.expect("libssl3 is installed (curl and python depend on it)");
        let found = sites(&lib).unwrap();
        let programs: Vec<_> = found.iter().map(|s| (s.entry, s.ret)).collect();
        assert_eq!(programs, [("ssl_read_ex", "ssl_read_ex_ret"), ("ssl_write_ex", "ssl_write_ex_ret")], "{found:?}");
        assert!(sites(Path::new("/proc/self/exe")).unwrap().is_empty());
    }

    #[test]
    fn a_program_importing_ssl_write_is_not_a_library() {
        // curl links libssl: it imports SSL_write, defines none.
        let curl = Path::new("/usr/bin/curl");
        assert!(curl.exists(), "curl is installed by the test setup");
        assert!(sites(curl).unwrap().is_empty());
    }
}
