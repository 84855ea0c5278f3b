//! Which container a process runs in, from its /proc/<pid>/cgroup: the
//! container id (64 hex digits) as containerd, CRI-O and Docker name their
//! cgroups under the kubelet's tree, on cgroup v1 and v2, with the systemd
//! and the cgroupfs drivers; and the pod uid from the kubelet's pod cgroup,
//! which names the pod before its status lists the container id.

use std::fs;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupIds {
    /// Lower-case, without the runtime prefix (`containerd://` is stripped
    /// from pod statuses to compare).
    pub container_id: Option<String>,
    /// The pod's metadata.uid (dashes, as the API server writes it).
    pub pod_uid: Option<String>,
}

/// Read and parse /proc/<pid>/cgroup; None when the process is gone.
pub fn for_pid(pid: u32) -> Option<CgroupIds> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    Some(parse(&text))
}

/// Parse the content of /proc/<pid>/cgroup. The v2 line (`0::<path>`) wins
/// when it names a container; else the first v1 hierarchy that does.
pub fn parse(text: &str) -> CgroupIds {
    let mut paths: Vec<(bool, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let hierarchy = parts.next()?;
            let _controllers = parts.next()?;
            Some((hierarchy == "0", parts.next()?))
        })
        .collect();
    // v2 first: on hybrid hosts it is the hierarchy the kubelet manages.
    paths.sort_by_key(|(v2, _)| !*v2);
    let mut ids = CgroupIds::default();
    for (_, path) in paths {
        if ids.container_id.is_none() {
            ids.container_id = container_id(path);
        }
        if ids.pod_uid.is_none() {
            ids.pod_uid = pod_uid(path);
        }
        if ids.container_id.is_some() && ids.pod_uid.is_some() {
            break;
        }
    }
    ids
}

/// The innermost path segment that ends in a 64-hex container id, after an
/// optional runtime prefix: `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope`, `<slice>:cri-containerd:<id>` (containerd, systemd
/// driver, cgroup v1), or the bare `<id>` of the cgroupfs driver. Innermost,
/// because a container may create cgroups below its own (`.../<id>/init.scope`
/// has no id, so the walk goes up to the container's).
fn container_id(path: &str) -> Option<String> {
    for seg in path.rsplit('/') {
        let seg = seg.strip_suffix(".scope").unwrap_or(seg);
        // CRI-O's conmon (the container's monitor process) is not the container.
        if seg.starts_with("crio-conmon-") {
            return None;
        }
        if seg.len() < 64 || !seg.is_char_boundary(seg.len() - 64) {
            continue;
        }
        let (prefix, id) = seg.split_at(seg.len() - 64);
        let delimited = prefix.is_empty() || prefix.ends_with('-') || prefix.ends_with(':');
        if delimited && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(id.to_ascii_lowercase());
        }
    }
    None
}

/// The kubelet names a pod's cgroup `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid with _ for ->.slice` (systemd driver).
fn pod_uid(path: &str) -> Option<String> {
    for seg in path.split('/') {
        let seg = seg.strip_suffix(".slice").unwrap_or(seg);
        // A pod slice may carry a containerd v1 suffix: `...pod<uid>.slice:cri-containerd:<id>`.
        let seg = seg.split(".slice:").next().unwrap_or(seg);
        let Some(at) = seg.rfind("pod") else { continue };
        let uid = seg[at + 3..].replace('_', "-");
        let prefix_ok = at == 0 || seg[..at].ends_with('-');
        if prefix_ok && is_uuid(&uid) {
            return Some(uid.to_ascii_lowercase());
        }
    }
    None
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2b3ad5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
    const UID: &str = "0e2c9c6b-8f3a-4b1e-9c1d-2f6d3b7a8e9f";

    fn ids(text: &str) -> (Option<String>, Option<String>) {
        let i = parse(text);
        (i.container_id, i.pod_uid)
    }

    /// Layouts as the kubelet and each runtime write them (real samples, id
    /// and uid replaced by the constants above).
    #[test]
    fn runtimes_and_cgroup_versions() {
        let both = (Some(ID.to_string()), Some(UID.to_string()));
        let cases = [
            // containerd, systemd driver, cgroup v2.
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/cri-containerd-{ID}.scope\n"
            ),
            // containerd, cgroupfs driver, cgroup v2.
            format!("0::/kubepods/besteffort/pod{UID}/{ID}\n"),
            // Guaranteed QoS has no QoS level in the path.
            format!(
                "0::/kubepods.slice/kubepods-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/cri-containerd-{ID}.scope\n"
            ),
            // CRI-O, systemd driver, cgroup v2.
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/crio-{ID}.scope\n"
            ),
            // Docker (cri-dockerd), systemd driver, cgroup v1.
            format!(
                "12:pids:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/docker-{ID}.scope\n\
                 11:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/docker-{ID}.scope\n\
                 1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/docker-{ID}.scope\n\
                 0::/\n"
            ),
            // Docker or containerd, cgroupfs driver, cgroup v1.
            format!("11:devices:/kubepods/burstable/pod{UID}/{ID}\n4:memory:/kubepods/burstable/pod{UID}/{ID}\n"),
            // containerd, systemd driver, cgroup v1: slice:runtime:id.
            format!(
                "5:cpu,cpuacct:/system.slice/containerd.service/kubepods-burstable-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice:cri-containerd:{ID}\n"
            ),
            // Read from inside the agent's own cgroup namespace: paths climb out.
            format!(
                "0::/../../kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/cri-containerd-{ID}.scope\n"
            ),
            // A container that made cgroups of its own (systemd inside).
            format!("0::/kubepods/burstable/pod{UID}/{ID}/init.scope\n"),
        ];
        for c in cases {
            assert_eq!(ids(&c), both, "{c}");
        }
    }

    #[test]
    fn docker_without_kubernetes_has_no_pod() {
        assert_eq!(
            ids(&format!("1:name=systemd:/docker/{ID}\n0::/system.slice/docker-{ID}.scope\n")),
            (Some(ID.into()), None)
        );
    }

    #[test]
    fn not_a_container() {
        for c in [
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "0::/system.slice/sshd.service\n",
            "0::/\n",
            // CRI-O's monitor of the container, not the container.
            &format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0e2c9c6b_8f3a_4b1e_9c1d_2f6d3b7a8e9f.slice/crio-conmon-{ID}.scope\n"
            ),
            // 64 characters that are not all hex.
            &format!("0::/kubepods/pod{UID}/{}\n", "z".repeat(64)),
            "",
        ] {
            assert_eq!(ids(c).0, None, "{c}");
        }
    }

    #[test]
    fn pod_cgroup_without_container_yet() {
        assert_eq!(ids(&format!("0::/kubepods/burstable/pod{UID}\n")), (None, Some(UID.into())));
    }
}
