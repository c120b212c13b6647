//! `[bgp]`: the service addresses (VIPs) this node announces to its routers through
//! a BIRD instance the daemon runs, and when it may announce them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::error::{ConfigIssue, KeyPath};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSection {
    /// This node's AS number. Required.
    pub local_as: u32,
    /// BGP router id (an IPv4 address, unique per node). Required.
    pub router_id: Ipv4Addr,
    /// The routers this node announces to (at least one).
    #[serde(rename = "peer")]
    pub peers: Vec<BgpPeer>,
    /// The service addresses to announce (at least one).
    #[serde(rename = "vip")]
    pub vips: Vec<Vip>,
    /// BGP hold time (keepalives every third of it): how long a router keeps this
    /// node's routes after the node stops answering. Default "3s" (the minimum).
    #[serde(default = "default_hold_time", with = "duration")]
    pub hold_time: Duration,
    /// On SIGTERM: withdraw every VIP, wait this long for the routers to move new
    /// flows away, then stop accepting and drain. Default "2s".
    #[serde(default = "default_withdraw_delay", with = "duration")]
    pub withdraw_delay: Duration,
    /// A withdrawn VIP is announced again only after its conditions held this long
    /// (so a flapping backend does not flap the route). Default "3s".
    #[serde(default = "default_hold_down", with = "duration")]
    pub announce_hold_down: Duration,
    /// Directory for the BIRD instance's generated config and control socket.
    /// Default "/run/proxy/bird".
    #[serde(default = "default_bird_dir")]
    pub bird_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BgpPeer {
    /// The router's address (IPv4 peers carry IPv4 VIPs, IPv6 peers IPv6 VIPs).
    pub address: IpAddr,
    /// The router's AS number.
    #[serde(rename = "as")]
    pub asn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// The address (announced as a /32 or /128). The operator configures it on the
    /// node (for example `ip addr add 192.0.2.10/32 dev lo`); the daemon announces it
    /// only while it is there.
    pub address: IpAddr,
    /// The listeners that serve it (by name). Required.
    pub listeners: Vec<String>,
    /// Backends that must be up in each pool behind those listeners. Default 1.
    #[serde(default = "default_min_healthy")]
    pub min_healthy_backends: u32,
    /// Connection steering: every node sends each packet for this VIP to the node
    /// that owns its connection, so a node drained, added or killed and a router that
    /// rehashes break no other node's connections (needs `[xdp]` and
    /// `[fleet.policy]`; settings in `[fleet.steering]`). Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub steering: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl BgpSection {
    /// Announce `vips` as `local_as` to `peers`, every other key at its default.
    pub fn new(local_as: u32, router_id: Ipv4Addr, peers: Vec<BgpPeer>, vips: Vec<Vip>) -> Self {
        BgpSection {
            local_as,
            router_id,
            peers,
            vips,
            hold_time: default_hold_time(),
            withdraw_delay: default_withdraw_delay(),
            announce_hold_down: default_hold_down(),
            bird_dir: default_bird_dir(),
        }
    }
}

impl Vip {
    /// `address`, served by `listeners`, with the default backend condition.
    pub fn new(address: IpAddr, listeners: &[&str]) -> Vip {
        Vip {
            address,
            listeners: listeners.iter().map(|l| l.to_string()).collect(),
            min_healthy_backends: default_min_healthy(),
            steering: false,
        }
    }
}

fn default_hold_time() -> Duration {
    Duration::from_secs(3)
}
fn default_withdraw_delay() -> Duration {
    Duration::from_secs(2)
}
fn default_hold_down() -> Duration {
    Duration::from_secs(3)
}
fn default_bird_dir() -> PathBuf {
    PathBuf::from("/run/proxy/bird")
}
fn default_min_healthy() -> u32 {
    1
}

impl BgpSection {
    /// Checks values serde cannot; `at` is the section's key (`bgp`); `listeners`
    /// are the configured listener names.
    pub fn validate(&self, at: &KeyPath, listeners: &[&str]) -> Result<(), ConfigIssue> {
        let err = |key: KeyPath, message: String| Err(ConfigIssue::new(key, message));
        if self.local_as == 0 {
            return err(
                at.key("local_as"),
                "AS 0 is reserved; use this node's AS".into(),
            );
        }
        if self.peers.is_empty() {
            return err(
                at.key("peer"),
                "list at least one [[bgp.peer]] (the router to announce to)".into(),
            );
        }
        if self.vips.is_empty() {
            return err(
                at.key("vip"),
                "list at least one [[bgp.vip]] to announce".into(),
            );
        }
        if self.hold_time < Duration::from_secs(3) || self.hold_time > Duration::from_secs(65535) {
            return err(
                at.key("hold_time"),
                "BGP hold times are 3s to 65535s".into(),
            );
        }
        if !self.bird_dir.is_absolute() {
            return err(
                at.key("bird_dir"),
                format!("{:?} must be an absolute path", self.bird_dir),
            );
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.asn == 0 {
                return err(at.key("peer").index(i).key("as"), "AS 0 is reserved".into());
            }
        }
        for (i, v) in self.vips.iter().enumerate() {
            let here = at.key("vip").index(i);
            if v.listeners.is_empty() {
                return err(
                    here.key("listeners"),
                    "name the listeners that serve this VIP".into(),
                );
            }
            for (j, name) in v.listeners.iter().enumerate() {
                if !listeners.contains(&name.as_str()) {
                    return err(
                        here.key("listeners").index(j),
                        format!("no [[listener]] named {name:?} (listeners: {listeners:?})"),
                    );
                }
            }
            if !self
                .peers
                .iter()
                .any(|p| p.address.is_ipv4() == v.address.is_ipv4())
            {
                let family = if v.address.is_ipv4() { "IPv4" } else { "IPv6" };
                return err(
                    here.key("address"),
                    format!("{}: no {family} peer to announce it to", v.address),
                );
            }
            if self.vips[..i].iter().any(|o| o.address == v.address) {
                return err(
                    here.key("address"),
                    format!("{} is listed twice", v.address),
                );
            }
        }
        Ok(())
    }
}
