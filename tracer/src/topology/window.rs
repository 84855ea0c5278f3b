//! Rolling windows of edge figures: 1 min, 5 min and 1 h. In: per-edge
//! increments at a time (monotonic ns, passed in, so tests drive the clock).
//! Out: the sum of each edge's figures over a window, and the time the
//! window really covers (for rates).
//!
//! Each window is a ring of fixed slots (1 min: 12 x 5 s, 5 min: 30 x 10 s,
//! 1 h: 60 x 1 min); a slot holds only the edges active in it, so memory
//! follows traffic (bounded by edges x 102 slots x ~130 bytes) and an idle
//! graph costs nothing. A window sums its slots, the current partial one
//! included, so it covers between (slots - 1) and slots slot lengths; rates
//! divide by what it covers (and by less while the agent is younger than
//! the window).

use foldhash::{HashMap, HashMapExt};
use std::collections::VecDeque;

use super::histogram::SlotHistogram;

pub type EdgeId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    M1,
    M5,
    H1,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::M1, Window::M5, Window::H1];

    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "1m" => Some(Window::M1),
            "5m" => Some(Window::M5),
            "1h" => Some(Window::H1),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::M1 => "1m",
            Window::M5 => "5m",
            Window::H1 => "1h",
        }
    }

    /// (slot length in s, slots).
    fn shape(self) -> (u64, u64) {
        match self {
            Window::M1 => (5, 12),
            Window::M5 => (10, 30),
            Window::H1 => (60, 60),
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The longest window: edges idle this long are dropped.
    pub const LONGEST_NS: u64 = 3_600 * 1_000_000_000;
}

/// TCP figures of an edge in one slot (see `graph::TcpTotals` for meanings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSlot {
    pub opened: u32,
    pub failed: u32,
    pub refused: u32,
    pub timeout: u32,
    pub reset: u32,
    pub retransmits: u32,
    /// Sum and number of smoothed-RTT samples (one per closed connection).
    pub srtt_sum_us: u64,
    pub srtt_n: u32,
}

/// What one edge did in one slot (or, summed, in a window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotStats {
    pub requests: u32,
    pub errors: u32,
    /// Latency the caller saw (see `graph` for which span gives it).
    pub latency: SlotHistogram,
    pub tcp: TcpSlot,
}

impl SlotStats {
    pub fn merge(&mut self, o: &SlotStats) {
        let add = |a: &mut u32, b: u32| *a = a.saturating_add(b);
        add(&mut self.requests, o.requests);
        add(&mut self.errors, o.errors);
        self.latency.merge(&o.latency);
        let (t, u) = (&mut self.tcp, &o.tcp);
        add(&mut t.opened, u.opened);
        add(&mut t.failed, u.failed);
        add(&mut t.refused, u.refused);
        add(&mut t.timeout, u.timeout);
        add(&mut t.reset, u.reset);
        add(&mut t.retransmits, u.retransmits);
        t.srtt_sum_us = t.srtt_sum_us.saturating_add(u.srtt_sum_us);
        add(&mut t.srtt_n, u.srtt_n);
    }
}

struct Ring {
    slot_ns: u64,
    len: u64,
    /// (slot number = time / slot_ns, edges active in it), oldest first.
    slots: VecDeque<(u64, HashMap<EdgeId, SlotStats>)>,
}

impl Ring {
    fn new(w: Window) -> Ring {
        let (secs, len) = w.shape();
        Ring { slot_ns: secs * 1_000_000_000, len, slots: VecDeque::with_capacity(len as usize) }
    }

    /// Drop slots that fell out of the window.
    fn advance(&mut self, now_ns: u64) {
        let cur = now_ns / self.slot_ns;
        while self.slots.front().is_some_and(|(no, _)| no + self.len <= cur) {
            self.slots.pop_front();
        }
    }

    fn current(&mut self, now_ns: u64) -> &mut HashMap<EdgeId, SlotStats> {
        self.advance(now_ns);
        let cur = now_ns / self.slot_ns;
        // Time only moves forward here; an earlier `now` lands in the newest slot.
        if self.slots.back().is_none_or(|(no, _)| *no < cur) {
            self.slots.push_back((cur, HashMap::new()));
        }
        &mut self.slots.back_mut().expect("pushed above").1
    }

    fn sum(&self, now_ns: u64, out: &mut HashMap<EdgeId, SlotStats>) {
        let cur = now_ns / self.slot_ns;
        for (_, slot) in self.slots.iter().filter(|(no, _)| no + self.len > cur) {
            for (id, s) in slot {
                out.entry(*id).or_default().merge(s);
            }
        }
    }

    /// Time the window covers at `now`: from the start of its oldest slot
    /// (or `since`, when later) to now.
    fn covered_ns(&self, now_ns: u64, since_ns: u64) -> u64 {
        let cur = now_ns / self.slot_ns;
        let start = (cur + 1).saturating_sub(self.len) * self.slot_ns;
        now_ns.saturating_sub(start.max(since_ns))
    }
}

pub struct Windows {
    rings: [Ring; 3],
    started_ns: u64,
}

impl Windows {
    pub fn new(now_ns: u64) -> Windows {
        Windows { rings: Window::ALL.map(Ring::new), started_ns: now_ns }
    }

    /// Apply `f` to the edge's figures of the current slot of every window.
    pub fn add(&mut self, now_ns: u64, edge: EdgeId, f: impl Fn(&mut SlotStats)) {
        for r in &mut self.rings {
            f(r.current(now_ns).entry(edge).or_default());
        }
    }

    /// Free the slots that left their window (called on every tick, so an
    /// idle graph empties).
    pub fn advance(&mut self, now_ns: u64) {
        for r in &mut self.rings {
            r.advance(now_ns);
        }
    }

    /// Every edge active in the window, its figures summed, and the seconds
    /// the window covers.
    pub fn sum(&self, w: Window, now_ns: u64) -> (HashMap<EdgeId, SlotStats>, f64) {
        let r = &self.rings[w.index()];
        let mut out = HashMap::new();
        r.sum(now_ns, &mut out);
        (out, r.covered_ns(now_ns, self.started_ns) as f64 / 1e9)
    }

    #[cfg(test)]
    /// (edge, slot) entries held, over all windows.
    pub fn entries(&self) -> usize {
        self.rings.iter().flat_map(|r| r.slots.iter()).map(|(_, s)| s.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    /// A monotonic time far from zero, on a minute boundary.
    const T0: u64 = 10_000 * 60 * S;

    fn req(w: &mut Windows, now: u64, edge: EdgeId) {
        w.add(now, edge, |s| {
            s.requests += 1;
            s.latency.record(1_000_000);
        });
    }

    #[test]
    fn windows_roll_with_the_clock() {
        let mut w = Windows::new(T0);
        req(&mut w, T0, 1);
        req(&mut w, T0 + 30 * S, 1);
        req(&mut w, T0 + 30 * S, 2);
        let at = |w: &Windows, win, now| w.sum(win, now).0.get(&1).map_or(0, |s| s.requests);
        assert_eq!(at(&w, Window::M1, T0 + 31 * S), 2);
        // 1 min later the first request left the 1 min window, not the 5 min one.
        assert_eq!(at(&w, Window::M1, T0 + 61 * S), 1);
        assert_eq!(at(&w, Window::M5, T0 + 61 * S), 2);
        assert_eq!(at(&w, Window::M1, T0 + 95 * S), 0);
        assert_eq!(at(&w, Window::M5, T0 + 299 * S), 2);
        assert_eq!(at(&w, Window::M5, T0 + 301 * S), 1);
        assert_eq!(at(&w, Window::H1, T0 + 3_599 * S), 2);
        assert_eq!(at(&w, Window::H1, T0 + 3_600 * S), 0, "both were in the first minute");
        let (sum, _) = w.sum(Window::M1, T0 + 31 * S);
        assert_eq!(sum[&2].requests, 1);
        assert_eq!(sum[&1].latency.quantile_ms(0.5), Some(0.75));
    }

    #[test]
    fn idle_windows_free_their_slots() {
        let mut w = Windows::new(T0);
        for i in 0..100 {
            req(&mut w, T0 + i * S, i % 7);
        }
        assert!(w.entries() > 0);
        w.advance(T0 + 2 * 3_600 * S);
        assert_eq!(w.entries(), 0);
    }

    #[test]
    fn covered_time_is_the_window_or_the_agent_age() {
        let mut w = Windows::new(T0);
        req(&mut w, T0, 1);
        // Agent 10 s old: the 1 min window covers 10 s.
        assert_eq!(w.sum(Window::M1, T0 + 10 * S).1, 10.0);
        // Later: between 55 and 60 s (12 slots of 5 s, the current one partial).
        let c = w.sum(Window::M1, T0 + 3_602 * S).1;
        assert_eq!(c, 57.0);
        let c = w.sum(Window::H1, T0 + 7_230 * S).1;
        assert_eq!(c, 3_570.0);
    }

    #[test]
    fn merge_adds_every_field() {
        let mut a = SlotStats::default();
        let mut b = SlotStats { requests: 2, errors: 1, ..Default::default() };
        b.tcp = TcpSlot {
            opened: 1,
            failed: 2,
            refused: 1,
            timeout: 1,
            reset: 1,
            retransmits: 3,
            srtt_sum_us: 50,
            srtt_n: 1,
        };
        b.latency.record(5);
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.requests, 4);
        assert_eq!(a.tcp.retransmits, 6);
        assert_eq!(a.tcp.srtt_sum_us, 100);
        assert_eq!(a.latency.counts[0], 2);
    }
}
