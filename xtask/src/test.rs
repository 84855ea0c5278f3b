//! `cargo xtask test`: install what the tests drive (install.rs), then the
//! groups one after another: unit and property tests, the deploy check, and
//! each end-to-end file (real probes, root, one test at a time). A failing
//! group does not stop the others; the end prints each group's time and
//! result. `cargo xtask lint`.

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, cmd::run, install, is_root, setup, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Only run tests whose name contains this filter.
    filter: Option<String>,
    /// Unit and property tests only: no root, no installs, no kernel.
    #[arg(long)]
    quick: bool,
    /// Install nothing: name what is missing and stop.
    #[arg(long)]
    no_install: bool,
}

/// One line of the summary.
struct Group {
    name: String,
    took: Duration,
    ok: bool,
}

pub fn run_all(args: Args) -> Result<()> {
    let filter = args.filter.as_deref();
    let mut groups = Vec::new();
    setup::ensure_toolchain(&workspace_root())?;
    if !args.quick {
        if !is_root() {
            bail!("the end-to-end tests load eBPF programs: run `sudo -E cargo xtask test` (or as root)");
        }
        let start = Instant::now();
        if args.no_install {
            let missing = install::missing();
            if !missing.is_empty() {
                bail!("missing what the tests drive (or drop --no-install to install it):\n  {}", missing.join("\n  "));
            }
        } else {
            install::ensure()?;
        }
        groups.push(Group { name: "install check".into(), took: start.elapsed(), ok: true });
    }

    // Unit and property tests, in parallel. Default members: everything but
    // the eBPF crate (built for its own target).
    let mut unit = cargo();
    install::test_env(&mut unit).args(["test", "--lib", "--bins"]);
    unit.args(filter);
    groups.push(timed("unit + property", || run(&mut unit)));
    if args.quick {
        return summary(&groups);
    }

    if filter.is_none() {
        groups.push(timed("deploy-check", crate::deploy::check));
    }
    // Build every e2e binary first, so each file's time is its tests' time.
    let files = e2e_files()?;
    let mut build = cargo();
    install::test_env(&mut build).args(["test", "--package", "tracer", "--no-run"]);
    for f in &files {
        build.args(["--test", f]);
    }
    groups.push(timed("e2e build", || run(&mut build)));
    // Serial: they share the kernel.
    for f in &files {
        let mut e2e = cargo();
        install::test_env(&mut e2e).args(["test", "--package", "tracer", "--test", f]);
        e2e.args(filter).args(["--", "--test-threads=1", "--nocapture"]);
        groups.push(timed(f, || run(&mut e2e)));
    }
    summary(&groups)
}

fn timed(name: &str, f: impl FnOnce() -> Result<()>) -> Group {
    eprintln!("xtask: == {name} ==");
    let start = Instant::now();
    let result = f();
    if let Err(e) = &result {
        eprintln!("xtask: {name} failed: {e:#}");
    }
    Group { name: name.to_string(), took: start.elapsed(), ok: result.is_ok() }
}

/// The end-to-end test files (`tracer/tests/e2e_*.rs`), sorted: a new file
/// is a new group without touching this list.
fn e2e_files() -> Result<Vec<String>> {
    let dir = workspace_root().join("tracer/tests");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".rs").filter(|s| s.starts_with("e2e_")).map(str::to_string))
        .collect();
    files.sort();
    Ok(files)
}

fn summary(groups: &[Group]) -> Result<()> {
    let total: Duration = groups.iter().map(|g| g.took).sum();
    eprintln!("\nxtask: test groups");
    for g in groups {
        eprintln!("  {:<16} {:>8}  {}", g.name, clock(g.took), if g.ok { "ok" } else { "FAILED" });
    }
    eprintln!("  {:<16} {:>8}", "total", clock(total));
    let failed: Vec<&str> = groups.iter().filter(|g| !g.ok).map(|g| g.name.as_str()).collect();
    if !failed.is_empty() {
        bail!("failed: {} (re-run one with `cargo xtask test <filter>`)", failed.join(", "));
    }
    Ok(())
}

/// `1m05s`, `7.2s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 { format!("{s:.1}s") } else { format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_as_minutes_past_a_minute() {
        assert_eq!(clock(Duration::from_millis(7300)), "7.3s");
        assert_eq!(clock(Duration::from_secs(65)), "1m05s");
    }
}
