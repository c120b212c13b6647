//! Every metric the data path produces, in one `prometheus-client` registry.
//!
//! Hot paths hold cloned handles ([`ListenerMetrics`], [`BackendMetrics`]): a
//! `Family` lookup happens once per listener/backend, not per connection.
//! [`Metrics::encode`] renders the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub pool: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeFailureLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub listener: String,
    /// `upstream` (client to backend) or `downstream` (backend to client).
    pub direction: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RejectReason {
    /// `limits.max_connections` reached.
    Global,
    /// The listener's `max_connections` reached.
    Listener,
    /// The listener's `max_per_source` reached for that client address.
    PerSource,
}

impl RejectReason {
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Global => "global_limit",
            RejectReason::Listener => "listener_limit",
            RejectReason::PerSource => "per_source_limit",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
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
    rejected: Family<RejectLabels, Counter>,
    handshakes: Family<ListenerLabels, Counter>,
    handshake_failures: Family<HandshakeFailureLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    backend_connections_active: Family<BackendLabels, Gauge>,
    backend_connections: Family<BackendLabels, Counter>,
    backend_connect_failures: Family<BackendLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    backend_connect_seconds: HistogramFamily<PoolLabels>,
    no_backend: Family<ListenerLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("proxy"),
            connections_active: Family::default(),
            connections: Family::default(),
            rejected: Family::default(),
            handshakes: Family::default(),
            handshake_failures: Family::default(),
            bytes: Family::default(),
            backend_connections_active: Family::default(),
            backend_connections: Family::default(),
            backend_connect_failures: Family::default(),
            backend_up: Family::default(),
            backend_connect_seconds: Family::new_with_constructor(connect_buckets),
            no_backend: Family::default(),
            reloads: Family::default(),
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
        r.register_with_unit(
            "transferred",
            "Payload bytes forwarded, per listener and direction",
            Unit::Bytes,
            m.bytes.clone(),
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
            "config_reloads",
            "Configuration reloads by result (ok, error)",
            m.reloads.clone(),
        );
        m
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// For subsystems that add their own metrics (admin, XDP).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let l = ListenerLabels {
            listener: listener.to_owned(),
        };
        let bytes = |direction| {
            self.bytes.get_or_create_owned(&BytesLabels {
                listener: listener.to_owned(),
                direction,
            })
        };
        ListenerMetrics {
            name: listener.to_owned(),
            active: self.connections_active.get_or_create_owned(&l),
            accepted: self.connections.get_or_create_owned(&l),
            handshakes: self.handshakes.get_or_create_owned(&l),
            no_backend: self.no_backend.get_or_create_owned(&l),
            bytes_up: bytes("upstream"),
            bytes_down: bytes("downstream"),
            handshake_failures: self.handshake_failures.clone(),
            rejected: self.rejected.clone(),
        }
    }

    pub fn backend(&self, pool: &str, backend: &str) -> BackendMetrics {
        let l = BackendLabels {
            pool: pool.to_owned(),
            backend: backend.to_owned(),
        };
        BackendMetrics {
            active: self.backend_connections_active.get_or_create_owned(&l),
            connections: self.backend_connections.get_or_create_owned(&l),
            connect_failures: self.backend_connect_failures.get_or_create_owned(&l),
            up: self.backend_up.get_or_create_owned(&l),
            connect_seconds: self
                .backend_connect_seconds
                .get_or_create_owned(&PoolLabels {
                    pool: pool.to_owned(),
                }),
        }
    }

    /// Drops a removed backend's series.
    pub fn remove_backend(&self, pool: &str, backend: &str) {
        let l = BackendLabels {
            pool: pool.to_owned(),
            backend: backend.to_owned(),
        };
        self.backend_connections_active.remove(&l);
        self.backend_connections.remove(&l);
        self.backend_connect_failures.remove(&l);
        self.backend_up.remove(&l);
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }
}

/// Handles for one listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    name: String,
    pub active: Gauge,
    pub accepted: Counter,
    pub handshakes: Counter,
    pub no_backend: Counter,
    pub bytes_up: Counter,
    pub bytes_down: Counter,
    handshake_failures: Family<HandshakeFailureLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
}

impl ListenerMetrics {
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&HandshakeFailureLabels {
                listener: self.name.clone(),
                reason,
            })
            .inc();
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected
            .get_or_create(&RejectLabels {
                listener: self.name.clone(),
                reason: reason.label(),
            })
            .inc();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_conventional_names() {
        let m = Metrics::new();
        let l = m.listener("web");
        l.accepted.inc();
        l.active.inc();
        l.bytes_up.inc_by(100);
        l.handshake_failed("timeout");
        l.rejected(RejectReason::PerSource);
        let b = m.backend("app", "10.0.0.1:80");
        b.up.set(1);
        b.connect_seconds.observe(0.001);
        m.reload(true);
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
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        m.remove_backend("app", "10.0.0.1:80");
        assert!(!m.encode().contains("proxy_backend_up{"));
    }
}
