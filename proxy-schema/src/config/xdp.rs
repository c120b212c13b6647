//! `[xdp]`: the kernel fast path: where it attaches and the policy it enforces.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::{ConfigIssue, KeyPath};
use super::{cidr, duration};

/// `[xdp]`. Absent: the daemon runs userspace only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XdpSection {
    /// Interfaces to attach to (at least one). Required.
    pub interfaces: Vec<String>,
    /// `auto` (native, else generic with a warning), `native` or `skb`. Default `auto`.
    #[serde(default)]
    pub mode: AttachMode,
    /// bpffs directory where maps (and, with `stay_attached`, links) are pinned, so
    /// policy survives a daemon restart. Default `/sys/fs/bpf/proxy`.
    #[serde(default = "default_pin_path")]
    pub pin_path: PathBuf,
    /// Keep the program attached after the daemon exits (the filter keeps running;
    /// `proxy xdp detach` removes it). Default false: detach on shutdown.
    #[serde(default)]
    pub stay_attached: bool,
    /// Capacity of each blocklist trie (IPv4 and IPv6). Default 65536.
    #[serde(default = "default_max_block_entries")]
    pub max_block_entries: u32,
    /// Capacity of each allowlist trie (IPv4 and IPv6). Default 4096.
    #[serde(default = "default_max_allow_entries")]
    pub max_allow_entries: u32,
    /// Report one drop in this many as a sampled event (logs, `proxy top`); 0 = none.
    /// Default 64.
    #[serde(default = "default_drop_sample_rate")]
    pub drop_sample_rate: u32,
    /// How often sampled drops are summarised into one log line. Default "10s".
    #[serde(default = "default_drop_log_interval", with = "duration")]
    pub drop_log_interval: Duration,
    /// Log every drop through aya-log (debugging only: costs time per dropped packet).
    #[serde(default)]
    pub log_every_drop: bool,
    /// Sources that bypass every check (CIDRs or addresses).
    #[serde(default)]
    pub allowlist: Vec<ListEntryConfig>,
    /// Sources dropped in the kernel (CIDRs or addresses, optional ttl and reason).
    #[serde(default)]
    pub blocklist: Vec<ListEntryConfig>,
    /// On reload, keep entries added at runtime (CLI, auto-blocking). Default true;
    /// false makes the lists exactly what the file says.
    #[serde(default = "yes")]
    pub keep_runtime_entries: bool,
    /// Per-source rate limits (all off by default).
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// When listeners with `syn_cookies = "auto"` switch cookies on and off.
    #[serde(default)]
    pub syn_cookies: SynCookiesConfig,
    /// Drop TCP/UDP to ports no listener serves. Absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_filter: Option<ServiceFilterConfig>,
}

/// `[xdp.syn_cookies]`: the `auto` mode's switch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynCookiesConfig {
    /// SYNs per second to one listener (past the lists and per-source limits) that
    /// switch its cookies on. Default 2000.
    #[serde(default = "default_auto_on_syn_per_second")]
    pub auto_on_syn_per_second: u32,
    /// How long the SYN rate must stay below the threshold before cookies switch off
    /// again. Default "30s".
    #[serde(default = "default_auto_off_after", with = "duration")]
    pub auto_off_after: Duration,
}

impl Default for SynCookiesConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults deserialize")
    }
}

/// `[xdp.service_filter]`: traffic to the host's service addresses at a port that no
/// listener serves and `allow` does not name is dropped in XDP (`port_closed`).
/// Replies to the host's own connections (backends, health checks) and all non-TCP/UDP
/// traffic (ICMP, neighbour discovery) always pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFilterConfig {
    /// Other ports to keep open, as `"22/tcp"` or `"53/udp"`.
    #[serde(default)]
    pub allow: Vec<PortProtocol>,
    /// Destinations the filter applies to. Default: the addresses of the XDP interfaces
    /// and the listeners' bind addresses (read at start and on reload).
    #[serde(default)]
    pub addresses: Vec<std::net::IpAddr>,
}

/// A port with its transport protocol: `"22/tcp"`, `"53/udp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortProtocol {
    pub port: u16,
    pub protocol: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl std::str::FromStr for PortProtocol {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (port, protocol) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: write a port and protocol, like \"22/tcp\""))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{text:?}: {port:?} is not a port (1-65535)"))?;
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            other => return Err(format!("{text:?}: protocol {other:?} is not tcp or udp")),
        };
        Ok(PortProtocol { port, protocol })
    }
}

impl std::fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let protocol = match self.protocol {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        write!(f, "{}/{protocol}", self.port)
    }
}

impl Serialize for PortProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A list entry: `"10.0.0.0/8"` or `{ cidr = "10.0.0.0/8", ttl = "1h", reason = "...",
/// shared = true }` (`shared`: also published to the fleet, needs `[fleet.policy]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntryConfig {
    cidr: IpNet,
    ttl: Option<Duration>,
    reason: String,
    shared: bool,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DetailedEntry {
    #[serde(with = "cidr")]
    cidr: IpNet,
    #[serde(default, with = "duration::option")]
    ttl: Option<Duration>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    shared: bool,
}

impl<'de> Deserialize<'de> for ListEntryConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ListEntryConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a CIDR string or a table { cidr, ttl, reason, shared }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ListEntryConfig, E> {
                let cidr = cidr::parse(v).map_err(E::custom)?;
                Ok(ListEntryConfig {
                    cidr,
                    ttl: None,
                    reason: String::new(),
                    shared: false,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ListEntryConfig, A::Error> {
                let e =
                    DetailedEntry::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ListEntryConfig {
                    cidr: e.cidr,
                    ttl: e.ttl,
                    reason: e.reason,
                    shared: e.shared,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Written as the table form.
impl Serialize for ListEntryConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DetailedEntry {
            cidr: self.cidr,
            ttl: self.ttl,
            reason: self.reason.clone(),
            shared: self.shared,
        }
        .serialize(s)
    }
}

impl ListEntryConfig {
    /// An entry for `cidr`: no ttl, reason "config", not shared.
    pub fn new(cidr: IpNet) -> ListEntryConfig {
        ListEntryConfig {
            cidr,
            ttl: None,
            reason: String::new(),
            shared: false,
        }
    }
    pub fn with_ttl(mut self, ttl: Duration) -> ListEntryConfig {
        self.ttl = Some(ttl);
        self
    }
    pub fn with_reason(mut self, reason: &str) -> ListEntryConfig {
        self.reason = reason.into();
        self
    }
    pub fn shared_with_fleet(mut self) -> ListEntryConfig {
        self.shared = true;
        self
    }
    pub fn cidr(&self) -> IpNet {
        self.cidr
    }
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
    /// Also published to the fleet through `[fleet.policy]`.
    pub fn shared(&self) -> bool {
        self.shared
    }
    pub fn reason(&self) -> &str {
        if self.reason.is_empty() {
            "config"
        } else {
            &self.reason
        }
    }
}

/// `[xdp.rate_limit]`: token buckets per source address (IPv6: per prefix).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Packets per second per source; 0 = off (default).
    #[serde(default)]
    pub packets_per_second: u32,
    /// Packets a source may send back to back. Default: one second's worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_burst: Option<u32>,
    /// TCP SYNs (new connections) per second per source; 0 = off (default).
    #[serde(default)]
    pub syn_per_second: u32,
    /// SYNs a source may send back to back. Default: one second's worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_burst: Option<u32>,
    /// IPv6 sources share a limit per prefix of this length. Default 64.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Apply the limits only to these destination ports; empty = all traffic (default).
    #[serde(default)]
    pub ports: Vec<u16>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults deserialize")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) mode; if the driver refuses, generic (skb) mode with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on any interface, runs later and costs more.
    Skb,
}

impl XdpSection {
    /// A section with defaults for everything but the interfaces.
    pub fn for_interfaces(interfaces: Vec<String>) -> XdpSection {
        let text = format!("interfaces = {interfaces:?}");
        toml::from_str(&text).expect("defaults deserialize")
    }

    /// Checks values serde cannot; `at` is the section's key (`xdp`).
    pub fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        let err = |key: &str, message: String| {
            let path = key.split('.').fold(at.clone(), |p, k| p.key(k));
            Err(ConfigIssue::new(path, message))
        };
        if self.interfaces.is_empty() {
            return err(
                "interfaces",
                "list at least one interface (e.g. [\"eth0\"])".into(),
            );
        }
        for name in &self.interfaces {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return err(
                    "interfaces",
                    format!("{name:?} is not a valid interface name"),
                );
            }
        }
        if self.max_block_entries == 0 {
            return err("max_block_entries", "must be at least 1".into());
        }
        if self.max_allow_entries == 0 {
            return err("max_allow_entries", "must be at least 1".into());
        }
        if !self.pin_path.is_absolute() {
            return err(
                "pin_path",
                format!(
                    "{:?} must be an absolute path under a bpffs mount",
                    self.pin_path
                ),
            );
        }
        let rl = &self.rate_limit;
        if !(1..=128).contains(&rl.ipv6_prefix) {
            return err(
                "rate_limit.ipv6_prefix",
                format!("{} is not in 1..=128", rl.ipv6_prefix),
            );
        }
        if rl.packets_burst == Some(0) {
            return err(
                "rate_limit.packets_burst",
                "0 would drop everything; use at least 1".into(),
            );
        }
        if rl.syn_burst == Some(0) {
            return err(
                "rate_limit.syn_burst",
                "0 would drop every SYN; use at least 1".into(),
            );
        }
        if rl.ports.contains(&0) {
            return err(
                "rate_limit.ports",
                "port 0 is not a valid destination port".into(),
            );
        }
        if self.syn_cookies.auto_on_syn_per_second == 0 {
            return err(
                "syn_cookies.auto_on_syn_per_second",
                "must be at least 1 (use syn_cookies = \"on\" on the listener for always)".into(),
            );
        }
        if self.syn_cookies.auto_off_after.is_zero() {
            return err("syn_cookies.auto_off_after", "must be above 0".into());
        }
        for (list, entries) in [
            ("allowlist", &self.allowlist),
            ("blocklist", &self.blocklist),
        ] {
            for e in entries {
                if e.ttl() == Some(Duration::ZERO) {
                    return err(list, format!("{}: ttl must be more than 0", e.cidr()));
                }
            }
        }
        Ok(())
    }
}

fn default_auto_on_syn_per_second() -> u32 {
    2000
}
fn default_auto_off_after() -> Duration {
    Duration::from_secs(30)
}
fn default_pin_path() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/proxy")
}
fn default_max_block_entries() -> u32 {
    proxy_common::DEFAULT_MAX_BLOCK_ENTRIES
}
fn default_max_allow_entries() -> u32 {
    proxy_common::DEFAULT_MAX_ALLOW_ENTRIES
}
fn default_drop_sample_rate() -> u32 {
    64
}
fn default_drop_log_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_ipv6_prefix() -> u8 {
    64
}
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_in_both_forms() {
        let s: XdpSection = toml::from_str(
            r#"
            interfaces = ["eth0"]
            blocklist = ["192.0.2.0/24", { cidr = "2001:db8::1", ttl = "1h", reason = "abuse" }]
            [rate_limit]
            packets_per_second = 1000
            "#,
        )
        .unwrap();
        assert_eq!(s.blocklist[0].cidr().to_string(), "192.0.2.0/24");
        assert_eq!(s.blocklist[1].cidr().to_string(), "2001:db8::1/128");
        assert_eq!(s.blocklist[1].ttl(), Some(Duration::from_secs(3600)));
        assert_eq!(s.blocklist[1].reason(), "abuse");
        assert_eq!(s.rate_limit.ipv6_prefix, 64);
        assert_eq!(s.mode, AttachMode::Auto);
        s.validate(&KeyPath::root()).unwrap();
    }

    #[test]
    fn bad_list_entries_say_what_is_wrong() {
        let err =
            toml::from_str::<XdpSection>("interfaces = [\"eth0\"]\nblocklist = [\"10.0.0.300\"]")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("\"10.0.0.300\" is not an IP address or CIDR"),
            "{err}"
        );
        let err = toml::from_str::<XdpSection>(
            "interfaces = [\"eth0\"]\nblocklist = [{ cidr = \"10.0.0.1\", ttl = \"soon\" }]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("soon"), "{err}");
        let err = toml::from_str::<XdpSection>(
            "interfaces = [\"eth0\"]\nblocklist = [{ cidr = \"10.0.0.1\", tll = \"1h\" }]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `tll`"), "{err}");
    }

    #[test]
    fn a_minimal_section_is_valid_and_limits_are_off() {
        let s = XdpSection::for_interfaces(vec!["eth0".into()]);
        s.validate(&KeyPath::root()).unwrap();
        assert_eq!(s.rate_limit.ipv6_prefix, 64);
        assert_eq!(s.rate_limit.packets_per_second, 0);
        assert_eq!(s.pin_path, std::path::Path::new("/sys/fs/bpf/proxy"));
    }

    #[test]
    fn cidr_with_host_bits_and_garbage_are_rejected() {
        assert!(cidr::parse("10.1.2.3/8").unwrap_err().contains("host bits"));
        let err = cidr::parse("10.0.0.0/33").unwrap_err();
        assert!(err.contains("not an IP address or CIDR"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let at = KeyPath::root().key("xdp");
        let s = XdpSection::for_interfaces(vec![]);
        assert_eq!(
            s.validate(&at).unwrap_err().key.to_string(),
            "xdp.interfaces"
        );
        let mut s = XdpSection::for_interfaces(vec!["eth0".into()]);
        s.rate_limit.ipv6_prefix = 0;
        let issue = s.validate(&at).unwrap_err();
        assert_eq!(issue.key.to_string(), "xdp.rate_limit.ipv6_prefix");
        assert!(issue.message.contains("not in 1..=128"), "{issue}");
    }
}
