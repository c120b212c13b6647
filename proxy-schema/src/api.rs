//! The typed admin API: the requests the daemon answers on its admin socket and the
//! answers, as one set of serde types that the daemon fills and the CLI, the tests
//! (and later the status page) read. A renamed field fails to compile instead of
//! printing `null`. `/metrics` is an export of the same data, not its source.
//!
//! Wire format: one JSON [`Request`] line in, one JSON [`Response`] line out.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use proxy_common::{REASON_COUNT, Reason};
use serde::{Deserialize, Serialize};

use crate::config::Balance;

/// A request on the admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Everything `proxy stats` shows.
    Stats,
    /// The `n` sources dropped most in the kernel.
    Top { n: usize },
    /// The kernel blocklist's entries.
    Blocklist,
    /// Publish an entry to the fleet (`proxy block|allow add --fleet`).
    FleetAdd {
        list: List,
        cidr: IpNet,
        ttl_ms: Option<u64>,
        reason: String,
    },
    /// Delete a fleet entry everywhere (`proxy block|allow del --fleet`).
    FleetDel { list: List, cidr: IpNet },
    /// `proxy fleet status`.
    FleetStatus,
    /// A new process (`proxy run --takeover`) asks for this daemon's sockets; the
    /// answer carries descriptors (see `control::handover`).
    Handover { pid: u32 },
    /// Every pool's backends with their runtime state (`proxy backend list`).
    Backends,
    /// Changes one backend's state or weight at runtime (`proxy backend set`).
    SetBackend {
        pool: String,
        address: SocketAddr,
        change: BackendChange,
    },
}

/// What `proxy backend set` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "setting", rename_all = "snake_case")]
pub enum BackendChange {
    /// `ready`, `drain` or `maint`; `close`: also close its open connections (drain
    /// and maint only).
    State { state: BackendState, close: bool },
    /// 0 to the file's maximum; the file's own value returns the backend to it.
    Weight { weight: u32 },
}

/// Whether a backend takes new connections, by the operator's hand (HAProxy's
/// `set server ... state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new connections (if healthy and its weight is above 0).
    #[default]
    Ready,
    /// No new connections; open ones continue; health checks go on.
    Drain,
    /// No new connections and no health checks (maintenance).
    Maint,
}

impl BackendState {
    pub const ALL: [BackendState; 3] = [
        BackendState::Ready,
        BackendState::Drain,
        BackendState::Maint,
    ];

    /// The name in the CLI, the API and the `state` label.
    pub const fn label(self) -> &'static str {
        match self {
            BackendState::Ready => "ready",
            BackendState::Drain => "drain",
            BackendState::Maint => "maint",
        }
    }
}

/// Where a backend setting in force comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingOrigin {
    /// The configuration file.
    #[default]
    Config,
    /// `proxy backend set` (kept across reloads and upgrades while the backend stays
    /// in the file).
    Runtime,
}

impl SettingOrigin {
    /// The name in the API and the `origin` label.
    pub const fn label(self) -> &'static str {
        match self {
            SettingOrigin::Config => "config",
            SettingOrigin::Runtime => "runtime",
        }
    }
}

/// Who made a backend's runtime change, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeChange {
    /// The admin socket's peer: `uid 0 pid 4242`.
    pub by: String,
    pub at_unix: u64,
}

/// One backend's runtime settings, as an upgrade hands them to the new process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRuntime {
    pub pool: String,
    pub address: SocketAddr,
    pub state: BackendState,
    /// The runtime weight, if one is in force instead of the file's.
    pub weight: Option<u32>,
    pub changed: Option<RuntimeChange>,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Stats(Box<Stats>),
    Top(Top),
    Blocklist(Vec<ListEntry>),
    FleetStatus(Box<FleetPolicyStatus>),
    Backends(Vec<PoolStats>),
    /// A change was made; what it was.
    Done(String),
    Error(String),
}

/// `proxy fleet status`: the shared store as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetPolicyStatus {
    pub node: String,
    pub prefix: String,
    pub endpoints: Vec<String>,
    pub connected: bool,
    /// When `connected` last changed (Unix seconds).
    pub since_unix: u64,
    /// Why the store is unreachable, while it is.
    pub last_error: Option<String>,
    /// The store revision this node has applied.
    pub revision: i64,
    /// From an entry's creation on its node to its application here, last entry.
    pub apply_lag_seconds: Option<f64>,
    pub block_entries: usize,
    pub allow_entries: usize,
    /// Shared entries a local entry at the same prefix stands in for.
    pub hidden_entries: usize,
    pub by_origin: Vec<OriginCount>,
    /// Writes waiting for the store.
    pub pending: usize,
    /// Malformed keys or values skipped since start.
    pub bad_entries: u64,
    /// The etcd cluster's members (name and client URLs), as of the last connect.
    pub members: Vec<String>,
    /// Connection steering (VIPs with `steering = true`); `None` without it.
    #[serde(default)]
    pub steering: Option<SteeringStatus>,
}

/// Connection steering as this node sees it: the fleet's members and its table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteeringStatus {
    pub node: String,
    /// This node's address and GUE port.
    pub address: String,
    pub port: u16,
    /// The store is reachable (the session holds its lease).
    pub connected: bool,
    pub last_error: Option<String>,
    /// This node's registration: `active`, `draining`, or `unregistered`.
    pub state: String,
    /// The table generation packets are steered by; the one installed beside it.
    pub active_generation: Option<u64>,
    pub installed_generation: Option<u64>,
    /// The store's table generation and what it changed.
    pub table_generation: Option<u64>,
    pub last_change: Option<String>,
    /// Rows whose primary changed at the last switch, of `rows`.
    pub rows_moved: Option<u64>,
    pub rows: u64,
    /// This node's rows in the active table, as primary and as secondary.
    pub rows_primary: u64,
    pub rows_secondary: u64,
    pub members: Vec<SteeringMember>,
    /// Why the rollout waits, while it does.
    pub waiting: Option<String>,
    /// Malformed keys or values under the steering prefix, skipped.
    pub bad_entries: u64,
}

/// One member of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteeringMember {
    pub node: String,
    pub address: String,
    pub port: u16,
    /// `active` or `draining` (in the active table); `joining` (registered, not in
    /// it yet); `gone` (in it, no longer registered).
    pub state: String,
    /// The table generation it has installed.
    pub installed: Option<u64>,
    /// Its rows in the active table.
    pub rows_primary: u64,
    pub rows_secondary: u64,
    /// Since its last probe reached this node's XDP program (ms); `None`: never, or
    /// this node itself.
    pub last_probe_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginCount {
    pub origin: String,
    pub block: usize,
    pub allow: usize,
}

/// `proxy stats`: the daemon at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Open client connections, all listeners together.
    pub connections_open: u32,
    pub listeners: Vec<ListenerStats>,
    pub pools: Vec<PoolStats>,
    /// The kernel half; `None` when no `[xdp]` section runs.
    pub xdp: Option<XdpStats>,
    /// `[bgp]`: the VIPs and BGP sessions; `None` without it.
    #[serde(default)]
    pub fleet: Option<FleetStats>,
    /// `[fleet.policy]`: the shared store; `None` without it.
    #[serde(default)]
    pub fleet_policy: Option<FleetPolicyStatus>,
    pub autoblock: AutoblockStats,
}

/// One listener's counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListenerStats {
    pub name: String,
    pub connections_active: i64,
    pub connections_total: u64,
    pub tls_handshakes: u64,
    pub tls_handshake_failures: BTreeMap<HandshakeFailure, u64>,
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Client to backend payload bytes.
    pub bytes_upstream: u64,
    /// Backend to client payload bytes.
    pub bytes_downstream: u64,
    /// Of the bytes above (both ways), those moved by splice(2) without a copy.
    pub bytes_spliced: u64,
    /// Connections closed because every attempted backend failed.
    pub no_backend: u64,
    /// `[[listener.route]]`s in order, the default route last; empty without routes.
    #[serde(default)]
    pub routes: Vec<RouteStats>,
}

/// One SNI route of a listener: where its clients go, and what they did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStats {
    /// The route's name (`default` for the listener's own pool).
    pub name: String,
    pub pool: String,
    /// `terminate` or `passthrough`.
    pub tls: String,
    /// Its server name patterns (none for the default route).
    pub sni: Vec<String>,
    /// The ALPN protocols it requires (none: any).
    pub alpn: Vec<String>,
    pub connections: u64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
    /// Connections no backend of its pool took.
    pub no_backend: u64,
}

/// Why a TLS handshake with a backend (`[pool.tls]`) failed: the `reason` label of
/// `proxy_backend_tls_failures_total`.
pub const BACKEND_TLS_FAILURES: [&str; 12] = [
    "timeout",
    "closed",
    "io",
    "expired",
    "unknown_ca",
    "name_mismatch",
    "revoked",
    "bad_certificate",
    "client_cert_refused",
    "alert",
    "incompatible",
    "protocol",
];

/// Why a TLS handshake failed (the `reason` label of
/// `proxy_tls_handshake_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeFailure {
    /// Not finished within `handshake_timeout`.
    Timeout,
    /// The client closed or reset the connection.
    ClientClosed,
    IoError,
    /// A record or handshake message over the size limits.
    TooLarge,
    /// Bytes that are not a TLS handshake.
    NotTls,
    /// No common version, cipher suite or signature scheme.
    Incompatible,
    /// The client offered none of the listener's ALPN protocols.
    NoAlpn,
    /// The client sent an alert.
    AlertReceived,
    /// The client broke the protocol.
    Misbehaved,
    /// `client_auth` required a certificate and the client sent none.
    ClientCertMissing,
    /// The client certificate does not chain to `client_auth.ca`.
    ClientCertUnknownCa,
    /// The client certificate is expired (or not yet valid).
    ClientCertExpired,
    /// The client certificate is on a `client_auth.crl`.
    ClientCertRevoked,
    /// A signature in the client's chain (or its handshake signature) is wrong.
    ClientCertBadSignature,
    /// Another problem with the client certificate (usage, format).
    ClientCertInvalid,
    Other,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 16] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::ClientClosed,
        HandshakeFailure::IoError,
        HandshakeFailure::TooLarge,
        HandshakeFailure::NotTls,
        HandshakeFailure::Incompatible,
        HandshakeFailure::NoAlpn,
        HandshakeFailure::AlertReceived,
        HandshakeFailure::Misbehaved,
        HandshakeFailure::ClientCertMissing,
        HandshakeFailure::ClientCertUnknownCa,
        HandshakeFailure::ClientCertExpired,
        HandshakeFailure::ClientCertRevoked,
        HandshakeFailure::ClientCertBadSignature,
        HandshakeFailure::ClientCertInvalid,
        HandshakeFailure::Other,
    ];

    /// The metric label and log field.
    pub const fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::ClientClosed => "client_closed",
            HandshakeFailure::IoError => "io_error",
            HandshakeFailure::TooLarge => "too_large",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::NoAlpn => "no_alpn",
            HandshakeFailure::AlertReceived => "alert_received",
            HandshakeFailure::Misbehaved => "misbehaved",
            HandshakeFailure::ClientCertMissing => "client_cert_missing",
            HandshakeFailure::ClientCertUnknownCa => "client_cert_unknown_ca",
            HandshakeFailure::ClientCertExpired => "client_cert_expired",
            HandshakeFailure::ClientCertRevoked => "client_cert_revoked",
            HandshakeFailure::ClientCertBadSignature => "client_cert_bad_signature",
            HandshakeFailure::ClientCertInvalid => "client_cert_invalid",
            HandshakeFailure::Other => "other",
        }
    }
}

/// Why a connection was closed at accept (the `reason` label of
/// `proxy_connections_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// `limits.max_connections` reached.
    #[serde(rename = "global_limit")]
    Global,
    /// The listener's `max_connections` reached.
    #[serde(rename = "listener_limit")]
    Listener,
    /// The listener's `max_per_source` reached for that client address.
    #[serde(rename = "per_source_limit")]
    PerSource,
}

impl RejectReason {
    pub const ALL: [RejectReason; 3] = [
        RejectReason::Global,
        RejectReason::Listener,
        RejectReason::PerSource,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            RejectReason::Global => "global_limit",
            RejectReason::Listener => "listener_limit",
            RejectReason::PerSource => "per_source_limit",
        }
    }
}

/// A pool and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    pub name: String,
    /// Its balancing algorithm.
    #[serde(default)]
    pub balance: Balance,
    /// `slow_start`, in milliseconds (none: no ramp).
    #[serde(default)]
    pub slow_start_ms: Option<u64>,
    pub backends: Vec<BackendStats>,
    /// Its DNS sources (`name` backends, `[pool.discovery] srv`); empty without any.
    #[serde(default)]
    pub discovery: Vec<DnsSourceStatus>,
}

/// One DNS source of a pool: what it last answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSourceStatus {
    /// `A/AAAA api.internal:8443` or `SRV _api._tcp.internal`.
    pub source: String,
    /// `unknown` (not resolved yet), `ok`, `empty_held` (an empty answer, the last
    /// set still served until `hold_empty`), `empty`, `failing` (the resolver fails;
    /// the last good set is served).
    pub state: String,
    /// When it was last looked up (Unix seconds; none yet).
    pub last_resolution_unix: Option<u64>,
    /// The last lookup's outcome: `ok`, `empty` or `failed`.
    pub last_result: Option<String>,
    /// The last failure's cause, while failing.
    pub last_error: Option<String>,
    /// The backends it gives now.
    pub backends: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStats {
    pub address: SocketAddr,
    /// The weight in force (the runtime one if set, else the file's).
    pub weight: u32,
    #[serde(default)]
    pub weight_origin: SettingOrigin,
    /// The file's weight.
    #[serde(default)]
    pub config_weight: u32,
    /// Ready, drain or maint.
    #[serde(default)]
    pub state: BackendState,
    #[serde(default)]
    pub state_origin: SettingOrigin,
    /// The last runtime change still in force: who and when.
    #[serde(default)]
    pub changed: Option<RuntimeChange>,
    /// While slow start ramps it up: the percentage of its weight it gets now.
    #[serde(default)]
    pub slow_start_percent: Option<u32>,
    pub healthy: bool,
    pub active_connections: i64,
    /// Failed connect attempts (checks excluded); each made its client fall through
    /// to the next candidate.
    pub connect_failures: u64,
    /// Why the last check or connect failed, if one ever did.
    pub last_failure: Option<String>,
    /// `config` (an address in the file) or `dns <record>`.
    #[serde(default = "config_origin")]
    pub origin: String,
}

fn config_origin() -> String {
    "config".into()
}

impl BackendStats {
    /// It takes new connections: healthy, ready and with a weight above 0.
    pub fn takes_new_connections(&self) -> bool {
        self.healthy && self.state == BackendState::Ready && self.weight > 0
    }
}

/// The kernel half: verdicts per interface and the blocklist's size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct XdpStats {
    pub interfaces: Vec<InterfaceStats>,
    pub blocklist_entries: usize,
    pub auto_blocks_active: usize,
    /// SYN cookie mode, state and counters of each listener.
    #[serde(default)]
    pub listeners: Vec<ListenerXdpStats>,
    /// `[xdp.service_filter]` is on.
    #[serde(default)]
    pub service_filter: bool,
}

/// Fleet routing: each VIP and each BGP session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStats {
    pub vips: Vec<VipStatus>,
    pub peers: Vec<PeerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub vip: String,
    pub announced: bool,
    /// Why it is withdrawn (`pool web: 0 of 3 backends up`), or `serving`.
    pub reason: String,
    /// `steering = true`: announced only while this node is an active member of the
    /// fleet's table (its state: `fleet_policy.steering`).
    #[serde(default)]
    pub steering: bool,
}

/// A BGP session as BIRD reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: String,
    /// BIRD's protocol state (`up`, `start`, ...).
    pub state: String,
    /// BIRD's details (`Established`, `Active ...`).
    pub info: String,
}

/// One listener as the XDP program sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerXdpStats {
    pub listener: String,
    pub bind: String,
    /// The configured mode: `off`, `on` or `auto`.
    pub syn_cookies: String,
    /// Cookies answered now (`on`, or `auto` while switched on).
    pub cookies_active: bool,
    /// SYNs per second between the last two reads (every 250 ms), past the lists and
    /// per-source limits.
    pub syn_per_second: f64,
    pub syns: u64,
    pub cookies_sent: u64,
    pub cookie_acks_ok: u64,
    pub cookie_acks_bad: u64,
}

/// The XDP program's verdicts on one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStats {
    /// The interface's name, if it exists in this network namespace.
    pub interface: Option<String>,
    pub ifindex: u32,
    /// `native`, `skb` or `pinned`; `None` when read from the pins without a daemon.
    pub mode: Option<String>,
    pub verdicts: Verdicts,
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketCount {
    pub packets: u64,
    pub bytes: u64,
}

/// Packets and bytes per verdict [`Reason`], serialized as `{"passed": {...}, ...}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts([PacketCount; REASON_COUNT as usize]);

impl Verdicts {
    pub fn get(&self, reason: Reason) -> PacketCount {
        self.0[reason as usize]
    }

    pub fn add(&mut self, reason: Reason, count: PacketCount) {
        let c = &mut self.0[reason as usize];
        c.packets += count.packets;
        c.bytes += count.bytes;
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|c| c.packets == 0)
    }

    /// Every verdict together.
    pub fn total(&self) -> PacketCount {
        self.0
            .iter()
            .fold(PacketCount::default(), |sum, c| PacketCount {
                packets: sum.packets + c.packets,
                bytes: sum.bytes + c.bytes,
            })
    }
}

impl Serialize for Verdicts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(Reason::ALL.len()))?;
        for r in Reason::ALL {
            map.serialize_entry(r.name(), &self.get(r))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Verdicts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, PacketCount>::deserialize(d)?;
        let mut v = Verdicts::default();
        for (name, count) in map {
            let reason = Reason::ALL
                .into_iter()
                .find(|r| r.name() == name)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown reason {name:?}")))?;
            v.add(reason, count);
        }
        Ok(v)
    }
}

/// What the auto-blocker did since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoblockStats {
    pub blocked_total: u64,
    pub by_trigger: ByTrigger,
    /// Thresholds reached by allowlisted sources (not blocked).
    pub skipped_allowlisted: u64,
    /// Thresholds reached while no XDP program runs (nothing to block with).
    pub skipped_no_xdp: u64,
    /// Source events the data path could not hand over (the auto-blocker lagged).
    pub events_dropped: u64,
}

/// Auto-blocks per trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByTrigger {
    pub failed_handshakes: u64,
    pub handshake_timeouts: u64,
    pub new_connections: u64,
}

/// `proxy top`: the sources dropped most, from the sampled drop events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top {
    pub sources: Vec<SourceDrops>,
}

/// One source's sampled drops since the daemon started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDrops {
    /// `None` for packets without a parsable source address (malformed).
    pub source: Option<IpAddr>,
    /// Packets dropped: samples × sampling rate.
    pub estimated_drops: u64,
    /// SYNs answered in XDP with a SYN cookie (not drops: the client gets its
    /// SYN-ACK), samples × sampling rate.
    #[serde(default)]
    pub estimated_answered: u64,
    pub last_seen_unix: u64,
    /// (drop reason name, estimated drops), most first.
    pub by_reason: Vec<(String, u64)>,
}

impl SourceDrops {
    /// The address, or `malformed`.
    pub fn source_label(&self) -> String {
        self.source
            .map_or_else(|| "malformed".to_owned(), |ip| ip.to_string())
    }

    /// `reason=drops` pairs joined by `separator`.
    pub fn reasons_text(&self, separator: &str) -> String {
        let pairs: Vec<String> = self
            .by_reason
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        pairs.join(separator)
    }
}

/// Which kernel list an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum List {
    Allow,
    Block,
}

impl List {
    /// `allowlist` or `blocklist`.
    pub fn noun(self) -> &'static str {
        match self {
            List::Allow => "allowlist",
            List::Block => "blocklist",
        }
    }
}

/// Who added a list entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Manual,
    Auto,
    /// Shared by the fleet through `[fleet.policy]`.
    Fleet,
    Unknown,
}

impl Origin {
    pub fn label(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Manual => "manual",
            Origin::Auto => "auto",
            Origin::Fleet => "fleet",
            Origin::Unknown => "?",
        }
    }
}

/// One allow/block list entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub cidr: IpNet,
    /// Time left before the kernel stops honouring it; `None` = permanent.
    #[serde(with = "humantime_serde")]
    pub expires_in: Option<Duration>,
    pub created_at_unix: u64,
    pub origin: Origin,
    pub reason: String,
}

/// `proxy stats` without a reachable daemon: the kernel counters from the pins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelOnlyStats {
    pub xdp: XdpStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line() {
        assert_eq!(
            serde_json::to_string(&Request::Top { n: 5 }).unwrap(),
            r#"{"command":"top","n":5}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"command":"stats"}"#).unwrap(),
            Request::Stats
        );
    }

    #[test]
    fn stats_round_trip_with_reason_names() {
        let mut verdicts = Verdicts::default();
        verdicts.add(
            Reason::Blocklisted,
            PacketCount {
                packets: 3,
                bytes: 180,
            },
        );
        let mut failures = BTreeMap::new();
        failures.insert(HandshakeFailure::NotTls, 7);
        let stats = Stats {
            listeners: vec![ListenerStats {
                name: "web".into(),
                tls_handshake_failures: failures,
                ..ListenerStats::default()
            }],
            xdp: Some(XdpStats {
                interfaces: vec![InterfaceStats {
                    interface: Some("eth0".into()),
                    ifindex: 2,
                    mode: Some("native".into()),
                    verdicts,
                }],
                ..XdpStats::default()
            }),
            ..Stats::default()
        };
        let json = serde_json::to_value(Response::Stats(Box::new(stats.clone()))).unwrap();
        let s = &json["stats"];
        assert_eq!(
            s["xdp"]["interfaces"][0]["verdicts"]["blocklisted"]["packets"],
            3
        );
        assert_eq!(s["listeners"][0]["tls_handshake_failures"]["not_tls"], 7);
        let back: Response = serde_json::from_value(json).unwrap();
        assert_eq!(back, Response::Stats(Box::new(stats)));
    }

    #[test]
    fn backend_requests_are_one_json_line() {
        let set = Request::SetBackend {
            pool: "web".into(),
            address: "10.0.0.1:80".parse().unwrap(),
            change: BackendChange::State {
                state: BackendState::Drain,
                close: true,
            },
        };
        let line = serde_json::to_string(&set).unwrap();
        assert_eq!(
            line,
            r#"{"command":"set_backend","pool":"web","address":"10.0.0.1:80","change":{"setting":"state","state":"drain","close":true}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), set);
        let weight = r#"{"command":"set_backend","pool":"web","address":"[fd00::1]:80","change":{"setting":"weight","weight":2}}"#;
        assert!(matches!(
            serde_json::from_str::<Request>(weight).unwrap(),
            Request::SetBackend {
                change: BackendChange::Weight { weight: 2 },
                ..
            }
        ));
    }

    #[test]
    fn labels_match_the_serde_names() {
        for s in BackendState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.label());
        }
        for o in [SettingOrigin::Config, SettingOrigin::Runtime] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.label());
        }
        for f in HandshakeFailure::ALL {
            assert_eq!(serde_json::to_value(f).unwrap(), f.label());
        }
        for r in RejectReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.label());
        }
    }
}
