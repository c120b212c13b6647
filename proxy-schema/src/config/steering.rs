//! `[fleet.steering]`: how this node takes part in connection steering, which the
//! VIPs with `steering = true` (`[[bgp.vip]]`) use. Membership and the forwarding
//! table live in the fleet's etcd store (`[fleet.policy]`); the XDP program sends
//! each packet to the node that owns its connection, in GUE.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::error::{ConfigIssue, KeyPath};

/// GUE has no assigned port; glb-director's.
pub const DEFAULT_PORT: u16 = 19523;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SteeringSection {
    /// This node's address on the fleet's segment: where the other nodes send it
    /// packets, and the source of what it sends them. Default: the first address of
    /// the first `xdp.interfaces` entry (IPv4 if it has one). Every node of a fleet
    /// uses the same family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// The UDP port GUE arrives on (the same on every node). Default 19523.
    #[serde(default = "default_port")]
    pub port: u16,
    /// How long this node stays a member after it stops renewing its etcd lease
    /// (a node killed or cut off): its rows move to the others after this. Whole
    /// seconds, at least 2. Default "5s".
    #[serde(default = "default_member_ttl", with = "duration")]
    pub member_ttl: Duration,
    /// On SIGTERM, how long the node waits for the fleet to switch to a table where
    /// it owns no rows before it withdraws its routes anyway. Default "10s".
    #[serde(default = "default_rollout_timeout", with = "duration")]
    pub rollout_timeout: Duration,
}

impl Default for SteeringSection {
    fn default() -> SteeringSection {
        SteeringSection {
            address: None,
            port: default_port(),
            member_ttl: default_member_ttl(),
            rollout_timeout: default_rollout_timeout(),
        }
    }
}

fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_member_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_rollout_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SteeringSection {
    pub fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        let err = |key: &str, message: String| Err(ConfigIssue::new(at.key(key), message));
        if self.port == 0 {
            return err(
                "port",
                "give the UDP port GUE arrives on (default 19523)".into(),
            );
        }
        if let Some(a) = self.address
            && (a.is_unspecified() || a.is_loopback() || a.is_multicast())
        {
            return err(
                "address",
                format!("{a} cannot be reached by the other nodes: give this node's own address"),
            );
        }
        if self.member_ttl < Duration::from_secs(2) || self.member_ttl.subsec_nanos() != 0 {
            return err(
                "member_ttl",
                "an etcd lease: whole seconds, at least \"2s\"".into(),
            );
        }
        if self.rollout_timeout.is_zero() {
            return err("rollout_timeout", "must be above 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<SteeringSection, String> {
        let s: SteeringSection = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate(&KeyPath::root().key("fleet").key("steering"))
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn defaults() {
        let s = section("").unwrap();
        assert_eq!(s, SteeringSection::default());
        assert_eq!(s.port, 19523);
        assert_eq!(s.member_ttl, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, needle) in [
            ("port = 0", "`fleet.steering.port`"),
            ("address = \"0.0.0.0\"", "cannot be reached"),
            ("address = \"127.0.0.1\"", "cannot be reached"),
            ("member_ttl = \"1s\"", "at least"),
            ("member_ttl = \"2500ms\"", "whole seconds"),
            ("rollout_timeout = \"0s\"", "above 0"),
            ("prot = 1", "unknown field"),
        ] {
            let e = section(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
