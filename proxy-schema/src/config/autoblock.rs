//! `[autoblock]`: the daemon blocks abusive sources in the kernel by itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::error::{ConfigIssue, KeyPath};

/// Auto-blocking is an explicit choice: without an `[autoblock]` section nothing is
/// blocked automatically. Thresholds count events per source within `window`; a
/// source that reaches one is put on the kernel blocklist for `block_for`. 0 turns a
/// threshold off. The allowlist always wins: allowlisted sources are never
/// auto-blocked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoblockSection {
    /// Default true (the section is the choice); auto-blocking also needs `[xdp]`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Counting window per source. Default "10s".
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    /// Failed TLS handshakes (not TLS, bad ClientHello, no common cipher...). Default 20.
    #[serde(default = "default_failed_handshakes")]
    pub failed_handshakes: u32,
    /// Clients that never finished the handshake in time. Default 10.
    #[serde(default = "default_handshake_timeouts")]
    pub handshake_timeouts: u32,
    /// New connections accepted (or refused by `max_per_source`). Default 0 (off):
    /// busy legitimate clients (NAT, proxies, API clients) open many; set it only
    /// above what your busiest real client does.
    #[serde(default)]
    pub new_connections: u32,
    /// How long the kernel drops an auto-blocked source. Default "10m".
    #[serde(default = "default_block_for", with = "duration")]
    pub block_for: Duration,
    /// IPv6 sources are blocked as this prefix (one host owns a /64). Default 64.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Sources tracked at once (memory bound); beyond it new sources are not counted.
    /// Default 100000.
    #[serde(default = "default_max_tracked")]
    pub max_tracked_sources: usize,
    /// Also publish each block to the fleet (needs `[fleet.policy]`), so every node
    /// drops the source. Default false.
    #[serde(default)]
    pub share: bool,
}

impl Default for AutoblockSection {
    fn default() -> Self {
        toml::from_str("").expect("defaults deserialize")
    }
}

impl AutoblockSection {
    /// What will be blocked automatically, for `check-config` and the start-up log.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "off ([autoblock] enabled = false)".into();
        }
        let w = humantime::format_duration(self.window);
        let rule = |n: u32, what: &str| match n {
            0 => format!("{what}: off"),
            n => format!("{what}: {n} in {w}"),
        };
        format!(
            "sources blocked in the kernel for {} after {}, {}, {}",
            humantime::format_duration(self.block_for),
            rule(self.failed_handshakes, "failed TLS handshakes"),
            rule(self.handshake_timeouts, "handshake timeouts"),
            rule(self.new_connections, "new connections"),
        )
    }

    /// Checks values serde cannot; `at` is the section's key (`autoblock`).
    pub fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        let err = |key: &str, message: String| Err(ConfigIssue::new(at.key(key), message));
        if self.window.is_zero() {
            return err("window", "must be above 0".into());
        }
        if self.block_for.is_zero() {
            return err("block_for", "must be above 0".into());
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return err(
                "ipv6_prefix",
                format!("{} is not in 1..=128", self.ipv6_prefix),
            );
        }
        if self.max_tracked_sources == 0 {
            return err("max_tracked_sources", "must be at least 1".into());
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}
fn default_failed_handshakes() -> u32 {
    20
}
fn default_handshake_timeouts() -> u32 {
    10
}
fn default_block_for() -> Duration {
    Duration::from_secs(600)
}
fn default_ipv6_prefix() -> u8 {
    64
}
fn default_max_tracked() -> usize {
    100_000
}
