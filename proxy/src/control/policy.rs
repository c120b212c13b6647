//! What the control plane needs from the kernel half. `ebpf::runtime` implements
//! these traits; the auto-blocker and the admin API use them, so neither imports
//! `ebpf`, and their tests use a fake kernel.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::api::{List, ListEntry, Top, XdpStats};
use crate::control::steering::table::Table;

/// Writes policy into the kernel.
pub trait KernelPolicy: Send + Sync {
    /// Whether a kernel program runs that would enforce a block.
    fn enforcing(&self) -> bool;
    /// The allowlist entry covering `addr`, if any.
    fn allowlisted(&self, addr: IpAddr) -> anyhow::Result<Option<ListEntry>>;
    /// Puts `net` on the blocklist for `ttl`, as an automatic block.
    fn auto_block(&self, net: IpNet, ttl: Duration, reason: &str) -> anyhow::Result<()>;
}

/// Fleet entries in the kernel lists (`[fleet.policy]`). A local entry at the same
/// prefix keeps its slot: a fleet write never replaces it, a fleet delete never
/// removes it.
pub trait FleetKernel: Send + Sync {
    /// Puts a fleet entry in; `false` when a local entry holds the prefix (hidden).
    fn apply_fleet(
        &self,
        list: List,
        net: IpNet,
        expires_in: Option<Duration>,
        reason: &str,
    ) -> anyhow::Result<bool>;
    /// Removes the fleet entries at exactly these prefixes; how many there were.
    fn remove_fleet(&self, list: List, nets: &[IpNet]) -> anyhow::Result<usize>;
    /// The fleet entries now in the kernel.
    fn fleet_entries(&self, list: List) -> anyhow::Result<Vec<ListEntry>>;
    /// Changes with every edit of the lists by anyone; `None` without a kernel program.
    fn policy_generation(&self) -> Option<u64>;
}

/// What connection steering sets up in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringSetup {
    /// This node's address on the fleet's segment and its GUE port.
    pub address: IpAddr,
    pub port: u16,
    /// The steered VIPs, each with its listeners' ports.
    pub vips: Vec<(IpAddr, Vec<u16>)>,
}

/// Connection steering in the XDP program (VIPs with `steering = true`).
pub trait SteeringKernel: Send + Sync {
    /// Turns steering on with `setup`, or off (`None`).
    fn steering_configure(&self, setup: Option<&SteeringSetup>) -> anyhow::Result<()>;
    /// The members (address, GUE port) encapsulated packets come from and go to;
    /// what the program learned of the ones it has is kept.
    fn steering_peers(&self, peers: &[(IpAddr, u16)]) -> anyhow::Result<()>;
    /// Each member and how long ago its last probe reached the program (`None`:
    /// never: nothing can be sent to it yet).
    fn steering_reachable(&self) -> Vec<(IpAddr, Option<Duration>)>;
    /// Writes `table` (this node at index `me`) beside the one in use.
    fn steering_install(&self, table: &Table, me: Option<u16>) -> anyhow::Result<()>;
    /// Steers packets by the installed table of `generation` from now on.
    fn steering_activate(&self, generation: u64) -> anyhow::Result<()>;
}

/// Shares policy with the other nodes of the fleet (`[fleet.policy]`).
pub trait SharedPolicy: Send + Sync {
    /// Publishes an automatic block (queued while the store is unreachable).
    fn share_block(&self, net: IpNet, ttl: Duration, reason: &str);
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
