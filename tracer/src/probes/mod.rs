//! Loading the embedded eBPF object, attaching every probe of the registry,
//! and the kernel-side maps the rest of the agent reads.

pub mod btf;
pub mod preflight;
pub mod registry;

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        RawTracePoint, TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope},
    },
};
use tracer_common::{
    config::{MAX_CAPTURE, ProbeConfig, RUNTIMES_GO, RUNTIMES_NODE},
    go::{GO_FILES, GO_PROCS, GoFile, GoProc},
    maps::{COUNTERS, Counter, EVENTS, PROBE_CONFIG, SOCK_VERDICT},
    process::{PROCESS_CONFIG, ProcessConfig},
};

use self::registry::{Kind, PROBES, ProbeSpec};

/// The object built by build.rs from tracer-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

pub struct LoadOptions {
    pub capture_bytes: u32,
    pub wakeup_bytes: u64,
    /// Attach the accept() syscall tracepoints (see registry::ProbeSpec).
    pub accept_hook: bool,
    /// Only this network namespace (inode number); 0: all.
    pub netns: u32,
    /// Goroutine ids on Go processes' data events (`[runtimes] go`).
    pub go: bool,
    /// Node.js callback tasks (`[runtimes] node`; needs `go`).
    pub node: bool,
    /// The data probe checks for TLS library calls (`[tls] openssl`).
    pub tls: bool,
}

/// Loaded and attached probes. Dropping this detaches everything; the kernel
/// also releases all of it when the process dies (nothing is pinned).
pub struct Probes {
    ebpf: Ebpf,
    accept_hook: bool,
    pub attached: Vec<&'static str>,
    /// The kernel side reads goroutine ids (`[runtimes] go` and this
    /// kernel's layout allow it).
    pub go: bool,
    /// TLS library uprobes may be attached (`[tls] openssl`).
    pub tls: bool,
    /// Optional kernel features this kernel lacks, one line each.
    pub degraded: Vec<String>,
}

impl Probes {
    /// Check privileges and the kernel, then load the object with this
    /// kernel's offsets (the programs are verified here).
    pub fn load(opts: &LoadOptions) -> Result<Probes> {
        if OBJECT.is_empty() {
            bail!(
                "this tracer binary was built without its eBPF programs (AYA_BUILD_SKIP); build it with `cargo xtask build`"
            );
        }
        preflight::check_privileges()?;
        preflight::ensure_tracefs()?;
        let degraded = preflight::check_kernel_features()?;
        for d in &degraded {
            tracing::warn!("degraded: {d}");
        }
        preflight::check_tracepoint_layouts()?;
        let offsets = btf::kernel_offsets(Path::new(btf::VMLINUX_BTF))?;
        let go = opts.go && offsets.task_fsbase != 0;
        let cfg = ProbeConfig {
            offsets,
            syscalls: btf::syscall_nrs(),
            self_pid: std::process::id(),
            capture_bytes: opts.capture_bytes.min(MAX_CAPTURE as u32),
            wakeup_bytes: opts.wakeup_bytes,
            netns: opts.netns,
            go: if go { RUNTIMES_GO } else { 0 } | if go && opts.node { RUNTIMES_NODE } else { 0 },
            tls: u32::from(opts.tls),
            _pad: 0,
        };
        let process = process_config().unwrap_or_else(|e| {
            tracing::warn!("process probes disabled, service names come from /proc only: {e:#}");
            ProcessConfig::default()
        });
        let ebpf = EbpfLoader::new()
            .override_global(PROBE_CONFIG, &cfg, true)
            .override_global(PROCESS_CONFIG, &process, true)
            .load(OBJECT)
            .context("loading the eBPF object (maps and BTF)")?;
        Ok(Probes { ebpf, accept_hook: opts.accept_hook, attached: Vec::new(), go, tls: opts.tls, degraded })
    }

    /// Verify and attach every probe of the registry, in order. A required
    /// probe that fails is an error naming it and the kernel's reason.
    pub fn attach_all(&mut self) -> Result<()> {
        let accept_hook = self.accept_hook;
        for spec in PROBES.iter().filter(|s| accept_hook || !s.accept_hook) {
            match self.attach(spec) {
                Ok(()) => self.attached.push(spec.program),
                Err(e) if spec.required => return Err(e),
                Err(e) => {
                    tracing::warn!(probe = spec.program, error = %e, "optional probe not attached")
                }
            }
        }
        Ok(())
    }

    fn attach(&mut self, spec: &ProbeSpec) -> Result<()> {
        let prog = self
            .ebpf
            .program_mut(spec.program)
            .ok_or_else(|| anyhow!("probe {} is missing from the eBPF object", spec.program))?;
        let refused = |e| anyhow!("probe {}: the kernel refused to load it: {e}", spec.program);
        let failed =
            |e| anyhow!("probe {}: attaching to tracepoint {}:{} failed: {e}", spec.program, spec.category, spec.name);
        match spec.kind {
            Kind::TracePoint => {
                let p: &mut TracePoint = prog.try_into()?;
                p.load().map_err(refused)?;
                p.attach(spec.category, spec.name).map_err(failed)?;
            }
            Kind::RawTracePoint => {
                let p: &mut RawTracePoint = prog.try_into()?;
                p.load().map_err(refused)?;
                p.attach(spec.name).map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Attach the uprobe or uretprobe `program` at `offset` in the executable at
    /// `target` (every process running it), loading the program first.
    pub fn attach_uprobe<'a>(
        &mut self,
        program: &str,
        target: &Path,
        location: impl Into<UProbeAttachLocation<'a>>,
    ) -> Result<UProbeLinkId> {
        let location = location.into();
        let at = match &location {
            UProbeAttachLocation::Symbol(s) => (*s).to_string(),
            UProbeAttachLocation::SymbolOffset(s, o) => format!("{s}+{o:#x}"),
            UProbeAttachLocation::AbsoluteOffset(o) => format!("{o:#x}"),
        };
        let prog =
            self.ebpf.program_mut(program).ok_or_else(|| anyhow!("probe {program} is missing from the eBPF object"))?;
        let p: &mut UProbe = prog.try_into()?;
        if p.fd().is_err() {
            p.load().map_err(|e| anyhow!("probe {program}: the kernel refused to load it: {e}"))?;
        }
        p.attach(location, target, UProbeScope::AllProcesses)
            .map_err(|e| anyhow!("probe {program}: attaching to {} at {at} failed: {e}", target.display()))
    }

    pub fn detach_uprobe(&mut self, program: &str, link: UProbeLinkId) -> Result<()> {
        let prog = self.ebpf.program_mut(program).ok_or_else(|| anyhow!("probe {program} missing"))?;
        let p: &mut UProbe = prog.try_into()?;
        p.detach(link)?;
        Ok(())
    }

    /// The kernel's per-socket verdicts, written by the connection stage.
    pub fn take_sock_verdicts(&mut self) -> Result<BpfHashMap<MapData, u64, u8>> {
        let map = self.ebpf.take_map(SOCK_VERDICT).ok_or_else(|| anyhow!("map {SOCK_VERDICT} missing"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    /// The map of Go executables the exec probe probes new processes of.
    pub fn take_go_files(&mut self) -> Result<BpfHashMap<MapData, GoFile, GoProc>> {
        let map = self.ebpf.take_map(GO_FILES).ok_or_else(|| anyhow!("map {GO_FILES} missing"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    /// The map of Go processes the data probe reads goroutine ids for.
    pub fn take_go_procs(&mut self) -> Result<BpfHashMap<MapData, u32, GoProc>> {
        let map = self.ebpf.take_map(GO_PROCS).ok_or_else(|| anyhow!("map {GO_PROCS} missing"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(EVENTS).ok_or_else(|| anyhow!("map {EVENTS} missing"))?;
        Ok(RingBuf::try_from(map)?)
    }

    pub fn take_counters(&mut self) -> Result<KernelCounters> {
        let map = self.ebpf.take_map(COUNTERS).ok_or_else(|| anyhow!("map {COUNTERS} missing"))?;
        Ok(KernelCounters { map: PerCpuArray::try_from(map)? })
    }
}

/// What the process probes read; an error disables them (optional probes).
fn process_config() -> Result<ProcessConfig> {
    // The exec probe reads the record's filename __data_loc at offset 8.
    let off = preflight::field_offset("sched", "sched_process_exec", "filename")?;
    if off != 8 {
        bail!("sched:sched_process_exec filename is at offset {off}, the probe expects 8");
    }
    btf::process_offsets(Path::new(btf::VMLINUX_BTF))
}

/// The per-CPU counters of the kernel side, summed over CPUs.
pub struct KernelCounters {
    map: PerCpuArray<MapData, u64>,
}

impl KernelCounters {
    pub fn read(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|c| {
                let v = self.map.get(&(*c as u32), 0).map(|vals| vals.iter().sum()).unwrap_or(0);
                (*c, v)
            })
            .collect()
    }
}
