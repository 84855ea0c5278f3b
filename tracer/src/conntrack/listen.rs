//! Is a local port a listening port in a process's network namespace? Used to
//! give a role to connections first seen mid-stream (opened before the agent
//! started): the side whose local port is listening is the server.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

pub trait ListenLookup {
    fn is_listening(&mut self, pid: u32, port: u16) -> bool;
}

/// Reads /proc/<pid>/net/tcp and tcp6 (the pid's own network namespace),
/// cached per pid for a short time.
pub struct ProcListen {
    cache: HashMap<u32, (Instant, Vec<u16>)>,
    ttl: Duration,
}

impl ProcListen {
    /// Entries kept at most; the cache is cleared past it.
    const MAX_PIDS: usize = 1024;

    pub fn new() -> Self {
        ProcListen { cache: HashMap::new(), ttl: Duration::from_secs(2) }
    }
}

impl Default for ProcListen {
    fn default() -> Self {
        Self::new()
    }
}

impl ListenLookup for ProcListen {
    fn is_listening(&mut self, pid: u32, port: u16) -> bool {
        let now = Instant::now();
        if let Some((at, ports)) = self.cache.get(&pid)
            && now.duration_since(*at) < self.ttl
        {
            return ports.contains(&port);
        }
        let mut ports = Vec::new();
        for f in ["tcp", "tcp6"] {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")) {
                ports.extend(listening_ports(&text));
            }
        }
        if self.cache.len() >= Self::MAX_PIDS {
            self.cache.clear();
        }
        let hit = ports.contains(&port);
        self.cache.insert(pid, (now, ports));
        hit
    }
}

/// Local ports in state 0A (LISTEN) of a /proc/net/tcp{,6} table.
pub fn listening_ports(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1)?;
        let state = cols.nth(1)?;
        if state != "0A" {
            return None;
        }
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        assert_eq!(listening_ports(t).collect::<Vec<_>>(), vec![8080]);
    }
}
