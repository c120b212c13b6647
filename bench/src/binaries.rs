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
