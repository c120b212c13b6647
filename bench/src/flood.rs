//! Measuring a flood on the lab's hosts: a CPU's softirq time, the packets the XDP
//! program saw (all verdicts), an interface's received packets.

use std::path::Path;

use anyhow::Context;
use proxy_schema::api::Stats;

use crate::hosts::{LB_CPU, TLS_PORT};

/// Softirq time of one CPU so far (/proc/stat), in seconds.
pub fn softirq_seconds(cpu: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&format!("cpu{cpu}")))
        .context("no such CPU in /proc/stat")?;
    let softirq: f64 = line
        .split_whitespace()
        .nth(7)
        .context("short /proc/stat line")?
        .parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(softirq / hz)
}

/// Every packet the XDP program has seen on the LB's interfaces (all verdicts), from
/// the daemon's admin socket `admin`.
pub fn xdp_packets(lb: &lab::Netns, proxy_bin: &Path, admin: &Path) -> anyhow::Result<f64> {
    let out = lb.exec(&format!(
        "{} stats --json --socket {}",
        proxy_bin.display(),
        admin.display()
    ))?;
    let stats: Stats = serde_json::from_str(&out)?;
    let interface = stats
        .xdp
        .and_then(|x| x.interfaces.into_iter().next())
        .with_context(|| format!("no XDP verdicts in the stats: {out}"))?;
    Ok(interface.verdicts.total().packets as f64)
}

/// Packets `ifname` in `ns` has received (/proc/net/dev, read inside the namespace).
pub fn rx_packets(ns: &lab::Netns, ifname: &str) -> anyhow::Result<f64> {
    let dev = ns.exec("cat /proc/net/dev")?;
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{ifname}:")))
        .with_context(|| format!("no {ifname} in /proc/net/dev of {}", ns.name))?;
    let packets = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().nth(1))
        .context("short /proc/net/dev line")?;
    Ok(packets.parse()?)
}

/// Starts the proxy on the LB's CPU with `config` for one flood scenario: the kernel's
/// own SYN cookies always on (`kernel_cookies`) or only on overflow; returns once it
/// listens on the TLS port and reports its XDP program.
pub fn start_flooded_proxy(
    lb: &lab::Netns,
    proxy_bin: &Path,
    config: &Path,
    admin: &Path,
    kernel_cookies: bool,
) -> anyhow::Result<lab::Proc> {
    let syncookies = if kernel_cookies { "2" } else { "1" };
    lb.exec(&format!("sysctl -qw net.ipv4.tcp_syncookies={syncookies}"))?;
    let proxy = lb.start_on_cpu(
        LB_CPU,
        &format!(
            "env RUST_LOG=warn {} run --config {}",
            proxy_bin.display(),
            config.display()
        ),
    )?;
    lb.wait_listening(&[TLS_PORT])?;
    wait_for_xdp(lb, proxy_bin, admin)?;
    Ok(proxy)
}

/// Waits (up to 10 s) until the daemon reports its XDP program attached.
fn wait_for_xdp(lb: &lab::Netns, proxy_bin: &Path, admin: &Path) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match xdp_packets(lb, proxy_bin, admin) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}
