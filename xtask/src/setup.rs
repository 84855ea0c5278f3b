//! Toolchain setup: the nightly `rust-src` component and a bpf-linker linked
//! against the nightly toolchain's own libLLVM. Idempotent: each step checks
//! first and does nothing when already in place.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{output, run};

/// The toolchain aya-build uses for the eBPF crate.
pub const NIGHTLY: &str = "nightly";
/// bpf-linker release line matching the nightly toolchain's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13";
const LLVM_FEATURE: &str = "llvm-22";

pub fn ensure_toolchain(workspace: &Path) -> Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker(workspace)?;
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", NIGHTLY]))
        .context("rustup is needed to build the eBPF programs (https://rustup.rs)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for the {NIGHTLY} toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

fn cargo_bin_dir() -> PathBuf {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

/// Put cargo's bin dir on PATH so aya-build finds bpf-linker even when the
/// caller's PATH lacks it (sudo, CI shells).
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths = vec![cargo_bin_dir()];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).expect("PATH entries contain no separator")
}

fn bpf_linker_works() -> bool {
    Command::new(cargo_bin_dir().join("bpf-linker"))
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ensure_bpf_linker(workspace: &Path) -> Result<()> {
    if bpf_linker_works() {
        return Ok(());
    }
    let sysroot = output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.22") || n.starts_with("libLLVM-22"))
        })
        .with_context(|| format!("no libLLVM 22 in {}: the {NIGHTLY} toolchain must ship LLVM 22", lib.display()))?;
    // bpf-linker's build looks for `<prefix>/lib/libLLVM.so`; point it at the
    // nightly toolchain's copy so no system LLVM is needed.
    let prefix = workspace.join("target").join("llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), llvm.display()))?;
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} against {}", llvm.display());
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            &format!("~{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            LLVM_FEATURE,
            "--force",
        ])
        .env("LLVM_PREFIX", &prefix)
        // Found at run time through the rpath of the nightly sysroot.
        .env("RUSTFLAGS", format!("-C link-args=-Wl,-rpath,{}", lib.display())))?;
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but does not run; see the cargo install output above");
    }
    Ok(())
}
