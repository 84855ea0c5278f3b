//! OpenSSL's libssl: the functions probed, where the library files are, and
//! which of the functions a file defines.

use std::{fs, path::Path};

use object::{Object, ObjectSymbol, ReadCache};

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

/// The hooked functions the ELF file at `path` defines (dynamic or static
/// symbol table); empty when it defines none (it may import them).
pub fn functions(path: &Path) -> anyhow::Result<Vec<&'static Hook>> {
    let file = fs::File::open(path)?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache)?;
    let defined = |name: &str| {
        let is = |s: object::Symbol<'_, '_, &ReadCache<fs::File>>| {
            s.is_definition() && s.name().is_ok_and(|n| n == name || n.split('@').next() == Some(name))
        };
        elf.dynamic_symbols().any(is) || elf.symbols().any(is)
    };
    Ok(HOOKS.iter().filter(|h| defined(h.symbol)).collect())
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
    fn debian_libssl_defines_all_four_and_the_agent_none() {
        let lib = usual_paths(Path::new("/")).into_iter().find(|p| p.to_string_lossy().ends_with("libssl.so.3"));
        let lib = lib.expect("libssl3 is installed (curl and python depend on it)");
        let names: Vec<_> = functions(&lib).unwrap().iter().map(|h| h.symbol).collect();
        assert_eq!(names, ["SSL_read", "SSL_read_ex", "SSL_write", "SSL_write_ex"]);
        assert!(functions(Path::new("/proc/self/exe")).unwrap().is_empty());
    }

    #[test]
    fn a_program_importing_ssl_write_is_not_a_library() {
        // curl links libssl: it imports SSL_write, defines none.
        let curl = Path::new("/usr/bin/curl");
        assert!(curl.exists(), "curl is installed by the test setup");
        assert!(functions(curl).unwrap().is_empty());
    }
}
