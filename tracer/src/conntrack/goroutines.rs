//! Which goroutine moved each recent segment of a Go process's connection,
//! so an exchange's request and response get the goroutine of their first
//! byte (the protocol parsers carry the time and thread of that byte, not
//! the goroutine). Bounded: the last [`KEPT`] segments; a first byte older
//! than that gets no goroutine (0), which costs a link, never a wrong one.

use std::collections::VecDeque;

use crate::protocols::Timing;

/// Segments remembered per connection. An exchange is emitted when its
/// response ends; a request and response of a few segments each fit many
/// times over.
const KEPT: usize = 32;

#[derive(Debug, Default)]
pub struct Goroutines {
    /// (syscall return time, goroutine), in arrival order.
    recent: VecDeque<(u64, u64)>,
}

impl Goroutines {
    pub fn record(&mut self, ts_ns: u64, goid: u64) {
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back((ts_ns, goid));
    }

    /// The goroutine that moved the first byte of the message timed `t`.
    pub fn of(&self, t: &Timing) -> u64 {
        self.recent.iter().rev().find(|(ts, _)| *ts == t.first_ns).map_or(0, |(_, g)| *g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_byte_goroutine_and_forgets_old_ones() {
        let mut g = Goroutines::default();
        for i in 0..40u64 {
            g.record(100 + i, 1000 + i);
        }
        let at = |ns| Timing { first_ns: ns, ..Timing::default() };
        assert_eq!(g.of(&at(139)), 1039);
        assert_eq!(g.of(&at(108)), 1008);
        assert_eq!(g.of(&at(107)), 0, "forgotten: no goroutine rather than a guess");
        assert_eq!(g.of(&at(5)), 0);
    }
}
