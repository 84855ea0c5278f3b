//! Per-connection statement caches, both bounded: prepared statements by the
//! id the server gave them (what COM_STMT_EXECUTE names), oldest evicted
//! first and counted; and the last few statement texts read, by hash, so a
//! query a client repeats is reduced by the SQL sanitizer once.

use std::{hash::BuildHasher, sync::Arc};

use crate::protocols::sql::{self, Dialect, Statement};

/// Prepared statements kept per connection (clients rarely hold more;
/// drivers that never close theirs stay bounded).
pub const MAX_PREPARED: usize = 256;
/// Statement texts remembered per connection.
const RECENT: usize = 16;

#[derive(Default)]
pub struct Statements {
    prepared: Vec<(u32, Arc<Statement>)>,
    recent: Vec<(u64, Arc<Statement>)>,
    /// Where the next recent text goes (a ring).
    next_recent: usize,
    /// Prepared statements dropped to make room since the last take.
    pub evicted: u64,
}

impl Statements {
    /// The literal-free form of a statement's (kept) text; `cut`: the
    /// packet had more bytes than were kept.
    pub fn reduce(&mut self, text: &[u8], cut: bool) -> Arc<Statement> {
        let h = foldhash::quality::FixedState::with_seed(0x6d79_7371).hash_one((text, cut));
        if let Some((_, s)) = self.recent.iter().find(|(k, _)| *k == h) {
            return s.clone();
        }
        let s = Arc::new(sql::sanitize(text, Dialect::MySql, cut));
        if self.recent.len() < RECENT {
            self.recent.push((h, s.clone()));
        } else {
            self.recent[self.next_recent] = (h, s.clone());
        }
        self.next_recent = (self.next_recent + 1) % RECENT;
        s
    }

    pub fn insert(&mut self, id: u32, s: Arc<Statement>) {
        self.prepared.retain(|(k, _)| *k != id);
        if self.prepared.len() >= MAX_PREPARED {
            self.prepared.remove(0);
            self.evicted += 1;
        }
        self.prepared.push((id, s));
    }

    pub fn get(&self, id: u32) -> Option<Arc<Statement>> {
        self.prepared.iter().rev().find(|(k, _)| *k == id).map(|(_, s)| s.clone())
    }

    /// The most recently prepared (MariaDB's id 0xFFFFFFFF names it).
    pub fn last(&self) -> Option<Arc<Statement>> {
        self.prepared.last().map(|(_, s)| s.clone())
    }

    pub fn close(&mut self, id: u32) {
        self.prepared.retain(|(k, _)| *k != id);
    }

    pub fn clear(&mut self) {
        self.prepared.clear();
    }

    #[cfg(test)]
    pub fn prepared_len(&self) -> usize {
        self.prepared.len()
    }
}
