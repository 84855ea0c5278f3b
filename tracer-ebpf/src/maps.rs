//! Maps of the kernel side; names and sizes come from `tracer_common::maps`.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    config::MAX_CAPTURE,
    event::DataEvent,
    maps::{Counter, EVENTS_BYTES, SOCK_VERDICT_MAX, VERDICT_COUNT_ONLY, VERDICT_WIDE},
};

use crate::config;

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map(name = "SOCK_VERDICT")]
pub static SOCK_VERDICT: LruHashMap<u64, u8> = LruHashMap::with_max_entries(SOCK_VERDICT_MAX, 0);

/// What the agent said of this socket: no parser reads it (ship no
/// payload: `.0`), or its parser needs every byte it can get (`.1`).
#[inline(always)]
pub fn verdict(sk: u64) -> (bool, bool) {
    match unsafe { SOCK_VERDICT.get(sk) } {
        Some(v) => (*v == VERDICT_COUNT_ONLY, *v == VERDICT_WIDE),
        None => (false, false),
    }
}

/// A socket starts (or ends) a connection: whatever was said of the
/// address before is not said of it.
#[inline(always)]
pub fn forget_verdict(sk: u64) {
    let _ = SOCK_VERDICT.remove(sk);
}

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Per-CPU buffer a data event is assembled in. Twice the capture limit so the
/// verifier can prove every copy at offset < MAX_CAPTURE of up to
/// MAX_CAPTURE bytes stays inside it.
#[repr(C)]
pub struct DataScratch {
    pub event: DataEvent,
    pub payload: [u8; 2 * MAX_CAPTURE],
}

#[map(name = "DATA_SCRATCH")]
pub static DATA_SCRATCH: PerCpuArray<DataScratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        unsafe { *p += 1 };
    }
}

/// Records submitted on each CPU, so the fill level is looked at only on
/// every QUERY_EVERY-th record.
#[map(name = "SUBMITS")]
static SUBMITS: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Records between two looks at the ring's fill level, per CPU. Reading it
/// touches the cache line the reader writes (a cross-CPU miss each time);
/// 32 records are a few KiB, nothing next to the wakeup threshold.
const QUERY_EVERY: u32 = 32;

/// Ring-buffer flags: no wakeup per record (it costs more than the probe);
/// wake the reader only once the fill level passes the configured threshold.
#[inline(always)]
pub fn submit_flags() -> u64 {
    let Some(n) = SUBMITS.get_ptr_mut(0) else {
        return BPF_RB_NO_WAKEUP as u64;
    };
    let due = unsafe {
        *n = (*n).wrapping_add(1);
        *n % QUERY_EVERY == 0
    };
    if due && EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= config::wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Write `len` bytes at `ptr` as one record, counting the outcome.
#[inline(always)]
pub fn output(ptr: *const u8, len: usize) {
    let data = unsafe { core::slice::from_raw_parts(ptr, len) };
    match EVENTS.output::<[u8]>(data, submit_flags()) {
        Ok(()) => count(Counter::EventsSubmitted),
        Err(_) => count(Counter::RingbufFull),
    }
}
