//! What the accept loop and every connection share: process-wide state that survives
//! reloads ([`Shared`]), a listener's configuration-derived state that a reload
//! replaces ([`ListenerState`]), and a listener's state that lives as long as its
//! socket ([`ListenerRuntime`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::balance::Pool;
use super::events::SourceObserver;
use super::limits::{OpenCount, PerSource};
use super::routes::Routes;
use crate::config;
use crate::logging::LogLimiter;
use crate::metrics::{ListenerMetrics, Metrics};

/// Process-wide state shared by every listener and connection; survives reloads.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub observer: Arc<dyn SourceObserver>,
    /// Open client connections, all listeners together.
    pub connections: Arc<OpenCount>,
    /// Every connection task, for draining.
    pub tracker: TaskTracker,
}

/// A listener's configuration-derived state (replaced on reload). Each connection
/// keeps the state current when it was accepted.
pub struct ListenerState {
    pub settings: config::Listener,
    /// The listener's pool (with routes: the default route's).
    pub pool: Arc<Pool>,
    pub tls: Option<TlsListener>,
    /// `[[listener.route]]`s; `None` without any.
    pub routes: Option<Routes>,
    /// Time a client has to send its ClientHello (passthrough) or finish its handshake.
    pub handshake_timeout: Duration,
    pub global_max_connections: u32,
    pub idle_timeout: Duration,
    pub handshake_errors_per_second: u32,
}

/// TLS termination settings of a listener.
pub struct TlsListener {
    pub acceptor: TlsAcceptor,
    /// Present when some certificates have their own `client_auth`: the configuration
    /// is then chosen by the ClientHello's server name.
    pub by_name: Option<super::tls::ConfigsByName>,
}

/// A listener's state that lives as long as its socket.
pub struct ListenerRuntime {
    pub metrics: ListenerMetrics,
    pub connections: Arc<OpenCount>,
    pub per_source: Arc<PerSource>,
    pub handshake_log: LogLimiter,
    pub no_backend_log: LogLimiter,
}
