//! Listeners: binding, the accept loop, connection limits.
//!
//! A listener's settings live in an `ArcSwap<ListenerState>` that a reload replaces;
//! each accepted connection takes the state current at accept time and keeps it,
//! so a reload never changes (or cuts) a connection already open.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::Pool;
use crate::config;
use crate::events::{SourceEvent, SourceEventKind, SourceObserver};
use crate::metrics::{ListenerMetrics, Metrics, RejectReason};

/// Process-wide state shared by every listener and connection; survives reloads.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub observer: Arc<dyn SourceObserver>,
    /// Open client connections, all listeners together.
    pub connections: Arc<OpenCount>,
    /// Every connection task, for draining.
    pub tracker: TaskTracker,
}

/// A listener's configuration-derived state (replaced on reload).
pub struct ListenerState {
    pub settings: config::Listener,
    pub pool: Arc<Pool>,
    pub tls: Option<TlsListener>,
    pub global_max_connections: u32,
    pub idle_timeout: Duration,
    pub handshake_errors_per_second: u32,
}

/// TLS termination settings of a listener.
pub struct TlsListener {
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
}

/// A listener's state that lives as long as its socket.
pub struct ListenerRuntime {
    pub metrics: ListenerMetrics,
    pub connections: Arc<OpenCount>,
    pub per_source: Arc<PerSource>,
    pub handshake_log: LogLimiter,
    pub no_backend_log: LogLimiter,
}

/// A running accept loop.
pub struct RunningListener {
    /// The configured address (port 0 stays 0).
    pub bind: SocketAddr,
    pub state: Arc<ArcSwap<ListenerState>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningListener {
    /// Stops accepting (the socket closes); open connections continue.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds a listening socket: SO_REUSEADDR, SO_REUSEPORT (a reload can bind a new
/// socket before closing the old one), IPV6_V6ONLY for IPv6 addresses, and
/// TCP_NODELAY + keepalive, which accepted sockets inherit.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    crate::connection::tune(socket2::SockRef::from(&socket))?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Starts the accept loop on a bound socket.
pub fn start(
    socket: TcpListener,
    state: Arc<ArcSwap<ListenerState>>,
    shared: Arc<Shared>,
) -> io::Result<RunningListener> {
    let (name, bind) = {
        let s = state.load();
        (s.settings.name.clone(), s.settings.bind)
    };
    let runtime = Arc::new(ListenerRuntime {
        metrics: shared.metrics.listener(&name),
        connections: Arc::new(OpenCount::default()),
        per_source: Arc::new(PerSource::default()),
        handshake_log: LogLimiter::default(),
        no_backend_log: LogLimiter::default(),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(
        socket,
        state.clone(),
        runtime,
        shared,
        stop.clone(),
    ));
    tracing::info!(listener = %name, %bind, "listening");
    Ok(RunningListener {
        bind,
        state,
        stop,
        task,
    })
}

async fn accept_loop(
    socket: TcpListener,
    state: Arc<ArcSwap<ListenerState>>,
    runtime: Arc<ListenerRuntime>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = socket.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.load_full();
        if let Some(guards) = admit(&state, &runtime, &shared, peer.ip()) {
            runtime.metrics.accepted.inc();
            shared.observer.observe(SourceEvent {
                addr: peer.ip().to_canonical(),
                kind: SourceEventKind::Accepted,
            });
            let runtime = runtime.clone();
            let shared2 = shared.clone();
            shared.tracker.spawn(async move {
                let _guards = guards;
                crate::connection::handle(stream, peer, state, runtime, shared2).await;
            });
        } else {
            reject(stream);
        }
    }
}

/// Held for a connection's lifetime: releases its places in every limit.
pub struct Admission {
    _global: SlotGuard,
    _listener: SlotGuard,
    _source: Option<SourceGuard>,
    active: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.active.dec();
    }
}

fn admit(
    state: &ListenerState,
    runtime: &ListenerRuntime,
    shared: &Shared,
    ip: IpAddr,
) -> Option<Admission> {
    let m = &runtime.metrics;
    let Some(global) = shared.connections.acquire(state.global_max_connections) else {
        m.rejected(RejectReason::Global);
        return None;
    };
    let limit = state.settings.max_connections.unwrap_or(u32::MAX);
    let Some(listener) = runtime.connections.acquire(limit) else {
        m.rejected(RejectReason::Listener);
        return None;
    };
    let source = match state.settings.max_per_source {
        None => None,
        Some(limit) => match runtime.per_source.acquire(ip.to_canonical(), limit) {
            Some(g) => Some(g),
            None => {
                m.rejected(RejectReason::PerSource);
                shared.observer.observe(SourceEvent {
                    addr: ip.to_canonical(),
                    kind: SourceEventKind::RejectedPerSourceLimit,
                });
                return None;
            }
        },
    };
    m.active.inc();
    Some(Admission {
        _global: global,
        _listener: listener,
        _source: source,
        active: m.active.clone(),
    })
}

/// Closes a connection over a limit with a RST, so the client fails fast and the
/// socket does not linger in TIME_WAIT.
fn reject(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}

/// A count of open connections with a limit checked on acquire.
#[derive(Debug, Default)]
pub struct OpenCount(AtomicU32);

impl OpenCount {
    pub fn acquire(self: &Arc<Self>, limit: u32) -> Option<SlotGuard> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SlotGuard(self.clone()))
    }

    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

pub struct SlotGuard(Arc<OpenCount>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per source address.
#[derive(Debug, Default)]
pub struct PerSource(Mutex<HashMap<IpAddr, u32>>);

impl PerSource {
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<SourceGuard> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SourceGuard(self.clone(), ip))
    }
}

pub struct SourceGuard(Arc<PerSource>, IpAddr);

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut map = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Lets at most `per_second` lines through per second and reports how many it held
/// back, so a flood of bad handshakes cannot flood the log.
#[derive(Debug, Default)]
pub struct LogLimiter(Mutex<LogWindow>);

#[derive(Debug, Default)]
struct LogWindow {
    second: u64,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// `(may log this one, lines suppressed in the previous window)`.
    pub fn check(&self, per_second: u32) -> (bool, u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = 0;
        if w.second != now {
            report = w.suppressed;
            *w = LogWindow {
                second: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < per_second {
            w.logged += 1;
            (true, report)
        } else {
            w.suppressed += 1;
            (false, report)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_enforces_limit_and_releases() {
        let c = Arc::new(OpenCount::default());
        let a = c.acquire(2).unwrap();
        let _b = c.acquire(2).unwrap();
        assert!(c.acquire(2).is_none());
        drop(a);
        assert!(c.acquire(2).is_some());
    }

    #[test]
    fn per_source_is_per_address() {
        let p = Arc::new(PerSource::default());
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        let g = p.acquire(x, 1).unwrap();
        assert!(p.acquire(x, 1).is_none());
        assert!(p.acquire(y, 1).is_some());
        drop(g);
        assert!(p.acquire(x, 1).is_some());
        assert!(
            p.0.lock().unwrap().is_empty(),
            "released entries are removed"
        );
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        let s = socket2::SockRef::from(&accepted);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(60));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn log_limiter_caps_lines() {
        let l = LogLimiter::default();
        let allowed = (0..100).filter(|_| l.check(5).0).count();
        // The loop may straddle a second boundary: at most two windows' worth.
        assert!((5..=10).contains(&allowed), "{allowed}");
    }
}
