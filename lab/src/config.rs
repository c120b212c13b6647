//! A typed builder for the daemon's TOML configuration, so tests, benchmarks and the
//! demo state what they configure instead of copying TOML text. Every field is
//! optional: what a test leaves out takes the product's default.
//!
//! ```text
//! let toml = Config::new()
//!     .listener(Listener::new("web", "10.77.0.1:443", "p").tls(Tls::new(&cert)))
//!     .pool(Pool::new("p", &["10.77.0.3:8080"]).health(Health::off()))
//!     .to_toml();
//! ```

use serde::Serialize;

use crate::certs::CertFiles;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    #[serde(rename = "listener", skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
    #[serde(rename = "pool", skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<Pool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Log>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<Xdp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoblock: Option<Autoblock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp: Option<Bgp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSection>,
}

/// `[fleet]`
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetSection {
    pub policy: FleetPolicy,
}

/// `[fleet.policy]`: entries shared through etcd.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetPolicy {
    pub endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTls>,
}

/// `[fleet.policy.tls]`
#[derive(Debug, Clone, Default, Serialize)]
pub struct EtcdTls {
    pub ca: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `[bgp]`: VIPs announced through the daemon's BIRD.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bgp {
    pub local_as: u32,
    pub router_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdraw_delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce_hold_down: Option<String>,
    pub bird_dir: String,
    pub peer: Vec<BgpPeer>,
    pub vip: Vec<Vip>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BgpPeer {
    pub address: String,
    #[serde(rename = "as")]
    pub asn: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Vip {
    pub address: String,
    pub listeners: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_healthy_backends: Option<u32>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    pub fn listener(mut self, l: Listener) -> Config {
        self.listeners.push(l);
        self
    }

    pub fn pool(mut self, p: Pool) -> Config {
        self.pools.push(p);
        self
    }

    pub fn limits(mut self, l: Limits) -> Config {
        self.limits = Some(l);
        self
    }

    pub fn timeouts(mut self, t: Timeouts) -> Config {
        self.timeouts = Some(t);
        self
    }

    pub fn log(mut self, l: Log) -> Config {
        self.log = Some(l);
        self
    }

    pub fn xdp(mut self, x: Xdp) -> Config {
        self.xdp = Some(x);
        self
    }

    pub fn autoblock(mut self, a: Autoblock) -> Config {
        self.autoblock = Some(a);
        self
    }

    pub fn admin(mut self, a: Admin) -> Config {
        self.admin = Some(a);
        self
    }

    pub fn fleet_policy(mut self, p: FleetPolicy) -> Config {
        self.fleet = Some(FleetSection { policy: p });
        self
    }

    pub fn bgp(mut self, b: Bgp) -> Config {
        self.bgp = Some(b);
        self
    }

    /// The TOML text the daemon reads.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the lab's config types serialize to TOML")
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Listener {
    pub name: String,
    pub bind: String,
    pub pool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_source: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_cookies: Option<String>,
}

impl Listener {
    /// A listener `name` on `bind` (`"10.77.0.1:8080"`, `"[fd77::1]:8080"`) for `pool`.
    pub fn new(name: &str, bind: impl Into<String>, pool: &str) -> Listener {
        Listener {
            name: name.into(),
            bind: bind.into(),
            pool: pool.into(),
            ..Listener::default()
        }
    }

    /// `"splice"` or `"copy"`.
    pub fn forwarding(mut self, how: &str) -> Listener {
        self.forwarding = Some(how.into());
        self
    }

    pub fn max_connections(mut self, n: u32) -> Listener {
        self.max_connections = Some(n);
        self
    }

    pub fn max_per_source(mut self, n: u32) -> Listener {
        self.max_per_source = Some(n);
        self
    }

    pub fn tls(mut self, tls: Tls) -> Listener {
        self.tls = Some(tls);
        self
    }

    /// `"off"`, `"on"` or `"auto"`.
    pub fn syn_cookies(mut self, mode: &str) -> Listener {
        self.syn_cookies = Some(mode.into());
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tls {
    pub certificates: Vec<Certificate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_tickets: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_cache: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// `[listener.tls.client_auth]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientAuth {
    pub ca: String,
    /// `"required"` or `"optional"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crl: Vec<String>,
}

impl Tls {
    /// TLS with one certificate (its names come from the certificate).
    pub fn new(cert: &CertFiles) -> Tls {
        Tls::with(vec![Certificate::of(cert)])
    }

    pub fn with(certificates: Vec<Certificate>) -> Tls {
        Tls {
            certificates,
            ..Tls::default()
        }
    }

    pub fn client_auth(mut self, auth: ClientAuth) -> Tls {
        self.client_auth = Some(auth);
        self
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Tls {
        self.alpn = protocols.iter().map(|p| p.to_string()).collect();
        self
    }

    /// `"1.2"` or `"1.3"`.
    pub fn min_version(mut self, v: &str) -> Tls {
        self.min_version = Some(v.into());
        self
    }

    pub fn session_tickets(mut self, on: bool) -> Tls {
        self.session_tickets = Some(on);
        self
    }

    pub fn session_cache(mut self, n: usize) -> Tls {
        self.session_cache = Some(n);
        self
    }

    /// A duration such as `"500ms"`.
    pub fn handshake_timeout(mut self, d: &str) -> Tls {
        self.handshake_timeout = Some(d.into());
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Certificate {
    pub cert: String,
    pub key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

impl Certificate {
    pub fn of(files: &CertFiles) -> Certificate {
        Certificate {
            cert: files.cert.display().to_string(),
            key: files.key.display().to_string(),
            ..Certificate::default()
        }
    }

    /// Served for these names instead of the ones in the certificate.
    pub fn names(mut self, names: &[&str]) -> Certificate {
        self.names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Served to clients without SNI or with an unknown name.
    pub fn as_default(mut self) -> Certificate {
        self.default = Some(true);
        self
    }

    /// With this OCSP response file stapled.
    pub fn ocsp(mut self, path: impl std::fmt::Display) -> Certificate {
        self.ocsp = Some(path.to_string());
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Pool {
    pub name: String,
    pub backends: Vec<Backend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

impl Pool {
    /// A pool of `addresses` (`"10.77.0.3:8080"`), weight 1 each.
    pub fn new<S: AsRef<str>>(name: &str, addresses: &[S]) -> Pool {
        Pool {
            name: name.into(),
            backends: addresses
                .iter()
                .map(|a| Backend {
                    address: a.as_ref().into(),
                    weight: None,
                })
                .collect(),
            ..Pool::default()
        }
    }

    /// Sets backend `i`'s weight.
    pub fn weight(mut self, i: usize, weight: u32) -> Pool {
        self.backends[i].weight = Some(weight);
        self
    }

    /// `"source_ip"` or `"source_ip_port"`.
    pub fn hash_key(mut self, key: &str) -> Pool {
        self.hash_key = Some(key.into());
        self
    }

    /// `"v1"` or `"v2"`.
    pub fn proxy_protocol(mut self, version: &str) -> Pool {
        self.proxy_protocol = Some(version.into());
        self
    }

    pub fn connect_timeout(mut self, d: &str) -> Pool {
        self.connect_timeout = Some(d.into());
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Pool {
        self.max_attempts = Some(n);
        self
    }

    pub fn health(mut self, h: Health) -> Pool {
        self.health = Some(h);
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Backend {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
}

impl Health {
    /// No active checks.
    pub fn off() -> Health {
        Health {
            enabled: Some(false),
            ..Health::default()
        }
    }

    /// Active checks every `interval` with this timeout, rise and fall.
    pub fn every(interval: &str, timeout: &str, rise: u32, fall: u32) -> Health {
        Health {
            enabled: None,
            interval: Some(interval.into()),
            timeout: Some(timeout.into()),
            rise: Some(rise),
            fall: Some(fall),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    pub max_connections: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Log {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_errors_per_second: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Xdp {
    pub interfaces: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stay_attached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_block_entries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_allow_entries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_log_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_every_drop: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<ListEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocklist: Vec<ListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_runtime_entries: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_cookies: Option<SynCookies>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_filter: Option<ServiceFilter>,
}

/// `[xdp.syn_cookies]`: when `auto` listeners switch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SynCookies {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_on_syn_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_off_after: Option<String>,
}

/// `[xdp.service_filter]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceFilter {
    /// `"22/tcp"`, `"53/udp"`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

impl Xdp {
    /// XDP on `interfaces`, maps pinned at `pin_path`.
    pub fn on(interfaces: &[&str], pin_path: impl std::fmt::Display) -> Xdp {
        Xdp {
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
            pin_path: Some(pin_path.to_string()),
            ..Xdp::default()
        }
    }

    pub fn rate_limit(mut self, r: RateLimit) -> Xdp {
        self.rate_limit = Some(r);
        self
    }

    /// Every drop sampled, summaries every `interval`.
    pub fn sample_every_drop(mut self, interval: &str) -> Xdp {
        self.drop_sample_rate = Some(1);
        self.drop_log_interval = Some(interval.into());
        self
    }

    pub fn block(mut self, entry: ListEntry) -> Xdp {
        self.blocklist.push(entry);
        self
    }

    pub fn allow(mut self, entry: ListEntry) -> Xdp {
        self.allowlist.push(entry);
        self
    }
}

/// A list entry: a CIDR with an optional time to live and reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListEntry {
    pub cidr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

impl ListEntry {
    pub fn new(cidr: &str) -> ListEntry {
        ListEntry {
            cidr: cidr.into(),
            ..ListEntry::default()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RateLimit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Autoblock {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_handshakes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeouts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_for: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tracked_sources: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Admin {
    pub socket: String,
    /// `"127.0.0.1:9100"`, or `"off"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_daemons_keys() {
        let toml = Config::new()
            .listener(Listener::new("web", "10.77.0.1:443", "p").max_per_source(5))
            .pool(
                Pool::new("p", &["10.77.0.3:8080", "10.77.0.4:8080"])
                    .weight(1, 3)
                    .health(Health::off()),
            )
            .xdp(Xdp::on(&["eth0"], "/sys/fs/bpf/x").rate_limit(RateLimit {
                packets_per_second: Some(100),
                ports: vec![9000],
                ..RateLimit::default()
            }))
            .to_toml();
        let value: toml::Value = toml::from_str(&toml).unwrap();
        assert_eq!(value["listener"][0]["bind"].as_str(), Some("10.77.0.1:443"));
        assert_eq!(value["listener"][0]["max_per_source"].as_integer(), Some(5));
        assert!(value["listener"][0].get("tls").is_none());
        assert_eq!(
            value["pool"][0]["backends"][1]["weight"].as_integer(),
            Some(3)
        );
        assert_eq!(value["pool"][0]["health"]["enabled"].as_bool(), Some(false));
        assert_eq!(
            value["xdp"]["rate_limit"]["ports"][0].as_integer(),
            Some(9000)
        );
        assert!(value.get("autoblock").is_none());
    }
}
