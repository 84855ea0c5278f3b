//! `cargo xtask test`: unit and property tests, then the end-to-end tests
//! that load the real probes (root; one at a time). `cargo xtask lint`.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{cargo, cmd::run, is_root, setup, workspace_root};

pub fn run_all(filter: Option<&str>) -> Result<()> {
    setup::ensure_toolchain(&workspace_root())?;
    if !is_root() {
        bail!("the end-to-end tests load eBPF programs: run `sudo -E cargo xtask test` (or as root)");
    }
    // Unit and property tests, in parallel.
    let mut unit = cargo();
    // Default members: everything but the eBPF crate (built for its own target).
    unit.args(["test", "--lib", "--bins"]);
    if let Some(f) = filter {
        unit.arg(f);
    }
    run(&mut unit)?;
    // Kubernetes manifests, validated offline.
    if filter.is_none() {
        crate::deploy::check()?;
    }
    // End-to-end: real probes, real programs; serial, they share the kernel.
    let mut e2e = cargo();
    e2e.args(["test", "--package", "tracer", "--test", "e2e_*"]);
    if let Some(f) = filter {
        e2e.arg(f);
    }
    e2e.args(["--", "--test-threads=1", "--nocapture"]);
    run(&mut e2e)
}

pub fn lint() -> Result<()> {
    setup::ensure_toolchain(&workspace_root())?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    // Pass 1: the workspace without the eBPF crate.
    run(cargo().args(["clippy", "--workspace", "--exclude", "tracer-ebpf", "--all-targets", "--", "-D", "warnings"]))?;
    // Pass 2: the eBPF crate for its own target.
    run(Command::new("cargo")
        .current_dir(workspace_root().join("tracer-ebpf"))
        .env("PATH", setup::path_with_cargo_bin())
        .args([
            &format!("+{}", setup::NIGHTLY),
            "clippy",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--",
            "-D",
            "warnings",
        ]))
}
