//! One client connection: TLS handshake (TLS listeners) → pick a backend → connect
//! (falling through the candidates) → PROXY header → forward both ways.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::balance::{Backend, KeyInput, Pool, Source};
use crate::config::{Forwarding, ProxyProtocol};
use crate::events::{SourceEvent, SourceEventKind};
use crate::proxy_protocol;
use crate::server::{ListenerRuntime, ListenerState, Shared};
use crate::splice::{self, End};

/// TCP keepalive on both sides: first probe after 60 s idle, then every 10 s.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

pub async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ListenerState>,
    runtime: Arc<ListenerRuntime>,
    shared: Arc<Shared>,
) {
    // TCP_NODELAY and keepalive come from the listening socket (inherited).
    // The local address is only needed for a PROXY header.
    let local = match state.pool.settings.proxy_protocol {
        ProxyProtocol::None => None,
        _ => match stream.local_addr() {
            Ok(a) => Some(a),
            Err(_) => return, // already gone
        },
    };
    let listener = state.settings.name.as_str();
    let m = &runtime.metrics;
    let Some(acceptor) = &state.tls else {
        let Some((backend, _guard)) = connect_backend(&state.pool, peer, None, &runtime).await
        else {
            return;
        };
        if send_proxy_header(&state.pool, &backend, peer, local, None, None)
            .await
            .is_err()
        {
            return;
        }
        let (mut stream, mut backend) = (stream, backend);
        let splice = state.settings.forwarding == Forwarding::Splice;
        let idle = state.idle_timeout;
        let end = splice::forward_tcp(
            &mut stream,
            &mut backend,
            &m.bytes_up,
            &m.bytes_down,
            idle,
            splice,
        )
        .await;
        log_end(listener, peer, end);
        return;
    };

    let Some(tls_settings) = &state.settings.tls else {
        return;
    };
    let handshake = timeout(tls_settings.handshake_timeout, acceptor.accept(stream)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = crate::tls::failure_reason(&e);
            handshake_failed(&state, &runtime, &shared, peer, reason, &e.to_string());
            return;
        }
        Err(_) => {
            handshake_failed(
                &state,
                &runtime,
                &shared,
                peer,
                "timeout",
                "handshake timeout",
            );
            return;
        }
    };
    m.handshakes.inc();
    let (sni, alpn) = {
        let conn = tls.get_ref().1;
        (
            conn.server_name().map(str::to_owned),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        )
    };
    let Some((backend, _guard)) =
        connect_backend(&state.pool, peer, sni.as_deref(), &runtime).await
    else {
        return;
    };
    if send_proxy_header(
        &state.pool,
        &backend,
        peer,
        local,
        sni.as_deref(),
        alpn.as_deref(),
    )
    .await
    .is_err()
    {
        return;
    }
    let end =
        splice::copy_bidirectional(tls, backend, &m.bytes_up, &m.bytes_down, state.idle_timeout)
            .await;
    log_end(listener, peer, end);
}

fn handshake_failed(
    state: &ListenerState,
    runtime: &ListenerRuntime,
    shared: &Shared,
    peer: SocketAddr,
    reason: &'static str,
    detail: &str,
) {
    runtime.metrics.handshake_failed(reason);
    let kind = match reason {
        "timeout" => SourceEventKind::HandshakeTimeout,
        reason => SourceEventKind::HandshakeFailed { reason },
    };
    shared.observer.observe(SourceEvent {
        addr: peer.ip().to_canonical(),
        kind,
    });
    let (log, suppressed) = runtime
        .handshake_log
        .check(state.handshake_errors_per_second);
    let listener = state.settings.name.as_str();
    if suppressed > 0 {
        tracing::warn!(
            listener,
            suppressed,
            "more TLS handshake failures were not logged (see proxy_tls_handshake_failures_total)"
        );
    }
    if log {
        tracing::warn!(listener, %peer, reason, error = detail, "TLS handshake failed");
    }
}

/// Holds a backend's active-connection gauge up while the connection lives.
pub struct BackendGuard(Arc<Backend>);

impl Drop for BackendGuard {
    fn drop(&mut self) {
        self.0.metrics.active.dec();
    }
}

/// Tries the candidates in order, at most `max_attempts`, each within
/// `connect_timeout`. Failures count towards marking the backend down.
async fn connect_backend(
    pool: &Pool,
    peer: SocketAddr,
    sni: Option<&str>,
    runtime: &ListenerRuntime,
) -> Option<(TcpStream, BackendGuard)> {
    let settings = &pool.settings;
    let key = pool.key_hash(&KeyInput { client: peer, sni });
    let mut last_error = String::new();
    for backend in pool.candidates(key).take(settings.max_attempts as usize) {
        let started = Instant::now();
        let result = timeout(
            settings.connect_timeout,
            TcpStream::connect(backend.address),
        )
        .await;
        let error = match result {
            Ok(Ok(stream)) => {
                backend
                    .metrics
                    .connect_seconds
                    .observe(started.elapsed().as_secs_f64());
                backend.metrics.connections.inc();
                backend.metrics.active.inc();
                backend.record(true, Source::Traffic, &settings.health, "");
                let _ = tune(socket2::SockRef::from(&stream));
                return Some((stream, BackendGuard(backend.clone())));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("connect timeout ({:?})", settings.connect_timeout),
        };
        backend.metrics.connect_failures.inc();
        backend.record(false, Source::Traffic, &settings.health, &error);
        tracing::debug!(pool = %pool.name(), backend = %backend.address, error, "connect failed, trying the next candidate");
        last_error = error;
    }
    runtime.metrics.no_backend.inc();
    tracing::warn!(
        pool = %pool.name(), %peer, error = last_error,
        "no backend could be reached; closing the client connection"
    );
    None
}

async fn send_proxy_header(
    pool: &Pool,
    backend: &TcpStream,
    client: SocketAddr,
    local: Option<SocketAddr>,
    sni: Option<&str>,
    alpn: Option<&[u8]>,
) -> io::Result<()> {
    let Some(local) = local else {
        return Ok(());
    };
    let header = proxy_protocol::Header {
        client,
        local,
        sni,
        alpn,
    };
    let bytes = match pool.settings.proxy_protocol {
        ProxyProtocol::None => return Ok(()),
        ProxyProtocol::V1 => proxy_protocol::v1(&header),
        ProxyProtocol::V2 => proxy_protocol::v2(&header),
    };
    let mut written = 0;
    while written < bytes.len() {
        backend.writable().await?;
        match backend.try_write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// TCP_NODELAY and keepalive on a backend socket; `server::bind` sets the same on
/// listening sockets, whose accepted sockets inherit them.
pub fn tune(socket: socket2::SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    socket.set_tcp_keepalive(&keepalive)
}

fn log_end(listener: &str, peer: SocketAddr, end: End) {
    match end {
        End::Closed => tracing::trace!(listener, %peer, "connection closed"),
        End::Idle => tracing::debug!(listener, %peer, "connection idle, closed"),
        End::Error(e) => {
            tracing::debug!(listener, %peer, error = %e, "connection ended with an error")
        }
    }
}
