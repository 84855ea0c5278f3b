//! A connection's named prepared statements (or portals): name -> the
//! statement's exportable form, bounded; past the bound the oldest entry is
//! evicted and counted, so an Execute of it later has no statement.

use std::{collections::VecDeque, sync::Arc};

use foldhash::HashMap;

use crate::protocols::sql::Statement;

/// A statement (None: its Parse was not read whole) and the generation it
/// was stored at.
type Slot = (Option<Arc<Statement>>, u64);

pub struct Cache {
    cap: usize,
    map: HashMap<Box<[u8]>, Slot>,
    /// Names oldest first, with their generation: an entry whose generation
    /// is no longer the map's is stale (replaced or closed).
    order: VecDeque<(Box<[u8]>, u64)>,
    generation: u64,
    pub evicted: u64,
}

impl Cache {
    pub fn new(cap: usize) -> Self {
        Cache { cap: cap.max(1), map: HashMap::default(), order: VecDeque::new(), generation: 0, evicted: 0 }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// None: not known (prepared before the agent saw the connection,
    /// evicted, or prepared while framing was lost).
    pub fn get(&self, name: &[u8]) -> Option<Arc<Statement>> {
        self.map.get(name).and_then(|(s, _)| s.clone())
    }

    pub fn insert(&mut self, name: &[u8], statement: Option<Arc<Statement>>) {
        self.generation += 1;
        let g = self.generation;
        if let Some(e) = self.map.get_mut(name) {
            *e = (statement, g);
        } else {
            while self.map.len() >= self.cap {
                let Some((old, og)) = self.order.pop_front() else { break };
                if self.map.get(&old).is_some_and(|(_, g)| *g == og) {
                    self.map.remove(&old);
                    self.evicted += 1;
                }
            }
            self.map.insert(name.into(), (statement, g));
        }
        self.order.push_back((name.into(), g));
        if self.order.len() > 2 * self.cap {
            // Drop the stale entries replacements and closes left behind.
            let map = &self.map;
            self.order.retain(|(n, g)| map.get(n).is_some_and(|(_, mg)| mg == g));
        }
    }

    pub fn remove(&mut self, name: &[u8]) {
        self.map.remove(name);
    }

    /// Bytes held (names and the statements' texts), for the bound tests.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        let text = |s: &Option<Arc<Statement>>| s.as_ref().map_or(0, |s| s.text.len() + s.summary.len());
        self.map.iter().map(|(n, (s, _))| n.len() + text(s)).sum::<usize>()
            + self.order.iter().map(|(n, _)| n.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(text: &str) -> Option<Arc<Statement>> {
        Some(Arc::new(Statement { text: text.into(), ..Default::default() }))
    }

    #[test]
    fn bounded_oldest_out() {
        let mut c = Cache::new(2);
        c.insert(b"a", st("A"));
        c.insert(b"b", st("B"));
        c.insert(b"a", st("A2")); // replaced: now the newest, b goes first
        c.insert(b"c", st("C"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.evicted, 1);
        assert!(c.get(b"c").is_some());
        c.remove(b"c");
        assert!(c.get(b"c").is_none());
        for i in 0..100u32 {
            c.insert(&i.to_be_bytes(), st("x"));
            c.remove(&i.to_be_bytes());
        }
        assert!(c.order.len() <= 4);
    }
}
