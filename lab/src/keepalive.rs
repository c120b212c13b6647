//! Long-lived TLS connections that each send a request every `interval` (plus up to
//! `jitter`), from many source addresses, and record what became of each: which node
//! it went through (the backend answers `/via` with the address the request came
//! from: the node's own), every request's latency, and the moment and cause it broke.
//! For the fleet's steering test and benchmark: a connection that breaks while the
//! fleet changes is what steering must prevent.
//!
//! The connections run on one thread inside the client's namespace (a current-thread
//! tokio runtime, rustls with the lab CA); [`KeepAlive::stop`] closes them cleanly.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use crate::netns::Netns;

pub struct KeepAliveOptions {
    /// Where to connect (the VIP).
    pub target: SocketAddr,
    /// The name to ask for (SNI, and the certificate's name).
    pub server_name: String,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// Source addresses (configured on the client), used round robin.
    pub sources: Vec<IpAddr>,
    pub connections: usize,
    pub interval: Duration,
    pub jitter: Duration,
    /// A request (connect and handshake included) not answered within this breaks
    /// its connection.
    pub timeout: Duration,
}

/// What became of one connection.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub source: Option<IpAddr>,
    /// The node the backend saw the requests come from.
    pub node: Option<String>,
    pub requests: u64,
    /// Request latencies in µs (from writing the request to the end of the answer).
    pub latencies_us: Vec<u32>,
    /// When and why it broke (`None`: still fine, or closed by us).
    pub broken: Option<(Instant, String)>,
    /// Closed by us ([`KeepAlive::close`] or [`KeepAlive::stop`]).
    pub closed: bool,
}

struct Shared {
    connections: Mutex<Vec<Connection>>,
    /// Per connection: close it now.
    close: Vec<AtomicBool>,
    stop: AtomicBool,
}

pub struct KeepAlive {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeepAlive {
    /// Opens the connections from `ns` and returns once every one has answered its
    /// first request (or broke trying).
    pub fn start(ns: &Netns, opts: KeepAliveOptions) -> anyhow::Result<KeepAlive> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&opts.ca)
            .with_context(|| format!("reading {}", opts.ca.display()))?
        {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(opts.server_name.clone())?;
        let shared = Arc::new(Shared {
            connections: Mutex::new(vec![Connection::default(); opts.connections]),
            close: (0..opts.connections)
                .map(|_| AtomicBool::new(false))
                .collect(),
            stop: AtomicBool::new(false),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let inside = shared.clone();
        let thread = crate::inside::spawn_in_netns(ns, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let opts = Arc::new(opts);
                let mut tasks = Vec::new();
                for i in 0..opts.connections {
                    let source = opts.sources[i % opts.sources.len().max(1)];
                    let (connector, name, opts, shared) = (
                        connector.clone(),
                        name.clone(),
                        opts.clone(),
                        inside.clone(),
                    );
                    let ready = ready_tx.clone();
                    tasks.push(tokio::spawn(async move {
                        connection(i, source, connector, name, &opts, &shared, ready).await
                    }));
                }
                drop(ready_tx);
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        let keepalive = KeepAlive {
            shared,
            thread: Some(thread),
        };
        // Every connection reports once: answered or broken.
        for _ in 0..keepalive.shared.close.len() {
            ready_rx
                .recv_timeout(Duration::from_secs(60))
                .context("the connections did not all answer within 60 s")?;
        }
        Ok(keepalive)
    }

    pub fn snapshot(&self) -> Vec<Connection> {
        self.shared
            .connections
            .lock()
            .expect("connections lock")
            .clone()
    }

    /// Closes (cleanly) the connections `which` selects.
    pub fn close(&self, which: impl Fn(&Connection) -> bool) {
        let connections = self.shared.connections.lock().expect("connections lock");
        for (i, c) in connections.iter().enumerate() {
            if which(c) {
                self.shared.close[i].store(true, Ordering::Relaxed);
            }
        }
    }

    /// Closes every connection; what became of them.
    pub fn stop(mut self) -> Vec<Connection> {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.snapshot()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn connection(
    i: usize,
    source: IpAddr,
    connector: TlsConnector,
    name: ServerName<'static>,
    opts: &KeepAliveOptions,
    shared: &Shared,
    ready: std::sync::mpsc::Sender<()>,
) {
    let record = |f: &mut dyn FnMut(&mut Connection)| {
        f(&mut shared.connections.lock().expect("connections lock")[i]);
    };
    record(&mut |c| c.source = Some(source));
    let mut ready = Some(ready);
    let broke = |why: String| {
        record(&mut |c| c.broken = Some((Instant::now(), why.clone())));
    };
    let connect = async {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let tcp = socket.connect(opts.target).await?;
        connector.connect(name, tcp).await
    };
    let mut tls = match tokio::time::timeout(opts.timeout, connect).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return broke(format!("connect: {e}")),
        Err(_) => return broke("connect: timed out".into()),
    };
    // Spread the connections' requests over the interval.
    let spread = opts.interval.as_micros() as u64 * (i as u64 % 97) / 97;
    let mut next = tokio::time::Instant::now();
    let mut seed = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 4096];
    loop {
        if shared.stop.load(Ordering::Relaxed) || shared.close[i].load(Ordering::Relaxed) {
            let _ = tls.shutdown().await;
            record(&mut |c| c.closed = true);
            return;
        }
        let started = Instant::now();
        let request = format!(
            "GET /via HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n",
            opts.server_name
        );
        let exchange = async {
            tls.write_all(request.as_bytes()).await?;
            read_answer(&mut tls, &mut buf).await
        };
        match tokio::time::timeout(opts.timeout, exchange).await {
            Ok(Ok(body)) => {
                let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                record(&mut |c| {
                    c.requests += 1;
                    c.latencies_us.push(us);
                    c.node.get_or_insert_with(|| body.trim().to_string());
                });
            }
            Ok(Err(e)) => return broke(format!("request {}: {e}", requests_of(shared, i) + 1)),
            Err(_) => {
                return broke(format!(
                    "request {}: no answer in time",
                    requests_of(shared, i) + 1
                ));
            }
        }
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let jitter = opts.jitter.as_micros() as u64;
        let extra = if jitter == 0 { 0 } else { seed % jitter };
        next += opts.interval + Duration::from_micros(extra);
        if spread > 0 && requests_of(shared, i) == 1 {
            next += Duration::from_micros(spread);
        }
        tokio::time::sleep_until(next).await;
    }
}

fn requests_of(shared: &Shared, i: usize) -> u64 {
    shared.connections.lock().expect("connections lock")[i].requests
}

/// Reads one HTTP/1.1 answer with a Content-Length; its body.
async fn read_answer(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: &mut [u8],
) -> std::io::Result<String> {
    let mut have = 0;
    loop {
        if have == buf.len() {
            return Err(std::io::Error::other("answer too long"));
        }
        let n = tls.read(&mut buf[have..]).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection was closed",
            ));
        }
        have += n;
        let text = String::from_utf8_lossy(&buf[..have]);
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = &text[..end];
        if !head.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!(
                "answer: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| std::io::Error::other("answer without Content-Length"))?;
        if have >= end + 4 + length {
            return Ok(text[end + 4..end + 4 + length].to_string());
        }
    }
}
