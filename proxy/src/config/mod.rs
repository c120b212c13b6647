//! The TOML configuration. Every field is documented; unknown keys are errors.
//!
//! docs/DATAPATH.md lists every key with its default. Errors name the file, the line,
//! the key and what is wrong: parse errors come from toml's spans, later checks
//! (cross references, certificate files) carry a [`KeyPath`] that [`Config::locate`]
//! turns back into a line.

pub mod admin;
pub mod autoblock;
pub mod xdp;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `file:line:column: key: message`.
    #[error("{}", format_invalid(.path, *.line, *.column, .key, .message))]
    Invalid {
        path: PathBuf,
        /// 1-based; 0 when the position is unknown.
        line: usize,
        column: usize,
        /// Dotted key path, e.g. `listener[0].tls.min_version` (empty: whole file).
        key: String,
        message: String,
    },
}

fn format_invalid(path: &Path, line: usize, column: usize, key: &str, message: &str) -> String {
    let at = match line {
        0 => format!("{}", path.display()),
        _ => format!("{}:{line}:{column}", path.display()),
    };
    match key {
        "" => format!("{at}: {message}"),
        _ => format!("{at}: `{key}`: {message}"),
    }
}

/// A problem found after parsing, attached to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct ConfigIssue {
    pub key: KeyPath,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(key: KeyPath, message: impl Into<String>) -> ConfigIssue {
        ConfigIssue {
            key,
            message: message.into(),
        }
    }
}

/// A path to a key: `listener[1].tls.certificates[0].cert`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath::default()
    }
    pub fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }
    pub fn index(&self, index: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
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
    pub xdp: Option<xdp::XdpSection>,
    /// `[autoblock]`: abusive sources blocked in the kernel (needs `[xdp]`).
    #[serde(default)]
    pub autoblock: autoblock::AutoblockSection,
    /// `[admin]`: the admin socket and the Prometheus endpoint.
    #[serde(default)]
    pub admin: admin::AdminSection,
    /// Where the configuration came from (for error positions).
    #[serde(skip)]
    pub origin: Origin,
}

/// `[[listener]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Address to listen on: `"0.0.0.0:443"`, `"[::]:443"` (IPv6 only), `"10.0.0.1:80"`.
    pub bind: SocketAddr,
    /// Name of the `[[pool]]` that receives this listener's connections.
    pub pool: String,
    /// TLS termination; absent: plain TCP, forwarded as is.
    pub tls: Option<ListenerTls>,
    /// Concurrent connections on this listener; absent: only `limits.max_connections`.
    pub max_connections: Option<u32>,
    /// Concurrent connections from one source IP address; absent: no limit.
    pub max_per_source: Option<u32>,
    /// Plain TCP only: how bytes are moved. Default `"splice"` (zero-copy splice(2)
    /// through a pipe); `"copy"` uses userspace buffers.
    #[serde(default)]
    pub forwarding: Forwarding,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    #[default]
    Splice,
    Copy,
}

/// `[listener.tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates, chosen by the client's SNI (exact names first, then wildcards).
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
    /// Time a client has to complete the handshake. Default "10s".
    #[serde(default = "default_handshake_timeout", with = "duration")]
    pub handshake_timeout: Duration,
}

/// One certificate chain and its key.
#[derive(Debug, Clone, Deserialize)]
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
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// `[[pool]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Unique name, referenced by listeners.
    pub name: String,
    /// The backends.
    pub backends: Vec<BackendEntry>,
    /// What picks the backend: `"client_ip"` (default), `"client_ip_port"`, or `"sni"`
    /// (TLS listeners; clients without SNI fall back to the client IP).
    #[serde(default)]
    pub hash_key: HashKey,
    /// PROXY protocol header sent to the backends: `"none"` (default), `"v1"`, `"v2"`.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// Time allowed for one TCP connect to a backend. Default "3s".
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Backends tried per connection (candidates in Maglev order). Default 3.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Maglev table size; must be prime. Default 65537.
    #[serde(default = "default_table_size")]
    pub table_size: u32,
    /// `[pool.health]`: active health checks.
    #[serde(default)]
    pub health: Health,
}

/// A backend in a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendEntry {
    /// `"ip:port"` or `"[ipv6]:port"`.
    pub address: SocketAddr,
    /// Relative share of clients, 0 to 1000; 0 = drained (no new connections).
    /// Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    #[default]
    ClientIp,
    ClientIpPort,
    Sni,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    #[default]
    None,
    V1,
    V2,
}

/// `[pool.health]`: active TCP connect checks; connect failures of real traffic
/// count too (passive checks).
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

fn default_true() -> bool {
    true
}
fn default_session_cache() -> usize {
    20_480
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_table_size() -> u32 {
    DEFAULT_TABLE_SIZE
}
fn default_weight() -> u32 {
    1
}
fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_max_connections() -> u32 {
    10_000
}
fn default_idle() -> Duration {
    Duration::from_secs(300)
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_log_level() -> String {
    "info".into()
}
fn default_handshake_log_rate() -> u32 {
    5
}

/// Highest accepted backend weight.
pub const MAX_WEIGHT: u32 = 1000;

/// Durations as humantime strings: "500ms", "10s", "5m".
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"500ms\", \"10s\", \"5m\")"
            ))
        })
    }
}

/// The file a configuration was read from and its text.
#[derive(Clone, Default)]
pub struct Origin {
    pub path: PathBuf,
    text: Arc<str>,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.path)
    }
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_with_origin(&text, path)
}

/// Parses and validates configuration text; the error names line, key and problem.
pub fn parse(text: &str) -> Result<Config, String> {
    parse_with_origin(text, Path::new("<config>")).map_err(|e| e.to_string())
}

fn parse_with_origin(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let origin = Origin {
        path: path.to_owned(),
        text: text.into(),
    };
    let mut config: Config = match toml::from_str(text) {
        Ok(config) => config,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let key = key_path_at(text, span.start);
            return Err(origin.error(span, key, e.message().to_owned()));
        }
    };
    config.origin = origin;
    config.validate().map_err(|issue| config.locate(issue))?;
    Ok(config)
}

impl Origin {
    fn error(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
        let (line, column) = match span.start {
            0 if span.end == 0 => (0, 0),
            start => line_column(&self.text, start),
        };
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            column,
            key,
            message,
        }
    }
}

impl Config {
    /// Turns an issue into an error with the file, line and column of its key.
    pub fn locate(&self, issue: ConfigIssue) -> ConfigError {
        let span = span_of(&self.origin.text, &issue.key).unwrap_or(0..0);
        self.origin
            .error(span, issue.key.to_string(), issue.message)
    }

    /// The pool a listener forwards to (validated to exist).
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Checks everything that does not need other files.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        let root = KeyPath::root();
        for (i, l) in self.listeners.iter().enumerate() {
            let at = root.key("listener").index(i);
            if l.name.is_empty() {
                return Err(ConfigIssue::new(at.key("name"), "must not be empty"));
            }
            if self.listeners[..i].iter().any(|o| o.name == l.name) {
                return Err(ConfigIssue::new(
                    at.key("name"),
                    format!(
                        "listener name {:?} is used twice; names must be unique",
                        l.name
                    ),
                ));
            }
            if self.listeners[..i].iter().any(|o| o.bind == l.bind) {
                return Err(ConfigIssue::new(
                    at.key("bind"),
                    format!("{} is bound by another listener", l.bind),
                ));
            }
            let Some(pool) = self.pool(&l.pool) else {
                let known: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
                return Err(ConfigIssue::new(
                    at.key("pool"),
                    format!("no [[pool]] named {:?} (pools: {known:?})", l.pool),
                ));
            };
            if pool.hash_key == HashKey::Sni && l.tls.is_none() {
                return Err(ConfigIssue::new(
                    at.key("pool"),
                    format!(
                        "pool {:?} hashes on the SNI name, which only a TLS listener has; \
                         add [listener.tls] or use hash_key = \"client_ip\"",
                        pool.name
                    ),
                ));
            }
            for (key, value) in [
                ("max_connections", l.max_connections),
                ("max_per_source", l.max_per_source),
            ] {
                if value == Some(0) {
                    return Err(ConfigIssue::new(
                        at.key(key),
                        "must be at least 1 (remove the key for no limit)",
                    ));
                }
            }
            if let Some(tls) = &l.tls {
                tls.validate(&at.key("tls"))?;
            }
        }
        for (i, p) in self.pools.iter().enumerate() {
            p.validate(&root.key("pool").index(i))?;
            if self.pools[..i].iter().any(|o| o.name == p.name) {
                return Err(ConfigIssue::new(
                    root.key("pool").index(i).key("name"),
                    format!("pool name {:?} is used twice; names must be unique", p.name),
                ));
            }
        }
        if self.limits.max_connections == 0 {
            return Err(ConfigIssue::new(
                root.key("limits").key("max_connections"),
                "must be at least 1",
            ));
        }
        if self.timeouts.idle.is_zero() {
            return Err(ConfigIssue::new(
                root.key("timeouts").key("idle"),
                "must be above 0",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigIssue::new(
                root.key("log").key("level"),
                format!("invalid level {:?}: {e}", self.log.level),
            ));
        }
        if let Some(xdp) = &self.xdp
            && let Err((key, message)) = xdp.validate()
        {
            let path = key.split('.').fold(root.key("xdp"), |p, k| p.key(k));
            return Err(ConfigIssue::new(path, message));
        }
        if let Err((key, message)) = self.autoblock.validate() {
            return Err(ConfigIssue::new(root.key("autoblock").key(key), message));
        }
        if let Err((key, message)) = self.admin.validate() {
            return Err(ConfigIssue::new(root.key("admin").key(key), message));
        }
        Ok(())
    }
}

impl ListenerTls {
    fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        if self.certificates.is_empty() {
            return Err(ConfigIssue::new(
                at.key("certificates"),
                "a TLS listener needs at least one certificate",
            ));
        }
        if self.certificates.iter().filter(|c| c.default).count() > 1 {
            return Err(ConfigIssue::new(
                at.key("certificates"),
                "more than one certificate has default = true",
            ));
        }
        for (i, c) in self.certificates.iter().enumerate() {
            for (j, name) in c.names.iter().enumerate() {
                if let Err(why) = check_server_name(name) {
                    return Err(ConfigIssue::new(
                        at.key("certificates").index(i).key("names").index(j),
                        format!("{name:?}: {why}"),
                    ));
                }
            }
        }
        for (i, p) in self.alpn.iter().enumerate() {
            if p.is_empty() || p.len() > 255 {
                return Err(ConfigIssue::new(
                    at.key("alpn").index(i),
                    "an ALPN protocol name has 1 to 255 bytes",
                ));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigIssue::new(
                at.key("handshake_timeout"),
                "must be above 0",
            ));
        }
        Ok(())
    }
}

/// A DNS name, optionally with one leading `*.` label.
fn check_server_name(name: &str) -> Result<(), &'static str> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() || host.len() > 253 {
        return Err("not a DNS name");
    }
    for label in host.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(
                "not a DNS name (a wildcard is only allowed as the whole first label, \"*.example.com\")",
            );
        }
    }
    Ok(())
}

impl Pool {
    fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        if self.name.is_empty() {
            return Err(ConfigIssue::new(at.key("name"), "must not be empty"));
        }
        if self.backends.is_empty() {
            return Err(ConfigIssue::new(
                at.key("backends"),
                "a pool needs at least one backend",
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            let here = at.key("backends").index(i);
            if b.weight > MAX_WEIGHT {
                return Err(ConfigIssue::new(
                    here.key("weight"),
                    format!("{} is above the maximum weight {MAX_WEIGHT}", b.weight),
                ));
            }
            if self.backends[..i].iter().any(|o| o.address == b.address) {
                return Err(ConfigIssue::new(
                    here.key("address"),
                    format!("{} is listed twice in this pool", b.address),
                ));
            }
        }
        let members: Vec<(String, u32)> = self
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight))
            .collect();
        if members.iter().all(|m| m.1 == 0) {
            return Err(ConfigIssue::new(
                at.key("backends"),
                "every backend has weight 0; at least one must take connections",
            ));
        }
        if let Err(e) = check_table_size(self.table_size, members.len()) {
            return Err(ConfigIssue::new(at.key("table_size"), e));
        }
        if self.max_attempts == 0 {
            return Err(ConfigIssue::new(
                at.key("max_attempts"),
                "must be at least 1",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigIssue::new(
                at.key("connect_timeout"),
                "must be above 0",
            ));
        }
        let h = &self.health;
        let hat = at.key("health");
        if h.interval.is_zero() || h.timeout.is_zero() {
            return Err(ConfigIssue::new(
                hat,
                "interval and timeout must be above 0",
            ));
        }
        if h.rise == 0 || h.fall == 0 {
            return Err(ConfigIssue::new(hat, "rise and fall must be at least 1"));
        }
        Ok(())
    }
}

/// The Maglev table size when a pool sets none: prime, and 100 × up to 655 backends.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Maglev needs a prime table size.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

fn check_table_size(size: u32, backends: usize) -> Result<(), String> {
    if !is_prime(size) {
        return Err(format!(
            "{size} is not prime; Maglev needs a prime table size (default 65537)"
        ));
    }
    if (size as usize) < backends.saturating_mul(10) {
        return Err(format!(
            "{size} is too small for {backends} backends; use a prime of at least 10 × the backends (100 × keeps shares within 1%)"
        ));
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The dotted path of the innermost key whose key or value contains `offset`.
/// (Spans of `[[array]]` tables cover only their header, so this searches the tree.)
fn key_path_at(text: &str, offset: usize) -> String {
    fn find(value: &DeValue, offset: usize, path: &KeyPath) -> Option<KeyPath> {
        let children: Vec<(KeyPath, Range<usize>, &toml::Spanned<DeValue>)> = match value {
            DeValue::Table(t) => t
                .iter()
                .map(|(k, v)| (path.key(k.get_ref()), k.span(), v))
                .collect(),
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (path.index(i), v.span(), v))
                .collect(),
            _ => return None,
        };
        for (child, key_span, v) in children {
            if let Some(deeper) = find(v.get_ref(), offset, &child) {
                return Some(deeper);
            }
            if key_span.contains(&offset) || v.span().contains(&offset) {
                return Some(child);
            }
        }
        None
    }
    match DeTable::parse(text) {
        Ok(doc) => find(&DeValue::Table(doc.into_inner()), offset, &KeyPath::root())
            .map(|p| p.to_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The span of the key (or the value, for array items) a path names.
fn span_of(text: &str, path: &KeyPath) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut value: Option<&toml::Spanned<DeValue>> = None;
    let mut table = Some(doc.get_ref());
    for seg in &path.0 {
        match seg {
            Segment::Key(k) => {
                let (key, v) = table?.get_key_value(k.as_str())?;
                span = Some(key.span());
                value = Some(v);
            }
            Segment::Index(i) => {
                let DeValue::Array(items) = value?.get_ref() else {
                    return span;
                };
                let item = items.get(*i)?;
                span = Some(item.span());
                value = Some(item);
            }
        }
        table = match value.map(|v| v.get_ref()) {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8443"
pool = "app"
[listener.tls]
certificates = [{ cert = "a.pem", key = "a.key" }]

[[pool]]
name = "app"
backends = [{ address = "10.0.0.1:80" }, { address = "[fd00::2]:80", weight = 3 }]
"#;

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err()
    }

    #[test]
    fn defaults_are_filled_in() {
        let c = parse(GOOD).unwrap();
        let tls = c.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.min_version, TlsVersion::V1_2);
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
        assert!(tls.session_tickets);
        let pool = &c.pools[0];
        assert_eq!(pool.backends[0].weight, 1);
        assert_eq!(pool.backends[1].weight, 3);
        assert_eq!(pool.hash_key, HashKey::ClientIp);
        assert_eq!(pool.table_size, 65_537);
        assert_eq!(pool.max_attempts, 3);
        assert_eq!(pool.health.fall, 3);
        assert_eq!(c.limits.max_connections, 10_000);
        assert_eq!(c.timeouts.drain, Duration::from_secs(30));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = GOOD.replace("pool = \"app\"\n", "pool = \"app\"\nmax_conns = 5\n");
        let e = error_of(&text);
        assert!(
            e.starts_with("<config>:6:1: `listener[0].max_conns`:"),
            "{e}"
        );
        assert!(e.contains("unknown field `max_conns`"), "{e}");
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let text = GOOD.replace(
            "[listener.tls]\n",
            "[listener.tls]\nmin_version = \"1.1\"\n",
        );
        let e = error_of(&text);
        assert!(e.starts_with("<config>:7:"), "{e}");
        assert!(e.contains("`listener[0].tls.min_version`"), "{e}");
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let text = GOOD.replace(
            "[listener.tls]\n",
            "[listener.tls]\nhandshake_timeout = \"ten\"\n",
        );
        let e = error_of(&text);
        assert!(e.contains("invalid duration \"ten\""), "{e}");
        assert!(e.contains("`listener[0].tls.handshake_timeout`"), "{e}");
    }

    #[test]
    fn unknown_pool_is_located() {
        let e = error_of(&GOOD.replace("pool = \"app\"", "pool = \"nope\""));
        assert!(
            e.starts_with("<config>:5:1: `listener[0].pool`: no [[pool]] named \"nope\""),
            "{e}"
        );
    }

    #[test]
    fn array_items_are_located() {
        let e = error_of(&GOOD.replace("weight = 3", "weight = 3000"));
        assert!(e.starts_with("<config>:11:"), "{e}");
        assert!(
            e.contains("`pool[0].backends[1].weight`: 3000 is above"),
            "{e}"
        );
    }

    #[test]
    fn table_size_must_be_prime() {
        let text = GOOD.replace("name = \"app\"\n", "name = \"app\"\ntable_size = 65536\n");
        let e = error_of(&text);
        assert!(
            e.contains("`pool[0].table_size`: 65536 is not prime"),
            "{e}"
        );
    }

    #[test]
    fn wildcard_only_as_first_label() {
        let text = GOOD.replace("key = \"a.key\"", "key = \"a.key\", names = [\"a.*.com\"]");
        let e = error_of(&text);
        assert!(
            e.contains("`listener[0].tls.certificates[0].names[0]`"),
            "{e}"
        );
    }

    #[test]
    fn sni_hash_needs_tls() {
        let text = GOOD
            .replace(
                "[listener.tls]\ncertificates = [{ cert = \"a.pem\", key = \"a.key\" }]\n",
                "",
            )
            .replace("name = \"app\"\n", "name = \"app\"\nhash_key = \"sni\"\n");
        assert!(error_of(&text).contains("only a TLS listener has"));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = error_of("[[listener]\nname = 1");
        assert!(e.starts_with("<config>:1:"), "{e}");
    }

    #[test]
    fn empty_file_is_valid() {
        let c = parse("").unwrap();
        assert!(c.listeners.is_empty());
    }
}
