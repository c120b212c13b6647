//! The binaries benchmarks run: release builds for figures, the debug build (what
//! `cargo test` already built) for the bounded checks of `cargo xtask test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::ensure;

/// Builds the release `proxy` and `xtask` (the load generator); returns their paths.
pub fn build_release(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    eprintln!("building proxy and the load generator (release)...");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "proxy",
            "-p",
            "xtask",
        ])
        .current_dir(root)
        .status()?;
    ensure!(
        status.success(),
        "cargo build --release -p proxy -p xtask failed"
    );
    Ok((
        root.join("target/release/proxy"),
        root.join("target/release/xtask"),
    ))
}

/// The debug `proxy` (built if needed) and this very `xtask` as the load generator.
pub fn build_debug(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "proxy"])
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "cargo build -p proxy failed");
    Ok((root.join("target/debug/proxy"), std::env::current_exe()?))
}
