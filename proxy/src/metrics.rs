//! Every metric of the daemon, in one `prometheus-client` registry.
//!
//! Hot paths hold cloned handles ([`ListenerMetrics`], [`BackendMetrics`]): a
//! `Family` lookup happens once per listener/backend, not per connection. The same
//! handles fill the typed admin API ([`Metrics::listener_stats`],
//! [`AutoblockMetrics::stats`]); the kernel half adds a collector read at scrape time
//! ([`Metrics::register_collector`]). [`Metrics::encode`] renders the whole registry.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::api::{
    AutoblockStats, BackendState, ByTrigger, HandshakeFailure, ListenerStats, RejectReason,
    SettingOrigin,
};

/// A label value from outside the program (a configured name, an interface name),
/// escaped as the text exposition format requires (`\\`, `\"`, `\n`), so no value
/// can break the scrape or inject series. (prometheus-client writes values as given.)
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct LabelText(pub String);

impl From<&str> for LabelText {
    fn from(s: &str) -> LabelText {
        LabelText(s.to_owned())
    }
}

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    pool: LabelText,
    backend: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendReasonLabels {
    pool: LabelText,
    backend: LabelText,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendStateLabels {
    pool: LabelText,
    backend: LabelText,
    /// `ready`, `drain` or `maint`.
    state: &'static str,
    /// `config` or `runtime`.
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendOriginLabels {
    pool: LabelText,
    backend: LabelText,
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: LabelText,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    listener: LabelText,
    /// `upstream` (client to backend) or `downstream` (backend to client).
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: LabelText,
    route: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteBytesLabels {
    listener: LabelText,
    route: LabelText,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteReasonLabels {
    listener: LabelText,
    route: LabelText,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolResultLabels {
    pool: LabelText,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolOriginLabels {
    pool: LabelText,
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn connect_buckets() -> Histogram {
    // 50 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The registry and every metric family in it.
pub struct Metrics {
    registry: Registry,
    connections_active: Family<ListenerLabels, Gauge>,
    connections: Family<ListenerLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    handshakes: Family<ListenerLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    ocsp_not_stapled: Family<ReasonLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    spliced: Family<ListenerLabels, Counter>,
    backend_connections_active: Family<BackendLabels, Gauge>,
    backend_connections: Family<BackendLabels, Counter>,
    backend_connect_failures: Family<BackendLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    backend_tls_failures: Family<BackendReasonLabels, Counter>,
    backend_state: Family<BackendStateLabels, Gauge>,
    backend_weight: Family<BackendOriginLabels, Gauge>,
    backend_connect_seconds: HistogramFamily<PoolLabels>,
    no_backend: Family<ListenerLabels, Counter>,
    route_connections: Family<RouteLabels, Counter>,
    route_bytes: Family<RouteBytesLabels, Counter>,
    route_failures: Family<RouteReasonLabels, Counter>,
    dns_resolutions: Family<PoolResultLabels, Counter>,
    pool_backends: Family<PoolOriginLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    autoblock: AutoblockMetrics,
    /// Handles of every listener seen since start, for the admin API.
    listeners: Mutex<BTreeMap<String, ListenerMetrics>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("proxy");
        let autoblock = AutoblockMetrics::register(&mut registry);
        let mut m = Metrics {
            registry,
            connections_active: Family::default(),
            connections: Family::default(),
            rejected: Family::default(),
            handshakes: Family::default(),
            handshake_failures: Family::default(),
            ocsp_not_stapled: Family::default(),
            bytes: Family::default(),
            spliced: Family::default(),
            backend_connections_active: Family::default(),
            backend_connections: Family::default(),
            backend_connect_failures: Family::default(),
            backend_up: Family::default(),
            backend_tls_failures: Family::default(),
            backend_state: Family::default(),
            backend_weight: Family::default(),
            backend_connect_seconds: Family::new_with_constructor(connect_buckets),
            no_backend: Family::default(),
            route_connections: Family::default(),
            route_bytes: Family::default(),
            route_failures: Family::default(),
            dns_resolutions: Family::default(),
            pool_backends: Family::default(),
            reloads: Family::default(),
            autoblock,
            listeners: Mutex::default(),
        };
        let r = &mut m.registry;
        r.register(
            "connections_active",
            "Client connections open, per listener",
            m.connections_active.clone(),
        );
        r.register(
            "connections",
            "Client connections accepted, per listener",
            m.connections.clone(),
        );
        r.register(
            "connections_rejected",
            "Client connections closed at accept because a limit was reached",
            m.rejected.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes completed, per listener",
            m.handshakes.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes failed, per listener and reason",
            m.handshake_failures.clone(),
        );
        r.register(
            "tls_ocsp_not_stapled",
            "OCSP responses not stapled at a (re)load, per listener and reason",
            m.ocsp_not_stapled.clone(),
        );
        r.register_with_unit(
            "transferred",
            "Payload bytes forwarded, per listener and direction",
            Unit::Bytes,
            m.bytes.clone(),
        );
        r.register_with_unit(
            "spliced",
            "Of the payload bytes forwarded (both directions), those moved by splice(2)",
            Unit::Bytes,
            m.spliced.clone(),
        );
        r.register(
            "backend_connections_active",
            "Connections open to a backend",
            m.backend_connections_active.clone(),
        );
        r.register(
            "backend_connections",
            "Connections established to a backend",
            m.backend_connections.clone(),
        );
        r.register(
            "backend_connect_failures",
            "Failed connect attempts to a backend (errors and timeouts)",
            m.backend_connect_failures.clone(),
        );
        r.register(
            "backend_up",
            "Backend health: 1 up, 0 down",
            m.backend_up.clone(),
        );
        r.register(
            "backend_tls_failures",
            "TLS handshakes with a backend ([pool.tls]) that failed, per reason",
            m.backend_tls_failures.clone(),
        );
        r.register(
            "backend_state",
            "Backend state set by the operator: 1 for the one in force (ready, drain, maint), \
             with where it comes from (config, runtime)",
            m.backend_state.clone(),
        );
        r.register(
            "backend_weight",
            "Backend weight in force, with where it comes from (config, runtime)",
            m.backend_weight.clone(),
        );
        r.register_with_unit(
            "backend_connect_duration",
            "Time to establish a TCP connection to a backend",
            Unit::Seconds,
            m.backend_connect_seconds.clone(),
        );
        r.register(
            "no_backend",
            "Client connections closed because every attempted backend failed",
            m.no_backend.clone(),
        );
        r.register(
            "route_connections",
            "Client connections that took a route (SNI routes), per listener and route",
            m.route_connections.clone(),
        );
        r.register_with_unit(
            "route_transferred",
            "Payload bytes forwarded, per listener, route and direction",
            Unit::Bytes,
            m.route_bytes.clone(),
        );
        r.register(
            "route_failures",
            "Connections of a route that failed after routing, per listener, route and reason",
            m.route_failures.clone(),
        );
        r.register(
            "dns_resolutions",
            "DNS lookups of a pool's backends, per pool and result (ok, empty, failed)",
            m.dns_resolutions.clone(),
        );
        r.register(
            "pool_backends",
            "Backends of a pool, per origin (config: addresses in the file; dns)",
            m.pool_backends.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads by result (ok, error)",
            m.reloads.clone(),
        );
        m
    }

    /// Adds a collector read at every scrape (the kernel half's counters). Call before
    /// the registry is shared.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// Registers a metric family another part owns (as `proxy_<name>`).
    pub fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.register(name, help, metric);
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Handles for one listener (created on first use; the same afterwards).
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let mut known = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = known.get(listener) {
            return m.clone();
        }
        let l = ListenerLabels {
            listener: listener.into(),
        };
        let bytes = |direction| {
            self.bytes.get_or_create_owned(&BytesLabels {
                listener: listener.into(),
                direction,
            })
        };
        let reason = |family: &Family<ReasonLabels, Counter>, reason| {
            family.get_or_create_owned(&ReasonLabels {
                listener: listener.into(),
                reason,
            })
        };
        let m = ListenerMetrics {
            active: self.connections_active.get_or_create_owned(&l),
            accepted: self.connections.get_or_create_owned(&l),
            handshakes: self.handshakes.get_or_create_owned(&l),
            no_backend: self.no_backend.get_or_create_owned(&l),
            bytes: ByteCounters {
                up: Tally {
                    listener: bytes("upstream"),
                    route: None,
                },
                down: Tally {
                    listener: bytes("downstream"),
                    route: None,
                },
                spliced: self.spliced.get_or_create_owned(&l),
            },
            handshake_failures: HandshakeFailure::ALL
                .map(|f| reason(&self.handshake_failures, f.label())),
            rejected: RejectReason::ALL.map(|r| reason(&self.rejected, r.label())),
        };
        known.insert(listener.to_owned(), m.clone());
        m
    }

    /// Handles for route `route` of `listener` (the same for the same names).
    pub fn route(&self, listener: &str, route: &str) -> RouteMetrics {
        let l = RouteLabels {
            listener: listener.into(),
            route: route.into(),
        };
        let bytes = |direction| {
            self.route_bytes.get_or_create_owned(&RouteBytesLabels {
                listener: listener.into(),
                route: route.into(),
                direction,
            })
        };
        RouteMetrics {
            connections: self.route_connections.get_or_create_owned(&l),
            up: bytes("upstream"),
            down: bytes("downstream"),
            no_backend: self.route_failures.get_or_create_owned(&RouteReasonLabels {
                listener: listener.into(),
                route: route.into(),
                reason: "no_backend",
            }),
        }
    }

    /// A DNS lookup of `pool`'s backends ended with `result` (ok, empty, failed).
    pub fn dns_resolved(&self, pool: &str, result: &'static str) {
        self.dns_resolutions
            .get_or_create(&PoolResultLabels {
                pool: pool.into(),
                result,
            })
            .inc();
    }

    /// How many backends `pool` has from the file and from DNS.
    pub fn pool_backends(&self, pool: &str, config: usize, dns: usize) {
        for (origin, n) in [("config", config), ("dns", dns)] {
            self.pool_backends
                .get_or_create(&PoolOriginLabels {
                    pool: pool.into(),
                    origin,
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Drops a removed route's series.
    pub fn remove_route(&self, listener: &str, route: &str) {
        self.route_connections.remove(&RouteLabels {
            listener: listener.into(),
            route: route.into(),
        });
        for direction in ["upstream", "downstream"] {
            self.route_bytes.remove(&RouteBytesLabels {
                listener: listener.into(),
                route: route.into(),
                direction,
            });
        }
        self.route_failures.remove(&RouteReasonLabels {
            listener: listener.into(),
            route: route.into(),
            reason: "no_backend",
        });
    }

    /// An OCSP response was not stapled at a (re)load (`reason`: an `OcspProblem` label).
    pub fn ocsp_not_stapled(&self, listener: &str, reason: &'static str) {
        self.ocsp_not_stapled
            .get_or_create(&ReasonLabels {
                listener: listener.into(),
                reason,
            })
            .inc();
    }

    /// Every listener's counters, by name.
    pub fn listener_stats(&self) -> Vec<ListenerStats> {
        let known = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        known.iter().map(|(name, m)| m.stats(name)).collect()
    }

    pub fn backend(&self, pool: &str, backend: &str) -> BackendMetrics {
        let l = BackendLabels {
            pool: pool.into(),
            backend: backend.into(),
        };
        BackendMetrics {
            active: self.backend_connections_active.get_or_create_owned(&l),
            connections: self.backend_connections.get_or_create_owned(&l),
            connect_failures: self.backend_connect_failures.get_or_create_owned(&l),
            up: self.backend_up.get_or_create_owned(&l),
            connect_seconds: self
                .backend_connect_seconds
                .get_or_create_owned(&PoolLabels { pool: pool.into() }),
            tls_failures: self.backend_tls_failures.clone(),
            labels: l,
            control: self.control_series(pool, backend),
        }
    }

    fn control_series(&self, pool: &str, backend: &str) -> ControlSeries {
        ControlSeries {
            pool: pool.into(),
            backend: backend.into(),
            state: self.backend_state.clone(),
            weight: self.backend_weight.clone(),
        }
    }

    /// Drops a removed backend's series.
    pub fn remove_backend(&self, pool: &str, backend: &str) {
        let l = BackendLabels {
            pool: pool.into(),
            backend: backend.into(),
        };
        self.backend_connections_active.remove(&l);
        self.backend_connections.remove(&l);
        self.backend_connect_failures.remove(&l);
        self.backend_up.remove(&l);
        for reason in crate::api::BACKEND_TLS_FAILURES {
            self.backend_tls_failures.remove(&BackendReasonLabels {
                pool: pool.into(),
                backend: backend.into(),
                reason,
            });
        }
        self.control_series(pool, backend).clear();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn autoblock(&self) -> &AutoblockMetrics {
        &self.autoblock
    }
}

/// A byte counter of a listener, and of the route a connection took (if any).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    listener: Counter,
    route: Option<Counter>,
}

impl Tally {
    pub fn inc_by(&self, n: u64) {
        self.listener.inc_by(n);
        if let Some(route) = &self.route {
            route.inc_by(n);
        }
    }

    /// The listener's count.
    pub fn get(&self) -> u64 {
        self.listener.get()
    }
}

/// Payload byte counters of one listener (and route).
#[derive(Clone, Debug)]
pub struct ByteCounters {
    pub up: Tally,
    pub down: Tally,
    /// Of `up` and `down`, the bytes moved by splice(2).
    pub spliced: Counter,
}

/// Handles for one listener.
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    pub active: Gauge,
    pub accepted: Counter,
    pub handshakes: Counter,
    pub no_backend: Counter,
    pub bytes: ByteCounters,
    handshake_failures: [Counter; HandshakeFailure::ALL.len()],
    rejected: [Counter; RejectReason::ALL.len()],
}

impl ByteCounters {
    /// These counters, also counting into `route`'s.
    pub fn with_route(&self, route: &RouteMetrics) -> ByteCounters {
        let tally = |listener: &Tally, route: &Counter| Tally {
            listener: listener.listener.clone(),
            route: Some(route.clone()),
        };
        ByteCounters {
            up: tally(&self.up, &route.up),
            down: tally(&self.down, &route.down),
            spliced: self.spliced.clone(),
        }
    }
}

/// Handles for one route of a listener.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    pub connections: Counter,
    pub up: Counter,
    pub down: Counter,
    pub no_backend: Counter,
}

impl RouteMetrics {
    /// (connections, bytes upstream, bytes downstream, no backend).
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.connections.get(),
            self.up.get(),
            self.down.get(),
            self.no_backend.get(),
        )
    }
}

impl ListenerMetrics {
    pub fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshake_failures[reason as usize].inc();
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected[reason as usize].inc();
    }

    fn stats(&self, name: &str) -> ListenerStats {
        ListenerStats {
            name: name.to_owned(),
            connections_active: self.active.get(),
            connections_total: self.accepted.get(),
            tls_handshakes: self.handshakes.get(),
            tls_handshake_failures: HandshakeFailure::ALL
                .iter()
                .map(|f| (*f, self.handshake_failures[*f as usize].get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            rejected: RejectReason::ALL
                .iter()
                .map(|r| (*r, self.rejected[*r as usize].get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            bytes_upstream: self.bytes.up.get(),
            bytes_downstream: self.bytes.down.get(),
            bytes_spliced: self.bytes.spliced.get(),
            no_backend: self.no_backend.get(),
            routes: Vec::new(),
        }
    }
}

/// Handles for one backend.
#[derive(Clone, Debug)]
pub struct BackendMetrics {
    pub active: Gauge,
    pub connections: Counter,
    pub connect_failures: Counter,
    pub up: Gauge,
    pub connect_seconds: Histogram,
    /// `[pool.tls]` handshake failures by reason (series made on the first failure).
    tls_failures: Family<BackendReasonLabels, Counter>,
    labels: BackendLabels,
    pub control: ControlSeries,
}

impl BackendMetrics {
    /// A TLS handshake with the backend failed (`reason`: an `upstream_tls` label).
    pub fn tls_failed(&self, reason: &'static str) {
        self.tls_failures
            .get_or_create(&BackendReasonLabels {
                pool: self.labels.pool.clone(),
                backend: self.labels.backend.clone(),
                reason,
            })
            .inc();
    }
}

/// A backend's `proxy_backend_state` and `proxy_backend_weight` series: their labels
/// change with the state and the origins, so they are replaced, not set.
#[derive(Clone, Debug)]
pub struct ControlSeries {
    pool: LabelText,
    backend: LabelText,
    state: Family<BackendStateLabels, Gauge>,
    weight: Family<BackendOriginLabels, Gauge>,
}

impl ControlSeries {
    /// Shows `state` (from `state_origin`) and `weight` (from `weight_origin`).
    pub fn show(
        &self,
        state: BackendState,
        state_origin: SettingOrigin,
        weight: u32,
        weight_origin: SettingOrigin,
    ) {
        self.clear();
        for s in BackendState::ALL {
            self.state
                .get_or_create(&self.state_labels(s, state_origin))
                .set(i64::from(s == state));
        }
        self.weight
            .get_or_create(&self.weight_labels(weight_origin))
            .set(i64::from(weight));
    }

    /// Removes every series of this backend.
    fn clear(&self) {
        for origin in [SettingOrigin::Config, SettingOrigin::Runtime] {
            for s in BackendState::ALL {
                self.state.remove(&self.state_labels(s, origin));
            }
            self.weight.remove(&self.weight_labels(origin));
        }
    }

    fn state_labels(&self, state: BackendState, origin: SettingOrigin) -> BackendStateLabels {
        BackendStateLabels {
            pool: self.pool.clone(),
            backend: self.backend.clone(),
            state: state.label(),
            origin: origin.label(),
        }
    }

    fn weight_labels(&self, origin: SettingOrigin) -> BackendOriginLabels {
        BackendOriginLabels {
            pool: self.pool.clone(),
            backend: self.backend.clone(),
            origin: origin.label(),
        }
    }
}

/// What the auto-blocker counts.
#[derive(Clone, Debug, Default)]
pub struct AutoblockMetrics {
    pub failed_handshakes: Counter,
    pub handshake_timeouts: Counter,
    pub new_connections: Counter,
    pub skipped_allowlisted: Counter,
    pub skipped_no_xdp: Counter,
    pub events_dropped: Counter,
}

impl AutoblockMetrics {
    fn register(r: &mut Registry) -> AutoblockMetrics {
        let by_trigger: Family<TriggerLabels, Counter> = Family::default();
        r.register(
            "autoblocks",
            "Sources the daemon blocked in the kernel, by trigger",
            by_trigger.clone(),
        );
        let trigger = |trigger| by_trigger.get_or_create_owned(&TriggerLabels { trigger });
        let m = AutoblockMetrics {
            failed_handshakes: trigger("failed_handshakes"),
            handshake_timeouts: trigger("handshake_timeouts"),
            new_connections: trigger("new_connections"),
            ..AutoblockMetrics::default()
        };
        r.register(
            "autoblock_skipped_allowlisted",
            "Auto-block thresholds reached by allowlisted sources (not blocked)",
            m.skipped_allowlisted.clone(),
        );
        r.register(
            "autoblock_skipped_no_xdp",
            "Auto-block thresholds reached while no XDP program runs (not blocked)",
            m.skipped_no_xdp.clone(),
        );
        r.register(
            "source_events_dropped",
            "Per-source events the data path dropped because the auto-blocker lagged",
            m.events_dropped.clone(),
        );
        m
    }

    pub fn stats(&self) -> AutoblockStats {
        let by_trigger = ByTrigger {
            failed_handshakes: self.failed_handshakes.get(),
            handshake_timeouts: self.handshake_timeouts.get(),
            new_connections: self.new_connections.get(),
        };
        AutoblockStats {
            blocked_total: by_trigger.failed_handshakes
                + by_trigger.handshake_timeouts
                + by_trigger.new_connections,
            by_trigger,
            skipped_allowlisted: self.skipped_allowlisted.get(),
            skipped_no_xdp: self.skipped_no_xdp.get(),
            events_dropped: self.events_dropped.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.listener("a\"b\\c\nproxy_fake_total 1").accepted.inc();
        let text = m.encode();
        assert!(
            text.contains(r#"proxy_connections_total{listener="a\"b\\c\nproxy_fake_total 1"} 1"#),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("proxy_fake_total")),
            "{text}"
        );
    }

    #[test]
    fn encodes_conventional_names() {
        let m = Metrics::new();
        let l = m.listener("web");
        l.accepted.inc();
        l.active.inc();
        l.bytes.up.inc_by(100);
        l.handshake_failed(HandshakeFailure::Timeout);
        l.rejected(RejectReason::PerSource);
        let b = m.backend("app", "10.0.0.1:80");
        b.up.set(1);
        b.connect_seconds.observe(0.001);
        m.reload(true);
        m.autoblock().failed_handshakes.inc();
        let text = m.encode();
        for line in [
            "proxy_connections_total{listener=\"web\"} 1",
            "proxy_connections_active{listener=\"web\"} 1",
            "proxy_transferred_bytes_total{listener=\"web\",direction=\"upstream\"} 100",
            "proxy_tls_handshake_failures_total{listener=\"web\",reason=\"timeout\"} 1",
            "proxy_connections_rejected_total{listener=\"web\",reason=\"per_source_limit\"} 1",
            "proxy_backend_up{pool=\"app\",backend=\"10.0.0.1:80\"} 1",
            "proxy_backend_connect_duration_seconds_count{pool=\"app\"} 1",
            "proxy_config_reloads_total{result=\"ok\"} 1",
            "proxy_autoblocks_total{trigger=\"failed_handshakes\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1);
        b.control.show(
            BackendState::Ready,
            SettingOrigin::Config,
            1,
            SettingOrigin::Config,
        );
        b.control.show(
            BackendState::Drain,
            SettingOrigin::Runtime,
            3,
            SettingOrigin::Runtime,
        );
        let text = m.encode();
        for line in [
            "proxy_backend_state{pool=\"app\",backend=\"10.0.0.1:80\",state=\"drain\",origin=\"runtime\"} 1",
            "proxy_backend_state{pool=\"app\",backend=\"10.0.0.1:80\",state=\"ready\",origin=\"runtime\"} 0",
            "proxy_backend_weight{pool=\"app\",backend=\"10.0.0.1:80\",origin=\"runtime\"} 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("origin=\"config\""), "{text}");
        m.remove_backend("app", "10.0.0.1:80");
        let text = m.encode();
        assert!(!text.contains("proxy_backend_up{"));
        assert!(!text.contains("proxy_backend_state{"), "{text}");
        assert!(!text.contains("proxy_backend_weight{"), "{text}");
    }

    #[test]
    fn typed_stats_come_from_the_same_handles() {
        let m = Metrics::new();
        let l = m.listener("web");
        l.handshake_failed(HandshakeFailure::NotTls);
        l.handshake_failed(HandshakeFailure::NotTls);
        m.listener("web").bytes.spliced.inc_by(7);
        let stats = m.listener_stats();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].name, "web");
        assert_eq!(
            stats[0].tls_handshake_failures[&HandshakeFailure::NotTls],
            2
        );
        assert_eq!(
            stats[0].tls_handshake_failures.len(),
            1,
            "zeros are left out"
        );
        assert_eq!(stats[0].bytes_spliced, 7);
        m.autoblock().new_connections.inc();
        assert_eq!(m.autoblock().stats().blocked_total, 1);
    }
}
