//! What the control plane needs from the kernel half. `ebpf::runtime` implements
//! these traits; the auto-blocker and the admin API use them, so neither imports
//! `ebpf`, and their tests use a fake kernel.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::api::{ListEntry, Top, XdpStats};

/// Writes policy into the kernel.
pub trait KernelPolicy: Send + Sync {
    /// Whether a kernel program runs that would enforce a block.
    fn enforcing(&self) -> bool;
    /// The allowlist entry covering `addr`, if any.
    fn allowlisted(&self, addr: IpAddr) -> anyhow::Result<Option<ListEntry>>;
    /// Puts `net` on the blocklist for `ttl`, as an automatic block.
    fn auto_block(&self, net: IpNet, ttl: Duration, reason: &str) -> anyhow::Result<()>;
}

/// Reads the kernel's counters for the admin API.
pub trait KernelView: Send + Sync {
    /// Verdicts per attached interface and list sizes; `None` without a kernel program.
    fn xdp_stats(&self) -> Option<XdpStats>;
    /// The `n` sources dropped most; `None` without a kernel program.
    fn top_sources(&self, n: usize) -> Option<Top>;
    /// The blocklist's unexpired entries; `None` without a kernel program.
    fn blocklist(&self) -> Option<Vec<ListEntry>>;
    /// Is the XDP program attached to at least one interface?
    fn attached(&self) -> bool;
}

/// No kernel half: nothing enforced, nothing to show.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoKernel;

impl KernelPolicy for NoKernel {
    fn enforcing(&self) -> bool {
        false
    }
    fn allowlisted(&self, _: IpAddr) -> anyhow::Result<Option<ListEntry>> {
        Ok(None)
    }
    fn auto_block(&self, net: IpNet, _: Duration, _: &str) -> anyhow::Result<()> {
        anyhow::bail!("no XDP program runs: cannot block {net}")
    }
}

impl KernelView for NoKernel {
    fn xdp_stats(&self) -> Option<XdpStats> {
        None
    }
    fn attached(&self) -> bool {
        false
    }
    fn top_sources(&self, _: usize) -> Option<Top> {
        None
    }
    fn blocklist(&self) -> Option<Vec<ListEntry>> {
        None
    }
}
