//! One client connection: (ClientHello → route) → TLS handshake (terminated
//! routes) → pick a backend → connect (falling through the candidates) → PROXY
//! header → forward both ways. Passthrough routes replay the ClientHello to the
//! backend and forward TLS untouched, as plain TCP.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use super::balance::{Backend, Connection, KeyInput, Pool, Source};
use super::client_cert;
use super::client_hello::{self, Hello, HelloError};
use super::events::{SourceEvent, SourceEventKind};
use super::forward::{self, End};
use super::proxy_protocol;
use super::replay::Replay;
use super::routes::Route;
use super::state::{ListenerRuntime, ListenerState, Shared, TlsListener};
use super::tls;
use super::upstream_tls;
use crate::api::HandshakeFailure;
use crate::config::{Forwarding, ProxyProtocol, RouteTls};
use crate::metrics::{ByteCounters, RouteMetrics};

/// TCP keepalive on client connections: first probe after 60 s idle, then every 10 s.
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
    let wants_local = match &state.routes {
        None => state.pool.settings.proxy_protocol != ProxyProtocol::None,
        Some(routes) => routes
            .all()
            .any(|r| r.pool.settings.proxy_protocol != ProxyProtocol::None),
    };
    let local = match wants_local {
        false => None,
        true => match stream.local_addr() {
            Ok(a) => Some(a),
            Err(_) => return, // already gone
        },
    };
    let c = Conn {
        peer,
        client_fd: stream.as_raw_fd(),
        local,
        state: &state,
        runtime: &runtime,
        shared: &shared,
    };
    let deadline = Instant::now() + state.handshake_timeout;
    let end = match (&state.tls, &state.routes) {
        (_, Some(routes)) if routes.reads_hello => Box::pin(c.routed(stream, deadline)).await,
        // Boxed: the handshake's state is large, and only TLS connections need it.
        (Some(tls), _) => Box::pin(c.terminate(stream, tls, deadline, None)).await,
        (None, _) => c.plain(stream).await,
    };
    let listener = state.settings.name.as_str();
    match end {
        None | Some(End::Closed) => tracing::trace!(listener, %peer, "connection closed"),
        Some(End::Idle) => tracing::debug!(listener, %peer, "connection idle, closed"),
        Some(End::Error(e)) => {
            tracing::debug!(listener, %peer, error = %e, "connection ended with an error")
        }
        Some(End::Cut) => tracing::debug!(listener, %peer, "connection closed by the operator"),
    }
}

/// What every step of one connection needs.
#[derive(Clone, Copy)]
struct Conn<'a> {
    peer: SocketAddr,
    /// The client's socket (reset when the operator closes the backend's connections).
    client_fd: RawFd,
    local: Option<SocketAddr>,
    state: &'a ListenerState,
    runtime: &'a ListenerRuntime,
    shared: &'a Shared,
}

impl Conn<'_> {
    /// Plain TCP: connect, PROXY header, forward. `None` if it never got to forwarding.
    async fn plain(self, mut stream: TcpStream) -> Option<End> {
        // Whatever comes first: the backend's answer, or the client's first bytes (kept
        // and sent after the PROXY header), or its close. A client that leaves before the
        // backend answers (a connect-and-close probe or flood) ends the attempt there:
        // the backend sees a dropped SYN, not a whole connection.
        let pool = &self.state.pool;
        let header = proxy_header(pool, self.peer, self.local, None, None, None);
        let ((backend, connection), early) = {
            let connect = connect_backend(pool, self.peer, None, self.runtime, None, &header);
            tokio::pin!(connect);
            tokio::select! {
                connected = &mut connect => (connected?, Vec::new()),
                first = first_bytes(&mut stream) => {
                    let early = first?;
                    (connect.await?, early)
                }
            }
        };
        let bytes = &self.runtime.metrics.bytes;
        match backend {
            Upstream::Tcp(mut backend) => {
                self.forward_tcp(stream, &mut backend, header, early, bytes, &connection)
                    .await
            }
            Upstream::Tls(mut backend) => {
                // TLS origination: the client's first bytes go through TLS too.
                backend.write_all(&early).await.ok()?;
                bytes.up.inc_by(early.len() as u64);
                let idle = self.state.idle_timeout;
                let sockets = [self.client_fd, backend.get_ref().0.as_raw_fd()];
                let forwarding = forward::copy_bidirectional(stream, backend, bytes, idle);
                Some(unless_cut(forwarding, &connection, sockets).await)
            }
        }
    }

    /// A listener with passthrough routes: the ClientHello decides the route before
    /// any TLS.
    async fn routed(self, mut stream: TcpStream, deadline: Instant) -> Option<End> {
        let routes = self.state.routes.as_ref()?;
        let (hello, head) = match timeout_at(deadline, client_hello::read(&mut stream)).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                self.handshake_failed(e.reason(), &e.to_string());
                return None;
            }
            Err(_) => {
                let e = HelloError::Io(io::ErrorKind::TimedOut.into());
                self.handshake_failed(HandshakeFailure::Timeout, &e.to_string());
                return None;
            }
        };
        let route = routes.for_hello(hello.server_name.as_deref(), &hello.alpn);
        match (route.mode, &self.state.tls) {
            (RouteTls::Passthrough, _) => self.passthrough(stream, route, hello, head).await,
            (RouteTls::Terminate, Some(tls)) => {
                let stream = Replay::new(head, stream);
                self.terminate(stream, tls, deadline, Some(&hello)).await
            }
            // Validation refuses terminated routes without certificates.
            (RouteTls::Terminate, None) => None,
        }
    }

    /// TLS passed through: connect, PROXY header, the client's bytes so far, then
    /// both ways as plain TCP.
    async fn passthrough(
        self,
        stream: TcpStream,
        route: &Route,
        hello: Hello,
        head: Vec<u8>,
    ) -> Option<End> {
        route.metrics.connections.inc();
        let sni = hello.server_name.as_deref();
        let header = proxy_header(&route.pool, self.peer, self.local, sni, None, None);
        let metrics = Some(&route.metrics);
        let connect = connect_backend(&route.pool, self.peer, sni, self.runtime, metrics, &header);
        // Validation keeps TLS pools off passthrough routes (TLS in TLS).
        let (Upstream::Tcp(mut backend), connection) = connect.await? else {
            return None;
        };
        let bytes = self.runtime.metrics.bytes.with_route(&route.metrics);
        self.forward_tcp(stream, &mut backend, header, head, &bytes, &connection)
            .await
    }

    /// Sends the PROXY `header` and the client's `early` bytes, then forwards.
    async fn forward_tcp(
        self,
        mut stream: TcpStream,
        backend: &mut TcpStream,
        mut header: Vec<u8>,
        early: Vec<u8>,
        bytes: &ByteCounters,
        connection: &Connection,
    ) -> Option<End> {
        header.extend_from_slice(&early);
        backend.write_all(&header).await.ok()?;
        bytes.up.inc_by(early.len() as u64);
        let splice = self.state.settings.forwarding == Forwarding::Splice;
        let idle = self.state.idle_timeout;
        let sockets = [self.client_fd, backend.as_raw_fd()];
        let forwarding = forward::forward_tcp(&mut stream, backend, bytes, idle, splice);
        Some(unless_cut(forwarding, connection, sockets).await)
    }

    /// TLS ends here: handshake (by `deadline`), route by what it settled on,
    /// connect, PROXY header, forward. `hello`: already read for routing.
    async fn terminate<S>(
        self,
        stream: S,
        tls: &TlsListener,
        deadline: Instant,
        hello: Option<&Hello>,
    ) -> Option<End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let client = match timeout_at(deadline, handshake(stream, tls)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                self.handshake_failed(tls::failure_reason(&e), &e.to_string());
                return None;
            }
            Err(_) => {
                self.handshake_failed(HandshakeFailure::Timeout, "handshake timeout");
                return None;
            }
        };
        let m = &self.runtime.metrics;
        m.handshakes.inc();
        let conn = client.get_ref().1;
        let sni = conn.server_name();
        let route = self.state.routes.as_ref().map(|routes| {
            // A ClientHello read for routing already told the name; rustls agrees.
            let name = sni.or(hello.and_then(|h| h.server_name.as_deref()));
            routes.for_terminated(name, conn.alpn_protocol())
        });
        let pool = route.map_or(&self.state.pool, |r| &r.pool);
        let route_metrics = route.map(|r| &r.metrics);
        if let Some(r) = route_metrics {
            r.connections.inc();
        }
        // Only PROXY v2 carries the TLS facts (and only then is the certificate parsed).
        let v2 = pool.settings.proxy_protocol == ProxyProtocol::V2;
        let ssl = v2.then(|| client_cert::ssl_info(conn));
        let alpn = conn.alpn_protocol();
        let header = proxy_header(pool, self.peer, self.local, sni, alpn, ssl.as_ref());
        let (backend, connection) =
            connect_backend(pool, self.peer, sni, self.runtime, route_metrics, &header).await?;
        let idle = self.state.idle_timeout;
        let with_route;
        let bytes = match route_metrics {
            None => &m.bytes,
            Some(r) => {
                with_route = m.bytes.with_route(r);
                &with_route
            }
        };
        Some(match backend {
            Upstream::Tcp(mut backend) => {
                backend.write_all(&header).await.ok()?;
                let sockets = [self.client_fd, backend.as_raw_fd()];
                let forwarding = forward::copy_bidirectional(client, backend, bytes, idle);
                unless_cut(forwarding, &connection, sockets).await
            }
            Upstream::Tls(backend) => {
                let sockets = [self.client_fd, backend.get_ref().0.as_raw_fd()];
                let forwarding = forward::copy_bidirectional(client, backend, bytes, idle);
                unless_cut(forwarding, &connection, sockets).await
            }
        })
    }

    fn handshake_failed(&self, reason: HandshakeFailure, detail: &str) {
        handshake_failed(
            self.state,
            self.runtime,
            self.shared,
            self.peer,
            reason,
            detail,
        );
    }
}

/// The client's first bytes (up to 4 KiB; the rest is read by the forwarding), or
/// `None` when it closed or reset before sending any. Reading them here costs no
/// syscall the forwarding would not have made (a short read marks the socket
/// drained, as it does there). The buffer is on the heap and not zeroed: on the
/// stack it would make every connection's task 4 KiB larger, copied on spawn.
async fn first_bytes(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    match stream.read_buf(&mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(buf),
    }
}

/// The TLS handshake with the listener's configuration, or, when certificates have
/// their own client authentication, the one for the ClientHello's server name.
async fn handshake<S>(
    stream: S,
    tls: &TlsListener,
) -> io::Result<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(by_name) = &tls.by_name else {
        return tls.acceptor.accept(stream).await;
    };
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let config = by_name.for_name(start.client_hello().server_name());
    start.into_stream(config).await
}

fn handshake_failed(
    state: &ListenerState,
    runtime: &ListenerRuntime,
    shared: &Shared,
    peer: SocketAddr,
    reason: HandshakeFailure,
    detail: &str,
) {
    runtime.metrics.handshake_failed(reason);
    let kind = match reason {
        HandshakeFailure::Timeout => SourceEventKind::HandshakeTimeout,
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
        let reason = reason.label();
        tracing::warn!(
            listener,
            %peer,
            reason,
            error = crate::logging::peer_text(detail),
            "TLS handshake failed"
        );
    }
}

/// Runs `forwarding` until it ends, or until the operator closes the backend's
/// connections (`--close`): then both sockets are reset (SO_LINGER 0 before the
/// close), so neither peer takes the cut stream for a complete one.
async fn unless_cut(
    forwarding: impl Future<Output = End>,
    connection: &Connection,
    sockets: [RawFd; 2],
) -> End {
    let cut = async {
        connection.cut().await;
        for fd in sockets {
            // SAFETY: both sockets are owned by `forwarding` or by its caller, and
            // select! below keeps `forwarding` alive while it polls this branch, so
            // the descriptors are open here; the borrow ends within this statement.
            let socket = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
        }
    };
    tokio::select! {
        biased;
        end = forwarding => end,
        () = cut => End::Cut,
    }
}

/// Tries the candidates in order, at most `max_attempts`, each within
/// `connect_timeout`. A candidate counts as an open connection of its backend from
/// the moment it is picked (so concurrent picks see it); failures count towards
/// marking the backend down; a connection no backend takes counts for the listener
/// (and its route).
async fn connect_backend(
    pool: &Pool,
    peer: SocketAddr,
    sni: Option<&str>,
    runtime: &ListenerRuntime,
    route: Option<&RouteMetrics>,
    header: &[u8],
) -> Option<(Upstream, Connection)> {
    let settings = &pool.settings;
    let key = pool.key_hash(&KeyInput { client: peer, sni });
    let mut last_error = String::new();
    for backend in pool.candidates(key, settings.max_attempts as usize) {
        let connection = backend.connection();
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
                let _ = stream.set_nodelay(true);
                match establish(pool, &backend, stream, header).await {
                    Ok(upstream) => {
                        backend.metrics.connections.inc();
                        backend.record(true, Source::Traffic, &settings.health, "");
                        return Some((upstream, connection));
                    }
                    Err(e) => e,
                }
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
    if let Some(route) = route {
        route.no_backend.inc();
    }
    let (log, suppressed) = runtime.no_backend_log.check(1);
    if log {
        tracing::warn!(
            pool = %pool.name(), %peer, error = last_error, suppressed,
            "no backend could be reached; closing the client connection"
        );
    }
    None
}

/// The backend's end of a connection: TCP, or TLS (`[pool.tls]`).
enum Upstream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// For a TLS pool: the PROXY header (it goes before TLS), then the handshake within
/// the connect timeout; a failure names its reason. Plain pools get the stream as it
/// is (the caller sends the header with the client's first bytes).
async fn establish(
    pool: &Pool,
    backend: &Backend,
    mut stream: TcpStream,
    header: &[u8],
) -> Result<Upstream, String> {
    let Some(tls) = &pool.tls else {
        return Ok(Upstream::Tcp(stream));
    };
    if !header.is_empty() {
        stream.write_all(header).await.map_err(|e| e.to_string())?;
    }
    let handshake = timeout(
        pool.settings.connect_timeout,
        tls.connect(backend.address, backend.host(), stream),
    );
    let error = match handshake.await {
        Ok(Ok(tls)) => return Ok(Upstream::Tls(Box::new(tls))),
        Ok(Err(e)) => e,
        Err(_) => std::io::ErrorKind::TimedOut.into(),
    };
    let reason = upstream_tls::failure_reason(&error);
    backend.metrics.tls_failed(reason);
    Err(format!("TLS handshake failed ({reason}): {error}"))
}

/// The PROXY header the pool wants (empty for none).
fn proxy_header(
    pool: &Pool,
    client: SocketAddr,
    local: Option<SocketAddr>,
    sni: Option<&str>,
    alpn: Option<&[u8]>,
    ssl: Option<&proxy_protocol::Ssl>,
) -> Vec<u8> {
    let Some(local) = local else {
        return Vec::new();
    };
    let header = proxy_protocol::Header {
        client,
        local,
        sni,
        alpn,
        ssl,
    };
    match pool.settings.proxy_protocol {
        ProxyProtocol::None => Vec::new(),
        ProxyProtocol::V1 => proxy_protocol::v1(&header),
        ProxyProtocol::V2 => proxy_protocol::v2(&header),
    }
}

/// TCP_NODELAY and keepalive on a listening socket; accepted sockets inherit both,
/// so a client connection costs no setsockopt. Backend sockets get TCP_NODELAY only
/// (one call): a silent backend connection is ended by the idle timeout, and one
/// with data in flight by TCP's retransmission timeout, so probes add nothing there.
pub fn tune(socket: socket2::SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    socket.set_tcp_keepalive(&keepalive)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_client_that_closes_or_resets_without_data_is_gone() {
        for reset in [false, true] {
            let (client, mut accepted) = pair().await;
            if reset {
                socket2::SockRef::from(&client)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(client);
            assert_eq!(first_bytes(&mut accepted).await, None, "reset {reset}");
        }
    }

    /// Data then FIN: the data is kept for the backend, the FIN stays for the
    /// forwarding that follows.
    #[tokio::test]
    async fn a_client_that_sent_data_hands_it_over() {
        let (mut client, mut accepted) = pair().await;
        client.write_all(b"GET /").await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(
            first_bytes(&mut accepted).await.as_deref(),
            Some(&b"GET /"[..])
        );
        let mut rest = Vec::new();
        accepted.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
