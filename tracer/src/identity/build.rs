//! The fallback `service.version` of a process that declares none (no
//! OTEL_RESOURCE_ATTRIBUTES service.version, no pod label or image tag):
//! its executable's build, so two builds of one service are told apart. The
//! GNU build id (`.note.gnu.build-id`, what gcc, clang and rustc's linkers
//! write) or Go's, else a hash of the file's identity (device, inode, size,
//! modification time). Cached per file; one read of the ELF notes per
//! executable. Interpreted programs get the interpreter's build.

use std::{collections::HashMap, fs, os::unix::fs::MetadataExt, sync::Arc};

use object::{Object, ObjectSection, ReadCache};

/// Executables remembered at most (then forgotten and read again).
const MAX_FILES: usize = 4096;
/// Hex digits of the build id kept: enough to tell builds apart, short
/// enough for a label.
const DIGITS: usize = 12;

#[derive(Default)]
pub struct Builds {
    by_file: HashMap<(u64, u64, u64, i64), Arc<str>>,
}

impl Builds {
    /// `build-<12 hex>` for the executable of `pid` (None: unreadable).
    pub fn of(&mut self, pid: u32) -> Option<Arc<str>> {
        let exe = format!("/proc/{pid}/exe");
        let m = fs::metadata(&exe).ok()?;
        let key = (m.dev(), m.ino(), m.size(), m.mtime());
        if let Some(v) = self.by_file.get(&key) {
            return Some(v.clone());
        }
        let id = build_id(&exe).unwrap_or_else(|| {
            // FNV-1a of the file's identity: stable for one file, new for a rebuilt one.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in [key.0, key.1, key.2, key.3 as u64].iter().flat_map(|w| w.to_le_bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        });
        let v: Arc<str> = format!("build-{}", &id[..id.len().min(DIGITS)]).into();
        if self.by_file.len() >= MAX_FILES {
            self.by_file.clear();
        }
        self.by_file.insert(key, v.clone());
        Some(v)
    }
}

/// The GNU build id (hex) of the ELF file at `path`, else Go's.
fn build_id(path: &str) -> Option<String> {
    let file = fs::File::open(path).ok()?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    if let Ok(Some(id)) = elf.build_id()
        && !id.is_empty()
    {
        return Some(id.iter().map(|b| format!("{b:02x}")).collect());
    }
    // Go: ".note.go.buildid" holds a printable id after a 16-byte note header.
    let note = elf.section_by_name(".note.go.buildid")?.data().ok()?;
    let text: String = note.get(16..)?.iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
    let hex: String = text.bytes().filter(u8::is_ascii_alphanumeric).map(|b| format!("{b:02x}")).collect();
    (!hex.is_empty()).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_has_a_build_id_version_stable_across_calls() {
        let mut b = Builds::default();
        let v = b.of(std::process::id()).expect("readable");
        assert!(v.starts_with("build-") && v.len() == "build-".len() + DIGITS, "{v}");
        assert!(v["build-".len()..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(b.of(std::process::id()), Some(v));
        assert!(build_id("/proc/self/exe").is_some(), "rustc's linker writes a GNU build id");
    }

    #[test]
    fn a_process_that_is_gone_has_none() {
        assert_eq!(Builds::default().of(u32::MAX), None);
    }
}
