//! The load generator of `cargo xtask bench tls`, run as `generator client ...`
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
use rustls::HandshakeKind;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::results;

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
        /// Resume sessions: each loop's first connection is a full handshake, the
        /// following ones offer its ticket (or TLS 1.2 session ID).
        #[arg(long, value_enum, default_value_t = Resume::None)]
        resume: Resume,
        /// Offer TLS 1.2 only.
        #[arg(long)]
        tls12: bool,
        /// Stop after this many connections (or `seconds`, whichever comes first).
        #[arg(long)]
        count: Option<u64>,
    },
    /// New plain TCP connections: connect, close.
    Connects {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Stop after this many connections (or `seconds`, whichever comes first).
        #[arg(long)]
        count: Option<u64>,
        /// Send this path as an HTTP/1.1 GET on each connection and read the answer.
        #[arg(long)]
        get: Option<String>,
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
    /// Small HTTP/1.1 GETs over keep-alive connections (plain, or TLS with `--ca`)
    /// at a fixed rate; prints percentiles and a histogram of the latencies.
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
        /// TLS server name (with `--ca`).
        #[arg(long, requires = "ca")]
        name: Option<String>,
        /// CA certificate: connect with TLS.
        #[arg(long, requires = "name")]
        ca: Option<std::path::PathBuf>,
        /// Also print every sample (µs, sorted), for pooling slices.
        #[arg(long)]
        samples: bool,
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

/// Session resumption in the handshakes mode.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Every connection is a full handshake.
    None,
    /// Tickets (TLS 1.3 PSK, TLS 1.2 RFC 5077).
    Tickets,
    /// TLS 1.2 session IDs (the server's session cache); implies --tls12.
    Ids,
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
                resume,
                tls12,
                count,
            } => {
                let tls = Tls {
                    ca,
                    name: ServerName::try_from(name)?,
                    resume,
                    tls12: tls12 || resume == Resume::Ids,
                };
                let load = Load {
                    addr,
                    seconds,
                    concurrency,
                    count,
                    get,
                };
                json(handshakes(load, Some(tls)).await)
            }
            Mode::Connects {
                addr,
                seconds,
                concurrency,
                count,
                get,
            } => {
                let load = Load {
                    addr,
                    seconds,
                    concurrency,
                    count,
                    get,
                };
                json(handshakes(load, None).await)
            }
            Mode::Bulk {
                addr,
                name,
                ca,
                path,
                seconds,
                concurrency,
            } => {
                let tls = connector(&ca, Resume::None, false)?;
                let name = ServerName::try_from(name)?;
                json(bulk(addr, tls, name, &path, seconds, concurrency).await)
            }
            Mode::Latency {
                addr,
                path,
                rate,
                seconds,
                connections,
                name,
                ca,
                samples,
            } => {
                let load = Paced {
                    rate,
                    seconds,
                    connections,
                    samples,
                };
                match (name, ca) {
                    (Some(name), Some(ca)) => {
                        let tls = connector(&ca, Resume::None, false)?;
                        let name = ServerName::try_from(name)?;
                        let open = move || {
                            let (tls, name) = (tls.clone(), name.clone());
                            async move {
                                let tcp = connect(addr).await?;
                                tls.connect(name, tcp).await
                            }
                        };
                        json(latency(open, &path, load).await)
                    }
                    _ => json(latency(move || connect(addr), &path, load).await),
                }
            }
            Mode::Attack {
                addr,
                seconds,
                junk_concurrency,
                udp_pps,
            } => json(attack(addr, seconds, junk_concurrency, udp_pps).await),
            Mode::Idle {
                addr,
                name,
                ca,
                count,
            } => {
                let tls = connector(&ca, Resume::None, false)?;
                json(idle(addr, tls, ServerName::try_from(name)?, count).await)
            }
            Mode::Slowloris {
                addr,
                count,
                seconds,
            } => json(slowloris(addr, count, seconds).await),
        }
    })?;
    println!("{out}");
    Ok(())
}

/// A mode's result as the JSON line the generator prints.
fn json<T: serde::Serialize>(result: anyhow::Result<T>) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&result?)?)
}

/// A TLS client: verifies the server against `ca`; resumption as asked.
fn connector(ca: &std::path::Path, resume: Resume, tls12: bool) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(cert?)?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // X25519 for the key exchange. P-256 is offered too: in TLS 1.2 the client's
    // groups also name the curves it accepts in an ECDSA certificate (OpenSSL
    // refuses a P-256 certificate to a client that lists only X25519).
    use rustls::crypto::aws_lc_rs::kx_group;
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1];
    // Session IDs exist in TLS 1.2 only.
    let tls12 = tls12 || resume == Resume::Ids;
    let versions: &[&rustls::SupportedProtocolVersion] = match tls12 {
        true => &[&rustls::version::TLS12],
        false => rustls::DEFAULT_VERSIONS,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    use rustls::client::{Resumption, Tls12Resumption};
    config.resumption = match resume {
        Resume::None => Resumption::disabled(),
        Resume::Tickets => Resumption::in_memory_sessions(64),
        Resume::Ids => {
            Resumption::in_memory_sessions(64).tls12_resumption(Tls12Resumption::SessionIdOnly)
        }
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// What the handshakes/connects loops do.
struct Load {
    addr: SocketAddr,
    seconds: f64,
    concurrency: usize,
    /// Stop after this many connections in all.
    count: Option<u64>,
    /// GET this path on each connection.
    get: Option<String>,
}

struct Tls {
    ca: std::path::PathBuf,
    name: ServerName<'static>,
    resume: Resume,
    tls12: bool,
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// `concurrency` loops of connect (→ handshake) (→ GET) → close until `seconds`
/// or `count`. With resumption each loop has its own session store.
async fn handshakes(load: Load, tls: Option<Tls>) -> anyhow::Result<results::Connections> {
    let ok = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::OnceLock::<String>::new());
    let started = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(load.seconds);
    let count = load.count.unwrap_or(u64::MAX);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency {
        let (ok, resumed, errors, started) =
            (ok.clone(), resumed.clone(), errors.clone(), started.clone());
        let first_error = first_error.clone();
        let tls = match &tls {
            Some(t) => Some((connector(&t.ca, t.resume, t.tls12)?, t.name.clone())),
            None => None,
        };
        let (addr, get_path) = (load.addr, load.get.clone());
        tasks.spawn(async move {
            let mut buf = vec![0u8; 4096];
            while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < count {
                let result = async {
                    let mut tcp = connect(addr).await?;
                    match &tls {
                        Some((connector, name)) => {
                            let mut s = connector.connect(name.clone(), tcp).await?;
                            if s.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
                                resumed.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(path) = &get_path {
                                get(&mut s, path, &mut buf).await?;
                            }
                        }
                        None => {
                            if let Some(path) = &get_path {
                                get(&mut tcp, path, &mut buf).await?;
                            }
                        }
                    }
                    Ok::<(), std::io::Error>(())
                }
                .await;
                match result {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        first_error.get_or_init(|| e.to_string());
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(results::Connections {
        ok: ok.load(Ordering::Relaxed),
        resumed: resumed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error: first_error.get().cloned(),
        seconds: start.elapsed().as_secs_f64(),
    })
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
) -> anyhow::Result<results::Bulk> {
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
    Ok(results::Bulk {
        bytes: bytes.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The fixed-rate load of the latency mode.
struct Paced {
    rate: u32,
    seconds: f64,
    connections: usize,
    /// Print the samples too.
    samples: bool,
}

/// Upper bounds (µs) of the histogram buckets the latency mode prints; the last
/// bucket is everything above.
const BUCKETS_US: [u32; 14] = [
    100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10_000, 20_000,
];

/// GETs `path` at `rate`/s, each on an idle keep-alive connection from a pool of
/// `connections` (opened by `open`), measured from the write to the last byte.
async fn latency<S, F, Fut>(open: F, path: &str, load: Paced) -> anyhow::Result<results::Latency>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<S>> + Send,
{
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::channel::<S>(load.connections);
    for _ in 0..load.connections {
        let s = open().await?;
        if idle_tx.send(s).await.is_err() {
            anyhow::bail!("connection pool closed");
        }
    }
    let samples = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let total = (f64::from(load.rate) * load.seconds) as u64;
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(load.rate));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let Some(mut s) = idle_rx.recv().await else {
            break;
        };
        let (idle_tx, samples, errors, path, open) = (
            idle_tx.clone(),
            samples.clone(),
            errors.clone(),
            path.to_owned(),
            open.clone(),
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
                    if let Ok(s) = open().await {
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
    let pct = |q: f64| lab::stats::quantile(&v, q);
    let mut histogram = vec![0u64; BUCKETS_US.len() + 1];
    for us in &v {
        histogram[BUCKETS_US.partition_point(|b| b < us)] += 1;
    }
    Ok(results::Latency {
        count: v.len(),
        errors: errors.load(Ordering::Relaxed),
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: v.last().copied(),
        buckets_us: BUCKETS_US.to_vec(),
        histogram,
        seconds: start.elapsed().as_secs_f64(),
        samples_us: load.samples.then_some(v),
    })
}

async fn attack(
    addr: SocketAddr,
    seconds: f64,
    junk_concurrency: usize,
    udp_pps: u32,
) -> anyhow::Result<results::Attack> {
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
    Ok(results::Attack {
        junk_attempts: attempts.load(Ordering::Relaxed),
        junk_connected: connected.load(Ordering::Relaxed),
        udp_sent,
        seconds: start.elapsed().as_secs_f64(),
    })
}

async fn idle(
    addr: SocketAddr,
    tls: TlsConnector,
    name: ServerName<'static>,
    count: usize,
) -> anyhow::Result<results::Idle> {
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
    Ok(results::Idle { errors })
}

async fn slowloris(
    addr: SocketAddr,
    count: usize,
    seconds: f64,
) -> anyhow::Result<results::Slowloris> {
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
    Ok(results::Slowloris {
        cut_by_server: cut.load(Ordering::Relaxed),
    })
}
