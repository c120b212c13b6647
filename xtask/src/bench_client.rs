//! The load generator of `cargo xtask bench tls`, run as `xtask bench-client ...`
//! inside the generator namespace, pinned to its core by the caller. It prints one
//! JSON object on stdout.
//!
//! TLS: rustls (aws-lc-rs) with server-certificate verification, X25519 only (what
//! an OpenSSL 3.0 client negotiates with every product here), resumption disabled,
//! so every connection is a full handshake.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(clap::Subcommand, Debug)]
pub enum Mode {
    /// New TLS connections, full handshake each, then close.
    Handshakes {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long)]
        ca: std::path::PathBuf,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// After the handshake, GET this path (one HTTP/1.1 request) before closing:
        /// a whole TLS transaction.
        #[arg(long)]
        get: Option<String>,
    },
    /// New plain TCP connections: connect, close.
    Connects {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// HTTP/1.1 keep-alive GETs of `path` over TLS, as fast as possible.
    Bulk {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long)]
        ca: std::path::PathBuf,
        #[arg(long)]
        path: String,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Small HTTP/1.1 GETs over plain keep-alive connections at a fixed rate.
    Latency {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long)]
        rate: u32,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
    /// One heavy attacking source, for `bench attack`: connections that send junk
    /// instead of a ClientHello (`junk_concurrency` at a time) and a UDP flood of
    /// `udp_pps` packets/s at `addr`, for `seconds`.
    Attack {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 64)]
        junk_concurrency: usize,
        #[arg(long, default_value_t = 100_000)]
        udp_pps: u32,
    },
    /// Slow clients: `count` TCP connections that each send one byte of a
    /// ClientHello per second (reconnecting when the server cuts them), for `seconds`.
    Slowloris {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        seconds: f64,
    },
    /// Opens `count` TLS connections, prints `ready`, holds them until stdin closes.
    Idle {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long)]
        ca: std::path::PathBuf,
        #[arg(long)]
        count: usize,
    },
}

pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(async move {
        match args.mode {
            Mode::Handshakes {
                addr,
                name,
                ca,
                seconds,
                concurrency,
                get,
            } => {
                let tls = connector(&ca)?;
                let name = ServerName::try_from(name)?;
                handshakes(addr, Some((tls, name, get)), seconds, concurrency).await
            }
            Mode::Connects {
                addr,
                seconds,
                concurrency,
            } => handshakes(addr, None, seconds, concurrency).await,
            Mode::Bulk {
                addr,
                name,
                ca,
                path,
                seconds,
                concurrency,
            } => {
                let tls = connector(&ca)?;
                bulk(
                    addr,
                    tls,
                    ServerName::try_from(name)?,
                    &path,
                    seconds,
                    concurrency,
                )
                .await
            }
            Mode::Latency {
                addr,
                path,
                rate,
                seconds,
                connections,
            } => latency(addr, &path, rate, seconds, connections).await,
            Mode::Attack {
                addr,
                seconds,
                junk_concurrency,
                udp_pps,
            } => attack(addr, seconds, junk_concurrency, udp_pps).await,
            Mode::Idle {
                addr,
                name,
                ca,
                count,
            } => idle(addr, connector(&ca)?, ServerName::try_from(name)?, count).await,
            Mode::Slowloris {
                addr,
                count,
                seconds,
            } => slowloris(addr, count, seconds).await,
        }
    })?;
    println!("{out}");
    Ok(())
}

fn connector(ca: &std::path::Path) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(cert?)?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn handshakes(
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>, Option<String>)>,
    seconds: f64,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (ok, errors, tls) = (ok.clone(), errors.clone(), tls.clone());
        tasks.spawn(async move {
            let mut buf = vec![0u8; 4096];
            while Instant::now() < deadline {
                let result = async {
                    let tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    if let Some((connector, name, get_path)) = &tls {
                        let mut s = connector.connect(name.clone(), tcp).await?;
                        if let Some(path) = get_path {
                            get(&mut s, path, &mut buf).await?;
                        }
                    }
                    Ok::<(), std::io::Error>(())
                }
                .await;
                match result {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(serde_json::json!({
        "ok": ok.load(Ordering::Relaxed),
        "errors": errors.load(Ordering::Relaxed),
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

/// Reads one HTTP/1.1 response with a Content-Length; returns the body length.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> std::io::Result<u64> {
    let mut filled = 0;
    let header_end = loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no content-length"))?;
    let mut remaining = length.saturating_sub((filled - header_end) as u64);
    while remaining > 0 {
        let n = s.read(buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        remaining = remaining.saturating_sub(n as u64);
    }
    Ok(length)
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    path: &str,
    buf: &mut Vec<u8>,
) -> std::io::Result<u64> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
        .await?;
    read_response(s, buf).await
}

async fn bulk(
    addr: SocketAddr,
    tls: TlsConnector,
    name: ServerName<'static>,
    path: &str,
    seconds: f64,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (bytes, errors, tls, name, path) = (
            bytes.clone(),
            errors.clone(),
            tls.clone(),
            name.clone(),
            path.to_owned(),
        );
        tasks.spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while Instant::now() < deadline {
                let result = async {
                    let tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let mut s = tls.connect(name.clone(), tcp).await?;
                    while Instant::now() < deadline {
                        let n = get(&mut s, &path, &mut buf).await?;
                        bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok::<(), std::io::Error>(())
                }
                .await;
                if result.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(serde_json::json!({
        "bytes": bytes.load(Ordering::Relaxed),
        "errors": errors.load(Ordering::Relaxed),
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

async fn latency(
    addr: SocketAddr,
    path: &str,
    rate: u32,
    seconds: f64,
    connections: usize,
) -> anyhow::Result<serde_json::Value> {
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::channel::<TcpStream>(connections);
    for _ in 0..connections {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        idle_tx.send(s).await?;
    }
    let samples = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let total = (f64::from(rate) * seconds) as u64;
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let Some(mut s) = idle_rx.recv().await else {
            break;
        };
        let (idle_tx, samples, errors, path) = (
            idle_tx.clone(),
            samples.clone(),
            errors.clone(),
            path.to_owned(),
        );
        tasks.spawn(async move {
            let mut buf = vec![0u8; 4096];
            let sent = Instant::now();
            match get(&mut s, &path, &mut buf).await {
                Ok(_) => {
                    let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    samples.lock().unwrap().push(us);
                    let _ = idle_tx.send(s).await;
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(s) = TcpStream::connect(addr).await {
                        let _ = s.set_nodelay(true);
                        let _ = idle_tx.send(s).await;
                    }
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut v = samples.lock().unwrap().clone();
    v.sort_unstable();
    let pct = |p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
    };
    Ok(serde_json::json!({
        "count": v.len(),
        "errors": errors.load(Ordering::Relaxed),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

async fn attack(
    addr: SocketAddr,
    seconds: f64,
    junk_concurrency: usize,
    udp_pps: u32,
) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    // The UDP flood: a paced thread, bounded by `deadline`.
    let udp = std::thread::spawn(move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("UDP socket");
        let mut sent = 0u64;
        let begin = Instant::now();
        while Instant::now() < deadline {
            let due = (begin.elapsed().as_secs_f64() * f64::from(udp_pps)) as u64;
            while sent < due {
                let _ = sock.send_to(&[0u8; 64], addr);
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    });
    let attempts = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..junk_concurrency {
        let (attempts, connected) = (attempts.clone(), connected.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                attempts.fetch_add(1, Ordering::Relaxed);
                // A timeout means the kernel dropped the SYN (blocked): try again.
                let _ = tokio::time::timeout(Duration::from_millis(300), async {
                    let mut s = TcpStream::connect(addr).await?;
                    connected.fetch_add(1, Ordering::Relaxed);
                    s.write_all(b"GET / HTTP/1.0\r\n\r\nthis is not TLS\r\n")
                        .await?;
                    let mut buf = [0u8; 256];
                    let _ = s.read(&mut buf).await?;
                    Ok::<(), std::io::Error>(())
                })
                .await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let udp_sent = udp
        .join()
        .map_err(|_| anyhow::anyhow!("UDP flood thread panicked"))?;
    Ok(serde_json::json!({
        "junk_attempts": attempts.load(Ordering::Relaxed),
        "junk_connected": connected.load(Ordering::Relaxed),
        "udp_sent": udp_sent,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

async fn idle(
    addr: SocketAddr,
    tls: TlsConnector,
    name: ServerName<'static>,
    count: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut open = Vec::with_capacity(count);
    let mut errors = 0u64;
    let mut pending = tokio::task::JoinSet::new();
    let mut started = 0;
    while open.len() + (errors as usize) < count {
        while started < count && pending.len() < 100 {
            let (tls, name) = (tls.clone(), name.clone());
            pending.spawn(async move {
                let tcp = TcpStream::connect(addr).await?;
                tls.connect(name, tcp).await
            });
            started += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(s))) => open.push(s),
            _ => errors += 1,
        }
    }
    println!("ready {}", open.len());
    std::io::stdout().flush()?;
    // Hold until the caller closes our stdin.
    let mut line = String::new();
    let _ = tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    drop(open);
    Ok(serde_json::json!({ "errors": errors }))
}

async fn slowloris(
    addr: SocketAddr,
    count: usize,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    // The first bytes of a TLS record carrying a ClientHello; never completed.
    const HELLO_START: [u8; 9] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cut = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let cut = cut.clone();
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                for byte in HELLO_START.iter().cycle() {
                    if Instant::now() >= deadline {
                        return;
                    }
                    if s.write_all(&[*byte]).await.is_err() {
                        cut.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(serde_json::json!({ "cut_by_server": cut.load(Ordering::Relaxed) }))
}
