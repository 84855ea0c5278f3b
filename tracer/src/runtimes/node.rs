//! Node.js processes: recognised by the C++ functions of the event loop
//! that the task uprobes attach to (tracer-ebpf `probes::node`,
//! tracer_common::node), exported by Debian's `/usr/bin/node` (and any
//! node built with its symbols exported, as the official builds are).

use std::{fs, path::Path};

use object::{Object, ObjectSection, ObjectSymbol, ReadCache};
use tracer_common::go::RUNTIME_NODE;

use super::go::binary::GoBinary;

/// (program, symbol) of every Node task uprobe, all at function entry (the
/// read callback's uretprobe too: a uretprobe is placed at the entry).
pub const HOOKS: [(&str, &str); 5] = [
    ("node_read_enter", "_ZN4node15LibuvStreamWrap8OnUvReadElPK8uv_buf_t"),
    ("node_read_leave", "_ZN4node15LibuvStreamWrap8OnUvReadElPK8uv_buf_t"),
    ("node_push_async_context", "_ZN4node10AsyncHooks18push_async_contextEddN2v85LocalINS1_6ObjectEEE"),
    ("node_loop_phase", "_ZN4node11Environment9RunTimersEP10uv_timer_s"),
    ("node_loop_phase", "_ZN4node11Environment14CheckImmediateEP10uv_check_s"),
];

/// The Node executable at `path`, as the runtime watcher probes it (None:
/// not Node, or the callback boundary not exported: its tasks cannot be
/// followed).
pub fn read(path: &Path) -> Option<GoBinary> {
    let file = fs::File::open(path).ok()?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    let offset = |name: &str| -> Option<u64> {
        let sym = elf.dynamic_symbols().find(|s| s.is_definition() && s.name() == Ok(name))?;
        let addr = sym.address();
        let s = elf.sections().find(|s| s.address() <= addr && addr < s.address() + s.size())?;
        Some(addr - s.address() + s.file_range()?.0)
    };
    // All or none: without any one of them a task would outlive its
    // callback (or never start).
    let points: Vec<(&'static str, u64)> = HOOKS.iter().filter_map(|(p, s)| Some((*p, offset(s)?))).collect();
    if points.len() != HOOKS.len() {
        return None;
    }
    Some(GoBinary {
        version: None,
        goid_offset: 0,
        goid_from: "node",
        hooks: [None; super::go::binary::HOOKS.len()],
        hooks_from: "node",
        returns: Vec::new(),
        points,
        runtime: RUNTIME_NODE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_node_exports_the_callback_boundary_and_the_agent_is_not_node() {
        let node = read(Path::new("/usr/bin/node")).expect("nodejs is installed by the test setup");
        assert_eq!(node.points.len(), HOOKS.len());
        assert!(read(Path::new("/proc/self/exe")).is_none());
    }
}
