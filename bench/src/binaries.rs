//! The binaries a benchmark runs. `cargo xtask bench` builds `proxy` and `bench`
//! together (release), and `cargo xtask test` builds them in debug for the short
//! soak, so the daemon under test is the `proxy` next to this executable and the
//! load generator is this executable (`bench client ...`).

use std::path::PathBuf;

use anyhow::ensure;

/// The `proxy` built with this binary, and this binary as the load generator.
pub fn proxy_and_generator() -> anyhow::Result<(PathBuf, PathBuf)> {
    let me = std::env::current_exe()?;
    let proxy = me.with_file_name("proxy");
    ensure!(
        proxy.is_file(),
        "no proxy binary at {}: run the benchmarks through `cargo xtask bench` (it builds \
         proxy and bench together), or build both with `cargo build --release -p proxy -p bench`",
        proxy.display()
    );
    Ok((proxy, me))
}

/// `cargo bench -p proxy --bench NAME -- ARGS` pinned to CPU 1 (BPF_PROG_TEST_RUN
/// and the pick benchmark run on the caller's CPU), from the workspace `root`.
pub fn proxy_cargo_bench_on_cpu1(
    root: &std::path::Path,
    name: &str,
    args: &[String],
) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args([
            "-c",
            "1",
            env!("CARGO"),
            "bench",
            "-p",
            "proxy",
            "--bench",
            name,
            "--",
        ])
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| anyhow::anyhow!("running cargo bench: {e}"))?;
    ensure!(status.success(), "cargo bench --bench {name} failed");
    Ok(())
}
