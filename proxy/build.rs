//! Builds the XDP program and embeds it: `include_bytes!(concat!(env!("OUT_DIR"), "/proxy-ebpf.o"))`.
use std::{env, fs, path::PathBuf};

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest
        .parent()
        .expect("proxy/ has a parent")
        .to_path_buf();
    for input in ebpf_build::inputs(&workspace) {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    println!("cargo:rerun-if-changed=../xtask/src/ebpf_build.rs");
    println!("cargo:rerun-if-env-changed=PROXY_EBPF_ROUTE");

    let route = ebpf_build::choose_route().map_err(anyhow::Error::msg)?;
    let output = ebpf_build::build_command(&workspace, route).output()?;
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        anyhow::bail!(
            "building the XDP program (route: {}) failed; see the warnings above. \
             If a tool is missing, run `cargo xtask setup`.",
            route.name()
        );
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::copy(
        ebpf_build::object_path(&workspace),
        out_dir.join("proxy-ebpf.o"),
    )?;
    fs::copy(
        ebpf_build::bench_object_path(&workspace),
        out_dir.join("xdp-bench.o"),
    )?;
    Ok(())
}
