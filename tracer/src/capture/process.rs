//! Exec and fork records -> [`ProcessEvent`]. Pure, like `decode`. The
//! environment area is reduced here to the two OpenTelemetry variables the
//! agent names services from: nothing else of it is kept, since an
//! environment holds secrets.

use tracer_common::{
    event::{EVENT_VERSION, EventHeader, EventKind},
    process::{EXEC_ARGV_FAILED, EXEC_ENV_FAILED, EXEC_FILENAME_FAILED, EXEC_FILENAME_MAX, ExecEvent, ForkEvent},
};

use super::decode::DecodeError;

/// A program started: what it was started as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exec {
    pub pid: u32,
    /// task start_boottime, ns.
    pub start_ns: u64,
    pub comm: String,
    /// The path given to execve (a symlink's own name, a script's path).
    pub filename: String,
    pub argv: Vec<String>,
    pub otel_service_name: Option<String>,
    pub otel_resource_attributes: Option<String>,
    /// The argument area was longer than its cap (or unreadable).
    pub argv_cut: bool,
    /// The environment area was longer than its cap (or unreadable): the
    /// variables may lie past the cut.
    pub env_cut: bool,
    pub flags: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fork {
    pub parent: u32,
    pub child: u32,
    pub child_start_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessEvent {
    Exec(Exec),
    Fork(Fork),
}

impl ProcessEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessEvent::Exec(_) => "exec",
            ProcessEvent::Fork(_) => "fork",
        }
    }
}

/// Arguments kept per exec: the naming rules look at the first ones only.
const MAX_ARGS: usize = 64;

/// `None` when the record is not a process record (the caller decodes it
/// as a socket event).
pub fn decode_process(buf: &[u8]) -> Option<Result<ProcessEvent, DecodeError>> {
    let h: EventHeader = read(buf).ok()?;
    if h.kind != EventKind::Exec as u16 && h.kind != EventKind::Fork as u16 {
        return None;
    }
    Some(decode_known(buf, &h))
}

fn decode_known(buf: &[u8], h: &EventHeader) -> Result<ProcessEvent, DecodeError> {
    if h.version != EVENT_VERSION {
        return Err(DecodeError::Version(h.version));
    }
    if h.len as usize > buf.len() {
        return Err(DecodeError::Length(h.len));
    }
    if h.kind == EventKind::Fork as u16 {
        let f: ForkEvent = read(buf)?;
        return Ok(ProcessEvent::Fork(Fork {
            parent: f.parent_pid,
            child: f.child_pid,
            child_start_ns: f.child_start_boottime_ns,
        }));
    }
    let e: ExecEvent = read(buf)?;
    let fixed = size_of::<ExecEvent>();
    let argv_at = fixed + EXEC_FILENAME_MAX;
    let env_at = argv_at + e.argv_len as usize;
    let end = env_at + e.env_len as usize;
    if end != h.len as usize || end > buf.len() || e.argv_len > e.argv_total || e.env_len > e.env_total {
        return Err(DecodeError::Length(h.len));
    }
    let (mut name, mut attrs) = (None, None);
    for var in buf[env_at..end].split(|b| *b == 0) {
        if let Some(v) = var.strip_prefix(b"OTEL_SERVICE_NAME=") {
            name = Some(String::from_utf8_lossy(v).into_owned());
        } else if let Some(v) = var.strip_prefix(b"OTEL_RESOURCE_ATTRIBUTES=") {
            attrs = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    let argv_cut = e.argv_len < e.argv_total || e.flags & EXEC_ARGV_FAILED != 0;
    let mut argv: Vec<String> = buf[argv_at..env_at]
        .split(|b| *b == 0)
        .take(MAX_ARGS)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The area ends with a NUL: the split leaves one empty tail.
    if argv.last().is_some_and(String::is_empty) && !argv_cut {
        argv.pop();
    }
    Ok(ProcessEvent::Exec(Exec {
        pid: e.pid,
        start_ns: e.start_boottime_ns,
        comm: cstr(&e.comm),
        filename: if e.flags & EXEC_FILENAME_FAILED != 0 { String::new() } else { cstr(&buf[fixed..argv_at]) },
        argv,
        otel_service_name: name,
        otel_resource_attributes: attrs,
        argv_cut,
        env_cut: e.env_len < e.env_total || e.flags & EXEC_ENV_FAILED != 0,
        flags: e.flags,
    }))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn read<T: Copy>(buf: &[u8]) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Short(buf.len()));
    }
    // SAFETY: length checked; T is a plain #[repr(C)] struct of integers.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An exec record as the probe writes it.
    pub fn exec_record(pid: u32, filename: &str, argv: &[&str], env: &[&str]) -> Vec<u8> {
        let argv: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
        let env: Vec<u8> = env.iter().flat_map(|a| a.bytes().chain([0])).collect();
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        let mut e = ExecEvent {
            pid,
            start_boottime_ns: 5_000_000_000,
            comm,
            argv_len: argv.len() as u32,
            argv_total: argv.len() as u32,
            env_len: env.len() as u32,
            env_total: env.len() as u32,
            ..Default::default()
        };
        let len = size_of::<ExecEvent>() + EXEC_FILENAME_MAX + argv.len() + env.len();
        e.header = EventHeader { kind: EventKind::Exec as u16, version: EVENT_VERSION, len: len as u32, ts_ns: 1 };
        let mut v =
            unsafe { std::slice::from_raw_parts((&e as *const ExecEvent).cast::<u8>(), size_of::<ExecEvent>()) }
                .to_vec();
        let mut f = [0u8; EXEC_FILENAME_MAX];
        f[..filename.len()].copy_from_slice(filename.as_bytes());
        v.extend_from_slice(&f);
        v.extend_from_slice(&argv);
        v.extend_from_slice(&env);
        v
    }

    #[test]
    fn keeps_only_the_otel_variables() {
        let r = exec_record(
            9,
            "/usr/bin/curl",
            &["curl", "-s", "http://x/"],
            &["AWS_SECRET_ACCESS_KEY=hunter2", "OTEL_SERVICE_NAME=shortcurl", "OTEL_RESOURCE_ATTRIBUTES=a=b"],
        );
        let Some(Ok(ProcessEvent::Exec(e))) = decode_process(&r) else { panic!() };
        assert_eq!(e.argv, ["curl", "-s", "http://x/"]);
        assert_eq!(e.filename, "/usr/bin/curl");
        assert_eq!(e.otel_service_name.as_deref(), Some("shortcurl"));
        assert_eq!(e.otel_resource_attributes.as_deref(), Some("a=b"));
        assert!(!format!("{e:?}").contains("hunter2"), "no other variable is kept");
        assert!(!e.argv_cut && !e.env_cut);
    }

    #[test]
    fn rejects_lengths_that_disagree() {
        let mut r = exec_record(9, "/bin/x", &["x"], &["A=b"]);
        r.pop();
        assert!(matches!(decode_process(&r), Some(Err(DecodeError::Length(_)))));
        let r = exec_record(9, "/bin/x", &["x"], &[]);
        assert!(decode_process(&r[..20]).unwrap().is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..600), argv_len in 0u32..5000) {
            let mut r = exec_record(1, "/bin/sh", &["sh"], &["A=1"]);
            r[48..52].copy_from_slice(&argv_len.to_ne_bytes());
            r.extend_from_slice(&tail);
            let _ = decode_process(&r);
        }
    }
}
