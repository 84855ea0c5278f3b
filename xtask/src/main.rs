//! `cargo xtask`: toolchain setup, build, run, test and bench orchestration.

mod bench;
mod cmd;
mod deploy;
mod install;
mod setup;
mod test;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cmd::run;

#[derive(Parser)]
#[command(about = "Build, run, test and benchmark the tracer")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the eBPF build needs (nightly rust-src, bpf-linker).
    Setup,
    /// Build the probes and the `tracer` binary that embeds them.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build if needed, then run `tracer run` as root; extra args go to it.
    Run {
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install what the tests drive (Debian packages, PyPI into target/tools),
    /// then every test: unit, property, deploy check and end-to-end on the
    /// real kernel (root). Prints each group's time.
    Test(test::Args),
    /// Install what the tests drive and nothing else (root).
    Install,
    /// Two-pass clippy (workspace, then the eBPF crate) and rustfmt check.
    Lint,
    /// Render the Kubernetes manifests and validate them offline
    /// (kubernetes-validate, checkov, the k8s_manifests test).
    DeployCheck,
    /// nginx under wrk, untraced vs traced, interleaved.
    Bench(bench::Args),
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// `cargo` with cargo's bin dir on PATH so aya-build finds bpf-linker.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root()).env("PATH", setup::path_with_cargo_bin());
    c
}

pub fn build(release: bool) -> Result<PathBuf> {
    setup::ensure_toolchain(&workspace_root())?;
    let mut c = cargo();
    c.args(["build", "--package", "tracer", "--bin", "tracer"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(workspace_root().join("target").join(if release { "release" } else { "debug" }).join("tracer"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup::ensure_toolchain(&workspace_root()),
        Cmd::Build { release } => build(release).map(|p| eprintln!("xtask: built {}", p.display())),
        Cmd::Run { release, args } => {
            let bin = build(release)?;
            let mut c = as_root(&bin);
            c.arg("run").args(args);
            run(&mut c)
        }
        Cmd::Test(args) => test::run_all(args),
        Cmd::Install => install::ensure(),
        Cmd::Lint => test::lint(),
        Cmd::DeployCheck => deploy::check(),
        Cmd::Bench(args) => bench::run(args),
    }
}

/// The tracer needs root (CAP_BPF, CAP_PERFMON); use sudo when not root.
pub fn as_root(bin: &Path) -> Command {
    if is_root() {
        Command::new(bin)
    } else {
        let mut c = Command::new("sudo");
        c.arg("--preserve-env").arg(bin);
        c
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}
