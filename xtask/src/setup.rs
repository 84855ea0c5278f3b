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
/// bpf-linker release line, and the LLVM majors it can be built for (its
/// `llvm-N` features). The nightly's own LLVM picks the feature.
const BPF_LINKER_VERSION: &str = "0.13";
const LLVM_MAJORS: [u32; 3] = [21, 22, 23];

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

/// The LLVM major version the nightly toolchain ships (`rustc -vV`).
fn nightly_llvm_major() -> Result<u32> {
    let vv = output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "-vV"])).with_context(|| {
        format!(
            "no {NIGHTLY} toolchain: the eBPF programs build with it (`rustup toolchain install {NIGHTLY} --component rust-src`)"
        )
    })?;
    parse_llvm_major(&vv).with_context(|| format!("no `LLVM version` in `rustc +{NIGHTLY} -vV`:\n{vv}"))
}

fn parse_llvm_major(vv: &str) -> Option<u32> {
    vv.lines().find_map(|l| l.strip_prefix("LLVM version: "))?.split('.').next()?.trim().parse().ok()
}

/// The LLVM major the installed bpf-linker runs with (the libLLVM it links,
/// from ldd), when it runs at all.
fn bpf_linker_llvm() -> Option<u32> {
    let bin = cargo_bin_dir().join("bpf-linker");
    let ok = Command::new(&bin).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        return None;
    }
    let ldd = output(Command::new("ldd").arg(&bin)).ok()?;
    ldd.lines().find_map(|l| libllvm_major(l.split_whitespace().next()?))
}

/// `libLLVM.so.22.1-rust-...` or `libLLVM-22-rust-....so` -> 22.
fn libllvm_major(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("libLLVM.so.").or_else(|| name.strip_prefix("libLLVM-"))?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn ensure_bpf_linker(workspace: &Path) -> Result<()> {
    let major = nightly_llvm_major()?;
    if bpf_linker_llvm() == Some(major) {
        return Ok(());
    }
    if !LLVM_MAJORS.contains(&major) {
        bail!(
            "the {NIGHTLY} toolchain ships LLVM {major}, but bpf-linker {BPF_LINKER_VERSION} builds for LLVM {LLVM_MAJORS:?}: \
             install a nightly on one of those (`rustup toolchain install nightly-<date>`, then `rustup default` stays; \
             set NIGHTLY in xtask/src/setup.rs), or raise BPF_LINKER_VERSION"
        );
    }
    let sysroot = output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).and_then(libllvm_major) == Some(major))
        .with_context(|| format!("no libLLVM {major} in {}: the {NIGHTLY} toolchain must ship it", lib.display()))?;
    // bpf-linker's build looks for `<prefix>/lib/libLLVM.so`; point it at the
    // nightly toolchain's copy so no system LLVM is needed.
    let prefix = workspace.join("target").join("llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), llvm.display()))?;
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} for LLVM {major} against {}", llvm.display());
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            &format!("~{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--force",
        ])
        .env("LLVM_PREFIX", &prefix)
        // Found at run time through the rpath of the nightly sysroot.
        .env("RUSTFLAGS", format!("-C link-args=-Wl,-rpath,{}", lib.display())))?;
    if bpf_linker_llvm() != Some(major) {
        bail!("bpf-linker was installed but does not run with LLVM {major}; see the cargo install output above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_majors() {
        let vv = "rustc 1.97.0-nightly (abc 2026-11-01)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(vv), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0"), None);
        assert_eq!(libllvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(libllvm_major("libLLVM-21-rust-1.90.0-nightly.so"), Some(21));
        assert_eq!(libllvm_major("libc.so.6"), None);
    }
}
