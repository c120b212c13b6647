//! The schema: every section and key, with its default. Unknown keys are errors.
//! What serde cannot check is in `validate.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::origin::Origin;
use super::tls_version::TlsVersion;
use super::{admin, autoblock, bgp, duration, fleet_policy, steering, xdp};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[[listener]]`: addresses the proxy accepts connections on.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Listener>,
    /// `[[pool]]`: backend pools the listeners forward to.
    #[serde(default, rename = "pool")]
    pub pools: Vec<Pool>,
    /// `[limits]`: process-wide limits.
    #[serde(default)]
    pub limits: Limits,
    /// `[timeouts]`: process-wide timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// `[log]`: logging.
    #[serde(default)]
    pub log: Log,
    /// The XDP fast path (absent: userspace only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<xdp::XdpSection>,
    /// `[autoblock]`: abusive sources blocked in the kernel (needs `[xdp]`). Absent:
    /// nothing is blocked automatically.
    #[serde(default)]
    pub autoblock: Option<autoblock::AutoblockSection>,
    /// `[admin]`: the admin socket and the Prometheus endpoint.
    #[serde(default)]
    pub admin: admin::AdminSection,
    /// `[bgp]`: VIPs announced to routers (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp: Option<bgp::BgpSection>,
    /// `[fleet]`: policy shared with the other nodes (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<fleet_policy::FleetSection>,
    /// Where the configuration came from (for error positions).
    #[serde(skip)]
    pub origin: Origin,
}

/// `[[listener]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Address to listen on: `"0.0.0.0:443"`, `"[::]:443"` (IPv6 only), `"10.0.0.1:80"`.
    pub bind: SocketAddr,
    /// Name of the `[[pool]]` that receives this listener's connections: the default
    /// route when the listener has `[[listener.route]]`s.
    pub pool: String,
    /// TLS termination; absent: plain TCP, forwarded as is (or, with routes, TLS
    /// passed through untouched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// `[[listener.route]]`: connections routed by the name the client asks for
    /// (SNI) to other pools, matched in order; TLS terminated here or passed through.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Concurrent connections on this listener; absent: only `limits.max_connections`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Concurrent connections from one source IP address; absent: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_source: Option<u32>,
    /// Plain TCP only: how bytes are moved. Default `"splice"` (zero-copy splice(2)
    /// through a pipe); `"copy"` uses userspace buffers.
    #[serde(default)]
    pub forwarding: Forwarding,
    /// SYN cookies answered by the XDP program (needs `[xdp]`): `"off"` (default: the
    /// kernel's own SYN handling), `"on"` (every SYN), `"auto"` (on while the SYN rate
    /// to this listener is above `xdp.syn_cookies.auto_on_syn_per_second`).
    #[serde(default)]
    pub syn_cookies: SynCookieMode,
    /// The TCP maximum segment size offered to clients (`TCP_MAXSEG` on the listening
    /// socket): they send segments no larger. For a steered VIP's listeners on a
    /// 1500-byte fleet segment: 1420 (IPv4 clients) or 1400 (IPv6), so a packet with
    /// the 40 bytes of GUE between IPv4 nodes still fits (IPv6 nodes add 72: 1388 and
    /// 1368). Absent: the kernel's (from the route's MTU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
}

/// `[[listener.route]]`: clients whose SNI matches one of `sni` (and, with `alpn`,
/// that offer or negotiate one of those protocols) go to `pool`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name in logs, metrics and the API. Default: the first `sni` pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Server names: exact (`"api.example.com"`) or a wildcard for one label
    /// (`"*.example.org"`), case-insensitive. At least one.
    pub sni: Vec<String>,
    /// ALPN protocols (e.g. `["h2"]`): the route only takes clients that offer one
    /// (passthrough) or negotiated one (terminate). Default: any client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// The `[[pool]]` these clients go to.
    pub pool: String,
    /// `"terminate"` (TLS ends here, with the listener's certificates; the default
    /// when the listener has some) or `"passthrough"` (the client's TLS bytes go to
    /// the backend untouched; the default without certificates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteTls {
    Terminate,
    Passthrough,
}

impl RouteTls {
    pub fn name(self) -> &'static str {
        match self {
            RouteTls::Terminate => "terminate",
            RouteTls::Passthrough => "passthrough",
        }
    }
}

impl Listener {
    /// Whether the listener has certificates to terminate TLS with.
    pub fn terminates(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| !t.certificates.is_empty())
    }

    /// How a route (or, for `None`, the default route) handles TLS.
    pub fn route_tls(&self, route: Option<&Route>) -> RouteTls {
        match route.and_then(|r| r.tls) {
            Some(mode) => mode,
            None if self.terminates() => RouteTls::Terminate,
            None => RouteTls::Passthrough,
        }
    }
}

impl Route {
    /// The route's name: its own, else its first SNI pattern.
    pub fn name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.sni.first().map(String::as_str))
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SynCookieMode {
    #[default]
    Off,
    On,
    Auto,
}

impl SynCookieMode {
    pub fn name(self) -> &'static str {
        match self {
            SynCookieMode::Off => "off",
            SynCookieMode::On => "on",
            SynCookieMode::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    #[default]
    Splice,
    Copy,
}

/// `[listener.tls]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates, chosen by the client's SNI (exact names first, then wildcards).
    /// Empty only on a listener whose routes all pass TLS through (the section then
    /// sets `handshake_timeout` for reading their ClientHellos).
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    /// ALPN protocols offered, in server preference order, e.g. `["h2", "http/1.1"]`.
    /// Default: none (no ALPN extension in the answer).
    #[serde(default)]
    pub alpn: Vec<String>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Stateless session resumption with tickets (TLS 1.2 and 1.3). Default true.
    #[serde(default = "default_true")]
    pub session_tickets: bool,
    /// Server-side session cache size (sessions); 0 disables it. Default 20480.
    #[serde(default = "default_session_cache")]
    pub session_cache: usize,
    /// Time a client has to complete the handshake (with passthrough routes: to send
    /// its whole ClientHello). Default "10s".
    #[serde(default = "default_handshake_timeout", with = "duration")]
    pub handshake_timeout: Duration,
    /// Client certificates (mutual TLS). Absent: clients are not asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// `[listener.tls.client_auth]`: client certificates verified against `ca` (chains,
/// validity dates, CRLs) with rustls' WebPKI client verifier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM file of the CA certificates client certificates must chain to. Required.
    pub ca: PathBuf,
    /// `"required"` (default): a client without a valid certificate is refused;
    /// `"optional"`: a client without one connects (a presented certificate must
    /// still be valid), and the backend learns which from the PROXY v2 header.
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// Certificate revocation lists (PEM or DER files) from the CA: revoked client
    /// certificates are refused.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    #[default]
    Required,
    Optional,
}

/// One certificate chain and its key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// PEM file: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC; ECDSA, RSA or Ed25519).
    pub key: PathBuf,
    /// Server names it answers, exact (`"example.com"`) or wildcard
    /// (`"*.example.com"`, one label). Default: the DNS names in the certificate.
    #[serde(default)]
    pub names: Vec<String>,
    /// Serve it to clients without SNI or with an unknown name. Default: the first
    /// certificate of the listener is the default.
    #[serde(default)]
    pub default: bool,
    /// DER OCSP response file to staple (re-read on reload and when it changes). A
    /// response that is not for this certificate, not "good" or not current is not
    /// stapled (logged and counted); the certificate is served anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<PathBuf>,
    /// Client certificates for the names this certificate serves, instead of the
    /// listener's `client_auth` (say, required for `admin.example.com` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// `[[pool]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Unique name, referenced by listeners.
    pub name: String,
    /// The backends.
    pub backends: Vec<BackendEntry>,
    /// How a backend is picked for a new connection: `"maglev"` (default: consistent
    /// hashing on `hash_key`), `"least_connections"`, `"random_two"` or
    /// `"round_robin"`. Every algorithm honours weights, health and runtime states.
    #[serde(default)]
    pub balance: Balance,
    /// Maglev's key: `"client_ip"` (default), `"client_ip_port"`, or `"sni"` (TLS
    /// listeners; clients without SNI fall back to the client IP).
    #[serde(default)]
    pub hash_key: HashKey,
    /// A backend that comes up (health, runtime `ready`, or added by a reload) ramps
    /// its effective weight from 10 % to full over this time (not with `"maglev"`).
    /// Default: none (full weight at once).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_start: Option<Duration>,
    /// PROXY protocol header sent to the backends: `"none"` (default), `"v1"`, `"v2"`.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// Time allowed for one TCP connect to a backend. Default "3s".
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Backends tried per connection (candidates in the algorithm's order). Default 3.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Maglev table size (`balance = "maglev"` only); must be prime. Default 65537.
    #[serde(default = "default_table_size")]
    pub table_size: u32,
    /// `[pool.health]`: active health checks.
    #[serde(default)]
    pub health: Health,
    /// `[pool.tls]`: TLS to the backends (absent: plain TCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::backend_tls::BackendTls>,
    /// `[pool.discovery]`: backends from DNS (an SRV record; how `name` backends are
    /// looked up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<super::discovery::Discovery>,
}

/// A backend in a pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendEntry {
    /// `"ip:port"` or `"[ipv6]:port"`. One of `address` and `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// `"host:port"`: the host's A and AAAA records are this entry's backends, looked
    /// up as `[pool.discovery]` says (its defaults without the section).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Relative share of clients, 0 to 1000; 0 = drained (no new connections).
    /// Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// A pool's balancing algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Consistent hashing on `hash_key` (Maglev): a client keeps its backend.
    #[default]
    Maglev,
    /// The backend with the fewest open connections per unit of weight; ties broken
    /// at random, in proportion to the weights.
    LeastConnections,
    /// Two backends drawn at random (in proportion to their weights), the one with
    /// fewer open connections per unit of weight taken: power of two choices.
    RandomTwo,
    /// Smooth weighted round robin, as NGINX's: weights 5, 1, 1 give a a b a c a a.
    RoundRobin,
}

impl Balance {
    pub const ALL: [Balance; 4] = [
        Balance::Maglev,
        Balance::LeastConnections,
        Balance::RandomTwo,
        Balance::RoundRobin,
    ];

    /// The configuration's name (`"least_connections"`), also the metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Balance::Maglev => "maglev",
            Balance::LeastConnections => "least_connections",
            Balance::RandomTwo => "random_two",
            Balance::RoundRobin => "round_robin",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    #[default]
    ClientIp,
    ClientIpPort,
    Sni,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    #[default]
    None,
    V1,
    V2,
}

/// `[pool.health]`: active TCP connect checks; connect failures of real traffic
/// count too (passive checks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Run active checks. Default true (passive marking always applies).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Time between checks of one backend. Default "2s".
    #[serde(default = "default_health_interval", with = "duration")]
    pub interval: Duration,
    /// Time allowed for the check's connect. Default "1s".
    #[serde(default = "default_health_timeout", with = "duration")]
    pub timeout: Duration,
    /// Consecutive successes that mark a down backend up. Default 2.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures (checks or real connects) that mark a backend down.
    /// Default 3.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            enabled: true,
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            rise: default_rise(),
            fall: default_fall(),
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Concurrent client connections, all listeners together. Default 10000.
    /// Each one uses two file descriptors (client and backend).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: default_max_connections(),
        }
    }
}

/// `[timeouts]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// A connection with no bytes moving either way for this long is closed.
    /// Default "5m".
    #[serde(default = "default_idle", with = "duration")]
    pub idle: Duration,
    /// On SIGTERM/SIGINT, open connections get this long to finish. Default "30s".
    #[serde(default = "default_drain", with = "duration")]
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            idle: default_idle(),
            drain: default_drain(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// Level filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing
    /// directive); `RUST_LOG` overrides it. Default "info". Read at start only.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Handshake failures logged per listener per second; the rest are only counted
    /// (and summed up in one line). Default 5.
    #[serde(default = "default_handshake_log_rate")]
    pub handshake_errors_per_second: u32,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            level: default_log_level(),
            handshake_errors_per_second: default_handshake_log_rate(),
        }
    }
}

pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_session_cache() -> usize {
    20_480
}
/// The handshake timeout when a listener sets none (also for passthrough-only listeners).
pub fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
pub(super) fn default_max_attempts() -> u32 {
    3
}
pub(super) fn default_table_size() -> u32 {
    DEFAULT_TABLE_SIZE
}
pub(super) fn default_weight() -> u32 {
    1
}
pub(super) fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
pub(super) fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
pub(super) fn default_rise() -> u32 {
    2
}
pub(super) fn default_fall() -> u32 {
    3
}
pub(super) fn default_max_connections() -> u32 {
    10_000
}
pub(super) fn default_idle() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_drain() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_log_level() -> String {
    "info".into()
}
pub(super) fn default_handshake_log_rate() -> u32 {
    5
}

/// Highest accepted backend weight.
pub const MAX_WEIGHT: u32 = 1000;

/// The Maglev table size when a pool sets none: prime, and 100 × up to 655 backends.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

impl Config {
    /// `[fleet.policy]`, if set.
    pub fn fleet_policy(&self) -> Option<&fleet_policy::FleetPolicySection> {
        self.fleet.as_ref()?.policy.as_ref()
    }

    /// The VIPs with `steering = true`.
    pub fn steered_vips(&self) -> impl Iterator<Item = &bgp::Vip> {
        self.bgp
            .iter()
            .flat_map(|b| b.vips.iter().filter(|v| v.steering))
    }

    /// Connection steering's settings when some VIP is steered (`[fleet.steering]`,
    /// or its defaults); `None` when none is.
    pub fn steering(&self) -> Option<steering::SteeringSection> {
        self.steered_vips().next()?;
        let section = self.fleet.as_ref().and_then(|f| f.steering.clone());
        Some(section.unwrap_or_default())
    }

    /// The pool a listener forwards to (validated to exist).
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}
