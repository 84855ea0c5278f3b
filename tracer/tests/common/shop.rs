//! The python shop of the business tests (tests/fixtures/shop.py:
//! /checkout calls a stock service, then answers after the delay `d=` asks
//! for, 500 with `fail=1`; /search) started in a network namespace, and a
//! load generator that keeps its own measurement of every request.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{Agent, Proc, http_get, wait_listening};

pub fn python_in(ns: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/shop.py");
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "python3", script])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tests/fixtures/shop.py"),
    );
    wait_listening(&format!("127.0.0.1:{}", args[0]), Some(ns));
    p
}

/// One request as the client saw it.
#[derive(Clone, Debug)]
pub struct Sample {
    pub path: &'static str,
    pub target: String,
    pub ms: f64,
    pub status: u16,
}

/// GET `target` on 127.0.0.1:`port` on a new connection; (status, ms from
/// connect to the response's last byte).
pub fn get(port: u16, target: &str) -> (u16, f64) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the shop");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let text = String::from_utf8_lossy(&resp);
    (text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), ms)
}

/// Runs `requests` (path, target) from `threads` threads inside `ns` (each
/// thread joins the namespace: setns is per thread).
pub fn load(ns: &str, port: u16, requests: Vec<(&'static str, String)>, threads: usize) -> Vec<Sample> {
    let path = format!("/var/run/netns/{ns}");
    let chunks: Vec<Vec<(&'static str, String)>> =
        (0..threads).map(|t| requests.iter().skip(t).step_by(threads).cloned().collect()).collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let path = path.clone();
            thread::spawn(move || {
                let f = std::fs::File::open(&path).unwrap();
                // SAFETY: a valid namespace fd; only this thread moves.
                let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                chunk
                    .into_iter()
                    .map(|(p, target)| {
                        let (status, ms) = get(port, &target);
                        Sample { path: p, target, ms, status }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

/// /api/transactions?window=1h by transaction name.
pub fn transactions(agent: &Agent) -> BTreeMap<String, Value> {
    let (code, body) = http_get(agent.api, "/api/transactions?window=1h").expect("GET /api/transactions");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["transactions"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap().to_string(), t.clone())).collect()
}
