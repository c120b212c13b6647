//! The one lab every test, benchmark and the demo use: network namespaces and
//! topologies, processes stopped by PID on drop, real servers (nginx), certificates,
//! crafted packets, bounded attack generators, the `proxy` daemon under test and a
//! typed builder for its configuration.
//!
//! Every lab builds its own namespaces (names carry the PID and a counter) and
//! removes them on drop, so cleanup also happens when a test panics. The core is
//! fallible (`anyhow::Result`); short panicking helpers are for tests.
//!
//! - [`netns`]: one namespace; [`topology`]: star, pair and fleet topologies;
//!   [`process`]: processes and their CPU/memory; [`inside`]: run Rust code inside.
//! - [`nginx`]: nginx backends; [`dns`]: a dnsmasq DNS server; [`certs`]: certificates (rcgen);
//!   [`proxyd`]: the daemon under test and its CLI; [`config`]: its configuration
//!   (the product's own schema types).
//! - [`etcd`], [`fleet_site`]: etcd members and the BGP fleet.
//!
//! - [`keepalive`]: long-lived TLS connections with a request every few hundred ms,
//!   recording which node each went through and when it broke.
//!
//! The `certs` feature (default) brings rcgen, a TLS client and what needs them
//! (`certs`, `etcd`, `fleet_site`, `keepalive`); xtask uses the lab without it, so it
//! builds no TLS stack.
//! - [`packets`]: crafted frames, [`gue`]: the fleet's GUE frames and ICMP errors;
//!   [`attack`]: bounded attack traffic; [`trafgen`]:
//!   bounded spoofed floods from trafgen.
//! - [`site`]: the usual data-path lab (load balancer, client, nginx backends).
//! - [`stats`]: medians and ranges for benchmark reports.
//! - [`verifier_log`]: the verifier's statistics for the programs a closure loads.

pub mod attack;
#[cfg(feature = "certs")]
pub mod certs;
pub mod config;
pub mod dns;
#[cfg(feature = "certs")]
pub mod etcd;
#[cfg(feature = "certs")]
pub mod fleet_site;
pub mod gue;
pub mod inside;
#[cfg(feature = "certs")]
pub mod keepalive;
pub mod netns;
pub mod nginx;
pub mod packets;
pub mod process;
pub mod proxyd;
pub mod site;
pub mod stats;
pub mod topology;
pub mod trafgen;
pub mod verifier_log;

pub use netns::Netns;
pub use process::Proc;
pub use topology::{Fleet, Host, Topology};

use std::time::{Duration, Instant};

/// A bpffs directory for a test's pinned maps, removed when dropped.
pub struct PinDir(pub std::path::PathBuf);

impl PinDir {
    /// A directory for `tag` under /sys/fs/bpf (mounted first if this machine has
    /// no bpffs there yet: a daemon started without CAP_SYS_ADMIN cannot mount it).
    pub fn new(tag: &str) -> PinDir {
        let mounted = std::fs::read_to_string("/proc/mounts")
            .is_ok_and(|m| m.lines().any(|l| l.contains(" /sys/fs/bpf bpf ")));
        if !mounted {
            netns::sh("mount -t bpf bpf /sys/fs/bpf");
        }
        PinDir(std::path::PathBuf::from(format!(
            "/sys/fs/bpf/lab-{}-{tag}",
            std::process::id()
        )))
    }

    pub fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Namespaces and XDP need root: an error that says so otherwise.
pub fn ensure_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    anyhow::ensure!(
        euid == 0,
        "this creates network namespaces and loads XDP programs: run it as root \
         (CI runs as root; locally: sudo -E cargo ...)"
    );
    Ok(())
}

/// An error naming the first of `tools` that is not on PATH, and `install` (how to
/// get them).
pub fn ensure_tools(tools: &[&str], install: &str) -> anyhow::Result<()> {
    for tool in tools {
        let found = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        anyhow::ensure!(found, "`{tool}` not found: {install}");
    }
    Ok(())
}

/// Like [`ensure_root`]; panics otherwise.
pub fn require_root() {
    ensure_root().unwrap_or_else(|e| panic!("{e:#}"));
}

/// Polls `f` every 50 ms until it returns `Some`; an error naming `what` after
/// `timeout`.
pub fn try_wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`try_wait_for`]; panics on the timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    try_wait_for(what, timeout, f).unwrap_or_else(|e| panic!("{e:#}"))
}
