//! End-to-end image: deploy/image.sh builds the agent's image FROM scratch
//! with Debian's podman (offline, nothing pulled) around the binary under
//! test, and the test runs it as the documented privileged host container
//! (host PID and network namespaces, BTF, tracefs and cgroups mounted). A
//! python http.server on the host is called by curl on the host: the agent
//! in the container prints the spans of both, with their host pids.
//!
//! The runtime flags are this sandbox's findings (deploy/README.md,
//! "Privileged container"): runc, because crun refuses the host's hybrid
//! cgroup layout (v1 controllers with hugetlb on the v2 hierarchy); and
//! explicit `--ulimit`s at the hard limits the runtime inherits, because
//! without CAP_SYS_RESOURCE nobody can raise a hard limit and podman's
//! defaults (nofile 1048576) are above them.

mod common;

use std::{net::SocketAddr, process::Command};

use common::*;

/// The hard RLIMIT_NPROC podman leaves its runtime (podman sets its own to
/// this at start, measured here); a container asking for more fails.
const PODMAN_NPROC: u64 = 32_768;

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(resource, &mut r) }, 0);
    r.rlim_max
}

/// A name podman knows (image or container), removed when dropped.
struct Podman {
    rm: &'static str,
    name: String,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("podman").args([self.rm, "-f", &self.name]).output();
    }
}

/// The documented command line, with the flags this sandbox needs.
fn privileged_run(image: &str, container: &str) -> Command {
    let mut c = Command::new("podman");
    c.args(["run", "--rm", "--name", container, "--runtime", "runc"])
        .arg(format!("--ulimit=nofile={0}:{0}", hard_limit(libc::RLIMIT_NOFILE)))
        .arg(format!("--ulimit=nproc={0}:{0}", hard_limit(libc::RLIMIT_NPROC).min(PODMAN_NPROC)))
        .args(["--privileged", "--pid=host", "--network=host"])
        .args(["-v", "/sys/kernel/btf:/sys/kernel/btf:ro"])
        .args(["-v", "/sys/kernel/tracing:/sys/kernel/tracing"])
        .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"])
        .arg(image);
    c
}

#[test]
fn scratch_image_traces_host_processes_from_a_privileged_container() {
    let id = std::process::id();
    let image = Podman { rm: "rmi", name: format!("localhost/tracer-e2e:{id}") };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/image.sh");
    let built = Command::new(script).args([TRACER, &image.name]).output().expect("running deploy/image.sh");
    assert!(
        built.status.success(),
        "deploy/image.sh: {}\n{}{}",
        built.status,
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let inspect = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Size}} {{len .RootFS.Layers}}", &image.name])
        .output()
        .unwrap();
    let inspect = String::from_utf8(inspect.stdout).unwrap();
    let (size, layers) = inspect.trim().split_once(' ').expect("podman image inspect: size and layers");
    let size: u64 = size.parse().unwrap();
    eprintln!("e2e_image: {} is {:.1} MB in {layers} layer(s)", image.name, size as f64 / 1e6);
    // FROM scratch: one layer, our files; the binary is most of it.
    assert_eq!(layers, "1", "FROM scratch gives one layer");
    let binary = std::fs::metadata(TRACER).unwrap().len();
    assert!(size < binary, "the image ({size} B) holds the stripped binary ({binary} B unstripped)");

    let dir = site(1000);
    let port = free_port();
    let server = http_server("127.0.0.1", port, None, &dir);
    let container = Podman { rm: "rm", name: format!("tracer-e2e-{id}") };
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut run = privileged_run(&image.name, &container.name);
    run.args(["run", "--output", "json", "--api-addr", &api.to_string()]);
    let agent = Agent::start_command(run, api);

    let mut curls = vec![];
    for _ in 0..3 {
        let t = curl(&format!("http://127.0.0.1:{port}/"), None, &[]);
        assert_eq!(t.http_code, 200);
        curls.push(t.pid);
    }
    // The server's spans carry its host pid: the container sees the host's
    // processes (--pid=host) and sockets (--network=host).
    let ours = |v: &serde_json::Value| attr(v, "server.port") == port;
    let servers = agent.wait_spans("http.server's spans", 3, |v| v["kind"] == "server" && ours(v));
    for s in &servers {
        assert_eq!(s["pid"], server.pid(), "{s}");
        assert_eq!(attr(s, "http.response.status_code"), 200, "{s}");
    }
    let clients = agent.wait_spans("curl's spans", 3, |v| v["kind"] == "client" && ours(v));
    let mut pids: Vec<u32> = clients.iter().map(|c| c["pid"].as_u64().unwrap() as u32).collect();
    pids.sort();
    curls.sort();
    assert_eq!(pids, curls, "one client span per curl, with its host pid");
    assert!(agent.metric("tracer_probes_attached ") > 0);
    agent.assert_no_drops();
    agent.stop();
}
