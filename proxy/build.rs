//! Builds the XDP program and embeds it: `include_bytes!(concat!(env!("OUT_DIR"), "/proxy-ebpf.o"))`.
//! Any failure is one `cargo::error` line that names the cause and the fix.
use std::{env, fs, path::PathBuf};

fn main() {
    if let Err(message) = build() {
        println!("cargo::error={message}");
    }
}

/// The commit being built (`-dirty` with uncommitted changes), or `unknown`
/// outside a git checkout (a source tarball).
fn git_commit(workspace: &std::path::Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = workspace.join(dir);
        println!("cargo::rerun-if-changed={}", dir.join("HEAD").display());
        println!("cargo::rerun-if-changed={}", dir.join("index").display());
    }
    match git(&[
        "describe",
        "--always",
        "--dirty",
        "--abbrev=12",
        "--exclude=*",
    ]) {
        Some(commit) if !commit.is_empty() => commit,
        _ => "unknown".into(),
    }
}

fn build() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest
        .parent()
        .ok_or("proxy/ has no parent")?
        .to_path_buf();
    for input in ebpf_build::inputs(&workspace) {
        println!("cargo::rerun-if-changed={}", input.display());
    }
    println!("cargo::rerun-if-env-changed=PROXY_EBPF_ROUTE");
    println!(
        "cargo::rustc-env=PROXY_GIT_COMMIT={}",
        git_commit(&workspace)
    );

    let route = ebpf_build::choose_route()?;
    // How the object was built, for the verifier budget (proxy::ebpf::OBJECT_ROUTE).
    println!("cargo::rustc-env=PROXY_EBPF_BUILT_ROUTE={}", route.key());
    println!(
        "cargo::rustc-env=PROXY_EBPF_BUILT_COMPILER={}",
        ebpf_build::compiler_version(route)
    );
    let output = ebpf_build::build_command(&workspace, route)
        .output()
        .map_err(|e| {
            format!(
                "cannot start the eBPF build ({}): {e}; run `cargo xtask setup`",
                route.name()
            )
        })?;
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo::warning={line}");
        }
        return Err(format!(
            "building the XDP program (route: {}) failed; see the warnings above. \
             If a tool is missing, run `cargo xtask setup`.",
            route.name()
        ));
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let copy = |from: PathBuf, to: &str| {
        fs::copy(&from, out_dir.join(to))
            .map(drop)
            .map_err(|e| format!("copying {}: {e}", from.display()))
    };
    copy(ebpf_build::object_path(&workspace), "proxy-ebpf.o")?;
    copy(ebpf_build::bench_object_path(&workspace), "xdp-bench.o")
}
