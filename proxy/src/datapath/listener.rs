//! Listeners: binding and the accept loop (limits checked at accept).
//!
//! A listener's settings live in an `ArcSwap<ListenerState>` that a reload replaces;
//! each accepted connection takes the state current at accept time and keeps it,
//! so a reload never changes (or cuts) a connection already open.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::events::{SourceEvent, SourceEventKind};
use super::limits::{Admission, OpenCount, PerSource};
use super::state::{ListenerRuntime, ListenerState, Shared};
use crate::api::RejectReason;
use crate::logging::LogLimiter;

/// A running accept loop.
pub struct RunningListener {
    /// The configured address (port 0 stays 0).
    pub bind: SocketAddr,
    /// A second descriptor of the listening socket, for an upgrade's hand-over.
    pub socket: std::os::fd::OwnedFd,
    pub state: Arc<ArcSwap<ListenerState>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningListener {
    /// Sets the segment size offered to clients of new connections (`mss` of the
    /// listener; `None` clears it: the kernel's own, from the route's MTU).
    pub fn set_mss(&self, mss: Option<u16>) -> io::Result<()> {
        socket2::SockRef::from(&self.socket).set_tcp_mss(u32::from(mss.unwrap_or(0)))
    }

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
    super::connection::tune(socket2::SockRef::from(&socket))?;
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
    let handover_fd = std::os::fd::AsFd::as_fd(&socket).try_clone_to_owned()?;
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
        socket: handover_fd,
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
                // EMFILE and friends: back off instead of spinning; a flood of
                // connections can cause these, so they are rate-limited too.
                static ACCEPT_ERRORS: LogLimiter = LogLimiter::new();
                let (log, suppressed) = ACCEPT_ERRORS.check(1);
                if log {
                    tracing::warn!(error = %e, suppressed, "accept failed");
                }
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
                super::connection::handle(stream, peer, state, runtime, shared2).await;
            });
        } else {
            reject(stream);
        }
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
    Some(Admission::new(global, listener, source, m.active.clone()))
}

/// Closes a connection over a limit with a RST, so the client fails fast and the
/// socket does not linger in TIME_WAIT.
fn reject(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
